// WgmmaGemm: products on Hopper's warpgroup MMA with stream-K (wgmma_gemm.h says why and
// how). Built for sm_90a only (CMakeLists.txt: the ruvdllm_sm90a object library).
//
// A CTA is three warpgroups. The first fills a ring of shared-memory stages, each one 64-wide
// K slice of a 128-output weight tile and of a row tile of x, both in the 128-byte swizzled
// layout wgmma's descriptors read:
//  - bf16 weights: one thread copies both tiles with the bulk tensor copy engine (TMA);
//  - weights in GGUF blocks: one thread copies the raw blocks of the next 256 values of the
//    tile's 128 weight rows (TMA, a second ring) and x's tile, and all 128 threads decode one
//    weight row each into the stage (quant_formats.cuh: the values dequantize_to_bf16 writes).
//    Q4_K and Q5_K in tiles of up to 256 rows take another kernel (wgmma_register_decode.cuh):
//    the consumers decode their own weights into wgmma's A registers; the stages hold only x.
// The other two warpgroups multiply each stage (64 outputs each), keep f32 accumulators in
// registers, and write the tile, after adding the partials of the CTAs that held its later
// K slices (stream-K).
//
// Wide tiles (weights in blocks past 256 rows, takes_wide_tiles): 64 outputs × 512 rows, both
// consumer warpgroups multiplying the same 64 decoded weight rows with 256 rows of x each, two
// decoding threads per weight row, so each weight is decoded once per 512 rows. A 512-row x tile
// is 64 KB per stage, twice the bytes per product of a 128 × 256 tile: alone, such CTAs ran slower
// than two 256-row tiles (x's copies from L2 bound them: copying half of x, a diagnostic,
// made them 17% faster). So they run in CTA pairs on neighbouring outputs (a cluster of 2), each
// CTA copying half of x's tile into both (TMA multicast); stream-K then hands out pair tiles of
// 128 outputs, and each consumer warp frees a stage in both CTAs.
//
// Measured (docs/PERFORMANCE.md, H200, 2026-11-29): with bf16 weights this runs 5–12% behind
// cuBLAS on the 8B step's products, inside the step as in isolation (an earlier "39% behind
// inside the step" was the y += product epilogue, see store_tile), so the engine keeps cuBLAS
// there. Weights in blocks (up to 512 rows; InferGemm::takes_blocks) are where it is used: the
// other way writes and re-reads a bf16 copy of every weight (an 8B Q4_K step at 128 positions: 7.2
// against 11.1 ms; at 256: 10.1 against 13.2). Tried and dropped on the bf16 path (no gain or
// slower): waiting for each slice's MMAs before issuing the next, L2 eviction hints,
// prefetching weights into L2 ahead of the copies, three instead of four stages. Diagnostic
// builds located the rest: without any tile copies (MMAs on stale tiles) the head product at
// 512 rows ran at 774 TFLOP/s against 603 with them; without the output stores, 1–5% faster.
// Also tried (2026-11-29, no gain, not kept): CTA pairs (clusters of 2) of 128 × 256 tiles that
// each copy half of x's tile into both CTAs' shared memory (TMA multicast), which halves the
// copies of x: the same time as single CTAs for bf16 and Q4_K weights, so copying x is not what
// limits those tiles (wide tiles, with twice the x bytes per product, do use pairs; and a
// cluster-scope release on the cross-CTA "stage free" arrivals made it 40% slower); and a
// second decoding warpgroup for blocks (512 threads), which ptxas cannot compile: it holds the
// whole kernel to the launch's 128 registers per thread, below the consumers' 128 accumulators
// (checked again in the eighth session: ptxas C7602, the m64n256 wgmma needs at least 154).
// Also tried (2026-11-29, slower, not kept): the consumer warpgroups decoding part of the next
// slice (a quarter or half of each of their rows) into the shared tile while their current MMAs
// ran: 10–15% slower at 256 rows, as a warpgroup cannot issue its next MMAs before its own share
// is decoded (decoding into registers, wgmma_register_decode.cuh, needs no such handover); and
// (ninth session) 64 × 256 tiles with one consumer and two decoding warpgroups in CTA pairs:
// the 8B Q4_K step at 256 positions 13% slower. Decoding in bf16x2 arithmetic gains 2–3% of
// that step but is not exact. Where a 256-row product's time goes beyond its MMAs (timestamps
// in the kernel): ~5 µs until the first stage is full, and finishing tiles (wgmma_work.cuh).

#include <cuda.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "cuda/dependent_launch.h"
#include "cuda/launch_util.h"
#include "cuda/quant_formats.cuh"
#include "cuda/tensor_map.h"
#include "cuda/wgmma_gemm.h"
#include "cuda/wgmma_ops.cuh"
#include "cuda/wgmma_work.cuh"
#include "ruvdllm/core/env_choice.h"

