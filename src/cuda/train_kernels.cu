// Element-wise and row-wise kernels of the training step. Row reductions use one warp per row;
// every sum whose result is a gradient runs in a fixed order, so two runs on the same inputs
// give the same bits.
//
// No fmt here: nvcc's host pass cannot compile fmt's headers, so errors go through
// throw_error (cuda_check.h), which throws ruvdllm::Error.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/train_kernels.h"

namespace ruvdllm::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowBlock = 128;  // threads per block of the warp-per-row kernels
constexpr int kRowsPerWarpBlock = kRowBlock / kWarp;
constexpr int kColumnChunk = 64;  // rows summed by one thread of column_sums_add's first pass

__device__ inline float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ inline float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Running max and sum of exp(x − max): merged pairwise, so a softmax needs one read to
// normalise and a second to write.
struct MaxSum {
  float m;
  float s;
};

__device__ inline MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ inline MaxSum push(MaxSum st, float x) {
  if (x > st.m) return {x, st.s * expf(st.m - x) + 1.0f};
  return {st.m, st.s + expf(x - st.m)};
}

__device__ inline MaxSum warp_merge(MaxSum st) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
    const MaxSum other{__shfl_xor_sync(0xffffffffu, st.m, offset),
                       __shfl_xor_sync(0xffffffffu, st.s, offset)};
    st = merge(st, other);
  }
  return st;
}

unsigned grid_for(int64_t work, int64_t per_block) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  if (blocks > std::numeric_limits<int>::max())
    throw_error("CUDA: " + std::to_string(work) + " work items need too many blocks");
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

// Block (32 columns × 8 row lanes) per (segment, column tile); the 8 lanes' partial sums are
// combined in a fixed order through shared memory.
constexpr int kSegCols = 32, kSegLanes = 8;
__global__ void segment_sum_kernel(float* out, const float* in, const int32_t* dest,
                                   const int32_t* offsets, const int32_t* items, int64_t d,
                                   bool accumulate) {
  __shared__ float partial[kSegLanes][kSegCols];
  const int64_t u = blockIdx.x;
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kSegCols + threadIdx.x;
  const int32_t begin = offsets[u], end = offsets[u + 1];
  // Four running sums keep four loads in flight: a frequent token (the mask) has thousands.
  float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (c < d) {
    int32_t j = begin + static_cast<int32_t>(threadIdx.y);
    for (; j + 3 * kSegLanes < end; j += 4 * kSegLanes) {
#pragma unroll
      for (int a = 0; a < 4; ++a)
        sum[a] += in[static_cast<int64_t>(items[j + a * kSegLanes]) * d + c];
    }
    for (; j < end; j += kSegLanes) sum[0] += in[static_cast<int64_t>(items[j]) * d + c];
  }
  partial[threadIdx.y][threadIdx.x] = (sum[0] + sum[1]) + (sum[2] + sum[3]);
  __syncthreads();
  if (threadIdx.y == 0 && c < d) {
    float total = partial[0][threadIdx.x];
    for (int lane = 1; lane < kSegLanes; ++lane) total += partial[lane][threadIdx.x];
    float* dst = out + static_cast<int64_t>(dest[u]) * d + c;
    *dst = accumulate ? *dst + total : total;
  }
}

__device__ inline void store(float* p, float v) { *p = v; }
__device__ inline void store(bf16* p, float v) { *p = __float2bfloat16(v); }

template <typename Out>
__global__ void rmsnorm_forward_kernel(Out* y, float* rstd, const float* x, const float* w,
                                       int64_t rows, int64_t d, float eps) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* xr = x + row * d;
  float ss = 0.0f;
  for (int64_t c = lane; c < d; c += kWarp) ss += xr[c] * xr[c];
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  if (lane == 0) rstd[row] = r;
  Out* yr = y + row * d;
  for (int64_t c = lane; c < d; c += kWarp) store(yr + c, xr[c] * r * w[c]);
}

