// Flash attention on bf16 tensor cores (mma.sync m16n8k16, f32 accumulation), the
// FlashAttention-2 scheme: a group of 4 warps owns 64 or 128 query rows of one (sequence,
// head), 16 or 32 rows per warp; key/value tiles stream through double-buffered shared memory
// (cp.async), and each warp keeps its scores, softmax statistics and output rows in registers,
// so only the bf16 probabilities P change precision between the two products.
//
// A block is one such group, or, when even one-row-tile blocks would leave SMs idle (an 8B
// model's 32 heads at 256 positions make 128 blocks for 132 SMs), two groups that share the
// query rows and take alternate key tiles, merging their partial rows through shared memory at
// the end. One warp per scheduler left the kernel latency-bound (ncu: an instruction issued
// every 4.7 cycles); the second group gives each scheduler another warp to switch to, without
// the extra global writes and merge launch of splitting the keys across blocks (tried, slower).
//
// No fmt here: nvcc's host pass cannot compile fmt's headers, so errors go through
// throw_error (cuda_check.h), which throws ruvdllm::Error.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/dependent_launch.h"
#include "cuda/device_past.cuh"
#include "cuda/flash_attention.h"
#include "cuda/launch_util.h"
#include "cuda/mma_sync.cuh"

namespace ruvdllm::cuda {

using namespace mma;  // the PTX helpers: cp_async_16, ldmatrix_x4, mma_bf16, …
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

// Kernels exist for padded head dims 64, 128 and 256; a smaller head_dim runs on the next one
// up with its extra columns zero-filled (and their products skipped). MT is the number of m16
// row tiles per warp: with 2, every K and V fragment read from shared memory feeds two
// products, which halves the shared-memory traffic that otherwise bounds mma.sync, but the
// block then covers 128 queries, too few blocks for short sequences (the host picks). With one
// row tile and head dims up to 128 the warp's Q fragments stay in registers; otherwise they
// are re-read from shared memory at each k step (registers go to the output accumulators).
// The key tile is 64 wide unless a warp's output rows hold more than 128 columns (D · MT), where
// 64 keys of scores would push it past 255 registers; then 32 (ptxas -v: no spills, 135 to 228
// registers).
// KS is the number of warp groups that split the key tiles (1 or 2).
template <int D, int MT, int KS = 1>
struct Tile {
  static constexpr int kBlockM = kWarps * 16 * MT;
  static constexpr int kBlockN = D * MT <= 128 ? 64 : 32;
  // 16 bytes of padding per row: the 8 rows an ldmatrix reads then start 4 banks apart.
  static constexpr int kStride = D + 8;
  static constexpr bool kQInRegisters = MT == 1 && D <= 128;
  // Each group's K and V double buffers: 4 tiles of kBlockN rows.
  static constexpr int kGroupRows = 4 * kBlockN;
  static constexpr size_t kSmemBytes =
      static_cast<size_t>(kBlockM + KS * kGroupRows) * kStride * sizeof(__nv_bfloat16);
  // What a lane of the second group hands to its partner for the merge: its output fragments,
  // then its rows' running max and sum; staged in that group's K/V buffers.
  static constexpr int kMergeValues = MT * (D / 8) * 4 + 4 * MT;
  static_assert(KS == 1 || kWarps * 32 * kMergeValues * sizeof(float) <=
                               kGroupRows * kStride * sizeof(__nv_bfloat16),
                "the merge stage must fit in a group's K/V buffers");
};
constexpr int kSmallestBlockM = Tile<64, 1>::kBlockM;
// flash_attention_variant's variants.
constexpr int kAutomatic = 0, kOneRowTile = 1, kTwoRowTiles = 2, kSplitKeys = 3;

struct Params {
  __nv_bfloat16* out;
  const __nv_bfloat16* q;
  const __nv_bfloat16* k;
  const __nv_bfloat16* v;
  int64_t n_q, q_rows, n_kv, kv_rows, n_head, n_head_kv, group, head_dim;
  int n_q_tiles;
  float scale_log2;  // scale · log2(e): the softmax runs on exp2
  int mask;          // MaskMode's value
  int64_t block_len, q_pos0;
  const int32_t* past;  // FlashAttentionDims::past
};

// One past the last key position that a query at q_pos sees (src/kernels/attention.cpp).
__device__ inline int64_t visible_key_end(int mask, int64_t block_len, int64_t q_pos) {
  if (mask == static_cast<int>(MaskMode::Causal)) return q_pos + 1;
  if (mask == static_cast<int>(MaskMode::BlockCausal)) return (q_pos / block_len + 1) * block_len;
  return INT64_MAX;
}

// 2^x on the special-function unit (relative error about 2⁻²², far below bf16's); -inf gives 0.
// exp2f would add a rescaling for subnormal results, which a softmax does not need.
__device__ inline float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ inline uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Rows [first_row, first_row + ROWS) of a [n_rows][head_dim] matrix into a [ROWS][kStride]
// tile; rows past n_rows and columns past head_dim become zeros, so they add nothing. THREADS
// threads share the copy; this one is number tid of them.
template <int ROWS, int D, int THREADS>
__device__ inline void load_tile(__nv_bfloat16* dst, const __nv_bfloat16* src, int64_t first_row,
                                 int64_t n_rows, int64_t head_dim, int tid) {
  constexpr int kChunks = D / 8;  // 16-byte pieces of a row
  // A thread copies the same column of every kRowStep-th row, so its column, its first address
  // and the column test are worked out once, not per piece.
  constexpr int kRowStep = THREADS / kChunks;
  static_assert(THREADS % kChunks == 0 && ROWS % kRowStep == 0, "tile rows must split evenly");
  const int col = (tid % kChunks) * 8, r0 = tid / kChunks;
  const bool column_inside = col < head_dim;
  const __nv_bfloat16* from = src + (first_row + r0) * head_dim + col;
  const int64_t step = kRowStep * head_dim;
#pragma unroll
  for (int i = 0; i < ROWS / kRowStep; ++i) {
    const int r = r0 + i * kRowStep;
    const bool inside = column_inside && first_row + r < n_rows;
    cp_async_16(dst + r * Tile<D, 1>::kStride + col, inside ? from + i * step : src,
                inside ? 16 : 0);
  }
}

// Waits for the kThreads threads of warp group `group` only (named barrier 1 + group), so the
// groups of a key-split block run their loops independently.
__device__ inline void group_barrier(int group) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(1 + group), "n"(kThreads) : "memory");
}

