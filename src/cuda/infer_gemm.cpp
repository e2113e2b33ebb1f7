#include "cuda/infer_gemm.h"

#include "cuda/cuda_check.h"

namespace ruvdllm::cuda {

namespace {
constexpr size_t kWorkspaceBytes = size_t{32} << 20;
}

InferGemm::InferGemm(cudaStream_t stream) : workspace_(kWorkspaceBytes) {
  check_cublas(cublasCreate(&handle_), "cublasCreate");
  check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
  check_cublas(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()),
               "cublasSetWorkspace");
}

InferGemm::~InferGemm() {
  if (handle_) cublasDestroy(handle_);
}

void InferGemm::linear(float* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n,
                       int64_t in, int64_t out, float beta) {
  // Column-major view: yᵀ (out × n) = w (stored in × out, transposed) · xᵀ (in × n).
  const float alpha = 1.0f;
  check_cublas(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out),
                            static_cast<int>(n), static_cast<int>(in), &alpha, w, CUDA_R_16BF,
                            static_cast<int>(in), x, CUDA_R_16BF, static_cast<int>(in), &beta, y,
                            CUDA_R_32F, static_cast<int>(out), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx (bf16)");
}

}  // namespace ruvdllm::cuda