__global__ void rmsnorm_backward_kernel(float* dx, float* dw_rows, const float* dy, const float* x,
                                        const float* w, const float* rstd, int64_t rows,
                                        int64_t d) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* xr = x + row * d;
  const float* dyr = dy + row * d;
  float dot = 0.0f;
  for (int64_t c = lane; c < d; c += kWarp) dot += dyr[c] * w[c] * xr[c];
  dot = warp_sum(dot);
  const float r = rstd[row];
  const float k = r * r * r * dot / static_cast<float>(d);
  float* dxr = dx + row * d;
  float* dwr = dw_rows + row * d;
  for (int64_t c = lane; c < d; c += kWarp) {
    dxr[c] += r * dyr[c] * w[c] - xr[c] * k;
    dwr[c] = dyr[c] * xr[c] * r;
  }
}

__global__ void column_partials_kernel(float* partials, const float* m, int64_t rows, int64_t cols,
                                       int64_t ld) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  const int64_t chunk = blockIdx.y;
  const int64_t begin = chunk * kColumnChunk;
  const int64_t end = begin + kColumnChunk < rows ? begin + kColumnChunk : rows;
  float sum = 0.0f;
  for (int64_t r = begin; r < end; ++r) sum += m[r * ld + col];
  partials[chunk * cols + col] = sum;
}

__global__ void column_finish_kernel(float* out, const float* partials, int64_t chunks,
                                     int64_t cols) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  float sum = 0.0f;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partials[chunk * cols + col];
  out[col] += sum;
}

__device__ inline void pair_columns(int64_t i, int64_t half, RopeOrder order, int64_t* a,
                                    int64_t* b) {
  *a = order == RopeOrder::Normal ? 2 * i : i;
  *b = order == RopeOrder::Normal ? 2 * i + 1 : i + half;
}

template <typename Out>
__global__ void heads_from_tokens_kernel(Out* dst, const float* src, int64_t ld,
                                         const float* bias, int64_t seq_len, int64_t n_head,
                                         int64_t head_dim, const float2* cos_sin, RopeOrder order,
                                         int64_t total) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int64_t half = head_dim / 2;
  const int64_t i = idx % half;
  const int64_t th = idx / half;
  const int64_t h = th % n_head, t = th / n_head;
  const int64_t s = t / seq_len, p = t % seq_len;
  int64_t a, b;
  pair_columns(i, half, order, &a, &b);
  const float* row = src + t * ld + h * head_dim;
  float x0 = row[a], x1 = row[b];
  if (bias) {
    x0 += bias[h * head_dim + a];
    x1 += bias[h * head_dim + b];
  }
  float y0 = x0, y1 = x1;
  if (cos_sin) {
    const float2 cs = cos_sin[p * half + i];
    y0 = x0 * cs.x - x1 * cs.y;
    y1 = x0 * cs.y + x1 * cs.x;
  }
  Out* out = dst + ((s * n_head + h) * seq_len + p) * head_dim;
  store(out + a, y0);
  store(out + b, y1);
}

__global__ void tokens_from_heads_kernel(float* dst, int64_t ld, const float* src, int64_t seq_len,
                                         int64_t n_head, int64_t head_dim, const float2* cos_sin,
                                         RopeOrder order, int64_t total) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int64_t half = head_dim / 2;
  const int64_t i = idx % half;
  const int64_t th = idx / half;
  const int64_t h = th % n_head, t = th / n_head;
  const int64_t s = t / seq_len, p = t % seq_len;
  int64_t a, b;
  pair_columns(i, half, order, &a, &b);
  const float* in = src + ((s * n_head + h) * seq_len + p) * head_dim;
  const float x0 = in[a], x1 = in[b];
  float y0 = x0, y1 = x1;
  if (cos_sin) {  // rotation by −θ
    const float2 cs = cos_sin[p * half + i];
    y0 = x0 * cs.x + x1 * cs.y;
    y1 = x1 * cs.x - x0 * cs.y;
  }
  float* row = dst + t * ld + h * head_dim;
  row[a] = y0;
  row[b] = y1;
}

__device__ inline int64_t visible_keys(int64_t query, int64_t seq_len, MaskMode mask,
                                       int64_t block_len) {
  switch (mask) {
    case MaskMode::Causal:
      return query + 1;
    case MaskMode::BlockCausal: {
      const int64_t end = (query / block_len + 1) * block_len;
      return end < seq_len ? end : seq_len;
    }
    default:
      return seq_len;
  }
}