namespace ruvdllm::cuda {
namespace {

constexpr int kTileOut = 128;     // outputs per CTA: two consumer warpgroups × 64 ...
constexpr int kWideTileOut = 64;  // ... or 64, that both multiply, each with half the rows
constexpr int kWideCluster = 2;   // wide tiles run in CTA pairs that share x's copies
constexpr int kSliceK = 64;       // K values per stage: one 128-byte swizzle row of bf16
constexpr int kSliceBytes = kSliceK * 2;
constexpr int kChunkValues = 256;  // K values per raw copy of weights in blocks
constexpr int kSlicesPerChunk = kChunkValues / kSliceK;
constexpr int kConsumerWarps = kConsumerThreads / 32;
constexpr int kDecoderWarps = 4;                  // the first warpgroup (weights in blocks)
constexpr int kThreads = 128 + kConsumerThreads;  // a producer warpgroup, two consumers
constexpr int kMaxCopyRows = 256;                 // the copy engine's largest box

// A tile of more than 256 rows is a wide one (Plan), multiplied by CTA pairs.
constexpr int tile_out_for(int tile_rows) { return tile_rows > 256 ? kWideTileOut : kTileOut; }
constexpr int cluster_for(int tile_rows) { return tile_rows > 256 ? kWideCluster : 1; }

// Shared memory of one CTA: `stages` slices of both tiles, then (weights in blocks) raw slots
// of TileOut rows × RawRowBytes (one row's 256-value chunk), then the barriers.
// A tile of kTileOut outputs gives each consumer warpgroup 64 of them and all TileRows rows; a
// wide one (kWideTileOut outputs × 512 rows) gives both warpgroups the same 64 weight rows and
// half of the rows each, so a weight decoded in blocks meets 512 rows instead of 256.
template <int TileRows, int RawRowBytes, int TileOut = kTileOut>
struct Plan {
  static constexpr int kTileOut = TileOut;
  static constexpr int kTileRows = TileRows;
  static constexpr bool kWide = TileOut == kWideTileOut;
  static constexpr int kConsumerRows = kWide ? TileRows / 2 : TileRows;
  static constexpr int kWeightTileBytes = TileOut * kSliceBytes;
  static constexpr int kRowTileBytes = TileRows * kSliceBytes;
  static constexpr int kStageBytes = kWeightTileBytes + kRowTileBytes;
  static constexpr int kRawSlotBytes = TileOut * RawRowBytes;
  // A wide tile's stage is 72 KB: two fit beside the raw ring.
  static constexpr int kStages = RawRowBytes == 0 ? 192 * 1024 / kStageBytes
                                 : kWide          ? 2
                                                  : 256 / TileRows + 2;
  static constexpr int kRawSlots =
      RawRowBytes == 0 ? 0 : std::min(4, (220 * 1024 - kStages * kStageBytes) / kRawSlotBytes);
  static constexpr int kAccumulators = kConsumerRows / 2;
  static_assert(TileOut * TileRows <= kMaxTileCells, "a tile's partials must fit their slot");
  static_assert(kConsumerRows <= 256, "wgmma multiplies at most 256 rows");
  static constexpr int kTilesBytes = kStages * kStageBytes + kRawSlots * kRawSlotBytes;
  // + slack to align the tiles to the swizzle's 1024 bytes
  static constexpr size_t kSharedBytes = 1024 + kTilesBytes + 8 * (2 * kStages + 2 * kRawSlots);
  static_assert(RawRowBytes == 0 || kRawSlots >= 2, "raw slots must double-buffer");
  static_assert(kSharedBytes <= 227 * 1024, "more shared memory than an SM has");
};

// A copy box is at most 256 elements wide: raw chunks past 256 bytes are copied as pairs of
// bytes.
template <int RawRowBytes>
constexpr int raw_elem_bytes() {
  return RawRowBytes <= 256 ? 1 : 2;
}

// One GGUF block type's chunk: its bytes per row per 256 values.
template <class Format>
constexpr int chunk_bytes() {
  return Format::kBlockBytes * (kChunkValues / Format::kBlockValues);
}

// Whether a chunk starts 16-byte aligned in its row: then it is copied as it lies. Q6_K's
// 210-byte chunks are not (copies must start on 16 bytes and span a multiple of them).
template <class Format>
constexpr bool aligned_chunks() {
  return chunk_bytes<Format>() % 16 == 0;
}

// A row's slot for one chunk in shared memory, and the copy box's width. An unaligned chunk is
// copied from the 16-byte boundary at or before its start, as 240 bytes, and decoded from its
// place in the slot (the bytes around it are the neighbouring chunks', or zeros past the row).
template <class Format>
constexpr int slot_bytes() {
  return aligned_chunks<Format>() ? chunk_bytes<Format>()
                                  : (chunk_bytes<Format>() + 15) / 16 * 16 + 16;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
template <int Stages>
__device__ inline void advance(int& stage, uint32_t& phase) {
  if (++stage == Stages) {
    stage = 0;
    phase ^= 1;
  }
}

// A consumer warp's arrival on a stage's "free" barrier: in a cluster, on that barrier in every
// CTA, whose copies of x also write this CTA's stage.
template <int Cluster>
__device__ inline void free_stage(uint64_t* bar) {
  if constexpr (Cluster == 1) {
    hopper::barrier_arrive(bar);
  } else {
    const uint32_t address = hopper::smem_address(bar);
#pragma unroll
    for (int r = 0; r < Cluster; ++r) hopper::barrier_arrive_in_cta(address, r);
  }
}

template <int TileRows>
__device__ inline void multiply_slice(float (&acc)[TileRows / 2], const uint8_t* weight_tile,
                                      const uint8_t* row_tile, bool accumulate) {
  hopper::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kSliceK / 16; ++kk) {
    const uint64_t a = hopper::swizzled_tile_descriptor(weight_tile + kk * 32);
    const uint64_t b = hopper::swizzled_tile_descriptor(row_tile + kk * 32);
    const int scale_d = accumulate || kk > 0 ? 1 : 0;
    if constexpr (TileRows == 256) {
      hopper::wgmma_m64n256k16(acc, a, b, scale_d);
    } else {
      hopper::wgmma_m64n128k16(acc, a, b, scale_d);
    }
  }
  hopper::wgmma_commit();
}

// The two consumer warpgroups: multiply every slice of the range, and finish each tile.
// `cta` is the range's owner (a CTA, or a cluster of Cluster CTAs that share the copies of x:
// CTA `rank` of it multiplies outputs [rank·TileOut, +TileOut) of the cluster's tile).
template <class P, bool Bf16Out, int Cluster = 1>
__device__ void consume(const Work& work, uint8_t* tiles, uint64_t* full, uint64_t* freed, int cta,
                        int rank, int64_t begin, int64_t end) {
  constexpr int kRows = P::kConsumerRows;
  const int ct = static_cast<int>(threadIdx.x) - 128;  // 0..255
  // Which 64 of the tile's outputs, or in a wide tile which half of its rows.
  const int group = ct / 128;
  const int weight_offset = P::kWide ? 0 : group * 64 * kSliceBytes;
  const int row_offset = P::kWide ? group * kRows * kSliceBytes : 0;
  const int lane = ct % 32;
  float acc[P::kAccumulators];
  int stage = 0;
  uint32_t phase = 0;
  for (int64_t g = begin; g < end;) {
    const int64_t tile = g / work.k_slices;
    const int k_first = static_cast<int>(g - tile * work.k_slices);
    const int k_end =
        static_cast<int>(std::min<int64_t>(end - tile * work.k_slices, work.k_slices));
    // One slice's MMAs stay in flight while the next slice's are issued; a stage is freed once
    // the MMAs reading it have completed.
    int previous = -1;
    for (int k = k_first; k < k_end; ++k) {
      hopper::barrier_wait(&full[stage], phase);
      const uint8_t* stage_tiles = tiles + stage * P::kStageBytes;
      multiply_slice<kRows>(acc, stage_tiles + weight_offset,
                            stage_tiles + P::kWeightTileBytes + row_offset, k > k_first);
      hopper::wgmma_wait<1>();
      if (previous >= 0 && lane == 0) free_stage<Cluster>(&freed[previous]);
      previous = stage;
      advance<P::kStages>(stage, phase);
    }
    hopper::wgmma_wait<0>();
    hopper::fence_accumulators(acc);
    if (lane == 0) free_stage<Cluster>(&freed[previous]);
    g = (tile + 1) * work.k_slices;
    finish_tile<P, Bf16Out, Cluster>(work, acc, tiles, cta, rank, tile, k_first, k_end, g >= end);
  }
}

__device__ inline void init_barriers(uint64_t* barriers, int count, uint32_t arrivals) {
  for (int i = 0; i < count; ++i) hopper::barrier_init(&barriers[i], arrivals);
}

// The dynamic shared memory's start rounded up to the swizzle's 1024 bytes.
__device__ inline uint8_t* shared_tiles(uint8_t* shared_raw) {
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(shared_raw) + 1023) &
                                    ~static_cast<uintptr_t>(1023));
}

