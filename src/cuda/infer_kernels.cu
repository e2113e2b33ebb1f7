// The element-wise and row-wise kernels between the GEMMs of a denoising step (declared in
// infer_kernels.h): each reads its input once and writes the operand of the next GEMM (bf16,
// or f32 in the exact-precision mode). Arithmetic is f32, as on the CPU; sums of squares are f32
// warp/CTA reductions, which differ from the CPU's double sums by float rounding only. The
// dequantization launchers are in dequant_kernels.cu.
//
// No fmt here: nvcc's host pass cannot compile fmt's headers (see train_kernels.cu).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/dependent_launch.h"
#include "cuda/device_past.cuh"
#include "cuda/infer_kernels.h"
#include "cuda/launch_util.h"
#include "cuda/swiglu.cuh"
#include "ruvdllm/diffusion/rng.h"

namespace ruvdllm::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kNormThreads = 256;  // one CTA per row of rmsnorm_rows
constexpr int kNormWarps = kNormThreads / kWarp;
constexpr int kHeadThreads = 256;  // one warp per (token, head) row of split_qkv_heads
constexpr int kHeadsPerBlock = kHeadThreads / kWarp;
constexpr int kFlatThreads = 256;
constexpr int kVec = 4;  // values per thread of the flat kernels' vector path

__device__ inline float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline uint32_t bits_of(__nv_bfloat162 pair) {
  uint32_t bits;
  memcpy(&bits, &pair, sizeof(bits));
  return bits;
}

// The GEMM outputs these kernels read are f32 or bf16; arithmetic is f32 either way.
__device__ inline float load(const float* p) { return *p; }
__device__ inline float load(const bf16* p) { return __bfloat162float(*p); }
// Four consecutive values (p aligned to four of them).
__device__ inline float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ inline float4 load4(const bf16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  __nv_bfloat162 lo, hi;
  memcpy(&lo, &raw.x, sizeof(lo));
  memcpy(&hi, &raw.y, sizeof(hi));
  const float2 a = __bfloat1622float2(lo), b = __bfloat1622float2(hi);
  return make_float4(a.x, a.y, b.x, b.y);
}

// The kernels write the next GEMM's operand type: bf16, or f32 in the exact-precision mode.
__device__ inline void store(bf16* dst, float v) { *dst = __float2bfloat16_rn(v); }
__device__ inline void store(float* dst, float v) { *dst = v; }
// Four values in one store (dst aligned to four of them).
__device__ inline void store4(bf16* dst, float a, float b, float c, float d) {
  *reinterpret_cast<uint2*>(dst) =
      make_uint2(bits_of(__floats2bfloat162_rn(a, b)), bits_of(__floats2bfloat162_rn(c, d)));
}
__device__ inline void store4(float* dst, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(dst) = make_float4(a, b, c, d);
}