// In place when probs == scores (f32); else probs gets the softmax in its own type.
template <typename Out>
__global__ void softmax_forward_kernel(const float* scores, Out* probs, int64_t rows,
                                       int64_t seq_len, MaskMode mask, int64_t block_len) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* x = scores + row * seq_len;
  Out* y = probs + row * seq_len;
  const int64_t n_valid = visible_keys(row % seq_len, seq_len, mask, block_len);
  MaxSum st{-INFINITY, 0.0f};
  for (int64_t j = lane; j < n_valid; j += kWarp) st = push(st, x[j]);
  st = warp_merge(st);
  const float inv = 1.0f / st.s;
  for (int64_t j = lane; j < seq_len; j += kWarp)
    store(y + j, j < n_valid ? expf(x[j] - st.m) * inv : 0.0f);
}

// Rows of at most 32·K scores stay in registers: one read and one write per element.
template <int K, typename Out>
__global__ void softmax_forward_regs_kernel(const float* scores, Out* probs, int64_t rows,
                                            int64_t seq_len, MaskMode mask, int64_t block_len) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* x = scores + row * seq_len;
  Out* y = probs + row * seq_len;
  const int64_t n_valid = visible_keys(row % seq_len, seq_len, mask, block_len);
  float v[K];
  float m = -INFINITY;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + k * kWarp;
    v[k] = j < n_valid ? x[j] : -INFINITY;
    m = fmaxf(m, v[k]);
  }
  m = warp_max(m);
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    v[k] = lane + k * kWarp < n_valid ? expf(v[k] - m) : 0.0f;
    s += v[k];
  }
  const float inv = 1.0f / warp_sum(s);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + k * kWarp;
    if (j < seq_len) store(y + j, v[k] * inv);
  }
}

__device__ inline float load(const float* p) { return *p; }
__device__ inline float load(const bf16* p) { return __bfloat162float(*p); }

// ds = p ⊙ (dp − Σ p·dp), in place when ds == dp (f32).
template <int K, typename P, typename Out>
__global__ void softmax_backward_regs_kernel(const float* dp, const P* p, Out* ds, int64_t rows,
                                             int64_t seq_len) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* g = dp + row * seq_len;
  const P* pr = p + row * seq_len;
  Out* out = ds + row * seq_len;
  float pv[K], gv[K];
  float dot = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + k * kWarp;
    pv[k] = j < seq_len ? load(pr + j) : 0.0f;
    gv[k] = j < seq_len ? g[j] : 0.0f;
    dot += pv[k] * gv[k];
  }
  dot = warp_sum(dot);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + k * kWarp;
    if (j < seq_len) store(out + j, pv[k] * (gv[k] - dot));
  }
}

template <typename P, typename Out>
__global__ void softmax_backward_kernel(const float* dp, const P* p, Out* ds, int64_t rows,
                                        int64_t seq_len) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* g = dp + row * seq_len;
  const P* pr = p + row * seq_len;
  Out* out = ds + row * seq_len;
  float dot = 0.0f;
  for (int64_t j = lane; j < seq_len; j += kWarp) dot += load(pr + j) * g[j];
  dot = warp_sum(dot);
  for (int64_t j = lane; j < seq_len; j += kWarp) store(out + j, load(pr + j) * (g[j] - dot));
}

template <typename Out>
__global__ void swiglu_forward_kernel(Out* h, const float* gate_up, int64_t width,
                                      int64_t total) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int64_t r = idx / width, j = idx % width;
  const float g = gate_up[r * 2 * width + j];
  const float u = gate_up[r * 2 * width + width + j];
  const float sig = 1.0f / (1.0f + expf(-g));
  store(h + idx, g * sig * u);
}

template <typename Out>
__global__ void swiglu_backward_kernel(Out* dgu, const float* dh, const float* gate_up,
                                       int64_t width, int64_t total) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int64_t r = idx / width, j = idx % width;
  const float g = gate_up[r * 2 * width + j];
  const float u = gate_up[r * 2 * width + width + j];
  const float sig = 1.0f / (1.0f + expf(-g));
  const float d = dh[idx];
  store(dgu + r * 2 * width + j, d * u * sig * (1.0f + g * (1.0f - sig)));
  store(dgu + r * 2 * width + width + j, d * g * sig);
}