template <int D, int MT, int KS>
__global__ void __launch_bounds__(kThreads* KS) flash_attention_kernel(Params p) {
  using T = Tile<D, MT, KS>;
  constexpr int BM = T::kBlockM, BN = T::kBlockN, S = T::kStride;
  constexpr int kWarpRows = 16 * MT;
  constexpr int kDimSteps = D / 16;  // k16 steps of Q·Kᵀ, and n16 column pairs of P·V
  constexpr int kKeyTiles8 = BN / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  wait_for_prior_grid();
  add_device_past(p.past, p.n_kv, p.q_pos0);
  // Group g takes key tiles g, g + KS, g + 2·KS, … through its own double buffers.
  const int group = threadIdx.x / kThreads, tid = threadIdx.x % kThreads;
  __nv_bfloat16* q_s = reinterpret_cast<__nv_bfloat16*>(smem);  // [BM][S], shared
  __nv_bfloat16* k_s = q_s + (BM + group * T::kGroupRows) * S;  // [2][BN][S]
  __nv_bfloat16* v_s = k_s + 2 * BN * S;                        // [2][BN][S]

  const int warp = tid / 32, lane = tid % 32;
  const int quad_row = lane / 4, quad_col = lane % 4;  // the mma fragment coordinates
  const int64_t head_seq = blockIdx.x;                 // sequence · n_head + head
  const int64_t seq = head_seq / p.n_head, head = head_seq % p.n_head;
  // Last query tiles first: under a causal mask they see the most keys, and starting the
  // longest blocks early balances the SMs.
  const int64_t i0 = static_cast<int64_t>(p.n_q_tiles - 1 - static_cast<int>(blockIdx.y)) * BM;
  const int64_t rows = min(static_cast<int64_t>(BM), p.n_q - i0);
  const int64_t kv_head = seq * p.n_head_kv + head / p.group;
  const __nv_bfloat16* q = p.q + (head_seq * p.q_rows + i0) * p.head_dim;
  const __nv_bfloat16* k = p.k + kv_head * p.kv_rows * p.head_dim;
  const __nv_bfloat16* v = p.v + kv_head * p.kv_rows * p.head_dim;

  const int64_t pos0 = p.q_pos0 + i0;
  // Keys from kv_end on are hidden from every row; keys before unmasked_end are seen by all.
  const int64_t kv_end = min(p.n_kv, visible_key_end(p.mask, p.block_len, pos0 + rows - 1));
  const int64_t unmasked_end = min(kv_end, visible_key_end(p.mask, p.block_len, pos0));
  const int n_key_tiles = static_cast<int>((kv_end + BN - 1) / BN);
  const int n_my_tiles = n_key_tiles > group ? (n_key_tiles - group + KS - 1) / KS : 0;
  // This thread's rows are warp·kWarpRows + mt·16 + quad_row + 8·r; they see keys below these.
  int64_t key_limit[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t pos = pos0 + warp * kWarpRows + mt * 16 + quad_row + 8 * r;
      key_limit[mt][r] = min(p.n_kv, visible_key_end(p.mask, p.block_len, pos));
    }
  }

  // The whole block loads Q with the group's first tile, then the group's second tile; the
  // loop below keeps one tile in flight ahead of the one it computes.
  load_tile<BM, D, kThreads * KS>(q_s, q, 0, rows, p.head_dim, threadIdx.x);
  for (int u = 0; u < 2; ++u) {
    if (u < n_my_tiles) {
      const int64_t first = static_cast<int64_t>(u * KS + group) * BN;
      load_tile<BN, D, kThreads>(k_s + u * BN * S, k, first, p.n_kv, p.head_dim, tid);
      load_tile<BN, D, kThreads>(v_s + u * BN * S, v, first, p.n_kv, p.head_dim, tid);
    }
    cp_async_commit();  // possibly empty, so that wait<1> below always means "the older landed"
  }
  cp_async_wait<1>();
  __syncthreads();  // Q, from every thread of the block, and each group's first tile

  const __nv_bfloat16* q_warp = q_s + warp * kWarpRows * S;
  // ldmatrix addresses: lane l supplies row l % 8 of 8×8 matrix l / 8. For an A fragment the
  // matrices are rows {0..7, 8..15, 0..7, 8..15} × columns {0..7, 0..7, 8..15, 8..15}.
  const int lm_row = lane % 8, lm_matrix = lane / 8;
  const int a_row = lm_row + (lm_matrix & 1) * 8, a_col = (lm_matrix >> 1) * 8;
  uint32_t q_frag[T::kQInRegisters ? kDimSteps : 1][4];
  float o[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
  }
  float row_max[MT][2], row_sum[MT][2];  // max in units of scale·log2(e); sum: this lane's share
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.0f;
  }

  for (int u = 0; u < n_my_tiles; ++u) {
    const int t = u * KS + group, buf = u & 1;
    if (u > 0) {
      cp_async_wait<1>();  // this tile's copies, issued two commits ago
      group_barrier(group);
    }
    const __nv_bfloat16* k_tile = k_s + buf * BN * S;
    const __nv_bfloat16* v_tile = v_s + buf * BN * S;

    if constexpr (T::kQInRegisters) {
      if (u == 0) {
#pragma unroll
        for (int kk = 0; kk < kDimSteps; ++kk)
          ldmatrix_x4(q_frag[kk], q_warp + a_row * S + kk * 16 + a_col);
      }
    }

    // Scores S = Q·Kᵀ: sc[mt][n] is the 16×8 fragment of row tile mt and keys n·8 .. n·8+7.
    float sc[MT][kKeyTiles8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int n = 0; n < kKeyTiles8; ++n)
        sc[mt][n][0] = sc[mt][n][1] = sc[mt][n][2] = sc[mt][n][3] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < kDimSteps; ++kk) {
      if (kk * 16 >= p.head_dim) break;  // zero-padded columns
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (T::kQInRegisters) {
          a[mt][0] = q_frag[kk][0];
          a[mt][1] = q_frag[kk][1];
          a[mt][2] = q_frag[kk][2];
          a[mt][3] = q_frag[kk][3];
        } else {
          ldmatrix_x4(a[mt], q_warp + (mt * 16 + a_row) * S + kk * 16 + a_col);
        }
      }
