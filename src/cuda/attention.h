#pragma once
// Training attention on the GPU: strided-batched cuBLAS products around a materialised
// seq_len × seq_len softmax per (sequence, head), which the backward pass reuses. Tensors are
// head-major: q, out [n_seq][n_head][seq_len][head_dim], k, v [n_seq][n_head_kv][seq_len]
// [head_dim]. Head h reads key/value head h / (n_head / n_head_kv), so the query heads sharing
// a key/value head are adjacent and one product covers them all.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/gemm.h"
#include "ruvdllm/kernels/ops.h"

namespace ruvdllm::cuda {

struct AttentionDims {
  int64_t n_seq = 1;
  int64_t seq_len = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  MaskMode mask = MaskMode::Full;
  int64_t block_len = 0;

  int64_t probs_size() const { return n_seq * n_head * seq_len * seq_len; }
};

// probs [n_seq][n_head][seq_len][seq_len] keeps the softmax (0 where masked).
void attention_forward(Gemm& gemm, const AttentionDims& a, const float* q, const float* k,
                       const float* v, float* probs, float* out, cudaStream_t stream);

// Writes dq, dk, dv (not added). dprobs is scratch of probs_size() floats.
void attention_backward(Gemm& gemm, const AttentionDims& a, const float* dout, const float* probs,
                        const float* q, const float* k, const float* v, float* dq, float* dk,
                        float* dv, float* dprobs, cudaStream_t stream);

// BF16 operands: q, k, v (and dout) in bf16, the softmax kept in bf16 (half the traffic of the
// stored probabilities, which dominate this pass); scores and dprobs are f32 scratch of
// probs_size() (products accumulate in f32), dscores bf16 scratch of the same size. Outputs
// f32.
void attention_forward(Gemm& gemm, const AttentionDims& a, const bf16* q, const bf16* k,
                       const bf16* v, float* scores, bf16* probs, float* out, cudaStream_t stream);
void attention_backward(Gemm& gemm, const AttentionDims& a, const bf16* dout, const bf16* probs,
                        const bf16* q, const bf16* k, const bf16* v, float* dq, float* dk,
                        float* dv, float* dprobs, bf16* dscores, cudaStream_t stream);

}  // namespace ruvdllm::cuda