// Values [64·slice, +64) of one weight row's 256-value chunk of blocks, decoded to bf16 and
// stored as the row of a swizzled weight tile (16-byte chunk c at c ^ swizzle). The chunk lies in
// a 16-byte aligned slot of RawRowBytes, at its start when chunks are aligned (aligned_chunks).
// With Parts = 2 a thread decodes only half `part` of the slice (values [32·part, +32)).
template <class Format, int RawRowBytes, int Parts = 1>
__device__ inline void decode_slice(const uint8_t* chunk, int slice, uint32_t row_address,
                                    int swizzle, int part = 0) {
  constexpr int kAlign = Format::kBlockValues == kChunkValues && aligned_chunks<Format>()
                             ? quant::alignment_of(RawRowBytes)
                             : quant::alignment_of(Format::kBlockBytes);
  // Shared-space stores: through a generic pointer each store also computed a 64-bit address.
  auto put = [&](int c, uint4 v) { hopper::store_shared(row_address + ((c ^ swizzle) << 4), v); };
  constexpr int kGroups = kSliceK / quant::kGroup / Parts;  // 16-byte chunks per thread
  if constexpr (Format::kQuads && Parts == 1) {
    // 256-value blocks: the slice is sub-blocks 2·slice and 2·slice + 1 of the chunk's block.
    uint4 out[8];
    Format::decode_pair(chunk, slice, out);
#pragma unroll
    for (int c = 0; c < 8; ++c) put(c, out[c]);
  } else if constexpr (Format::kQuads) {
    static_assert(Parts == 2, "a thread decodes a whole sub-block");
    uint4 out[4];
    Format::decode_sub_block(chunk, 2 * slice + part, out);
#pragma unroll
    for (int c = 0; c < 4; ++c) put(4 * part + c, out[c]);
  } else {
#pragma unroll
    for (int i = 0; i < kGroups; ++i) {
      const int c = kGroups * part + i;
      const int value0 = kSliceK * slice + quant::kGroup * c;
      float v[quant::kGroup];
      Format::template decode<kAlign>(chunk + (value0 / Format::kBlockValues) * Format::kBlockBytes,
                                      (value0 % Format::kBlockValues) / quant::kGroup, v);
      put(c, quant::pack_bf16(v));
    }
  }
}
#endif