#pragma unroll
      for (int np = 0; np < kKeyTiles8 / 2; ++np) {
        // Matrices: keys np·16 + {0..7, 0..7, 8..15, 8..15}, dims kk·16 + {0..7, 8..15, ...}.
        uint32_t b[4];
        ldmatrix_x4(b, k_tile + (np * 16 + (lm_matrix >> 1) * 8 + lm_row) * S + kk * 16 +
                           (lm_matrix & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(sc[mt][2 * np], a[mt], b[0], b[1]);
          mma_bf16(sc[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
    }

    const int64_t j0 = static_cast<int64_t>(t) * BN;
    if (j0 + BN > unmasked_end) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int n = 0; n < kKeyTiles8; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t key = j0 + n * 8 + 2 * quad_col + (e & 1);
            if (key >= key_limit[mt][e >> 1]) sc[mt][n][e] = -INFINITY;
          }
        }
      }
    }

    // Online softmax: each row's max is shared by the quad of lanes that hold the row.
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float alpha[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int n = 0; n < kKeyTiles8; ++n)
          tile_max = fmaxf(tile_max, fmaxf(sc[mt][n][2 * r], sc[mt][n][2 * r + 1]));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        const float m_new = fmaxf(row_max[mt][r], tile_max * p.scale_log2);
        // A row that has seen only hidden keys keeps max -inf; measuring from 0 instead makes
        // its exps exactly 0 rather than NaN.
        const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
        alpha[r] = fast_exp2(row_max[mt][r] - m_ref);
        row_max[mt][r] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < kKeyTiles8; ++n) {
#pragma unroll
          for (int e = 2 * r; e < 2 * r + 2; ++e) {
            sc[mt][n][e] = fast_exp2(fmaf(sc[mt][n][e], p.scale_log2, -m_ref));
            sum += sc[mt][n][e];
          }
        }
        row_sum[mt][r] = row_sum[mt][r] * alpha[r] + sum;
      }
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[mt][n][0] *= alpha[0];
        o[mt][n][1] *= alpha[0];
        o[mt][n][2] *= alpha[1];
        o[mt][n][3] *= alpha[1];
      }
    }

    // O += P·V. Two adjacent score fragments (keys kp·16 .. kp·16+15) are, packed to bf16,
    // exactly the A fragment of the next product.