constexpr int kCrossEntropyBlock = 256;
__global__ void cross_entropy_kernel(float* logits, double* row_loss, const int32_t* targets,
                                     const float* weights, int64_t vocab, float grad_scale,
                                     bool write_grad, bf16* grad_bf16) {
  __shared__ MaxSum warp_states[kCrossEntropyBlock / kWarp];
  __shared__ MaxSum row_state;
  const int64_t row = blockIdx.x;
  float* x = logits + row * vocab;
  MaxSum st{-INFINITY, 0.0f};
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) st = push(st, x[j]);
  st = warp_merge(st);
  if (threadIdx.x % kWarp == 0) warp_states[threadIdx.x / kWarp] = st;
  __syncthreads();
  const int32_t target = targets[row];
  const float weight = weights[row];
  if (threadIdx.x == 0) {
    MaxSum total = warp_states[0];
    for (int w = 1; w < kCrossEntropyBlock / kWarp; ++w) total = merge(total, warp_states[w]);
    row_state = total;
    const double lse = static_cast<double>(total.m) + log(static_cast<double>(total.s));
    row_loss[row] = static_cast<double>(weight) * (lse - static_cast<double>(x[target]));
  }
  __syncthreads();  // x[target] is read above before any thread overwrites the row
  if (!write_grad) return;
  const MaxSum total = row_state;
  const float inv = 1.0f / total.s;
  const float scale = grad_scale * weight;
  bf16* gb = grad_bf16 ? grad_bf16 + row * vocab : nullptr;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float p = expf(x[j] - total.m) * inv;
    const float grad = scale * (j == target ? p - 1.0f : p);
    if (gb)
      gb[j] = __float2bfloat16(grad);
    else
      x[j] = grad;
  }
}

__global__ void to_bf16_kernel(bf16* dst, const float* src, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16(src[i]);
}

constexpr int kOptimizerBlock = 256;

// Fixed-shape tree sum in shared memory: the same bits whatever the scheduling.
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kOptimizerBlock / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  return shared[0];
}

__global__ void gradient_square_kernel(double* partials, const float* grads,
                                       const OptimizerChunk* chunks) {
  __shared__ double shared[kOptimizerBlock];
  const OptimizerChunk c = chunks[blockIdx.x];
  const float* g = grads + c.offset;
  double sum = 0;
  for (int i = threadIdx.x; i < c.count; i += kOptimizerBlock) {
    sum += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  }
  const double total = block_sum(sum, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void finish_norm_kernel(double* norm, float* scale, const double* partials,
                                   int64_t n_chunks, double max_norm) {
  __shared__ double shared[kOptimizerBlock];
  double sum = 0;
  for (int64_t i = threadIdx.x; i < n_chunks; i += kOptimizerBlock) sum += partials[i];
  const double total = sqrt(block_sum(sum, shared));
  if (threadIdx.x == 0) {
    norm[0] = total;
    scale[0] = max_norm <= 0 || !(total > max_norm) ? 1.0f : static_cast<float>(max_norm / total);
  }
}

__global__ void adamw_kernel(float* values, bf16* values_bf16, float* m, float* v,
                             const float* grads, const float* scale_ptr,
                             const OptimizerChunk* chunks, AdamWConstants k) {
  const OptimizerChunk c = chunks[blockIdx.x];
  const float scale = *scale_ptr;
  const float keep = c.decay ? k.keep : 1.0f;
  const float one_minus_beta1 = __fsub_rn(1.0f, k.beta1), one_minus_beta2 = __fsub_rn(1.0f, k.beta2);
  for (int j = threadIdx.x; j < c.count; j += kOptimizerBlock) {
    const int64_t i = c.offset + j;
    // Clipping scales the gradient only when it applies, as the CPU does (g·1 = g anyway).
    const float g = __fmul_rn(grads[i], scale);
    const float mi = __fadd_rn(__fmul_rn(k.beta1, m[i]), __fmul_rn(one_minus_beta1, g));
    const float vi =
        __fadd_rn(__fmul_rn(k.beta2, v[i]), __fmul_rn(__fmul_rn(one_minus_beta2, g), g));
    const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), k.v_correction), k.eps);
    const float w = __fsub_rn(__fmul_rn(values[i], keep), __fdiv_rn(__fmul_rn(k.step_size, mi), denom));
    m[i] = mi;
    v[i] = vi;
    values[i] = w;
    if (values_bf16) values_bf16[i] = __float2bfloat16(w);
  }
}

}  // namespace

