#pragma once
// Launchers for the training kernels (train_kernels.cu). All pointers are device pointers,
// matrices row-major, and every launcher runs asynchronously on `stream`. The math of each
// matches the CPU pass of the same name in include/ruvdllm/train/layers.h.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "ruvdllm/kernels/ops.h"

namespace ruvdllm::cuda {

using bf16 = __nv_bfloat16;

// dst[i] = src[i] rounded to the nearest bf16 (ties to even).
void to_bf16(bf16* dst, const float* src, int64_t n, cudaStream_t stream);

// For each segment u: out[dest[u]] (+)= Σ_{j ∈ [offsets[u], offsets[u+1])} in[items[j]], rows
// of d floats summed in index order, so the result does not depend on scheduling (embedding
// backward, and scattering the head's row gradients back to their hidden states).
// The CSR lists segment_sum_rows reads: item indices grouped by key (keys[i] >= 0), items in
// ascending order within a group, groups in ascending key order.
struct RowGroups {
  std::vector<int32_t> dest;     // the keys present
  std::vector<int32_t> offsets;  // dest.size() + 1 entries
  std::vector<int32_t> items;
};
RowGroups group_rows(const std::vector<int32_t>& keys);

void segment_sum_rows(float* out, const float* in, const int32_t* dest, const int32_t* offsets,
                      const int32_t* items, int64_t n_segments, int64_t d, bool accumulate,
                      cudaStream_t stream);

// y = x / rms(x) · w per row of d; rstd[row] keeps 1/rms.
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t rows, int64_t d,
                     float eps, cudaStream_t stream);
// The same, writing y in bf16 (where y only feeds bf16 products).
void rmsnorm_forward(bf16* y, float* rstd, const float* x, const float* w, int64_t rows, int64_t d,
                     float eps, cudaStream_t stream);
// dx += ∂/∂x, and dw_rows[row][c] = dy·x·rstd, the per-row terms whose column sums are dw.
void rmsnorm_backward(float* dx, float* dw_rows, const float* dy, const float* x, const float* w,
                      const float* rstd, int64_t rows, int64_t d, cudaStream_t stream);

// out[c] += Σ_rows m[row][c] in a fixed order. partials needs column_sum_scratch(rows, cols).
int64_t column_sum_scratch(int64_t rows, int64_t cols);
void column_sums_add(float* out, const float* m, int64_t rows, int64_t cols, int64_t ld,
                     float* partials, cudaStream_t stream);

// RoPE angles of positions [0, n_pos), built on the host: cos_sin[pos·head_dim/2 + i] =
// (cos θ, sin θ) with θ = pos · base^(−2i/head_dim), in double as ruvdllm::rope computes them.
std::vector<float2> rope_table(int64_t n_pos, int64_t head_dim, float base);

// Token-major rows (row t = sequence t / seq_len, position t % seq_len; head h at columns
// [col0 + h·head_dim, …) of a matrix with row stride ld) to head-major [n_seq][n_head]
// [seq_len][head_dim], adding bias[h·head_dim + c] when bias is set and rotating each head
// when cos_sin is set.
void heads_from_tokens(float* dst, const float* src, int64_t ld, const float* bias, int64_t n_seq,
                       int64_t seq_len, int64_t n_head, int64_t head_dim, const float2* cos_sin,
                       RopeOrder order, cudaStream_t stream);
void heads_from_tokens(bf16* dst, const float* src, int64_t ld, const float* bias, int64_t n_seq,
                       int64_t seq_len, int64_t n_head, int64_t head_dim, const float2* cos_sin,
                       RopeOrder order, cudaStream_t stream);
// The reverse layout change; with cos_sin set it rotates by the inverse angles (the RoPE
// backward pass).
void tokens_from_heads(float* dst, int64_t ld, const float* src, int64_t n_seq, int64_t seq_len,
                       int64_t n_head, int64_t head_dim, const float2* cos_sin, RopeOrder order,
                       cudaStream_t stream);

