#pragma once
// WgmmaGemm's stream-K split of a product into CTA ranges, and how a CTA writes a finished tile
// or leaves a partial sum for another. Private to wgmma_gemm.cu (its anonymous namespace, so the
// kernels' code is the same as when this lived there).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "cuda/swiglu.cuh"

namespace ruvdllm::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kConsumerThreads = 256;     // two consumer warpgroups
constexpr int kMaxTileCells = 128 * 256;  // outputs × rows of the largest tile

struct Work {
  void* y;
  int64_t ldy;
  int n;
  int k_slices;   // in / 64, or per part when K is cut into parts
  int row_tiles;  // tiles along the rows; tile t covers outputs (t / row_tiles)·TileOut ...
  // K cut into parts whose products go to separate outputs (a reader adds them): tile t
  // multiplies part t / split_tiles and writes split_stride elements further per part. Without
  // parts split_tiles is the number of tiles.
  int split_tiles;
  int64_t split_stride;
  int64_t iterations;  // tiles × parts × k_slices, cut into `ctas` equal contiguous ranges
  int ctas;            // CTAs, or clusters of CTAs that multiply one tile each per iteration
  float beta;
  // A bf16 product over gate|up weights interleaved in groups of 8 (swiglu.cuh): y receives
  // silu(gate) ⊙ up, out / 2 values per row, instead of the product.
  bool swiglu;
  float* partials;  // per CTA, room for its largest tile (kMaxTileCells floats)
  int* ready;       // per CTA: 1 once its partial is written
};

__host__ __device__ inline int64_t range_begin(const Work& work, int cta) {
  return work.iterations * cta / work.ctas;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// The CTA whose range holds iteration g: the largest c with range_begin(c) ≤ g.
__device__ inline int cta_holding(const Work& work, int64_t g) {
  return static_cast<int>((int64_t{work.ctas} * (g + 1) - 1) / work.iterations);
}
template <int TileOut>
__device__ inline int tile_out0(const Work& work, int64_t tile) {
  return static_cast<int>(tile % work.split_tiles / work.row_tiles) * TileOut;
}
template <int TileRows>
__device__ inline int tile_row0(const Work& work, int64_t tile) {
  return static_cast<int>(tile % work.row_tiles) * TileRows;
}
__device__ inline void consumers_sync() { asm volatile("bar.sync 1, 256;\n" ::: "memory"); }
__device__ inline int load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ inline void store_release(int* p, int v) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}

// SwiGLU of a gate and an up accumulator, each first rounded to bf16 as a bf16 gate|up product
// would store it, so that the bits are those of the product followed by swiglu_rows.
__device__ inline bf16 swiglu_of_rounded(float gate, float up) {
  return __float2bfloat16(silu_times<bf16>(__bfloat162float(__float2bfloat16(gate)),
                                           __bfloat162float(__float2bfloat16(up))));
}