RowGroups group_rows(const std::vector<int32_t>& keys) {
  RowGroups g;
  g.items.resize(keys.size());
  std::iota(g.items.begin(), g.items.end(), 0);
  std::stable_sort(g.items.begin(), g.items.end(), [&](int32_t a, int32_t b) {
    return keys[static_cast<size_t>(a)] < keys[static_cast<size_t>(b)];
  });
  for (size_t j = 0; j < g.items.size(); ++j) {
    const int32_t key = keys[static_cast<size_t>(g.items[j])];
    if (g.dest.empty() || g.dest.back() != key) {
      g.dest.push_back(key);
      g.offsets.push_back(static_cast<int32_t>(j));
    }
  }
  g.offsets.push_back(static_cast<int32_t>(g.items.size()));
  return g;
}

void segment_sum_rows(float* out, const float* in, const int32_t* dest, const int32_t* offsets,
                      const int32_t* items, int64_t n_segments, int64_t d, bool accumulate,
                      cudaStream_t stream) {
  if (n_segments == 0) return;
  const dim3 grid(grid_for(n_segments, 1), grid_for(d, kSegCols));
  segment_sum_kernel<<<grid, dim3(kSegCols, kSegLanes), 0, stream>>>(out, in, dest, offsets, items,
                                                                     d, accumulate);
  check_launch("segment_sum_rows");
}

template <typename Out>
void rmsnorm_forward_any(Out* y, float* rstd, const float* x, const float* w, int64_t rows,
                         int64_t d, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_forward_kernel<Out><<<grid_for(rows, kRowsPerWarpBlock), kRowBlock, 0, stream>>>(
      y, rstd, x, w, rows, d, eps);
  check_launch("rmsnorm_forward");
}

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t rows, int64_t d,
                     float eps, cudaStream_t stream) {
  rmsnorm_forward_any(y, rstd, x, w, rows, d, eps, stream);
}

void rmsnorm_forward(bf16* y, float* rstd, const float* x, const float* w, int64_t rows, int64_t d,
                     float eps, cudaStream_t stream) {
  rmsnorm_forward_any(y, rstd, x, w, rows, d, eps, stream);
}

void to_bf16(bf16* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dst, src, n);
  check_launch("to_bf16");
}

void rmsnorm_backward(float* dx, float* dw_rows, const float* dy, const float* x, const float* w,
                      const float* rstd, int64_t rows, int64_t d, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_backward_kernel<<<grid_for(rows, kRowsPerWarpBlock), kRowBlock, 0, stream>>>(
      dx, dw_rows, dy, x, w, rstd, rows, d);
  check_launch("rmsnorm_backward");
}

int64_t column_sum_scratch(int64_t rows, int64_t cols) {
  return (rows + kColumnChunk - 1) / kColumnChunk * cols;
}

void column_sums_add(float* out, const float* m, int64_t rows, int64_t cols, int64_t ld,
                     float* partials, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const int64_t chunks = (rows + kColumnChunk - 1) / kColumnChunk;
  if (chunks > 65535)
    throw_error("CUDA: column sums over " + std::to_string(rows) + " rows exceed the grid");
  const dim3 grid(grid_for(cols, 256), static_cast<unsigned>(chunks));
  column_partials_kernel<<<grid, 256, 0, stream>>>(partials, m, rows, cols, ld);
  check_launch("column_partials");
  column_finish_kernel<<<grid_for(cols, 256), 256, 0, stream>>>(out, partials, chunks, cols);
  check_launch("column_finish");
}

std::vector<float2> rope_table(int64_t n_pos, int64_t head_dim, float base) {
  const int64_t half = head_dim / 2;
  std::vector<float2> table(static_cast<size_t>(n_pos * half));
  for (int64_t p = 0; p < n_pos; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double theta = static_cast<double>(p) *
                           std::pow(static_cast<double>(base),
                                    -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      table[static_cast<size_t>(p * half + i)] =
          make_float2(static_cast<float>(std::cos(theta)), static_cast<float>(std::sin(theta)));
    }
  }
  return table;
}