template <int TileRows, bool Bf16Out>
__global__ void __launch_bounds__(kThreads, 1)
    wgmma_gemm_kernel(const __grid_constant__ CUtensorMap weight_map,
                      const __grid_constant__ CUtensorMap row_map, const Work work) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using P = Plan<TileRows, 0>;
  extern __shared__ uint8_t shared_raw[];
  uint8_t* tiles = shared_tiles(shared_raw);
  uint64_t* full = reinterpret_cast<uint64_t*>(tiles + P::kTilesBytes);
  uint64_t* freed = full + P::kStages;
  const int cta = static_cast<int>(blockIdx.x);
  const int64_t begin = range_begin(work, cta), end = range_begin(work, cta + 1);
  if (threadIdx.x == 0) {
    init_barriers(full, P::kStages, 1);
    init_barriers(freed, P::kStages, kConsumerWarps);
    hopper::barrier_init_fence();
  }
  __syncthreads();
  // x is the previous kernel's output. The next grid is released at this one's exit (see
  // dependent_launch.h: released early, it made the 8B step slower).
  wait_for_prior_grid();

  if (threadIdx.x < 128) {
    // One thread walks the range, copying each (tile, slice) into the next free stage.
    hopper::registers_release<40>();
    if (threadIdx.x == 0) {
      hopper::tensor_map_prefetch(&weight_map);
      hopper::tensor_map_prefetch(&row_map);
      int stage = 0;
      uint32_t phase = 0;
      for (int64_t g = begin; g < end; ++g) {
        const int64_t tile = g / work.k_slices;
        const int k = static_cast<int>(g % work.k_slices) * kSliceK;
        hopper::barrier_wait(&freed[stage], phase ^ 1);
        uint8_t* dst = tiles + stage * P::kStageBytes;
        hopper::barrier_arrive_expect_bytes(&full[stage], P::kStageBytes);
        hopper::tensor_load_2d(dst, &weight_map, k, tile_out0<kTileOut>(work, tile), &full[stage]);
        hopper::tensor_load_2d(dst + P::kWeightTileBytes, &row_map, k,
                               tile_row0<TileRows>(work, tile), &full[stage]);
        advance<P::kStages>(stage, phase);
      }
    }
  } else {
    // Each consumer thread holds 128 accumulators: more than an even split of the registers.
    // 128 × (168 − 40) released by the producer = 256 × (232 − 168) claimed here.
    hopper::registers_claim<232>();
    consume<P, Bf16Out>(work, tiles, full, freed, cta, 0, begin, end);
  }
#endif
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// A block kernel's shared memory as its plan P (Plan or RegisterPlan) lays it out: the stages,
// the raw slots, then the barriers.
template <class P>
struct BlockShared {
  uint8_t* tiles;
  uint8_t* raw;
  uint64_t *full, *freed, *raw_full, *raw_free;
  __device__ explicit BlockShared(uint8_t* shared_raw)
      : tiles(shared_tiles(shared_raw)),
        raw(tiles + P::kStages * P::kStageBytes),
        full(reinterpret_cast<uint64_t*>(tiles + P::kTilesBytes)),
        freed(full + P::kStages),
        raw_full(freed + P::kStages),
        raw_free(raw_full + P::kRawSlots) {}
};

// Copies chunk n of a range's raw weight blocks (256 values of its tile's TileOut weight rows;
// chunks numbered from the range's first, chunk0) into its slot once the slot is free. k_slices
// is a multiple of 4, so a chunk never spans two tiles. In a cluster, CTA `rank` copies its own
// TileOut rows of the cluster's tile.
template <class P, class Format, int RawRowBytes, int TileOut, int Cluster>
__device__ inline void copy_raw_chunk(const Work& work, const CUtensorMap* raw_map,
                                      const BlockShared<P>& shared, int64_t chunk0, int64_t n,
                                      int rank) {
  constexpr int kElem = raw_elem_bytes<RawRowBytes>();
  const int slot = static_cast<int>(n % P::kRawSlots);
  hopper::barrier_wait(&shared.raw_free[slot], ((n / P::kRawSlots) & 1) ^ 1);
  const int64_t g = (chunk0 + n) * kSlicesPerChunk;
  const int64_t tile = g / work.k_slices;
  const int chunk_in_row =
      static_cast<int>(g % work.k_slices + tile / work.split_tiles * work.k_slices) /
      kSlicesPerChunk;
  hopper::barrier_arrive_expect_bytes(&shared.raw_full[slot], P::kRawSlotBytes);
  // From the 16-byte boundary at or before the chunk (the chunk itself when aligned).
  const int byte0 = (chunk_in_row * chunk_bytes<Format>()) & ~15;
  hopper::tensor_load_2d(shared.raw + slot * P::kRawSlotBytes, raw_map, byte0 / kElem,
                         tile_out0<TileOut * Cluster>(work, tile) + rank * TileOut,
                         &shared.raw_full[slot]);
}
#endif

