#include "cuda/attention.h"

#include <cmath>

#include "cuda/train_kernels.h"
#include "ruvdllm/core/error.h"

namespace ruvdllm::cuda {
namespace {

// One batch entry per (sequence, key/value head): its `group` query heads stacked into
// group·seq_len rows.
struct Grouping {
  int64_t batch, group, rows, L, D;
  float scale;
};

Grouping grouping(const AttentionDims& a) {
  if (a.n_head <= 0 || a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0 || a.head_dim <= 0 ||
      a.seq_len <= 0 || a.n_seq <= 0) {
    fail("attention: bad shape (sequences {}, length {}, heads {}, kv heads {}, head_dim {})",
         a.n_seq, a.seq_len, a.n_head, a.n_head_kv, a.head_dim);
  }
  const int64_t group = a.n_head / a.n_head_kv;
  return {a.n_seq * a.n_head_kv,
          group,
          group * a.seq_len,
          a.seq_len,
          a.head_dim,
          1.0f / std::sqrt(static_cast<float>(a.head_dim))};
}

}  // namespace

void attention_forward(Gemm& gemm, const AttentionDims& a, const float* q, const float* k,
                       const float* v, float* probs, float* out, cudaStream_t stream) {
  const Grouping g = grouping(a);
  const int64_t q_stride = g.rows * g.D, kv_stride = g.L * g.D, p_stride = g.rows * g.L;
  // scores[rows × L] = scale · Q·Kᵀ
  gemm.run_batched(g.rows, g.L, g.D, g.scale, {q, g.D, false, q_stride}, {k, g.D, true, kv_stride},
                   0.0f, probs, g.L, p_stride, g.batch);
  attention_softmax_forward(probs, a.n_seq * a.n_head * g.L, g.L, a.mask, a.block_len, stream);
  // out[rows × D] = P·V
  gemm.run_batched(g.rows, g.D, g.L, 1.0f, {probs, g.L, false, p_stride},
                   {v, g.D, false, kv_stride}, 0.0f, out, g.D, q_stride, g.batch);
}

void attention_backward(Gemm& gemm, const AttentionDims& a, const float* dout, const float* probs,
                        const float* q, const float* k, const float* v, float* dq, float* dk,
                        float* dv, float* dprobs, cudaStream_t stream) {
  const Grouping g = grouping(a);
  const int64_t q_stride = g.rows * g.D, kv_stride = g.L * g.D, p_stride = g.rows * g.L;
  // dP[rows × L] = dO·Vᵀ
  gemm.run_batched(g.rows, g.L, g.D, 1.0f, {dout, g.D, false, q_stride}, {v, g.D, true, kv_stride},
                   0.0f, dprobs, g.L, p_stride, g.batch);
  // dV[L × D] = Pᵀ·dO, summed over the group's heads by the product itself.
  gemm.run_batched(g.L, g.D, g.rows, 1.0f, {probs, g.L, true, p_stride},
                   {dout, g.D, false, q_stride}, 0.0f, dv, g.D, kv_stride, g.batch);
  attention_softmax_backward(dprobs, probs, a.n_seq * a.n_head * g.L, g.L, stream);
  // dQ[rows × D] = scale · dS·K ; dK[L × D] = scale · dSᵀ·Q
  gemm.run_batched(g.rows, g.D, g.L, g.scale, {dprobs, g.L, false, p_stride},
                   {k, g.D, false, kv_stride}, 0.0f, dq, g.D, q_stride, g.batch);
  gemm.run_batched(g.L, g.D, g.rows, g.scale, {dprobs, g.L, true, p_stride},
                   {q, g.D, false, q_stride}, 0.0f, dk, g.D, kv_stride, g.batch);
}

void attention_forward(Gemm& gemm, const AttentionDims& a, const bf16* q, const bf16* k,
                       const bf16* v, float* scores, bf16* probs, float* out, cudaStream_t stream) {
  const Grouping g = grouping(a);
  const int64_t q_stride = g.rows * g.D, kv_stride = g.L * g.D, p_stride = g.rows * g.L;
  gemm.run_batched(g.rows, g.L, g.D, g.scale, {q, g.D, false, q_stride, true},
                   {k, g.D, true, kv_stride, true}, 0.0f, scores, g.L, p_stride, g.batch);
  attention_softmax_forward(scores, probs, a.n_seq * a.n_head * g.L, g.L, a.mask, a.block_len,
                            stream);
  gemm.run_batched(g.rows, g.D, g.L, 1.0f, {probs, g.L, false, p_stride, true},
                   {v, g.D, false, kv_stride, true}, 0.0f, out, g.D, q_stride, g.batch);
}

void attention_backward(Gemm& gemm, const AttentionDims& a, const bf16* dout, const bf16* probs,
                        const bf16* q, const bf16* k, const bf16* v, float* dq, float* dk,
                        float* dv, float* dprobs, bf16* dscores, cudaStream_t stream) {
  const Grouping g = grouping(a);
  const int64_t q_stride = g.rows * g.D, kv_stride = g.L * g.D, p_stride = g.rows * g.L;
  gemm.run_batched(g.rows, g.L, g.D, 1.0f, {dout, g.D, false, q_stride, true},
                   {v, g.D, true, kv_stride, true}, 0.0f, dprobs, g.L, p_stride, g.batch);
  gemm.run_batched(g.L, g.D, g.rows, 1.0f, {probs, g.L, true, p_stride, true},
                   {dout, g.D, false, q_stride, true}, 0.0f, dv, g.D, kv_stride, g.batch);
  attention_softmax_backward(dprobs, probs, dscores, a.n_seq * a.n_head * g.L, g.L, stream);
  gemm.run_batched(g.rows, g.D, g.L, g.scale, {dscores, g.L, false, p_stride, true},
                   {k, g.D, false, kv_stride, true}, 0.0f, dq, g.D, q_stride, g.batch);
  gemm.run_batched(g.L, g.D, g.rows, g.scale, {dscores, g.L, true, p_stride, true},
                   {q, g.D, false, q_stride, true}, 0.0f, dk, g.D, kv_stride, g.batch);
}

}  // namespace ruvdllm::cuda
