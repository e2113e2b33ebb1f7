#pragma once
// Shared plumbing of the layer passes (src/train/layers_*.cpp): one GEMM entry point for float
// and double, and running tasks through an optional pool.
#include <cstdint>
#include <functional>

#include "ruvdllm/core/thread_pool.h"

namespace ruvdllm::train::detail {

// Row-major C[m × n] = alpha · op(A)·op(B) + beta · C, with op(X) = Xᵀ when trans_X.
// lda/ldb/ldc are row strides in elements. Runs on the calling thread: parallelism comes from
// our pool, so BLAS is kept single-threaded (as the runtime's matmul does) and never
// oversubscribes the cores.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

int pool_threads(const ThreadPool* pool);
// fn(task, thread) for every task, through the pool when there is one, else in order here.
void run_tasks(ThreadPool* pool, int64_t n_tasks,
               const std::function<void(int64_t task, int thread)>& fn);

// Row kernels (layers_kernels.cpp): a vector version for float and a scalar one, which is the
// vector version's reference and the double path.

// dg += dh·u·σ(g)·(1 + g·(1 − σ(g))) ; du += dh·g·σ(g). Either output may be null.
void swiglu_backward_simd(float* dg, float* du, const float* dh, const float* g, const float* u,
                          int64_t n);
template <typename T>
void swiglu_backward_scalar(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n);

// The softmax's backward pass over one row: grad ← p ⊙ (grad − Σ grad ⊙ p).
void softmax_backward_row_simd(float* grad, const float* p, int64_t n);
template <typename T>
void softmax_backward_row_scalar(T* grad, const T* p, int64_t n);

// Returns log Σ exp(x) over a row of n > 0 finite values; when probs is not null, also writes
// probs = k · softmax(x).
double log_softmax_row_simd(const float* x, int64_t n, float* probs, float k);
template <typename T>
double log_softmax_row_scalar(const T* x, int64_t n, T* probs, T k);

// RMSNorm of one row of n: y = x·rstd·w (w may be null: no scale); returns rstd = 1/rms(x).
float rmsnorm_forward_row_simd(float* y, const float* x, const float* w, int64_t n, float eps);
template <typename T>
T rmsnorm_forward_row_scalar(T* y, const T* x, const T* w, int64_t n, T eps);
// dx += rstd·w·dy − (rstd³/n)·x·Σ dy·w·x ; dw += dy·x·rstd. dx or dw may be null.
void rmsnorm_backward_row_simd(float* dx, float* dw, const float* dy, const float* x,
                               const float* w, float rstd, int64_t n);
template <typename T>
void rmsnorm_backward_row_scalar(T* dx, T* dw, const T* dy, const T* x, const T* w, T rstd,
                                 int64_t n);

}  // namespace ruvdllm::train::detail
