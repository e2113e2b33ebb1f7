#include "cuda/gemm.h"

#include "cuda/cuda_check.h"
#include "ruvdllm/core/error.h"

namespace ruvdllm::cuda {
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
  if (a.bf16 != b.bf16) fail("cuBLAS: a product of an f32 and a bf16 operand");
  const cudaDataType_t in_type = a.bf16 ? CUDA_R_16BF : CUDA_R_32F;
  // CUBLAS_COMPUTE_32F_FAST_16BF on f32 operands ran exactly as TF32 on an H100 (cuBLAS 13.1),
  // so f32 operands in BF16 mode ask for TF32 outright.
  const cublasComputeType_t compute = a.bf16 || precision_ == MatmulPrecision::F32
                                          ? CUBLAS_COMPUTE_32F
                                          : CUBLAS_COMPUTE_32F_FAST_TF32;
  const int cm = cublas_int(n, "n"), cn = cublas_int(m, "m"), ck = cublas_int(k, "k");
  const int lda = cublas_int(b.ld, "ldb"), ldb = cublas_int(a.ld, "lda"),
            ldcc = cublas_int(ldc, "ldc");
  if (batch == 1) {
    check_cublas(
        cublasGemmEx(handle_, op_b, op_a, cm, cn, ck, &alpha, b.data, in_type, lda, a.data, in_type,
                     ldb, &beta, c, CUDA_R_32F, ldcc, compute, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
  } else {
    check_cublas(cublasGemmStridedBatchedEx(
                     handle_, op_b, op_a, cm, cn, ck, &alpha, b.data, in_type, lda, b.batch_stride,
                     a.data, in_type, ldb, a.batch_stride, &beta, c, CUDA_R_32F, ldcc, c_stride,
                     cublas_int(batch, "batch"), compute, CUBLAS_GEMM_DEFAULT),
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

void Gemm::linear_forward(float* y, const bf16* x, const bf16* w, int64_t n, int64_t in,
                          int64_t out, float beta) {
  run(n, out, in, 1.0f, {x, in, false, 0, true}, {w, in, true, 0, true}, beta, y, out);
}

void Gemm::linear_backward_input(float* dx, const bf16* dy, const bf16* w, int64_t n, int64_t in,
                                 int64_t out, float beta) {
  run(n, in, out, 1.0f, {dy, out, false, 0, true}, {w, in, false, 0, true}, beta, dx, in);
}

void Gemm::linear_backward_weight(float* dw, const bf16* dy, const bf16* x, int64_t n, int64_t in,
                                  int64_t out) {
  if (n == 0) return;
  run(out, in, n, 1.0f, {dy, out, true, 0, true}, {x, in, false, 0, true}, 1.0f, dw, in);
}

}  // namespace ruvdllm::cuda