#pragma unroll
    for (int kp = 0; kp < BN / 16; ++kp) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        a[mt][0] = pack_bf16(sc[mt][2 * kp][0], sc[mt][2 * kp][1]);
        a[mt][1] = pack_bf16(sc[mt][2 * kp][2], sc[mt][2 * kp][3]);
        a[mt][2] = pack_bf16(sc[mt][2 * kp + 1][0], sc[mt][2 * kp + 1][1]);
        a[mt][3] = pack_bf16(sc[mt][2 * kp + 1][2], sc[mt][2 * kp + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < kDimSteps; ++dp) {
        if (dp * 16 >= p.head_dim) break;
        // Transposed matrices: keys kp·16 + {0..7, 8..15, 0..7, 8..15}, dims dp·16 +
        // {0..7, 0..7, 8..15, 8..15}.
        uint32_t b[4];
        ldmatrix_x4_trans(b, v_tile + (kp * 16 + (lm_matrix & 1) * 8 + lm_row) * S + dp * 16 +
                                 (lm_matrix >> 1) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(o[mt][2 * dp], a[mt], b[0], b[1]);
          mma_bf16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
        }
      }
    }
    group_barrier(group);  // every warp of the group is done with this buffer: refill it
    if (u + 2 < n_my_tiles) {
      const int64_t first = static_cast<int64_t>(t + 2 * KS) * BN;
      load_tile<BN, D, kThreads>(k_s + buf * BN * S, k, first, p.n_kv, p.head_dim, tid);
      load_tile<BN, D, kThreads>(v_s + buf * BN * S, v, first, p.n_kv, p.head_dim, tid);
    }
    cp_async_commit();
  }

  if constexpr (KS == 2) {
    // The second group hands its rows (unnormalised output, max, sum) to the first through its
    // own K/V buffers, lane by lane: warp w of both groups holds the same fragment positions.
    cp_async_wait<0>();
    float* stage = reinterpret_cast<float*>(q_s + (BM + T::kGroupRows) * S) +
                   warp * T::kMergeValues * 32 + lane;  // value i at stage[i · 32]
    constexpr int kStats = MT * (D / 8) * 4;
    if (group == 1) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) stage[((mt * (D / 8) + n) * 4 + e) * 32] = o[mt][n][e];
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          stage[(kStats + mt * 4 + r) * 32] = row_max[mt][r];
          stage[(kStats + mt * 4 + 2 + r) * 32] = row_sum[mt][r];
        }
      }
    }
    __syncthreads();
    if (group == 1) return;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float mine[2], theirs[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float other_max = stage[(kStats + mt * 4 + r) * 32];
        const float m = fmaxf(row_max[mt][r], other_max);
        const float m_ref = m == -INFINITY ? 0.0f : m;  // as in the loop: no NaN from -inf - -inf
        mine[r] = fast_exp2(row_max[mt][r] - m_ref);
        theirs[r] = fast_exp2(other_max - m_ref);
        row_sum[mt][r] =
            row_sum[mt][r] * mine[r] + stage[(kStats + mt * 4 + 2 + r) * 32] * theirs[r];
      }
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          o[mt][n][e] = o[mt][n][e] * mine[e >> 1] +
                        stage[((mt * (D / 8) + n) * 4 + e) * 32] * theirs[e >> 1];
        }
      }
    }
  }

  // Normalise, and stage the warp's rows in its own part of the Q tile (only this warp ever
  // reads it, and it is done) so that the stores to the token-major output are whole 16-byte
  // pieces.
  __syncwarp();
  __nv_bfloat16* stage = q_s + warp * kWarpRows * S;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float sum = row_sum[mt][r];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      inv[r] = sum > 0.0f ? 1.0f / sum : 0.0f;  // a row that saw no key gets zeros
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int col = n * 8 + 2 * quad_col;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        *reinterpret_cast<uint32_t*>(stage + (mt * 16 + quad_row + 8 * r) * S + col) =
            pack_bf16(o[mt][n][2 * r] * inv[r], o[mt][n][2 * r + 1] * inv[r]);
      }
    }
  }
  __syncwarp();
  const int64_t out_stride = p.n_head * p.head_dim;
  const int64_t row0 = i0 + warp * kWarpRows;
  __nv_bfloat16* out = p.out + (seq * p.n_q + row0) * out_stride + head * p.head_dim;
  constexpr int kChunks = D / 8;
  for (int c = lane; c < kWarpRows * kChunks; c += 32) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    if (row0 + r < p.n_q && col < p.head_dim) {
      *reinterpret_cast<uint4*>(out + r * out_stride + col) =
          *reinterpret_cast<const uint4*>(stage + r * S + col);
    }
  }
}