// Writes a consumer thread's accumulators: accumulator 4j + 2h + e is output out0 + 8h of row
// row0 + 8j + e (wgmma's layout). y = acc + beta·y reads y in groups before writing them:
// the compiler cannot tell a later read from an earlier write to y apart, so one read at a time
// would wait for a whole memory round trip each (an 8B BF16 step with every product on this
// kernel, H200: 10.3 ms with that epilogue, 8.6 with this one). Still 7 µs slower per residual
// product than beta = 0, so the engine has the next norm add the product instead.
template <int TileRows, bool Bf16Out>
__device__ inline void store_tile(const Work& work, const float (&acc)[TileRows / 2], int out0,
                                  int row0) {
  auto at = [&](int j, int e, int h) { return (row0 + 8 * j + e) * work.ldy + out0 + 8 * h; };
  auto inside = [&](int j, int e) { return row0 + 8 * j + e < work.n; };
  if constexpr (Bf16Out) {
    bf16* y = static_cast<bf16*>(work.y);
    if (work.swiglu) {
      // out0 is a gate output (out0 % 16 < 8), out0 + 8 its up output.
      const int64_t column = swiglu_output(out0);
#pragma unroll
      for (int j = 0; j < TileRows / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (!inside(j, e)) continue;
          y[(row0 + 8 * j + e) * work.ldy + column] =
              swiglu_of_rounded(acc[4 * j + e], acc[4 * j + 2 + e]);
        }
      }
      return;
    }
#pragma unroll
    for (int j = 0; j < TileRows / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (!inside(j, e)) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h) y[at(j, e, h)] = __float2bfloat16(acc[4 * j + 2 * h + e]);
      }
    }
  } else {
    float* y = static_cast<float*>(work.y);
    constexpr int kGroup = 4;  // row pairs (j) whose reads are in flight together
#pragma unroll
    for (int j0 = 0; j0 < TileRows / 8; j0 += kGroup) {
      float old[kGroup][4];
#pragma unroll
      for (int j = 0; j < kGroup; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            old[j][2 * h + e] = work.beta != 0.0f && inside(j0 + j, e) ? y[at(j0 + j, e, h)] : 0.0f;
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kGroup; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (!inside(j0 + j, e)) continue;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            y[at(j0 + j, e, h)] = acc[4 * (j0 + j) + 2 * h + e] + work.beta * old[j][2 * h + e];
          }
        }
      }
    }
  }
}

// A bf16 tile through shared memory, for a range's last tile, when the stages are idle: each
// thread's accumulators go to a row-major copy of the tile, then whole rows go out in 16-byte
// stores. store_tile's stores each cover 16 bytes of four rows, and writing a 128 × 256 tile
// that way took 4.3 µs (of a 60 µs product; in-kernel timestamps, q|k|v at 256 rows, H200), the
// largest part of finishing a tile. Rows are padded by 16 bytes so that the threads holding rows
// 2 apart write different banks. y's rows must start on 16 bytes. (f32 tiles, whose stores
// already fill 32-byte sectors, made the 8B step's down product slower this way: not used.)
// With Swiglu the tile's rows hold silu(gate) ⊙ up, half as many values.
template <class P, bool Swiglu>
__device__ inline void store_bf16_tile_staged(const Work& work,
                                              const float (&acc)[P::kAccumulators],
                                              uint8_t* staging, int ct, int out_in_tile,
                                              int row_in_tile, int tile_out, int tile_row) {
  constexpr int kRowValues = Swiglu ? P::kTileOut / 2 : P::kTileOut;
  constexpr int kRowBytes = kRowValues * 2;
  constexpr int kPitch = kRowBytes + 16;
  static_assert(P::kTileRows * kPitch <= P::kStages * P::kStageBytes, "the tile fits the stages");
  consumers_sync();  // the other warpgroup's last MMAs may still read the stages
#pragma unroll
  for (int j = 0; j < P::kConsumerRows / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      bf16* row = reinterpret_cast<bf16*>(staging + (row_in_tile + 8 * j + e) * kPitch);
      if constexpr (Swiglu) {
        row[swiglu_output(out_in_tile)] = swiglu_of_rounded(acc[4 * j + e], acc[4 * j + 2 + e]);
      } else {
#pragma unroll
        for (int h = 0; h < 2; ++h)
          row[out_in_tile + 8 * h] = __float2bfloat16(acc[4 * j + 2 * h + e]);
      }
    }
  }
  consumers_sync();
  constexpr int kChunks = kRowBytes / 16;  // per row
  constexpr int kTileRows = P::kTileRows;  // std::min takes references
  const int rows = std::min(kTileRows, work.n - tile_row);
  const int y_column = Swiglu ? tile_out / 2 : tile_out;
  for (int i = ct; i < rows * kChunks; i += kConsumerThreads) {
    const int r = i / kChunks, c = i % kChunks;
    bf16* y = static_cast<bf16*>(work.y) + (tile_row + r) * work.ldy + y_column;
    reinterpret_cast<uint4*>(y)[c] = *reinterpret_cast<const uint4*>(staging + r * kPitch + 16 * c);
  }
}