// Weights in GGUF blocks of type Format; RawRowBytes = one row's bytes per 256 values.
// Cluster 2 (wide tiles): CTA pairs, each CTA copying half of x's tile into both.
template <int TileRows, bool Bf16Out, class Format, int RawRowBytes, int TileOut, int Cluster>
__global__ void __launch_bounds__(kThreads, 1)
    wgmma_blocks_kernel(const __grid_constant__ CUtensorMap raw_map,
                        const __grid_constant__ CUtensorMap row_map, const Work work) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using P = Plan<TileRows, RawRowBytes, TileOut>;
  constexpr int kParts = 128 / TileOut;             // decoding threads per weight row
  constexpr int kRowsPerRank = TileRows / Cluster;  // of x's tile, copied by each CTA
  static_assert(kRowsPerRank <= kMaxCopyRows, "one copy box of x's rows per CTA");
  extern __shared__ uint8_t shared_raw[];
  const BlockShared<P> shared(shared_raw);
  uint8_t* tiles = shared.tiles;
  uint8_t* raw = shared.raw;
  uint64_t *full = shared.full, *freed = shared.freed;
  uint64_t *raw_full = shared.raw_full, *raw_free = shared.raw_free;
  const int cta = static_cast<int>(blockIdx.x) / Cluster;
  const int rank = Cluster == 1 ? 0 : static_cast<int>(hopper::cluster_rank());
  const int64_t begin = range_begin(work, cta), end = range_begin(work, cta + 1);
  if (threadIdx.x == 0) {
    init_barriers(full, P::kStages, 129);  // 128 decoders + thread 0's arrival announcing x's bytes
    init_barriers(freed, P::kStages, kConsumerWarps * Cluster);
    init_barriers(raw_full, P::kRawSlots, 1);
    init_barriers(raw_free, P::kRawSlots, 128);
    hopper::barrier_init_fence();
  }
  if constexpr (Cluster == 1) {
    __syncthreads();
  } else {
    hopper::cluster_sync();  // the other CTA's barriers exist before its copies signal them
  }
  // Thread 0 starts copying weight blocks before it waits: only copies from the host write
  // them, never the kernel before this one, whose output x is read after the wait.
  if (threadIdx.x != 0) wait_for_prior_grid();

  if (threadIdx.x < 128) {
    // The CTA holds 168 registers per thread; setmaxnreg only moves them between warpgroups
    // (an increase waits until another group's decrease frees enough, forever if none does):
    // 128 × (168 − 104) released here = 256 × (200 − 168) claimed by the consumers.
    hopper::registers_release<104>();
    const int t = static_cast<int>(threadIdx.x);
    const int row = t / kParts, part = t % kParts;  // the weight row (part) this thread decodes
    // Chunks (256 values of the tile's weight rows) are numbered from the range's first one;
    // k_slices is a multiple of 4, so a chunk never spans two tiles.
    const int64_t chunk0 = begin / kSlicesPerChunk;
    const int64_t chunks = (end - 1) / kSlicesPerChunk - chunk0 + 1;
    auto copy_chunk = [&](int64_t n) {  // thread 0 only
      copy_raw_chunk<P, Format, RawRowBytes, TileOut, Cluster>(work, &raw_map, shared, chunk0, n,
                                                               rank);
    };
    if (t == 0) {
      hopper::tensor_map_prefetch(&raw_map);
      hopper::tensor_map_prefetch(&row_map);
      for (int64_t n = 0; n < std::min<int64_t>(chunks, P::kRawSlots - 1); ++n) copy_chunk(n);
      wait_for_prior_grid();
    }
    int stage = 0;
    uint32_t phase = 0;
    // Every stage waits for the slowest of the four decoding warps, so the extra work of
    // copying is spread over them: x's slice is copied by warp (slice in chunk + 1) mod 4 and
    // the raw chunks by warp 0 at the chunk's first slice. The slice's place in its row and
    // its row tile are kept by counting: dividing by the run-time k_slices and row_tiles cost
    // the copying warp about 80 instructions per slice (ncu), a fifth more than decoding.
    int k = static_cast<int>(begin % work.k_slices);
    int row_tile = static_cast<int>(begin / work.k_slices % work.row_tiles);
    int tile_in_part = static_cast<int>(begin / work.k_slices % work.split_tiles);
    int part_k0 = static_cast<int>(begin / work.k_slices / work.split_tiles) * work.k_slices;
    // Shared-space addresses worked out once (from generic pointers, each barrier operation
    // converted its address again, re-deriving the aligned base: ~15 instructions per wait).
    const uint32_t tiles_at = hopper::smem_address(tiles);
    const uint32_t full_at = hopper::smem_address(full), freed_at = hopper::smem_address(freed);
    const uint32_t raw_full_at = hopper::smem_address(raw_full);
    const uint32_t raw_free_at = hopper::smem_address(raw_free);
    for (int64_t g = begin; g < end; ++g) {
      const int64_t n = g / kSlicesPerChunk - chunk0;
      const int slot = static_cast<int>(n % P::kRawSlots);
      const int in_chunk = static_cast<int>(g % kSlicesPerChunk);
      hopper::barrier_wait(freed_at + 8 * stage, phase ^ 1);
      const uint32_t dst = tiles_at + stage * P::kStageBytes;
      if (t == 32 * ((in_chunk + 1) % kDecoderWarps)) {
        hopper::barrier_arrive_expect_bytes(full_at + 8 * stage, P::kRowTileBytes);
        if constexpr (Cluster == 1) {
          hopper::tensor_load_2d(dst + P::kWeightTileBytes, &row_map, (part_k0 + k) * kSliceK,
                                 row_tile * TileRows, full_at + 8 * stage);
        } else {
          const int r = rank * kRowsPerRank;
          hopper::tensor_load_2d_multicast(dst + P::kWeightTileBytes + r * kSliceBytes, &row_map,
                                           (part_k0 + k) * kSliceK, row_tile * TileRows + r,
                                           full_at + 8 * stage, (1u << Cluster) - 1);
        }
      }
      // x's slice is asked for before waiting for the weights' chunk, so that at a range's
      // start its copy from L2 overlaps the chunk's from memory.
      if (g == begin || in_chunk == 0) {
        // Copy the chunk kRawSlots − 1 ahead (its slot was freed after the previous chunk).
        if (t == 0 && n + P::kRawSlots - 1 < chunks) copy_chunk(n + P::kRawSlots - 1);
        hopper::barrier_wait(raw_full_at + 8 * slot, (n / P::kRawSlots) & 1);
      }
      // Where the chunk starts in its slot (0 unless chunks are unaligned).
      const int skip =
          aligned_chunks<Format>() ? 0 : (k / kSlicesPerChunk * chunk_bytes<Format>()) & 15;
      decode_slice<Format, RawRowBytes, kParts>(
          raw + slot * P::kRawSlotBytes + row * RawRowBytes + skip, in_chunk,
          dst + row * kSliceBytes, row & 7, part);
      hopper::fence_shared_for_async();
      hopper::barrier_arrive(full_at + 8 * stage);
      if (in_chunk == kSlicesPerChunk - 1 || g == end - 1) {
        hopper::barrier_arrive(raw_free_at + 8 * slot);
      }
      advance<P::kStages>(stage, phase);
      if (++k == work.k_slices) {
        k = 0;
        if (++row_tile == work.row_tiles) row_tile = 0;
        if (++tile_in_part == work.split_tiles) {
          tile_in_part = 0;
          part_k0 += work.k_slices;
        }
      }
    }
  } else {
    hopper::registers_claim<200>();
    consume<P, Bf16Out, Cluster>(work, tiles, full, freed, cta, rank, begin, end);
  }
  // No CTA leaves while the other may still copy into its stages or arrive on its barriers.
  if constexpr (Cluster > 1) hopper::cluster_sync();
