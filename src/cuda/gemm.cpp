#include "cuda/gemm.h"

#include <limits>

#include "cuda/cuda_check.h"
#include "ruvdllm/core/error.h"

namespace ruvdllm::cuda {
namespace {

int to_int(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    fail("cuBLAS: {} = {} does not fit an int", what, v);
  return static_cast<int>(v);
}

}  // namespace

Gemm::Gemm(cudaStream_t stream, MatmulPrecision precision) : precision_(precision) {
  check_cublas(cublasCreate(&handle_), "cublasCreate");
  check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
}

Gemm::~Gemm() {
  if (handle_) cublasDestroy(handle_);
}

void Gemm::run_batched(int64_t m, int64_t n, int64_t k, float alpha, const GemmOperand& a,
                       const GemmOperand& b, float beta, float* c, int64_t ldc, int64_t c_stride,
                       int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix read
  // column-major is its transpose: so pass B first, A second, with the same transpose flags.
  const cublasOperation_t op_b = b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasComputeType_t compute =
      precision_ == MatmulPrecision::TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
      : precision_ == MatmulPrecision::BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                            : CUBLAS_COMPUTE_32F;
  const int cm = to_int(n, "n"), cn = to_int(m, "m"), ck = to_int(k, "k");
  const int lda = to_int(b.ld, "ldb"), ldb = to_int(a.ld, "lda"), ldcc = to_int(ldc, "ldc");
  if (batch == 1) {
    check_cublas(
        cublasGemmEx(handle_, op_b, op_a, cm, cn, ck, &alpha, b.data, CUDA_R_32F, lda, a.data,
                     CUDA_R_32F, ldb, &beta, c, CUDA_R_32F, ldcc, compute, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
  } else {
    check_cublas(cublasGemmStridedBatchedEx(
                     handle_, op_b, op_a, cm, cn, ck, &alpha, b.data, CUDA_R_32F, lda,
                     b.batch_stride, a.data, CUDA_R_32F, ldb, a.batch_stride, &beta, c, CUDA_R_32F,
                     ldcc, c_stride, to_int(batch, "batch"), compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmStridedBatchedEx");
  }
}

void Gemm::linear_forward(float* y, const float* x, const float* w, int64_t n, int64_t in,
                          int64_t out, float beta) {
  run(n, out, in, 1.0f, {x, in, false}, {w, in, true}, beta, y, out);
}

void Gemm::linear_backward_input(float* dx, const float* dy, const float* w, int64_t n, int64_t in,
                                 int64_t out, float beta) {
  run(n, in, out, 1.0f, {dy, out, false}, {w, in, false}, beta, dx, in);
}

void Gemm::linear_backward_weight(float* dw, const float* dy, const float* x, int64_t n, int64_t in,
                                  int64_t out) {
  if (n == 0) return;
  run(out, in, n, 1.0f, {dy, out, true}, {x, in, false}, 1.0f, dw, in);
}

}  // namespace ruvdllm::cuda
