#pragma once
// Building blocks of the GPU sampler (sampling.cu), one thread block per row: the shared
// memory layout, device twins of diffusion/rng.h, fixed-order block reductions and scans,
// top-2 / best-entry reductions and a bitonic sort of candidate lists. Included by sampling.cu
// only, so everything stays in an anonymous namespace of that translation unit.
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cuda/sampling.h"
#include "ruvdllm/diffusion/rng.h"

namespace ruvdllm::cuda {
namespace {


constexpr int kThreads = 512;
constexpr int kWarp = 32;
constexpr int kWarps = kThreads / kWarp;
constexpr unsigned kFull = 0xffffffffu;
// Candidates a block sorts in shared memory: the largest top_k, and the entries of a nucleus
// boundary bin that are ordered one by one.
constexpr int kCapacity = 4096;
constexpr int kBins = 1024;  // 10-bit digits of a weight's float bits (three levels = 30 bits)
constexpr int kRadixBins = 256;  // 8-bit digits of a logit's order key (four levels)
constexpr float kExpFloor = -104.0f;
constexpr float kExpUnderflow = -87.0f;
constexpr float kNegInf = -INFINITY;
// Probe levels of the nucleus floor (weights are relative to the row's largest, 1).
constexpr int kLevels = 6;
__constant__ float kLevelValues[kLevels] = {0x1p-2f, 0x1p-6f, 0x1p-10f, 0x1p-14f, 0x1p-20f,
                                            0x1p-30f};

// Layout twin of CudaRowSampler::RowJob (both sides check the offsets).
struct KernelJob {
  int64_t row;
  int64_t position;
  double token_uniform;
  uint64_t gumbel_key;
  double choice_uniform;  // read by the choice kernels only
};

struct KernelParams {
  float* logits;
  const float* uncond;  // null unless guidance is on
  int64_t vocab;
  const KernelJob* jobs;
  Proposal* out;
  float cfg_weight;  // cfg_scale + 1
  int64_t mask_id;   // -1: none
  float inv_temp;
  bool sampled;
  int top_k;  // 0: off
  bool restrict_p;
  float top_p;
  bool gumbel;
  Unmasking rule;
  float fixed_scale;  // 2^fixed_shift
};

using u64 = unsigned long long;

struct Shared {
  float cand_key[kCapacity];
  int32_t cand_id[kCapacity];
  u64 bin_mass[kBins];
  uint32_t bin_count[kBins];
  double scratch_d[kWarps];
  u64 scratch_u[kWarps];
  float scratch_f[kWarps];
  int32_t scratch_i[kWarps];
  float scratch_f2[kWarps];
  int32_t warp_count[kWarps];
  // Values one thread finds and all read.
  int bin;          // nucleus / radix boundary digit, -1 when none
  u64 above;        // fixed-point mass above the boundary range
  uint32_t bin_size;
  int found;        // first index satisfying a search, INT_MAX when none
  double found_mass;
  u64 found_mass_fp;
  int counter;
  int ties_taken;
  int64_t token;
};
static_assert(sizeof(Shared) <= 48 * 1024, "static shared memory is limited to 48 KiB");

// ---- random numbers (diffusion/rng.h's own functions, constexpr, so usable here) ----

__device__ inline float gumbel_noise(uint64_t key, uint32_t i) {
  return -logf(-logf(vocab_uniform(key, i)));
}

// ---- per-entry quantities ----

__device__ inline float deviation(float x, float max, float inv_temp) {
  return fmaxf((x - max) * inv_temp, kExpFloor);  // NaN becomes the floor, as on the CPU
}

__device__ inline float weight_of(float x, float max, float inv_temp) {
  const float d = deviation(x, max, inv_temp);
  return d < kExpUnderflow ? 0.0f : expf(d);
}

__device__ inline u64 fixed_of(float e, float scale) {
  return __float2ull_rn(__fmul_rn(e, scale));  // scale is a power of two: exact
}

// Calls f(i, x[i]) for this thread's entries i = threadIdx.x + j·kThreads, ascending, with
// four loads in flight per thread (one at a time leaves HBM mostly idle at this occupancy).
template <typename F>
__device__ inline void for_each_logit(const float* x, int64_t n, F&& f) {
  constexpr int kUnroll = 4;
  for (int64_t base = threadIdx.x; base < n; base += kUnroll * kThreads) {
    float v[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int64_t i = base + j * kThreads;
      v[j] = i < n ? x[i] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int64_t i = base + j * kThreads;
      if (i < n) f(i, v[j]);
    }
  }
}

// The nucleus as a cut on the weights (diffusion/row_kernels.h Selection).
struct Cut {
  float threshold;
  int64_t tie_index;
  __device__ bool contains(float e, int64_t i) const {
    return e > threshold || (e == threshold && i <= tie_index);
  }
};

// ---- block reductions (fixed order, so results repeat bit for bit) ----

template <typename T, typename Op>
__device__ T warp_reduce(T v, Op op) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v = op(v, __shfl_xor_sync(kFull, v, offset));
  return v;
}

template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* scratch) {
  v = warp_reduce(v, op);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (threadIdx.x % kWarp == 0) scratch[threadIdx.x / kWarp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, scratch[w]);
  return r;
}

