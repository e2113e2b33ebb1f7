#pragma once
// Row-major matrix products on cuBLAS (which is column-major): C = alpha·op(A)·op(B) + beta·C,
// with op(A) m×k, op(B) k×n and C m×n, every matrix row-major with its leading dimension.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "ruvdllm/cuda/train_engine.h"

namespace ruvdllm::cuda {

using bf16 = __nv_bfloat16;

// f32 elements, or bf16 when `bf16` is set: both operands of one product have the same type
// (cuBLAS has no mixed f32 × bf16 product).
struct GemmOperand {
  const void* data = nullptr;
  int64_t ld = 0;           // row stride of the stored matrix, in elements
  bool transposed = false;  // use the stored matrix transposed
  int64_t batch_stride = 0;
  bool bf16 = false;
};

class Gemm {
 public:
  Gemm(cudaStream_t stream, MatmulPrecision precision);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void set_precision(MatmulPrecision precision) { precision_ = precision; }
  MatmulPrecision precision() const { return precision_; }

  void run(int64_t m, int64_t n, int64_t k, float alpha, const GemmOperand& a, const GemmOperand& b,
           float beta, float* c, int64_t ldc) {
    run_batched(m, n, k, alpha, a, b, beta, c, ldc, 0, 1);
  }
  // `batch` independent products; operand i starts batch_stride·i elements after operand 0.
  // f32 operands use the precision set here (BF16 runs them as TF32: only the linear layers
  // have bf16 copies); bf16 operands always run at f32 accumulation. C is always f32.
  void run_batched(int64_t m, int64_t n, int64_t k, float alpha, const GemmOperand& a,
                   const GemmOperand& b, float beta, float* c, int64_t ldc, int64_t c_stride,
                   int64_t batch);

  // The layer products, with weights w[out × in] in GGUF order:
  // y[n × out] = x·wᵀ (+ beta·y).
  void linear_forward(float* y, const float* x, const float* w, int64_t n, int64_t in, int64_t out,
                      float beta = 0.0f);
  // dx[n × in] = dy·w (+ beta·dx).
  void linear_backward_input(float* dx, const float* dy, const float* w, int64_t n, int64_t in,
                             int64_t out, float beta = 0.0f);
  // dw[out × in] += dyᵀ·x.
  void linear_backward_weight(float* dw, const float* dy, const float* x, int64_t n, int64_t in,
                              int64_t out);

  // The same three products on bf16 operands in memory (f32 accumulation, f32 outputs).
  void linear_forward(float* y, const bf16* x, const bf16* w, int64_t n, int64_t in, int64_t out,
                      float beta = 0.0f);
  void linear_backward_input(float* dx, const bf16* dy, const bf16* w, int64_t n, int64_t in,
                             int64_t out, float beta = 0.0f);
  void linear_backward_weight(float* dw, const bf16* dy, const bf16* x, int64_t n, int64_t in,
                              int64_t out);

 private:
  cublasHandle_t handle_ = nullptr;
  MatmulPrecision precision_;
};

}  // namespace ruvdllm::cuda