// kVector: d % 4 == 0, x, w and partials 16-byte aligned, y 8-byte aligned. A null w scales by
// 1, as the CPU rmsnorm's null weight does. With n_partials > 0 the row first takes the sum of
// its split-K partial products (partial s of row r at partials + s·stride + r·d) into x.
template <bool kVector, typename Out>
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_rows_kernel(Out* y, int64_t ldy, float* x, const float* partials, int n_partials,
                        int64_t stride, const float* w, int64_t d, float eps) {
  __shared__ float warp_sums[kNormWarps];
  wait_for_prior_grid();
  float* xr = x + static_cast<int64_t>(blockIdx.x) * d;
  const float* pr = partials ? partials + static_cast<int64_t>(blockIdx.x) * d : nullptr;
  Out* yr = y + static_cast<int64_t>(blockIdx.x) * ldy;
  float ss = 0.0f;
  if constexpr (kVector) {
    for (int64_t i = threadIdx.x; i < d / 4; i += kNormThreads) {
      float4 v = reinterpret_cast<const float4*>(xr)[i];
      if (n_partials > 0) {
        float4 sum = reinterpret_cast<const float4*>(pr)[i];
        for (int s = 1; s < n_partials; ++s) {
          const float4 p = reinterpret_cast<const float4*>(pr + s * stride)[i];
          sum = make_float4(sum.x + p.x, sum.y + p.y, sum.z + p.z, sum.w + p.w);
        }
        v = make_float4(v.x + sum.x, v.y + sum.y, v.z + sum.z, v.w + sum.w);
        reinterpret_cast<float4*>(xr)[i] = v;  // read back below by this same thread
      }
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int64_t i = threadIdx.x; i < d; i += kNormThreads) {
      float v = xr[i];
      if (n_partials > 0) {
        float sum = pr[i];
        for (int s = 1; s < n_partials; ++s) sum += pr[s * stride + i];
        v += sum;
        xr[i] = v;
      }
      ss += v * v;
    }
  }
  ss = warp_sum(ss);
  if (threadIdx.x % kWarp == 0) warp_sums[threadIdx.x / kWarp] = ss;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int k = 0; k < kNormWarps; ++k) total += warp_sums[k];  // same order in every thread
  const float inv_rms = 1.0f / sqrtf(total / static_cast<float>(d) + eps);
  if constexpr (kVector) {
    for (int64_t i = threadIdx.x; i < d / 4; i += kNormThreads) {
      const float4 v = reinterpret_cast<const float4*>(xr)[i];
      const float4 g = w ? reinterpret_cast<const float4*>(w)[i] : make_float4(1, 1, 1, 1);
      store4(yr + 4 * i, v.x * inv_rms * g.x, v.y * inv_rms * g.y, v.z * inv_rms * g.z,
             v.w * inv_rms * g.w);
    }
  } else {
    for (int64_t i = threadIdx.x; i < d; i += kNormThreads)
      store(yr + i, xr[i] * inv_rms * (w ? w[i] : 1.0f));
  }
}

struct QkvParams {
  int64_t seq_len, n_head, n_head_kv, head_dim, pos0, kv_rows, kv_row0;
  bool neox;
  float eps;
  const int32_t* past;  // QkvLayout::past
};

// Where head slot `slot` of the token at (seq, pos) is written, and what is done to it on the
// way: q heads are normed by q_norm and rotated, k heads by k_norm and rotated, v heads neither.
template <typename Out>
struct HeadTarget {
  Out* dst;
  const float* norm_w;
  bool rotate;
};

template <typename Out>
__device__ inline HeadTarget<Out> head_target(Out* q, Out* k, Out* v, const float* q_norm,
                                              const float* k_norm, bool have_rope,
                                              const QkvParams& p, int64_t slot, int64_t seq,
                                              int64_t pos) {
  const int64_t D = p.head_dim;
  if (slot < p.n_head)
    return {q + ((seq * p.n_head + slot) * p.seq_len + pos) * D, q_norm, have_rope};
  const bool is_k = slot < p.n_head + p.n_head_kv;
  const int64_t h = slot - p.n_head - (is_k ? 0 : p.n_head_kv);
  Out* dst = (is_k ? k : v) + ((seq * p.n_head_kv + h) * p.kv_rows + p.kv_row0 + pos) * D;
  return {dst, is_k ? k_norm : nullptr, is_k && have_rope};
}

