#pragma once
// Launchers for the training kernels (train_kernels.cu). All pointers are device pointers,
// matrices row-major, and every launcher runs asynchronously on `stream`. The math of each
// matches the CPU pass of the same name in include/ruvdllm/train/layers.h.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "ruvdllm/kernels/ops.h"

namespace ruvdllm::cuda {

// out[i] = table[index[i]] for n rows of d floats (embedding lookup; also gathers head rows).
void gather_rows(float* out, const float* table, const int32_t* index, int64_t n, int64_t d,
                 cudaStream_t stream);

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
// The reverse layout change; with cos_sin set it rotates by the inverse angles (the RoPE
// backward pass).
void tokens_from_heads(float* dst, int64_t ld, const float* src, int64_t n_seq, int64_t seq_len,
                       int64_t n_head, int64_t head_dim, const float2* cos_sin, RopeOrder order,
                       cudaStream_t stream);

// In place on rows of seq_len scores, row r being query position r % seq_len: softmax over
// the keys the mask lets that query see, 0 for the others.
void attention_softmax_forward(float* scores, int64_t rows, int64_t seq_len, MaskMode mask,
                               int64_t block_len, cudaStream_t stream);
// In place: dp ← p ⊙ (dp − Σ_j p·dp) per row (the softmax backward pass).
void attention_softmax_backward(float* dp, const float* p, int64_t rows, int64_t seq_len,
                                cudaStream_t stream);

// gate_up rows hold [gate (width) | up (width)]: h = silu(gate) ⊙ up.
void swiglu_forward(float* h, const float* gate_up, int64_t rows, int64_t width,
                    cudaStream_t stream);
// d_gate_up rows get [∂/∂gate | ∂/∂up] (written, not added).
void swiglu_backward(float* d_gate_up, const float* dh, const float* gate_up, int64_t rows,
                     int64_t width, cudaStream_t stream);

// Per row of vocab logits: row_loss[r] = weights[r]·(logsumexp − logit[target]), and when
// write_grad, the row is overwritten with grad_scale·weights[r]·(softmax − onehot(target)).
void cross_entropy(float* logits, double* row_loss, const int32_t* targets, const float* weights,
                   int64_t rows, int64_t vocab, float grad_scale, bool write_grad,
                   cudaStream_t stream);

}  // namespace ruvdllm::cuda