struct Plus {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

// Exclusive prefix of v over the block in thread order.
template <typename T>
__device__ T block_exclusive_scan(T v, T* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  T incl = v;
  for (int offset = 1; offset < kWarp; offset <<= 1) {
    const T y = __shfl_up_sync(kFull, incl, offset);
    if (lane >= offset) incl += y;
  }
  T excl = __shfl_up_sync(kFull, incl, 1);
  if (lane == 0) excl = T(0);
  __syncthreads();
  if (lane == kWarp - 1) scratch[warp] = incl;
  __syncthreads();
  T offset = T(0);
  for (int w = 0; w < warp; ++w) offset += scratch[w];
  return offset + excl;
}

// Largest value, its lowest index, and the second-largest element (row_top2's contract).
struct Top2 {
  float max;
  int32_t index;
  float second;
};

__device__ inline Top2 merge_top2(Top2 a, Top2 b) {
  const bool a_wins = a.max > b.max || (a.max == b.max && a.index < b.index);
  const Top2 w = a_wins ? a : b;
  const Top2 l = a_wins ? b : a;
  return {w.max, w.index, fmaxf(w.second, l.max)};
}

__device__ Top2 block_top2(Top2 t, Shared& s) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
    const Top2 o{__shfl_xor_sync(kFull, t.max, offset), __shfl_xor_sync(kFull, t.index, offset),
                 __shfl_xor_sync(kFull, t.second, offset)};
    t = merge_top2(t, o);
  }
  __syncthreads();
  if (threadIdx.x % kWarp == 0) {
    const int w = threadIdx.x / kWarp;
    s.scratch_f[w] = t.max;
    s.scratch_i[w] = t.index;
    s.scratch_f2[w] = t.second;
  }
  __syncthreads();
  Top2 r{s.scratch_f[0], s.scratch_i[0], s.scratch_f2[0]};
  for (int w = 1; w < kWarps; ++w) r = merge_top2(r, {s.scratch_f[w], s.scratch_i[w], s.scratch_f2[w]});
  return r;
}

// Best (value, index): larger value, lower index on ties; −inf never wins.
struct Best {
  float value;
  int32_t index;
};

__device__ inline Best better(Best a, Best b) {
  return (a.value > b.value || (a.value == b.value && a.index < b.index)) ? a : b;
}

__device__ Best block_best(Best b, Shared& s) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    b = better(b, {__shfl_xor_sync(kFull, b.value, offset), __shfl_xor_sync(kFull, b.index, offset)});
  __syncthreads();
  if (threadIdx.x % kWarp == 0) {
    s.scratch_f[threadIdx.x / kWarp] = b.value;
    s.scratch_i[threadIdx.x / kWarp] = b.index;
  }
  __syncthreads();
  Best r{s.scratch_f[0], s.scratch_i[0]};
  for (int w = 1; w < kWarps; ++w) r = better(r, {s.scratch_f[w], s.scratch_i[w]});
  return r;
}

// Sorts cand_key/cand_id[0, size) (size a power of two) so that before(a, b) holds for a ahead
// of b (bitonic network).
template <typename Before>
__device__ void bitonic_sort(Shared& s, int size, Before before) {
  __syncthreads();
  for (int run = 2; run <= size; run <<= 1) {
    for (int stride = run >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < size / 2; t += kThreads) {
        const int i = 2 * t - (t & (stride - 1));
        const int j = i + stride;
        const bool ascending = (i & run) == 0;
        const bool out_of_order = ascending
                                      ? before(s.cand_key[j], s.cand_id[j], s.cand_key[i], s.cand_id[i])
                                      : before(s.cand_key[i], s.cand_id[i], s.cand_key[j], s.cand_id[j]);
        if (out_of_order) {
          const float k = s.cand_key[i];
          s.cand_key[i] = s.cand_key[j];
          s.cand_key[j] = k;
          const int32_t d = s.cand_id[i];
          s.cand_id[i] = s.cand_id[j];
          s.cand_id[j] = d;
        }
      }
      __syncthreads();
    }
  }
}

__device__ inline int pow2_at_least(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Fills [count, size) with entries that sort last in both orders used here.
__device__ void pad_candidates(Shared& s, int count, int size) {
  for (int j = count + static_cast<int>(threadIdx.x); j < size; j += kThreads) {
    s.cand_key[j] = kNegInf;
    s.cand_id[j] = INT_MAX;
  }
}

__device__ inline bool by_key_desc(float ka, int32_t ia, float kb, int32_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

__device__ inline bool by_id(float, int32_t ia, float, int32_t ib) { return ia < ib; }

// The contiguous slice [begin, end) of [0, count) that this thread owns in list scans.
__device__ inline void thread_slice(int count, int* begin, int* end) {
  const int per = (count + kThreads - 1) / kThreads;
  *begin = min(count, static_cast<int>(threadIdx.x) * per);
  *end = min(count, *begin + per);
}

}  // namespace
}  // namespace ruvdllm::cuda