// In place on rows of seq_len scores, row r being query position r % seq_len: softmax over
// the keys the mask lets that query see, 0 for the others.
void attention_softmax_forward(float* scores, int64_t rows, int64_t seq_len, MaskMode mask,
                               int64_t block_len, cudaStream_t stream);
// The same from f32 scores into bf16 probabilities (the scores stay).
void attention_softmax_forward(const float* scores, bf16* probs, int64_t rows, int64_t seq_len,
                               MaskMode mask, int64_t block_len, cudaStream_t stream);
// In place: dp ← p ⊙ (dp − Σ_j p·dp) per row (the softmax backward pass).
void attention_softmax_backward(float* dp, const float* p, int64_t rows, int64_t seq_len,
                                cudaStream_t stream);
// ds = p ⊙ (dp − Σ_j p·dp) with bf16 probabilities, into bf16.
void attention_softmax_backward(const float* dp, const bf16* p, bf16* ds, int64_t rows,
                                int64_t seq_len, cudaStream_t stream);

// gate_up rows hold [gate (width) | up (width)]: h = silu(gate) ⊙ up.
void swiglu_forward(float* h, const float* gate_up, int64_t rows, int64_t width,
                    cudaStream_t stream);
void swiglu_forward(bf16* h, const float* gate_up, int64_t rows, int64_t width,
                    cudaStream_t stream);
// d_gate_up rows get [∂/∂gate | ∂/∂up] (written, not added).
void swiglu_backward(float* d_gate_up, const float* dh, const float* gate_up, int64_t rows,
                     int64_t width, cudaStream_t stream);
void swiglu_backward(bf16* d_gate_up, const float* dh, const float* gate_up, int64_t rows,
                     int64_t width, cudaStream_t stream);

// Per row of vocab logits: row_loss[r] = weights[r]·(logsumexp − logit[target]), and when
// write_grad, the row is overwritten with grad_scale·weights[r]·(softmax − onehot(target)),
// or, when grad_bf16 is set, that gradient goes to grad_bf16 (rows × vocab) and logits stay.
void cross_entropy(float* logits, double* row_loss, const int32_t* targets, const float* weights,
                   int64_t rows, int64_t vocab, float grad_scale, bool write_grad,
                   cudaStream_t stream, bf16* grad_bf16 = nullptr);

// ------------------------------------------------------------------ AdamW on the device
// A piece of one trainable tensor in the flat value/gradient/moment buffers: one block of the
// optimiser kernels each, so one launch covers every tensor.
struct OptimizerChunk {
  int64_t offset;
  int32_t count;
  int32_t decay;  // 1: weight decay applies
};
constexpr int32_t kOptimizerChunk = 8192;

// partials[c] = Σ grads² over chunk c, in double, in a fixed order.
void gradient_square_sums(double* partials, const float* grads, const OptimizerChunk* chunks,
                          int64_t n_chunks, cudaStream_t stream);
// norm[0] = √(Σ_c partials[c]) (fixed order); scale[0] = max_norm / norm when max_norm > 0 and
// norm > max_norm, else 1: the clipping factor, computed as AdamW::clip_gradients does.
void finish_gradient_norm(double* norm, float* scale, const double* partials, int64_t n_chunks,
                          double max_norm, cudaStream_t stream);

// Per-step constants, computed on the host in the same float arithmetic as the CPU AdamW.
struct AdamWConstants {
  float beta1, beta2, step_size, v_correction, eps, keep;  // keep: 1 − lr·wd
};
// The CPU AdamW::step on g = grads·scale[0] (the clipped gradient), element for element in the
// same float operations (no fused multiply-adds), so both give the same bits. values_bf16, when
// set, gets the new values rounded to bf16.
void adamw_update(float* values, bf16* values_bf16, float* m, float* v, const float* grads,
                  const float* scale, const OptimizerChunk* chunks, int64_t n_chunks,
                  const AdamWConstants& k, cudaStream_t stream);

}  // namespace ruvdllm::cuda