// Warp per (token, head slot); slots are the n_head q heads, then the k heads, then the v
// heads of the token's row. Lane i handles the RoPE pairs i, i + 32, …: (2i, 2i+1) in Normal
// order, (i, i + head_dim/2) in NeoX order, as ruvdllm::rope pairs them. A null cos_sin leaves
// q and k unrotated.
template <typename In, typename Out>
__global__ void __launch_bounds__(kHeadThreads)
    split_qkv_heads_kernel(Out* q, Out* k, Out* v, const In* qkv, const float* bias,
                           const float* q_norm, const float* k_norm, const float2* cos_sin,
                           QkvParams p, int64_t total) {
  wait_for_prior_grid();
  add_device_past(p.past, p.pos0, p.kv_row0);
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kHeadsPerBlock + threadIdx.x / kWarp;
  if (row >= total) return;  // whole warps leave together, so the shuffles below stay full
  const int lane = threadIdx.x % kWarp;
  const int64_t slots = p.n_head + 2 * p.n_head_kv;
  const int64_t token = row / slots, slot = row % slots;
  const int64_t seq = token / p.seq_len, pos = token % p.seq_len;
  const int64_t D = p.head_dim, half = D / 2;
  const In* src = qkv + row * D;  // the token's row is slots·D wide
  const float* b = bias ? bias + slot * D : nullptr;

  const auto [dst, norm_w, rotate] =
      head_target(q, k, v, q_norm, k_norm, cos_sin != nullptr, p, slot, seq, pos);

  float inv_rms = 1.0f;
  if (norm_w) {
    float ss = 0.0f;
    for (int64_t c = lane; c < D; c += kWarp) {
      const float x = b ? load(src + c) + b[c] : load(src + c);
      ss += x * x;
    }
    ss = warp_sum(ss);
    inv_rms = 1.0f / sqrtf(ss / static_cast<float>(D) + p.eps);
  }
  const float2* angles = rotate ? cos_sin + (p.pos0 + pos) * half : nullptr;
  for (int64_t i = lane; i < half; i += kWarp) {
    const int64_t ia = p.neox ? i : 2 * i;
    const int64_t ib = p.neox ? i + half : 2 * i + 1;
    float x0 = load(src + ia), x1 = load(src + ib);
    if (b) {
      x0 += b[ia];
      x1 += b[ib];
    }
    if (norm_w) {
      x0 = x0 * inv_rms * norm_w[ia];
      x1 = x1 * inv_rms * norm_w[ib];
    }
    if (rotate) {
      const float2 cs = angles[i];
      const float y0 = x0 * cs.x - x1 * cs.y;
      const float y1 = x0 * cs.y + x1 * cs.x;
      x0 = y0;
      x1 = y1;
    }
    store(dst + ia, x0);
    store(dst + ib, x1);
  }
}

// Eight values of a row (p aligned to eight of them), and the matching stores.
__device__ inline void load8(float (&x)[8], const float* p) {
  const float4 a = load4(p), b = load4(p + 4);
  x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
}
__device__ inline void load8(float (&x)[8], const bf16* p) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __nv_bfloat162 pair;
    memcpy(&pair, &words[i], sizeof(pair));
    const float2 f = __bfloat1622float2(pair);
    x[2 * i] = f.x, x[2 * i + 1] = f.y;
  }
}
template <typename In>
__device__ inline void load4(float* x, const In* p) {
  const float4 a = load4(p);
  x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w;
}
__device__ inline void store8(bf16* dst, const float (&x)[8]) {
  *reinterpret_cast<uint4*>(dst) = make_uint4(
      bits_of(__floats2bfloat162_rn(x[0], x[1])), bits_of(__floats2bfloat162_rn(x[2], x[3])),
      bits_of(__floats2bfloat162_rn(x[4], x[5])), bits_of(__floats2bfloat162_rn(x[6], x[7])));
}
__device__ inline void store8(float* dst, const float (&x)[8]) {
  store4(dst, x[0], x[1], x[2], x[3]);
  store4(dst + 4, x[4], x[5], x[6], x[7]);
}

__device__ inline void rotate_pair(float& x0, float& x1, float2 cos_sin) {
  const float y0 = x0 * cos_sin.x - x1 * cos_sin.y;
  x1 = x0 * cos_sin.y + x1 * cos_sin.x;
  x0 = y0;
}

