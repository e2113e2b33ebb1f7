#pragma once
// WgmmaGemm's kernel for Q4_K and Q5_K weights up to 256 rows with the decoding in the consumer
// warpgroups: each consumer thread decodes its own A fragments (quant_formats.cuh:
// AffineKFormat::fragments) from the raw blocks straight into registers, and wgmma reads A from
// there and only x's tile from shared memory. Private to wgmma_gemm.cu (included into its
// anonymous namespace's helpers: Work, finish_tile, advance, ...).
//
// Why: with a decoding warpgroup, every K slice of a 128 × 256 tile moves about 138 KB through
// shared memory (x's copy 32 KB, the raw blocks 4.5 KB written and read, the decoded weights
// 16 KB written and read by both consumers' MMAs, x read by both) for 4.2 MFLOP; here about
// 107 KB, the decoding is spread over 256 threads instead of 128, and the stages the decoded
// tiles took hold x further ahead. Each thread decodes the next slice while the MMAs of the
// current one run (two register buffers of 16 words; a third does not fit: ptxas holds the
// whole kernel to the launch's 168 registers). Measured (H200): 2–9% faster per product than the
// decoding warpgroup at 128 and 256 rows, and the 8B step 1–2% (Q4_K, 32–512 positions) and
// 1.5–8.5% (Q5_K, 32–256) faster (docs/PERFORMANCE.md).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace ruvdllm::cuda {
namespace {

// Shared memory: `stages` slices of x's row tile, then raw slots of 128 rows × RawRowBytes (one
// chunk of 256 values), then the barriers. The fields finish_tile and store_bf16_tile_staged
// read are Plan's.
template <int TileRows, int RawRowBytes, int TileOut = kTileOut>
struct RegisterPlan {
  static constexpr int kTileOut = TileOut;
  static constexpr int kTileRows = TileRows;
  static constexpr bool kWide = false;
  static constexpr int kConsumerRows = TileRows;
  static constexpr int kRowTileBytes = TileRows * kSliceBytes;
  static constexpr int kStageBytes = kRowTileBytes;
  static constexpr int kRawSlotBytes = kTileOut * RawRowBytes;
  static constexpr int kRawSlots = 3;  // 2 measured the same (a chunk is 4 slices)
  static constexpr int kStages =
      std::min(8, (218 * 1024 - kRawSlots * kRawSlotBytes) / kStageBytes);
  static constexpr int kAccumulators = TileRows / 2;
  static constexpr int kTilesBytes = kStages * kStageBytes + kRawSlots * kRawSlotBytes;
  static constexpr size_t kSharedBytes = 1024 + kTilesBytes + 8 * (2 * kStages + 2 * kRawSlots);
  static_assert(kStages >= 4, "the copies of x need a few slices' lead");
  static_assert(kSharedBytes <= 227 * 1024, "more shared memory than an SM has");
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// One slice's four k16 MMAs with A (64 weight rows × 64 values) from registers.
template <int TileRows>
__device__ inline void multiply_slice_registers(float (&acc)[TileRows / 2], const uint32_t (&a)[16],
                                                const uint8_t* row_tile, bool accumulate) {
  hopper::wgmma_fence();  // orders the decoding's register writes before the MMAs read them
#pragma unroll
  for (int kk = 0; kk < kSliceK / 16; ++kk) {
    const uint64_t b = hopper::swizzled_tile_descriptor(row_tile + kk * 32);
    const int scale_d = accumulate || kk > 0 ? 1 : 0;
    if constexpr (TileRows == 256) {
      hopper::wgmma_m64n256k16_registers(acc, a + 4 * kk, b, scale_d);
    } else {
      hopper::wgmma_m64n128k16_registers(acc, a + 4 * kk, b, scale_d);
    }
  }
  hopper::wgmma_commit();
}

// The consumer warpgroups: for each slice, wait for x's copy, multiply with the fragments
// decoded during the previous slice's MMAs, then decode the next slice's.
template <class P, bool Bf16Out, class Format, int RawRowBytes>
__device__ void consume_decoding(const Work& work, const BlockShared<P>& shared, int cta,
                                 int64_t begin, int64_t end) {
  uint8_t* tiles = shared.tiles;
  uint64_t *full = shared.full, *freed = shared.freed;
  const int ct = static_cast<int>(threadIdx.x) - 128;  // 0..255
  const int lane = ct % 32;
  // This thread's two weight rows of the tile: 64 per warpgroup, 16 per warp.
  const int row_lo = (ct / 128) * 64 + (ct % 128) / 32 * 16 + lane / 4;
  const int64_t chunk0 = begin / kSlicesPerChunk;
  const uint32_t raw_at = hopper::smem_address(shared.raw);
  auto decode = [&](uint32_t(&a)[16], int64_t g) {
    const int64_t n = g / kSlicesPerChunk - chunk0;
    const int slot = static_cast<int>(n % P::kRawSlots);
    const int in_chunk = static_cast<int>(g % kSlicesPerChunk);
    if (g == begin || in_chunk == 0) {
      hopper::barrier_wait(&shared.raw_full[slot], static_cast<uint32_t>(n / P::kRawSlots) & 1);
    }
    const uint32_t chunk = raw_at + slot * P::kRawSlotBytes;
    Format::fragments(chunk + row_lo * RawRowBytes, chunk + (row_lo + 8) * RawRowBytes, in_chunk,
                      lane % 4, a);
    if (in_chunk == kSlicesPerChunk - 1 || g == end - 1) {
      __syncwarp();  // every lane has read the chunk
      if (lane == 0) hopper::barrier_arrive(&shared.raw_free[slot]);
    }
  };
  float acc[P::kAccumulators];
  int stage = 0;
  uint32_t phase = 0;
  int previous = -1;
  // Slice g (the tile's k-th) multiplied with fragments `now`: its MMAs are issued, the previous
  // slice's are waited for (freeing its stage, and its fragments: `next`), and with `decode_next`
  // slice g + 1's fragments are decoded into `next` while slice g's MMAs run.
  auto multiply = [&](const uint32_t(&now)[16], uint32_t(&next)[16], int64_t g, int k, int k_first,
                      bool decode_next) {
    hopper::barrier_wait(&full[stage], phase);
    multiply_slice_registers<P::kTileRows>(acc, now, tiles + stage * P::kStageBytes, k > k_first);
    hopper::wgmma_wait<1>();
    if (previous >= 0 && lane == 0) hopper::barrier_arrive(&freed[previous]);
    previous = stage;
    advance<P::kStages>(stage, phase);
    if (decode_next) decode(next, g + 1);
  };
  // Two register buffers, and each MMA site reads one named buffer: with the buffer chosen at run
  // time, or the tile's finishing merged into the loop, ptxas waited for every slice's MMAs
  // (C7517). A tile's slices go in pairs (even, odd); its last one then waits for all MMAs, so
  // the next tile's first fragments can go to `even` again.
  uint32_t even[16], odd[16];
  decode(even, begin);
  for (int64_t g = begin; g < end;) {
    const int64_t tile = g / work.k_slices;
    const int k_first = static_cast<int>(g - tile * work.k_slices);
    const int k_end =
        static_cast<int>(std::min<int64_t>(end - tile * work.k_slices, work.k_slices));
    int k = k_first;
    for (; k + 2 < k_end; k += 2) {
      multiply(even, odd, g, k, k_first, true);
      multiply(odd, even, g + 1, k + 1, k_first, true);
      g += 2;
    }
    if (k + 1 < k_end) {
      multiply(even, odd, g, k, k_first, true);
      multiply(odd, even, g + 1, k + 1, k_first, false);
      g += 2;
    } else {
      multiply(even, odd, g, k, k_first, false);
      g += 1;
    }
    hopper::wgmma_wait<0>();
    hopper::fence_accumulators(acc);
    if (lane == 0) hopper::barrier_arrive(&freed[previous]);
    previous = -1;
    if (g < end) decode(even, g);  // the next tile's first slice, before this one's finishing
    finish_tile<P, Bf16Out, 1>(work, acc, tiles, cta, 0, tile, k_first, k_end, g >= end);
  }
}

#endif

// Weights in Q4_K or Q5_K blocks (Format), tiles of 128 outputs × TileRows (≤ 256) rows.
template <int TileRows, bool Bf16Out, class Format, int RawRowBytes>
__global__ void __launch_bounds__(kThreads, 1)
    wgmma_register_decode_kernel(const __grid_constant__ CUtensorMap raw_map,
                                 const __grid_constant__ CUtensorMap row_map, const Work work) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using P = RegisterPlan<TileRows, RawRowBytes>;
  extern __shared__ uint8_t shared_raw[];
  const BlockShared<P> shared(shared_raw);
  const int cta = static_cast<int>(blockIdx.x);
  const int64_t begin = range_begin(work, cta), end = range_begin(work, cta + 1);
  if (threadIdx.x == 0) {
    init_barriers(shared.full, P::kStages, 1);
    init_barriers(shared.freed, P::kStages, kConsumerWarps);
    init_barriers(shared.raw_full, P::kRawSlots, 1);
    init_barriers(shared.raw_free, P::kRawSlots, kConsumerWarps);
    hopper::barrier_init_fence();
  }
  __syncthreads();
  // Thread 0 copies weight blocks before it waits (no kernel writes them); every other thread
  // waits for the kernel before, whose output x is copied, and which may still read y.
  if (threadIdx.x != 0) wait_for_prior_grid();