template <int D, int MT, int KS>
void launch(Params p, int64_t n_blocks_x, cudaStream_t stream) {
  using T = Tile<D, MT, KS>;
  allow_shared_memory<flash_attention_kernel<D, MT, KS>>(T::kSmemBytes,
                                                         "cudaFuncSetAttribute(flash_attention)");
  p.n_q_tiles = static_cast<int>((p.n_q + T::kBlockM - 1) / T::kBlockM);
  const dim3 grid(static_cast<unsigned>(n_blocks_x), static_cast<unsigned>(p.n_q_tiles));
  launch_after_prior("flash_attention", flash_attention_kernel<D, MT, KS>, grid, kThreads * KS,
                     T::kSmemBytes, stream, p);
}

// The automatic choice: two row tiles per warp when that still gives every SM a block, else
// one; and when even one-row-tile blocks are fewer than the SMs, two key groups per block.
int choose_variant(const Params& p, int64_t n_blocks_x, bool two_row_tiles_fit) {
  int device = 0, sms = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute(multiprocessor count)");
  const auto blocks = [&](int block_m) { return n_blocks_x * ((p.n_q + block_m - 1) / block_m); };
  if (two_row_tiles_fit && blocks(2 * kSmallestBlockM) >= sms) return kTwoRowTiles;
  return blocks(kSmallestBlockM) >= sms ? kOneRowTile : kSplitKeys;
}