// The vector path of split_qkv_heads, for head dims D with D / 8 a power of two up to 32: a
// thread owns the RoPE pairs [4g, 4g + 4) of one head, which are the eight values [8g, 8g + 8)
// in Normal order and [4g, 4g + 4) plus [D/2 + 4g, D/2 + 4g + 4) in NeoX order, so every load
// and store is 8 or 16 bytes. A head's D / 8 threads are consecutive lanes of one warp and sum
// its squares (for the q/k norm) by shuffles. One token row per blockIdx.x. The warp-per-head
// kernel above moved 2-byte values and reached about a quarter of the copy rate at 8B's shape.
template <typename In, typename Out>
__global__ void __launch_bounds__(kFlatThreads)
    split_qkv_heads_vec_kernel(Out* q, Out* k, Out* v, const In* qkv, const float* bias,
                               const float* q_norm, const float* k_norm, const float2* cos_sin,
                               QkvParams p, int lanes_per_head) {
  wait_for_prior_grid();
  add_device_past(p.past, p.pos0, p.kv_row0);
  const int64_t token = blockIdx.x;
  const int64_t slots = p.n_head + 2 * p.n_head_kv;
  const int idx = blockIdx.y * kFlatThreads + threadIdx.x;
  const int64_t slot = idx / lanes_per_head;
  const int g = idx % lanes_per_head;
  // Threads past the last head stay for the shuffles (a head's lanes all stay or all leave,
  // but a warp may hold both kinds) and touch no memory.
  const bool active = slot < slots;
  const int64_t seq = token / p.seq_len, pos = token % p.seq_len;
  const int64_t D = p.head_dim, half = D / 2;
  const In* src = qkv + (token * slots + slot) * D;
  const float* b = bias ? bias + slot * D : nullptr;
  const bool neox = p.neox;
  // This thread's values are two runs of four in the head, at lo and hi (adjacent in Normal
  // order).
  const int64_t lo = neox ? 4 * g : 8 * g;
  const int64_t hi = neox ? half + 4 * g : 8 * g + 4;

  float x[8] = {};  // x[0..3] from lo, x[4..7] from hi
  const float* norm_w = nullptr;
  Out* dst = nullptr;
  bool rotate = false;
  if (active) {
    if (neox) {
      load4(x, src + lo);
      load4(x + 4, src + hi);
    } else {
      load8(x, src + lo);
    }
    if (b) {
      float bv[8];
      load4(bv, b + lo);
      load4(bv + 4, b + hi);
#pragma unroll
      for (int i = 0; i < 8; ++i) x[i] += bv[i];
    }
    const HeadTarget<Out> target =
        head_target(q, k, v, q_norm, k_norm, cos_sin != nullptr, p, slot, seq, pos);
    dst = target.dst;
    norm_w = target.norm_w;
    rotate = target.rotate;
  }
  // Whether to reduce is the same for the whole launch, so every lane joins the shuffles; heads
  // without a norm (v, or all when there is none) ignore the sum.
  if (q_norm || k_norm) {
    float ss = 0.0f;
    if (norm_w) {
#pragma unroll
      for (int i = 0; i < 8; ++i) ss += x[i] * x[i];
    }
    for (int offset = lanes_per_head / 2; offset > 0; offset >>= 1)
      ss += __shfl_xor_sync(0xffffffffu, ss, offset);
    if (norm_w) {
      const float inv_rms = 1.0f / sqrtf(ss / static_cast<float>(D) + p.eps);
      float w[8];
      load4(w, norm_w + lo);
      load4(w + 4, norm_w + hi);
#pragma unroll
      for (int i = 0; i < 8; ++i) x[i] = x[i] * inv_rms * w[i];
    }
  }
  if (!active) return;
  if (rotate) {
    // Pair j's angle is entry 4g + j of the position's table row.
    const float4* angles = reinterpret_cast<const float4*>(cos_sin + (p.pos0 + pos) * half + 4 * g);
    const float4 a01 = angles[0], a23 = angles[1];
    const float2 cs[4] = {{a01.x, a01.y}, {a01.z, a01.w}, {a23.x, a23.y}, {a23.z, a23.w}};
    // Pair j is (x[j], x[4 + j]) in NeoX order, (x[2j], x[2j + 1]) in Normal order. The two
    // loops keep every index a constant: an index chosen at run time would put x in local memory.
    if (neox) {
#pragma unroll
      for (int j = 0; j < 4; ++j) rotate_pair(x[j], x[4 + j], cs[j]);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) rotate_pair(x[2 * j], x[2 * j + 1], cs[j]);
    }
  }
  if (neox) {
    store4(dst + lo, x[0], x[1], x[2], x[3]);
    store4(dst + hi, x[4], x[5], x[6], x[7]);
  } else {
    store8(dst + lo, x);
  }
}