// After the MMAs of a tile's slices [k_first, k_end) of its range: leave their sum for the CTA
// holding the tile's first slice, or add the others' partials and write the tile. range_done: no
// slice of the range is left, so the stages are idle (a staging area for the store).
template <class P, bool Bf16Out, int Cluster>
__device__ __forceinline__ void finish_tile(const Work& work, float (&acc)[P::kAccumulators],
                                            uint8_t* tiles, int cta, int rank, int64_t tile,
                                            int k_first, int k_end, bool range_done) {
  constexpr int TileRows = P::kTileRows;
  constexpr int kRows = P::kConsumerRows;
  const int ct = static_cast<int>(threadIdx.x) - 128;  // 0..255
  const int group = ct / 128;
  const int warp = (ct % 128) / 32, lane = ct % 32;
  const bool rows_aligned =
      Bf16Out && reinterpret_cast<uintptr_t>(work.y) % 16 == 0 && work.ldy * 2 % 16 == 0;
  // A CTA holding a tile's later slices leaves its sum for the CTA holding the first one.
  if (k_first > 0) {
    float4* slot = reinterpret_cast<float4*>(
        work.partials + static_cast<size_t>(cta * Cluster + rank) * kMaxTileCells);
#pragma unroll
    for (int i = 0; i < P::kAccumulators / 4; ++i) {
      slot[i * kConsumerThreads + ct] =
          make_float4(acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]);
    }
    __threadfence();
    consumers_sync();
    if (ct == 0) store_release(&work.ready[cta * Cluster + rank], 1);
    return;
  }
  if (k_end < work.k_slices) {
    // Add the later slices' partials in CTA order, so the sum's order is fixed.
    const int last = cta_holding(work, (tile + 1) * work.k_slices - 1);
    for (int other = cta + 1; other <= last; ++other) {
      if (ct == 0) {
        int* ready = &work.ready[other * Cluster + rank];
        while (load_acquire(ready) == 0) {
        }
        *ready = 0;  // for the next launch; nobody else reads it in this one
      }
      consumers_sync();
      const float4* slot = reinterpret_cast<const float4*>(
          work.partials + static_cast<size_t>(other * Cluster + rank) * kMaxTileCells);
#pragma unroll
      for (int i = 0; i < P::kAccumulators / 4; ++i) {
        const float4 p = __ldcg(&slot[i * kConsumerThreads + ct]);
        acc[4 * i] += p.x;
        acc[4 * i + 1] += p.y;
        acc[4 * i + 2] += p.z;
        acc[4 * i + 3] += p.w;
      }
    }
  }
  const int tile_out = tile_out0<P::kTileOut * Cluster>(work, tile) + rank * P::kTileOut;
  Work part_work = work;  // y of the tile's part of K
  part_work.y = static_cast<char*>(work.y) + tile / work.split_tiles * work.split_stride *
                                                 (Bf16Out ? sizeof(bf16) : sizeof(float));
  const int out_in_tile = (P::kWide ? 0 : group * 64) + warp * 16 + lane / 4;
  const int row_in_tile = (P::kWide ? group * kRows : 0) + 2 * (lane % 4);
  if (range_done && rows_aligned) {
    // The range's last tile: every slice has been multiplied, so no copy or decoder writes
    // the stages any more.
    if (work.swiglu) {
      store_bf16_tile_staged<P, true>(part_work, acc, tiles, ct, out_in_tile, row_in_tile, tile_out,
                                      tile_row0<TileRows>(work, tile));
    } else {
      store_bf16_tile_staged<P, false>(part_work, acc, tiles, ct, out_in_tile, row_in_tile,
                                       tile_out, tile_row0<TileRows>(work, tile));
    }
  } else {
    store_tile<kRows, Bf16Out>(part_work, acc, tile_out + out_in_tile,
                               tile_row0<TileRows>(work, tile) + row_in_tile);
  }
}

#endif

}  // namespace
}  // namespace ruvdllm::cuda