template <int D>
void launch_variant(const Params& p, int64_t n_blocks_x, int variant, cudaStream_t stream) {
  constexpr bool kTwoRowTilesFit = D <= 128;  // two row tiles of 256 would not fit the registers
  if (variant == kAutomatic) variant = choose_variant(p, n_blocks_x, kTwoRowTilesFit);
  if (variant == kSplitKeys) {
    launch<D, 1, 2>(p, n_blocks_x, stream);
  } else if (variant == kTwoRowTiles && kTwoRowTilesFit) {
    launch<D, kTwoRowTilesFit ? 2 : 1, 1>(p, n_blocks_x, stream);
  } else {
    launch<D, 1, 1>(p, n_blocks_x, stream);
  }
}

std::string str(int64_t x) { return std::to_string(x); }

[[noreturn]] void bad(const std::string& what) { throw_error("flash_attention: " + what); }

void check_dims(const FlashAttentionDims& d) {
  if (d.n_seq < 0 || d.n_q < 0 || d.n_kv < 0) {
    bad("negative size (n_seq " + str(d.n_seq) + ", n_q " + str(d.n_q) + ", n_kv " + str(d.n_kv) +
        ")");
  }
  if (d.n_head <= 0 || d.n_head_kv <= 0 || d.n_head % d.n_head_kv != 0) {
    bad("n_head " + str(d.n_head) + " is not a positive multiple of n_head_kv " + str(d.n_head_kv));
  }
  if (d.head_dim <= 0 || d.head_dim % 16 != 0 || d.head_dim > 256) {
    bad("head_dim " + str(d.head_dim) + " is unsupported (a multiple of 16, at most 256)");
  }
  if (!(d.scale > 0) || !std::isfinite(d.scale)) {
    bad("scale " + std::to_string(d.scale) + " must be positive and finite");
  }
  if (d.q_pos0 < 0) bad("q_pos0 " + str(d.q_pos0) + " is negative");
  if (d.q_rows < 0 || (d.q_rows > 0 && d.q_rows < d.n_q)) {
    bad("q_rows " + str(d.q_rows) + " is below n_q " + str(d.n_q));
  }
  if (d.past && d.kv_rows == 0) {
    bad("kv_rows must be given with past (the keys read are past + n_kv, known when it runs)");
  }
  if (d.kv_rows < 0 || (d.kv_rows > 0 && d.kv_rows < d.n_kv)) {
    bad("kv_rows " + str(d.kv_rows) + " is below n_kv " + str(d.n_kv));
  }
  if (d.n_q > 0 && d.n_kv == 0) bad(str(d.n_q) + " queries but no keys");
  switch (d.mask) {
    case MaskMode::Full:
      break;
    case MaskMode::BlockCausal:
      if (d.block_len <= 0) bad("block-causal mask needs block_len > 0, got " + str(d.block_len));
      [[fallthrough]];
    case MaskMode::Causal:
      // As on the CPU: a masked query must find its own position among the keys.
      if (d.q_pos0 + d.n_q > d.n_kv) {
        bad("queries reach position " + str(d.q_pos0 + d.n_q - 1) + " but there are only " +
            str(d.n_kv) + " keys");
      }
      break;
    default:
      bad("unknown mask mode " + str(static_cast<int>(d.mask)));
  }
  // Launch limits: query tiles go in grid.y, (sequence, head) pairs in grid.x.
  if ((d.n_q + kSmallestBlockM - 1) / kSmallestBlockM > 65535)
    bad("n_q " + str(d.n_q) + " is too large");
  if (d.n_seq * d.n_head > std::numeric_limits<int32_t>::max() ||
      d.n_kv > std::numeric_limits<int32_t>::max()) {
    bad("too many sequences, heads or keys for one launch");
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The kernels' view of dims (pointers left null; n_q_tiles is set at launch).
Params params_of(const FlashAttentionDims& dims) {
  Params p{};
  p.n_q = dims.n_q;
  p.q_rows = dims.q_rows > 0 ? dims.q_rows : dims.n_q;
  p.n_kv = dims.n_kv;
  p.kv_rows = dims.kv_rows > 0 ? dims.kv_rows : dims.n_kv;
  p.n_head = dims.n_head;
  p.n_head_kv = dims.n_head_kv;
  p.group = dims.n_head / dims.n_head_kv;
  p.head_dim = dims.head_dim;
  p.scale_log2 = dims.scale * kLog2e;
  p.mask = static_cast<int>(dims.mask);
  p.block_len = dims.block_len;
  p.q_pos0 = dims.q_pos0;
  p.past = dims.past;
  return p;
}

}  // namespace

namespace detail {

// flash_attention with the kernel variant chosen by the caller: 0 picks as flash_attention
// does; 1 and 2 force that many m16 row tiles per warp (head dims above 128 always use 1); 3
// is one row tile with the keys split between two warp groups. Declared where it is used (the
// test and the benchmark compare the variants), not in the header: callers have no reason to
// choose.
void flash_attention_variant(__nv_bfloat16* out, const __nv_bfloat16* q, const __nv_bfloat16* k,
                             const __nv_bfloat16* v, const FlashAttentionDims& dims, int variant,
                             cudaStream_t stream) {
  check_dims(dims);
  if (variant < kAutomatic || variant > kSplitKeys) {
    bad("variant " + str(variant) + " is not 0, 1, 2 or 3");
  }
  if (dims.n_seq == 0 || dims.n_q == 0) return;
  if (!out || !q || !k || !v) bad("null tensor pointer");
  // Tiles move in 16-byte pieces (cp.async and the output stores).
  if (!aligned16(out) || !aligned16(q) || !aligned16(k) || !aligned16(v)) {
    bad("q, k, v and out must be 16-byte aligned");
  }
  Params p = params_of(dims);
  p.out = out;
  p.q = q;
  p.k = k;
  p.v = v;
  const int64_t n_blocks_x = dims.n_seq * dims.n_head;
  if (dims.head_dim <= 64) {
    launch_variant<64>(p, n_blocks_x, variant, stream);
  } else if (dims.head_dim <= 128) {
    launch_variant<128>(p, n_blocks_x, variant, stream);
  } else {
    launch_variant<256>(p, n_blocks_x, variant, stream);
  }
}

}  // namespace detail

void flash_attention(__nv_bfloat16* out, const __nv_bfloat16* q, const __nv_bfloat16* k,
                     const __nv_bfloat16* v, const FlashAttentionDims& dims, cudaStream_t stream) {
  detail::flash_attention_variant(out, q, k, v, dims, 0, stream);
}

namespace {

constexpr int kExactThreads = 256;
constexpr int kExactWarps = kExactThreads / 32;
constexpr int kExactPerLane = 256 / 32;  // head_dim ≤ 256

// One warp per (sequence, head, query row), keys one at a time with an online softmax, all
// in f32: the exact-precision mode's attention, which follows the CPU's arithmetic instead of
// racing it. Lane l holds columns l, l + 32, … of the query, its accumulator and each value row.
__global__ void __launch_bounds__(kExactThreads)
    exact_attention_kernel(float* out, const float* q, const float* k, const float* v, Params p,
                           int64_t n_seq) {
  add_device_past(p.past, p.n_kv, p.q_pos0);
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kExactWarps + threadIdx.x / 32;
  if (item >= n_seq * p.n_head * p.n_q) return;  // whole warps leave together
  const int lane = threadIdx.x % 32;
  const int64_t i = item % p.n_q, h = (item / p.n_q) % p.n_head, s = item / (p.n_q * p.n_head);
  const int64_t D = p.head_dim, hkv = h / p.group;
  const float* qr = q + ((s * p.n_head + h) * p.q_rows + i) * D;
  const float* kh = k + (s * p.n_head_kv + hkv) * p.kv_rows * D;
  const float* vh = v + (s * p.n_head_kv + hkv) * p.kv_rows * D;
  float qv[kExactPerLane], acc[kExactPerLane];
#pragma unroll
  for (int t = 0; t < kExactPerLane; ++t) {
    const int64_t d = lane + 32 * t;
    qv[t] = d < D ? qr[d] : 0.0f;
    acc[t] = 0.0f;
  }
  const float scale = p.scale_log2 / kLog2e;
  const int64_t end = min(p.n_kv, visible_key_end(p.mask, p.block_len, p.q_pos0 + i));
  float running_max = -INFINITY, total = 0.0f;
  for (int64_t j = 0; j < end; ++j) {
    const float* kr = kh + j * D;
    float dot = 0.0f;
#pragma unroll
    for (int t = 0; t < kExactPerLane; ++t) {
      const int64_t d = lane + 32 * t;
      if (d < D) dot += qv[t] * kr[d];
    }
    for (int offset = 16; offset > 0; offset >>= 1)
      dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    const float score = dot * scale;
    const float new_max = fmaxf(running_max, score);
    const float keep = expf(running_max - new_max);  // 0 for the first key
    const float weight = expf(score - new_max);
    total = total * keep + weight;
    const float* vr = vh + j * D;
#pragma unroll
    for (int t = 0; t < kExactPerLane; ++t) {
      const int64_t d = lane + 32 * t;
      if (d < D) acc[t] = acc[t] * keep + weight * vr[d];
    }
    running_max = new_max;
  }
  float* o = out + ((s * p.n_q + i) * p.n_head + h) * D;
  const float inv = total > 0.0f ? 1.0f / total : 0.0f;
#pragma unroll
  for (int t = 0; t < kExactPerLane; ++t) {
    const int64_t d = lane + 32 * t;
    if (d < D) o[d] = acc[t] * inv;
  }
}

}  // namespace

void exact_attention(float* out, const float* q, const float* k, const float* v,
                     const FlashAttentionDims& dims, cudaStream_t stream) {
  check_dims(dims);
  if (dims.n_seq == 0 || dims.n_q == 0) return;
  if (!out || !q || !k || !v) bad("null tensor pointer");
  const Params p = params_of(dims);
  const int64_t items = dims.n_seq * dims.n_head * dims.n_q;
  exact_attention_kernel<<<blocks_for(items, kExactWarps, "exact_attention"), kExactThreads, 0,
                           stream>>>(out, q, k, v, p, dims.n_seq);
  check_launch("exact_attention");
}

}  // namespace ruvdllm::cuda