  if (threadIdx.x < 128) {
    // Two copying threads, so that neither ring waits for the other's: thread 0 the raw chunks
    // of the range's tiles (k_slices is a multiple of 4: a chunk never spans two tiles), thread
    // 32 x's slices.
    hopper::registers_release<40>();
    if (threadIdx.x == 0) {
      hopper::tensor_map_prefetch(&raw_map);
      const int64_t chunk0 = begin / kSlicesPerChunk;
      const int64_t chunks = (end - 1) / kSlicesPerChunk - chunk0 + 1;
      for (int64_t n = 0; n < chunks; ++n) {
        copy_raw_chunk<P, Format, RawRowBytes, kTileOut, 1>(work, &raw_map, shared, chunk0, n, 0);
      }
    } else if (threadIdx.x == 32) {
      hopper::tensor_map_prefetch(&row_map);
      int stage = 0;
      uint32_t phase = 0;
      for (int64_t g = begin; g < end; ++g) {
        const int64_t tile = g / work.k_slices;
        const int k = static_cast<int>(g % work.k_slices);
        const int part_k0 = static_cast<int>(tile / work.split_tiles) * work.k_slices;
        hopper::barrier_wait(&shared.freed[stage], phase ^ 1);
        hopper::barrier_arrive_expect_bytes(&shared.full[stage], P::kRowTileBytes);
        hopper::tensor_load_2d(shared.tiles + stage * P::kStageBytes, &row_map,
                               (part_k0 + k) * kSliceK, tile_row0<TileRows>(work, tile),
                               &shared.full[stage]);
        advance<P::kStages>(stage, phase);
      }
    }
  } else {
    // 128 × (168 − 40) registers released by the copying warpgroup = 256 × (232 − 168).
    hopper::registers_claim<232>();
    consume_decoding<P, Bf16Out, Format, RawRowBytes>(work, shared, cta, begin, end);
  }
#endif
}

// Whether this kernel takes weights of Format (those whose fragments it can decode).
template <class Format>
constexpr bool decodes_fragments() {
  return std::is_same_v<Format, quant::Q4_KFormat> || std::is_same_v<Format, quant::Q5_KFormat>;
}

}  // namespace
}  // namespace ruvdllm::cuda