template <typename Out>
void heads_from_tokens_any(Out* dst, const float* src, int64_t ld, const float* bias,
                           int64_t n_seq, int64_t seq_len, int64_t n_head, int64_t head_dim,
                           const float2* cos_sin, RopeOrder order, cudaStream_t stream) {
  const int64_t total = n_seq * seq_len * n_head * (head_dim / 2);
  if (total == 0) return;
  heads_from_tokens_kernel<Out><<<grid_for(total, 256), 256, 0, stream>>>(
      dst, src, ld, bias, seq_len, n_head, head_dim, cos_sin, order, total);
  check_launch("heads_from_tokens");
}

void heads_from_tokens(float* dst, const float* src, int64_t ld, const float* bias, int64_t n_seq,
                       int64_t seq_len, int64_t n_head, int64_t head_dim, const float2* cos_sin,
                       RopeOrder order, cudaStream_t stream) {
  heads_from_tokens_any(dst, src, ld, bias, n_seq, seq_len, n_head, head_dim, cos_sin, order,
                        stream);
}

void heads_from_tokens(bf16* dst, const float* src, int64_t ld, const float* bias, int64_t n_seq,
                       int64_t seq_len, int64_t n_head, int64_t head_dim, const float2* cos_sin,
                       RopeOrder order, cudaStream_t stream) {
  heads_from_tokens_any(dst, src, ld, bias, n_seq, seq_len, n_head, head_dim, cos_sin, order,
                        stream);
}

void tokens_from_heads(float* dst, int64_t ld, const float* src, int64_t n_seq, int64_t seq_len,
                       int64_t n_head, int64_t head_dim, const float2* cos_sin, RopeOrder order,
                       cudaStream_t stream) {
  const int64_t total = n_seq * seq_len * n_head * (head_dim / 2);
  if (total == 0) return;
  tokens_from_heads_kernel<<<grid_for(total, 256), 256, 0, stream>>>(
      dst, ld, src, seq_len, n_head, head_dim, cos_sin, order, total);
  check_launch("tokens_from_heads");
}

template <typename Out>
void softmax_forward_any(const float* scores, Out* probs, int64_t rows, int64_t seq_len,
                         MaskMode mask, int64_t block_len, cudaStream_t stream) {
  if (rows == 0) return;
  if (mask == MaskMode::BlockCausal && block_len <= 0) {
    throw_error("attention: block-causal mask needs block_len > 0 (is " +
                std::to_string(block_len) + ")");
  }
  const unsigned grid = grid_for(rows, kRowsPerWarpBlock);
  const auto run = [&](auto kernel) {
    kernel<<<grid, kRowBlock, 0, stream>>>(scores, probs, rows, seq_len, mask, block_len);
  };
  if (seq_len <= 4 * kWarp) {
    run(softmax_forward_regs_kernel<4, Out>);
  } else if (seq_len <= 8 * kWarp) {
    run(softmax_forward_regs_kernel<8, Out>);
  } else if (seq_len <= 16 * kWarp) {
    run(softmax_forward_regs_kernel<16, Out>);
  } else if (seq_len <= 32 * kWarp) {
    run(softmax_forward_regs_kernel<32, Out>);
  } else {
    run(softmax_forward_kernel<Out>);
  }
  check_launch("attention_softmax_forward");
}

void attention_softmax_forward(float* scores, int64_t rows, int64_t seq_len, MaskMode mask,
                               int64_t block_len, cudaStream_t stream) {
  softmax_forward_any(scores, scores, rows, seq_len, mask, block_len, stream);
}

void attention_softmax_forward(const float* scores, bf16* probs, int64_t rows, int64_t seq_len,
                               MaskMode mask, int64_t block_len, cudaStream_t stream) {
  softmax_forward_any(scores, probs, rows, seq_len, mask, block_len, stream);
}

template <typename P, typename Out>
void softmax_backward_any(const float* dp, const P* p, Out* ds, int64_t rows, int64_t seq_len,
                          cudaStream_t stream) {
  if (rows == 0) return;
  const unsigned grid = grid_for(rows, kRowsPerWarpBlock);
  const auto run = [&](auto kernel) {
    kernel<<<grid, kRowBlock, 0, stream>>>(dp, p, ds, rows, seq_len);
  };
  if (seq_len <= 4 * kWarp) {
    run(softmax_backward_regs_kernel<4, P, Out>);
  } else if (seq_len <= 8 * kWarp) {
    run(softmax_backward_regs_kernel<8, P, Out>);
  } else if (seq_len <= 16 * kWarp) {
    run(softmax_backward_regs_kernel<16, P, Out>);
  } else if (seq_len <= 32 * kWarp) {
    run(softmax_backward_regs_kernel<32, P, Out>);
  } else {
    run(softmax_backward_kernel<P, Out>);
  }
  check_launch("attention_softmax_backward");
}