// One row per blockIdx.x, columns across blockIdx.y and the threads, so no thread divides by
// the width. kPer values per thread: 8 (width % 8 == 0, gate_up and h 16-byte aligned: one
// 16-byte load of each bf16 half; 5% faster than 4 at 8B's shape), 4 (width % 4 == 0, gate_up
// aligned to four values, h 8-byte aligned) or 1. A thread's kPer outputs lie in one group of
// the interleaved layout, whose gate and up values are as contiguous as in the halves one.
template <int kPer, typename In, typename Out>
__global__ void swiglu_rows_kernel(Out* h, const In* gate_up, int64_t width, bool interleaved) {
  wait_for_prior_grid();
  const int64_t r = blockIdx.x;
  const int64_t c = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * kPer;
  if (c >= width) return;
  const In* gate = gate_up + 2 * r * width + (interleaved ? swiglu_gate_column(c) : c);
  const In* up = gate + (interleaved ? kSwigluGroup : width);
  Out* out = h + r * width + c;
  if constexpr (kPer == 8) {
    float g[8], u[8], y[8];
    load8(g, gate);
    load8(u, up);
#pragma unroll
    for (int i = 0; i < 8; ++i) y[i] = silu_times<Out>(g[i], u[i]);
    store8(out, y);
  } else if constexpr (kPer == 4) {
    const float4 g = load4(gate);
    const float4 u = load4(up);
    store4(out, silu_times<Out>(g.x, u.x), silu_times<Out>(g.y, u.y), silu_times<Out>(g.z, u.z),
           silu_times<Out>(g.w, u.w));
  } else {
    store(out, silu_times<Out>(load(gate), load(up)));
  }
}

// kVector: in 16-byte and out 8-byte aligned; the last partial group goes value by value.
template <bool kVector>
__global__ void f32_to_bf16_kernel(bf16* out, const float* in, int64_t n) {
  wait_for_prior_grid();
  constexpr int kPer = kVector ? kVec : 1;
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * kPer;
  if (i >= n) return;
  if (kVector && i + kVec <= n) {
    const float4 v = *reinterpret_cast<const float4*>(in + i);
    store4(out + i, v.x, v.y, v.z, v.w);
    return;
  }
  const int64_t end = i + kPer < n ? i + kPer : n;
  for (int64_t j = i; j < end; ++j) out[j] = __float2bfloat16_rn(in[j]);
}

__global__ void fill_uniform_bf16_kernel(bf16* out, int64_t n, uint32_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const uint32_t h =
        hash32(static_cast<uint32_t>(i) ^ hash32(seed + static_cast<uint32_t>(i >> 32)));
    out[i] = __float2bfloat16_rn(static_cast<float>(h >> 8) * 0x1p-23f - 1.0f);
  }
}

}  // namespace