#endif
}

}  // namespace
}  // namespace ruvdllm::cuda

#include "cuda/wgmma_register_decode.cuh"

namespace ruvdllm::cuda {
namespace {

CUtensorMap bf16_tile_map(const bf16* base, int64_t rows, int64_t cols, int box_rows,
                          int64_t ld = 0) {
  return tile_map(base, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, rows, cols, kSliceK, box_rows, true,
                  ld);
}

template <int TileRows, bool Bf16Out>
void launch_bf16(const CUtensorMap& weight_map, const CUtensorMap& row_map, const Work& work,
                 cudaStream_t stream) {
  using P = Plan<TileRows, 0>;
  constexpr auto kernel = wgmma_gemm_kernel<TileRows, Bf16Out>;
  allow_shared_memory<kernel>(P::kSharedBytes, "cudaFuncSetAttribute(wgmma kernel)");
  launch_after_prior("wgmma_gemm_kernel", kernel, work.ctas, kThreads, P::kSharedBytes, stream,
                     weight_map, row_map, work);
}

template <int TileRows, bool Bf16Out, class Format, int Cluster>
void launch_blocks(const void* w, int64_t out, int64_t in, const CUtensorMap& row_map, Work work,
                   cudaStream_t stream) {
  constexpr int kRaw = slot_bytes<Format>();
  constexpr int kOut = tile_out_for(TileRows);
  using P = Plan<TileRows, kRaw, kOut>;
  constexpr int elem = raw_elem_bytes<kRaw>();
  static_assert(chunk_bytes<Format>() % elem == 0, "a chunk must start on a copy element");
  const int64_t row_elems = in / kChunkValues * chunk_bytes<Format>() / elem;
  const CUtensorMap raw_map =
      tile_map(w, elem == 1 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_UINT16, elem,
               out, row_elems, kRaw / elem, kOut, false);
  constexpr auto kernel = wgmma_blocks_kernel<TileRows, Bf16Out, Format, kRaw, kOut, Cluster>;
  allow_shared_memory<kernel>(P::kSharedBytes, "cudaFuncSetAttribute(wgmma kernel)");
  if constexpr (Cluster > 1) {
    // Stream-K's grid must be resident as a whole (a CTA waits for later ones' partial sums).
    work.ctas = std::min(work.ctas, resident_clusters<kernel>(Cluster, kThreads, P::kSharedBytes));
  }
  launch_clusters_after_prior("wgmma_blocks_kernel", Cluster, kernel, work.ctas * Cluster, kThreads,
                              P::kSharedBytes, stream, raw_map, row_map, work);
}

template <int TileRows, bool Bf16Out, class Format>
void launch_register_decode(const void* w, int64_t out, int64_t in, const CUtensorMap& row_map,
                            const Work& work, cudaStream_t stream) {
  constexpr int kRaw = slot_bytes<Format>();
  static_assert(aligned_chunks<Format>() && raw_elem_bytes<kRaw>() == 1, "chunks copied as bytes");
  const CUtensorMap raw_map = tile_map(w, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, out,
                                       in / kChunkValues * kRaw, kRaw, kTileOut, false);
  using P = RegisterPlan<TileRows, kRaw>;
  constexpr auto kernel = wgmma_register_decode_kernel<TileRows, Bf16Out, Format, kRaw>;
  allow_shared_memory<kernel>(P::kSharedBytes, "cudaFuncSetAttribute(wgmma kernel)");
  launch_after_prior("wgmma_register_decode_kernel", kernel, work.ctas, kThreads, P::kSharedBytes,
                     stream, raw_map, row_map, work);
}

template <int TileRows, bool Bf16Out>
void launch_blocks(TensorType type, const void* w, int64_t out, int64_t in,
                   const CUtensorMap& row_map, const Work& work, bool register_decoding,
                   cudaStream_t stream) {
  constexpr int kCluster = cluster_for(TileRows);
  quant::visit_format(type, [&](auto format) {
    using Format = decltype(format);
    if constexpr (TileRows > 256 && std::is_same_v<Format, quant::Q4_KFormat>) {
      throw_error("WgmmaGemm: Q4_K weights take no wide tiles");  // takes_wide_tiles
    } else if constexpr (TileRows <= 256 && decodes_fragments<Format>()) {
      if (register_decoding) {
        launch_register_decode<TileRows, Bf16Out, Format>(w, out, in, row_map, work, stream);
      } else {
        launch_blocks<TileRows, Bf16Out, Format, kCluster>(w, out, in, row_map, work, stream);
      }
    } else {
      launch_blocks<TileRows, Bf16Out, Format, kCluster>(w, out, in, row_map, work, stream);
    }
  });
}

// Past 256 rows, weights in blocks that take wide tiles (takes_wide_tiles) are multiplied in
// 64 outputs × 512 rows by CTA pairs: each weight is decoded once per 512 rows instead of once
// per 256. Every other product keeps 128 × 256 tiles.
int tile_rows_for(int64_t n, bool wide) { return n <= 128 ? 128 : n <= 256 || !wide ? 256 : 512; }

// The iteration space of a product, K cut into `parts`: what run() launches and
// slices_per_cta() reports.
Work shaped_work(int64_t n, int64_t in, int64_t out, int multiprocessors, bool wide,
                 int parts = 1) {
  const int tile_rows = tile_rows_for(n, wide);
  Work work{};
  work.n = static_cast<int>(n);
  work.k_slices = static_cast<int>(in / kSliceK / parts);
  work.row_tiles = static_cast<int>((n + tile_rows - 1) / tile_rows);
  const int cluster = cluster_for(tile_rows);
  const int64_t tiles = (out / (tile_out_for(tile_rows) * cluster)) * work.row_tiles;
  work.split_tiles = static_cast<int>(tiles);
  work.iterations = tiles * parts * work.k_slices;
  // With parts, one CTA per (tile, part) where they fit, so that none is shared.
  work.ctas = static_cast<int>(
      std::min<int64_t>(multiprocessors / cluster, parts > 1 ? tiles * parts : work.iterations));
  return work;
}

}  // namespace

bool WgmmaGemm::available() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (major != 9 || minor != 0) return false;
  cudaFuncAttributes attributes{};
  if (cudaFuncGetAttributes(&attributes, wgmma_gemm_kernel<256, true>) != cudaSuccess) {
    cudaGetLastError();  // no sm_90a image in this build
    return false;
  }
  return true;
}

