#pragma once
// Forward and backward passes of each transformer layer, written out one by one as llm.c does.
// Training runs them in float; the gradient checks run the same code in double, so each
// function is a template instantiated for float and double (explicitly, in src/train/).
//
// Conventions:
//  - activations are row-major, one row per token: x[n × d];
//  - weight matrices are in GGUF order, [out × in] row-major, so a linear layer is y = x·Wᵀ + b;
//  - backward functions ADD into every gradient buffer (callers zero them once per step), so
//    gradient accumulation and shared weights (tied embeddings) need no extra code;
//  - a gradient pointer may be null when that gradient is not needed (e.g. dx of the first
//    layer, dW of a frozen weight).
#include <cstdint>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/kernels/ops.h"

namespace ruvdllm::train {

// y[n × out] = x[n × in] · w[out × in]ᵀ (+ b[out] when b is not null). BLAS for float and double.
// BLAS runs single-threaded (as in the runtime's matmul); the work is split into chunks that
// depend on the shape only and run through pool when set, so results never depend on it.
template <typename T>
void linear_forward(T* y, const T* x, const T* w, const T* b, int64_t n, int64_t in, int64_t out,
                    ThreadPool* pool = nullptr);
// dx += dy·w ; dw += dyᵀ·x ; db += Σ_rows dy.
template <typename T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int64_t n,
                     int64_t in, int64_t out, ThreadPool* pool = nullptr);

// out[n × d] = table[tokens[i]].  Token ids are checked by the caller.
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int64_t n, int64_t d);
// dtable[tokens[i]] += dout[i].
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* tokens, int64_t n, int64_t d);

// y = x / rms(x) · w per row; rstd[n] saves 1/rms for the backward pass.
template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t n, int64_t d, T eps);
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t n,
                      int64_t d);

// In place on x[n × n_head × head_dim], rotating the whole head (rot_dim = head_dim) at
// positions pos[i], with the same angles as the inference kernel ruvdllm::rope.
template <typename T>
void rope_forward(T* x, const int32_t* pos, int64_t n, int64_t n_head, int64_t head_dim,
                  float base, RopeOrder order);
// The rotation is orthogonal, so the backward pass rotates the gradient by the inverse angles,
// in place on dx.
template <typename T>
void rope_backward(T* dx, const int32_t* pos, int64_t n, int64_t n_head, int64_t head_dim,
                   float base, RopeOrder order);

// Attention over n_seq independent sequences of seq_len tokens each (no cache in training).
struct TrainAttentionShape {
  int64_t n_seq = 1;
  int64_t seq_len = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;  // n_head % n_head_kv == 0
  int64_t head_dim = 0;
  MaskMode mask = MaskMode::Full;
  int64_t block_len = 0;  // for BlockCausal
};
// q, out: [n_seq·seq_len × n_head × head_dim]; k, v: [n_seq·seq_len × n_head_kv × head_dim].
// probs: [n_seq × n_head × seq_len × seq_len], the softmax saved for the backward pass (masked
// entries hold 0). Scale is 1/sqrt(head_dim). Parallel over (sequence, head) when pool is set.
template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v,
                       const TrainAttentionShape& s, ThreadPool* pool);
// dq, dk, dv accumulate (+=); with GQA the heads sharing a K/V head all add into it.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* probs, const T* q,
                        const T* k, const T* v, const TrainAttentionShape& s, ThreadPool* pool);

// h = silu(g) ⊙ u, elementwise over n values.
template <typename T>
void swiglu_forward(T* h, const T* g, const T* u, int64_t n);
template <typename T>
void swiglu_backward(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n);

// Weighted cross-entropy over rows of logits[n × vocab]:
//   returns Σ_i weights[i] · (−log softmax(logits_i)[targets[i]]), and when dlogits is not null
//   writes (not adds) dlogits_i = grad_scale · weights[i] · (softmax(logits_i) − onehot(targets_i)).
// Rows with weight 0 contribute nothing (their dlogits row is zero).
template <typename T>
double cross_entropy_forward_backward(T* dlogits, const T* logits, const int32_t* targets,
                                      const T* weights, int64_t n, int64_t vocab, T grad_scale,
                                      ThreadPool* pool);

}  // namespace ruvdllm::train