namespace {

template <typename Out>
void launch_rmsnorm(Out* y, int64_t ldy, float* x, const float* partials, int n_partials,
                    const float* w, int64_t rows, int64_t d, float eps, cudaStream_t stream,
                    const char* name) {
  if (ldy == 0) ldy = d;
  if (rows < 0 || d <= 0 || ldy < d || n_partials < 0 || (n_partials > 0 && !partials)) {
    throw_error(std::string(name) + ": bad shape " + std::to_string(rows) + " rows of " +
                std::to_string(d) + " with " + std::to_string(n_partials) + " partials");
  }
  if (rows == 0) return;
  const unsigned grid = blocks_for(rows, 1, name);
  const int64_t stride = rows * d;
  if (d % 4 == 0 && ldy % 4 == 0 && aligned(x, 16) && aligned(w, 16) && aligned(partials, 16) &&
      aligned(y, 4 * sizeof(Out))) {
    launch_after_prior(name, rmsnorm_rows_kernel<true, Out>, grid, kNormThreads, 0, stream, y, ldy,
                       x, partials, n_partials, stride, w, d, eps);
  } else {
    launch_after_prior(name, rmsnorm_rows_kernel<false, Out>, grid, kNormThreads, 0, stream, y, ldy,
                       x, partials, n_partials, stride, w, d, eps);
  }
}

template <typename In, typename Out>
void launch_split_qkv(Out* q, Out* k, Out* v, const In* qkv, const float* bias, const float* q_norm,
                      const float* k_norm, const float2* cos_sin, const QkvLayout& layout,
                      cudaStream_t stream) {
  const QkvLayout& l = layout;
  if (l.n_seq < 0 || l.seq_len < 0 || l.n_head < 0 || l.n_head_kv < 0 || l.head_dim <= 0 ||
      l.head_dim % 2 != 0 || l.pos0 < 0 || l.kv_row0 < 0 || l.kv_rows < l.kv_row0 + l.seq_len) {
    throw_error("split_qkv_heads: bad layout (sequences " + std::to_string(l.n_seq) + " of " +
                std::to_string(l.seq_len) + ", heads " + std::to_string(l.n_head) + "/" +
                std::to_string(l.n_head_kv) + " of " + std::to_string(l.head_dim) + ", pos0 " +
                std::to_string(l.pos0) + ", kv rows " + std::to_string(l.kv_row0) + " + " +
                std::to_string(l.seq_len) + " of " + std::to_string(l.kv_rows) +
                "; head_dim must be even and positive)");
  }
  const int64_t total = l.n_seq * l.seq_len * (l.n_head + 2 * l.n_head_kv);
  if (total == 0) return;
  const QkvParams params{l.seq_len, l.n_head,  l.n_head_kv, l.head_dim,
                         l.pos0,    l.kv_rows, l.kv_row0,   l.order == RopeOrder::NeoX,
                         l.eps,     l.past};
  const int64_t lanes_per_head = l.head_dim / 8;
  const int64_t tokens = l.n_seq * l.seq_len;
  const int64_t row_threads = (l.n_head + 2 * l.n_head_kv) * lanes_per_head;
  const bool vector_path = l.head_dim % 8 == 0 && lanes_per_head <= kWarp &&
                           (lanes_per_head & (lanes_per_head - 1)) == 0 && aligned(qkv, 16) &&
                           aligned(q, 16) && aligned(k, 16) && aligned(v, 16) &&
                           aligned(bias, 16) && aligned(q_norm, 16) && aligned(k_norm, 16) &&
                           aligned(cos_sin, 16) && tokens <= std::numeric_limits<int32_t>::max();
  if (vector_path) {
    const dim3 grid(static_cast<unsigned>(tokens),
                    static_cast<unsigned>((row_threads + kFlatThreads - 1) / kFlatThreads));
    launch_after_prior("split_qkv_heads", split_qkv_heads_vec_kernel<In, Out>, grid, kFlatThreads,
                       0, stream, q, k, v, qkv, bias, q_norm, k_norm, cos_sin, params,
                       static_cast<int>(lanes_per_head));
  } else {
    launch_after_prior("split_qkv_heads", split_qkv_heads_kernel<In, Out>,
                       blocks_for(total, kHeadsPerBlock, "split_qkv_heads"), kHeadThreads, 0,
                       stream, q, k, v, qkv, bias, q_norm, k_norm, cos_sin, params, total);
  }
}

template <typename In, typename Out>
void launch_swiglu(Out* h, const In* gate_up, int64_t rows, int64_t width, bool interleaved,
                   cudaStream_t stream) {
  if (rows < 0 || width < 0 || (interleaved && width % kSwigluGroup != 0)) {
    throw_error("swiglu_rows: bad shape " + std::to_string(rows) + " rows of width " +
                std::to_string(width) + (interleaved ? " (interleaved: a multiple of 8)" : ""));
  }
  if (rows == 0 || width == 0) return;
  if (rows > std::numeric_limits<int32_t>::max()) {
    throw_error("swiglu_rows: " + std::to_string(rows) + " rows are too many for one launch");
  }
  const bool vector =
      width % kVec == 0 && aligned(gate_up, kVec * sizeof(In)) && aligned(h, kVec * sizeof(Out));
  const bool wide = width % 8 == 0 && aligned(gate_up, 16) && aligned(h, 16);
  const int per_thread = wide ? 8 : vector ? kVec : 1;
  const int64_t per_block = int64_t{kFlatThreads} * per_thread;
  const int64_t column_blocks = (width + per_block - 1) / per_block;
  if (column_blocks > 65535) {
    throw_error("swiglu_rows: width " + std::to_string(width) + " is too large for one launch");
  }
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(column_blocks));
  const auto kernel = per_thread == 8   ? swiglu_rows_kernel<8, In, Out>
                      : per_thread == 4 ? swiglu_rows_kernel<4, In, Out>
                                        : swiglu_rows_kernel<1, In, Out>;
  launch_after_prior("swiglu_rows", kernel, grid, kFlatThreads, 0, stream, h, gate_up, width,
                     interleaved);
}

}  // namespace