bool WgmmaGemm::fits(int64_t n, int64_t in, int64_t out) {
  return n >= 1 && n <= (int64_t{1} << 30) && in >= kSliceK && in % kSliceK == 0 &&
         in <= (int64_t{1} << 30) && out >= kTileOut && out % kTileOut == 0 &&
         out <= (int64_t{1} << 30);
}

bool WgmmaGemm::fits_blocks(TensorType type, int64_t n, int64_t in, int64_t out) {
  if (!fits(n, in, out) || in % kChunkValues != 0) return false;
  // The copies' row stride must be a multiple of 16 bytes: any width for the 16-byte-multiple
  // chunks, multiples of 2048 values for Q6_K's 210-byte ones.
  bool stride_ok = false;
  quant::visit_format(type, [&](auto format) {
    stride_ok = in / kChunkValues * chunk_bytes<decltype(format)>() % 16 == 0;
  });
  return stride_ok;
}

int64_t WgmmaGemm::slices_per_cta(int64_t n, int64_t in, int64_t out) const {
  const Work work = shaped_work(n, in, out, multiprocessors_, false);
  return work.iterations / work.ctas;
}

bool WgmmaGemm::takes_wide_tiles(TensorType type) const {
  // Per product at 512 rows (bench_cuda_quant_gemm, H200): Q8_0, Q4_0 and Q5_K 8–15% faster in
  // wide pairs than in two 256-row tiles; Q4_K no faster (its 4096-output products 5% slower).
  return wide_tiles_ && type != TensorType::BF16 && type != TensorType::Q4_K;
}

bool WgmmaGemm::wide_tiles_by_default() {
  return env_choice<bool>("RUVDLLM_CUDA_WIDE_TILES", {{"1", true}, {"0", false}});
}

bool WgmmaGemm::register_decoding_by_default() {
  // The 8B step with Q4_K / Q5_K kept in blocks, H200: 1–2% / 1.5–4.5% faster at 32–128
  // positions, 2% / 8.5% at 256 (docs/PERFORMANCE.md).
  return env_choice<bool>("RUVDLLM_CUDA_DECODE", {{"registers", true}, {"warpgroup", false}});
}

WgmmaGemm::WgmmaGemm(cudaStream_t stream)
    : stream_(stream),
      wide_tiles_(wide_tiles_by_default()),
      register_decoding_(register_decoding_by_default()),
      k_parts_(k_parts_by_default()) {
  if (!available()) throw_error("WgmmaGemm: needs an H100/H200 (sm_90a) GPU");
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute(multiprocessor count)");
  partials_.reserve(static_cast<size_t>(multiprocessors_) * kMaxTileCells);
  ready_.reserve(static_cast<size_t>(multiprocessors_));
  check_cuda(cudaMemset(ready_.data(), 0, ready_.bytes()), "cudaMemset");
}

void WgmmaGemm::linear(float* y, int64_t ldy, const bf16* x, const bf16* w, int64_t n, int64_t in,
                       int64_t out, float beta, int64_t ldx) {
  run(y, false, ldy, x, w, TensorType::BF16, n, in, out, beta, ldx);
}

void WgmmaGemm::linear(bf16* y, int64_t ldy, const bf16* x, const bf16* w, int64_t n, int64_t in,
                       int64_t out, int64_t ldx) {
  run(y, true, ldy, x, w, TensorType::BF16, n, in, out, 0.0f, ldx);
}

void WgmmaGemm::linear_blocks(float* y, int64_t ldy, const bf16* x, const void* w, TensorType type,
                              int64_t n, int64_t in, int64_t out, float beta, int64_t ldx) {
  run(y, false, ldy, x, w, type, n, in, out, beta, ldx);
}

void WgmmaGemm::linear_blocks(bf16* y, int64_t ldy, const bf16* x, const void* w, TensorType type,
                              int64_t n, int64_t in, int64_t out, int64_t ldx) {
  run(y, true, ldy, x, w, type, n, in, out, 0.0f, ldx);
}