void attention_softmax_backward(float* dp, const float* p, int64_t rows, int64_t seq_len,
                                cudaStream_t stream) {
  softmax_backward_any(dp, p, dp, rows, seq_len, stream);
}

void attention_softmax_backward(const float* dp, const bf16* p, bf16* ds, int64_t rows,
                                int64_t seq_len, cudaStream_t stream) {
  softmax_backward_any(dp, p, ds, rows, seq_len, stream);
}

template <typename Out>
void swiglu_forward_any(Out* h, const float* gate_up, int64_t rows, int64_t width,
                        cudaStream_t stream) {
  const int64_t total = rows * width;
  if (total == 0) return;
  swiglu_forward_kernel<Out><<<grid_for(total, 256), 256, 0, stream>>>(h, gate_up, width, total);
  check_launch("swiglu_forward");
}

template <typename Out>
void swiglu_backward_any(Out* d_gate_up, const float* dh, const float* gate_up, int64_t rows,
                         int64_t width, cudaStream_t stream) {
  const int64_t total = rows * width;
  if (total == 0) return;
  swiglu_backward_kernel<Out><<<grid_for(total, 256), 256, 0, stream>>>(d_gate_up, dh, gate_up,
                                                                        width, total);
  check_launch("swiglu_backward");
}

void swiglu_forward(float* h, const float* gate_up, int64_t rows, int64_t width,
                    cudaStream_t stream) {
  swiglu_forward_any(h, gate_up, rows, width, stream);
}
void swiglu_forward(bf16* h, const float* gate_up, int64_t rows, int64_t width,
                    cudaStream_t stream) {
  swiglu_forward_any(h, gate_up, rows, width, stream);
}
void swiglu_backward(float* d_gate_up, const float* dh, const float* gate_up, int64_t rows,
                     int64_t width, cudaStream_t stream) {
  swiglu_backward_any(d_gate_up, dh, gate_up, rows, width, stream);
}
void swiglu_backward(bf16* d_gate_up, const float* dh, const float* gate_up, int64_t rows,
                     int64_t width, cudaStream_t stream) {
  swiglu_backward_any(d_gate_up, dh, gate_up, rows, width, stream);
}

void cross_entropy(float* logits, double* row_loss, const int32_t* targets, const float* weights,
                   int64_t rows, int64_t vocab, float grad_scale, bool write_grad,
                   cudaStream_t stream, bf16* grad_bf16) {
  if (rows == 0) return;
  cross_entropy_kernel<<<grid_for(rows, 1), kCrossEntropyBlock, 0, stream>>>(
      logits, row_loss, targets, weights, vocab, grad_scale, write_grad, grad_bf16);
  check_launch("cross_entropy");
}

void gradient_square_sums(double* partials, const float* grads, const OptimizerChunk* chunks,
                          int64_t n_chunks, cudaStream_t stream) {
  if (n_chunks == 0) return;
  gradient_square_kernel<<<grid_for(n_chunks, 1), kOptimizerBlock, 0, stream>>>(partials, grads,
                                                                                 chunks);
  check_launch("gradient_square_sums");
}

void finish_gradient_norm(double* norm, float* scale, const double* partials, int64_t n_chunks,
                          double max_norm, cudaStream_t stream) {
  finish_norm_kernel<<<1, kOptimizerBlock, 0, stream>>>(norm, scale, partials, n_chunks, max_norm);
  check_launch("finish_gradient_norm");
}

void adamw_update(float* values, bf16* values_bf16, float* m, float* v, const float* grads,
                  const float* scale, const OptimizerChunk* chunks, int64_t n_chunks,
                  const AdamWConstants& k, cudaStream_t stream) {
  if (n_chunks == 0) return;
  adamw_kernel<<<grid_for(n_chunks, 1), kOptimizerBlock, 0, stream>>>(values, values_bf16, m, v,
                                                                       grads, scale, chunks, k);
  check_launch("adamw_update");
}

}  // namespace ruvdllm::cuda