// Without partials the kernel never writes x.
void rmsnorm_rows(bf16* y, const float* x, const float* w, int64_t rows, int64_t d, float eps,
                  cudaStream_t stream) {
  launch_rmsnorm(y, 0, const_cast<float*>(x), nullptr, 0, w, rows, d, eps, stream, "rmsnorm_rows");
}
void rmsnorm_rows(float* y, const float* x, const float* w, int64_t rows, int64_t d, float eps,
                  cudaStream_t stream) {
  launch_rmsnorm(y, 0, const_cast<float*>(x), nullptr, 0, w, rows, d, eps, stream, "rmsnorm_rows");
}

void residual_rmsnorm_rows(bf16* y, float* x, const float* partials, int n_partials, const float* w,
                           int64_t rows, int64_t d, float eps, cudaStream_t stream, int64_t ldy) {
  launch_rmsnorm(y, ldy, x, partials, n_partials, w, rows, d, eps, stream, "residual_rmsnorm_rows");
}
void residual_rmsnorm_rows(float* y, float* x, const float* partials, int n_partials,
                           const float* w, int64_t rows, int64_t d, float eps, cudaStream_t stream,
                           int64_t ldy) {
  launch_rmsnorm(y, ldy, x, partials, n_partials, w, rows, d, eps, stream, "residual_rmsnorm_rows");
}

void split_qkv_heads(bf16* q, bf16* k, bf16* v, const float* qkv, const float* bias,
                     const float* q_norm, const float* k_norm, const float2* cos_sin,
                     const QkvLayout& layout, cudaStream_t stream) {
  launch_split_qkv(q, k, v, qkv, bias, q_norm, k_norm, cos_sin, layout, stream);
}
void split_qkv_heads(bf16* q, bf16* k, bf16* v, const bf16* qkv, const float* bias,
                     const float* q_norm, const float* k_norm, const float2* cos_sin,
                     const QkvLayout& layout, cudaStream_t stream) {
  launch_split_qkv(q, k, v, qkv, bias, q_norm, k_norm, cos_sin, layout, stream);
}
void split_qkv_heads(float* q, float* k, float* v, const float* qkv, const float* bias,
                     const float* q_norm, const float* k_norm, const float2* cos_sin,
                     const QkvLayout& layout, cudaStream_t stream) {
  launch_split_qkv(q, k, v, qkv, bias, q_norm, k_norm, cos_sin, layout, stream);
}

void swiglu_rows(bf16* h, const float* gate_up, int64_t rows, int64_t width, cudaStream_t stream,
                 bool interleaved) {
  launch_swiglu(h, gate_up, rows, width, interleaved, stream);
}
void swiglu_rows(bf16* h, const bf16* gate_up, int64_t rows, int64_t width, cudaStream_t stream,
                 bool interleaved) {
  launch_swiglu(h, gate_up, rows, width, interleaved, stream);
}
void swiglu_rows(float* h, const float* gate_up, int64_t rows, int64_t width, cudaStream_t stream,
                 bool interleaved) {
  launch_swiglu(h, gate_up, rows, width, interleaved, stream);
}