void WgmmaGemm::linear_blocks_swiglu(bf16* h, int64_t ldh, const bf16* x, const void* w,
                                     TensorType type, int64_t n, int64_t in, int64_t out,
                                     int64_t ldx) {
  if (type == TensorType::BF16) {
    throw_error("WgmmaGemm::linear_blocks_swiglu: weights must be kept in blocks");
  }
  run(h, true, ldh, x, w, type, n, in, out, 0.0f, ldx, 1, true);
}

void WgmmaGemm::linear_blocks_split(float* y, int64_t ldy, const bf16* x, const void* w,
                                    TensorType type, int64_t n, int64_t in, int64_t out, int parts,
                                    int64_t ldx) {
  if (type == TensorType::BF16 || parts < 1 || n > 256 || in % (int64_t{parts} * kChunkValues)) {
    throw_error("WgmmaGemm: cannot cut K = " + std::to_string(in) + " into " +
                std::to_string(parts) + " parts of whole 256-value chunks (weights in blocks, " +
                "up to 256 rows)");
  }
  run(y, false, ldy, x, w, type, n, in, out, 0.0f, ldx, parts);
}

int WgmmaGemm::k_parts_for(int64_t n, int64_t in, int64_t out) const {
  if (k_parts_ == KParts::Off || n > 256) return 1;
  const int64_t tiles = shaped_work(n, in, out, multiprocessors_, false).split_tiles;
  for (const int parts : {4, 2}) {
    if (tiles * parts > multiprocessors_ || in % (int64_t{parts} * kChunkValues) != 0) continue;
    if (k_parts_ == KParts::Any) return parts;
    // Measured on the 8B Q4_K step at 128 and 256 rows (H200, docs/PERFORMANCE.md): its two
    // residual products (32 tiles each) in four parts made the step 2–3% faster at 128 rows
    // and 0–2% at 256; the FFN-down product alone in parts gained less (1–1.5%). Not measured
    // below 128 rows, and only where the parts' CTAs fill at least half the SMs.
    if (n >= 128 && 2 * tiles * parts >= multiprocessors_) return parts;
  }
  return 1;
}

WgmmaGemm::KParts WgmmaGemm::k_parts_by_default() {
  return env_choice<KParts>("RUVDLLM_CUDA_K_PARTS",
                            {{"1", KParts::Measured}, {"0", KParts::Off}, {"any", KParts::Any}});
}

void WgmmaGemm::run(void* y, bool bf16_out, int64_t ldy, const bf16* x, const void* w,
                    TensorType type, int64_t n, int64_t in, int64_t out, float beta, int64_t ldx,
                    int parts, bool swiglu) {
  const bool blocks = type != TensorType::BF16;
  if (blocks ? !fits_blocks(type, n, in, out) : !fits(n, in, out)) {
    throw_error("WgmmaGemm: cannot multiply " + std::to_string(n) + " × " + std::to_string(in) +
                " by " + std::to_string(out) + " × " + std::to_string(in) +
                (blocks ? " weights in blocks (Q4_0/Q8_0/Q4_K/Q5_K; outputs a multiple of 128, "
                          "inputs of 256)"
                        : " (outputs must be a multiple of 128, inputs of 64)"));
  }
  const int64_t y_width = swiglu ? out / 2 : out;
  if (ldy < y_width) {
    throw_error("WgmmaGemm: ldy " + std::to_string(ldy) + " < " + std::to_string(y_width));
  }
  if (ldx == 0) ldx = in;
  if (ldx < in || ldx % 8 != 0) {  // the copy engine's row strides are multiples of 16 bytes
    throw_error("WgmmaGemm: ldx " + std::to_string(ldx) +
                " must be at least in and a multiple of 8");
  }
  if (!aligned(x, 16) || !aligned(w, 16)) {
    throw_error("WgmmaGemm: operands must be 16-byte aligned");
  }
  const bool wide = takes_wide_tiles(type);
  const int tile_rows = tile_rows_for(n, wide);
  Work work = shaped_work(n, in, out, multiprocessors_, wide, parts);
  work.y = y;
  work.ldy = ldy;
  work.split_stride = n * ldy;
  work.beta = beta;
  work.swiglu = swiglu;
  work.partials = partials_.data();
  work.ready = ready_.data();
  const CUtensorMap row_map = bf16_tile_map(x, n, in, std::min(tile_rows, kMaxCopyRows), ldx);
  if (blocks) {
    if (tile_rows == 512) {
      bf16_out
          ? launch_blocks<512, true>(type, w, out, in, row_map, work, register_decoding_, stream_)
          : launch_blocks<512, false>(type, w, out, in, row_map, work, register_decoding_, stream_);
    } else if (tile_rows == 256) {
      bf16_out
          ? launch_blocks<256, true>(type, w, out, in, row_map, work, register_decoding_, stream_)
          : launch_blocks<256, false>(type, w, out, in, row_map, work, register_decoding_, stream_);
    } else {
      bf16_out
          ? launch_blocks<128, true>(type, w, out, in, row_map, work, register_decoding_, stream_)
          : launch_blocks<128, false>(type, w, out, in, row_map, work, register_decoding_, stream_);
    }
    return;
  }
  const CUtensorMap weight_map = bf16_tile_map(static_cast<const bf16*>(w), out, in, kTileOut);
  if (tile_rows == 256) {
    bf16_out ? launch_bf16<256, true>(weight_map, row_map, work, stream_)
             : launch_bf16<256, false>(weight_map, row_map, work, stream_);
  } else {
    bf16_out ? launch_bf16<128, true>(weight_map, row_map, work, stream_)
             : launch_bf16<128, false>(weight_map, row_map, work, stream_);
  }
}

}  // namespace ruvdllm::cuda