namespace {

// One block per row; 16-byte moves where the row allows them (bf16 rows of 4096 are).
template <typename T>
__global__ void gather_rows_kernel(T* dst, int64_t dst_ld, const T* src, int64_t src_ld,
                                   const int32_t* ids, int64_t width, bool vector) {
  wait_for_prior_grid();
  const int64_t row = blockIdx.x;
  const T* from = src + static_cast<int64_t>(ids[row]) * src_ld;
  T* to = dst + row * dst_ld;
  if (vector) {
    constexpr int64_t kPer = 16 / sizeof(T);
    for (int64_t i = threadIdx.x; i < width / kPer; i += blockDim.x) {
      reinterpret_cast<uint4*>(to)[i] = reinterpret_cast<const uint4*>(from)[i];
    }
    return;
  }
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) to[i] = from[i];
}

template <typename T>
void gather_rows_impl(T* dst, const T* src, const int32_t* ids, int64_t rows, int64_t width,
                      cudaStream_t stream, int64_t src_ld, int64_t dst_ld) {
  if (src_ld == 0) src_ld = width;
  if (dst_ld == 0) dst_ld = width;
  if (rows < 0 || width < 0 || src_ld < width || dst_ld < width) {
    throw_error("gather_rows: bad shape " + std::to_string(rows) + " x " + std::to_string(width));
  }
  if (rows == 0 || width == 0) return;
  const auto bytes = [](int64_t n) { return n * static_cast<int64_t>(sizeof(T)); };
  const bool vector = bytes(width) % 16 == 0 && bytes(src_ld) % 16 == 0 &&
                      bytes(dst_ld) % 16 == 0 && aligned(dst, 16) && aligned(src, 16);
  launch_after_prior("gather_rows", gather_rows_kernel<T>, blocks_for(rows, 1, "gather_rows"), 256,
                     0, stream, dst, dst_ld, src, src_ld, ids, width, vector);
}

}  // namespace

void gather_rows(bf16* dst, const bf16* src, const int32_t* ids, int64_t rows, int64_t width,
                 cudaStream_t stream, int64_t src_ld, int64_t dst_ld) {
  gather_rows_impl(dst, src, ids, rows, width, stream, src_ld, dst_ld);
}

void gather_rows(float* dst, const float* src, const int32_t* ids, int64_t rows, int64_t width,
                 cudaStream_t stream, int64_t src_ld, int64_t dst_ld) {
  gather_rows_impl(dst, src, ids, rows, width, stream, src_ld, dst_ld);
}

void f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n < 0) throw_error("f32_to_bf16: bad length " + std::to_string(n));
  if (n == 0) return;
  if (aligned(in, 16) && aligned(out, 8)) {
    launch_after_prior("f32_to_bf16", f32_to_bf16_kernel<true>,
                       blocks_for(n, int64_t{kFlatThreads} * kVec, "f32_to_bf16"), kFlatThreads, 0,
                       stream, out, in, n);
  } else {
    launch_after_prior("f32_to_bf16", f32_to_bf16_kernel<false>,
                       blocks_for(n, kFlatThreads, "f32_to_bf16"), kFlatThreads, 0, stream, out, in,
                       n);
  }
}

void fill_uniform_bf16(bf16* out, int64_t n, uint32_t seed, cudaStream_t stream) {
  if (n < 0) throw_error("fill_uniform_bf16: bad length " + std::to_string(n));
  if (n == 0) return;
  constexpr int64_t kBlocks = 1024;
  fill_uniform_bf16_kernel<<<static_cast<unsigned>(std::min(kBlocks, (n + 255) / 256)), 256, 0,
                             stream>>>(out, n, seed);
  check_cuda(cudaGetLastError(), "fill_uniform_bf16");
}

}  // namespace ruvdllm::cuda
