#include "cuda/infer_gemm.h"

#include <string>

#include "cuda/cuda_check.h"

namespace ruvdllm::cuda {

namespace {
constexpr size_t kWorkspaceBytes = size_t{32} << 20;
constexpr int64_t kTile = 128;  // cuBLAS's usual output tile edge at these shapes
}  // namespace

InferGemm::InferGemm(cudaStream_t stream) : workspace_(kWorkspaceBytes) {
  check_cublas(cublasCreate(&handle_), "cublasCreate");
  check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
  check_cublas(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()),
               "cublasSetWorkspace");
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute(multiprocessor count)");
}

InferGemm::~InferGemm() {
  if (handle_) cublasDestroy(handle_);
}

void InferGemm::linear(float* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n,
                       int64_t in, int64_t out, float beta) {
  // Column-major view: yᵀ (out × n) = w (stored in × out, transposed) · xᵀ (in × n).
  const float alpha = 1.0f;
  check_cublas(
      cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(n),
                   static_cast<int>(in), &alpha, w, CUDA_R_16BF, static_cast<int>(in), x,
                   CUDA_R_16BF, static_cast<int>(in), &beta, y, CUDA_R_32F, static_cast<int>(out),
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx (bf16)");
}

void InferGemm::linear(__nv_bfloat16* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n,
                       int64_t in, int64_t out) {
  const float alpha = 1.0f, beta = 0.0f;
  check_cublas(
      cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(n),
                   static_cast<int>(in), &alpha, w, CUDA_R_16BF, static_cast<int>(in), x,
                   CUDA_R_16BF, static_cast<int>(in), &beta, y, CUDA_R_16BF, static_cast<int>(out),
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx (bf16 out)");
}

int InferGemm::split_for(int64_t n, int64_t in, int64_t out) const {
  const int64_t tiles = ((out + kTile - 1) / kTile) * ((n + kTile - 1) / kTile);
  return 2 * tiles <= multiprocessors_ && in % (kMaxSplits * 64) == 0 ? kMaxSplits : 1;
}

void InferGemm::linear_split(float* partials, const __nv_bfloat16* x, const __nv_bfloat16* w,
                             int64_t n, int64_t in, int64_t out, int splits) {
  if (splits < 1 || splits > kMaxSplits || in % splits != 0) {
    throw_error("InferGemm::linear_split: " + std::to_string(in) + " does not split in " +
                std::to_string(splits));
  }
  // Slice s of both operands starts s·slice columns into their rows (same leading dimension).
  const int64_t slice = in / splits;
  const float alpha = 1.0f, beta = 0.0f;
  check_cublas(cublasGemmStridedBatchedEx(
                   handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(n),
                   static_cast<int>(slice), &alpha, w, CUDA_R_16BF, static_cast<int>(in), slice, x,
                   CUDA_R_16BF, static_cast<int>(in), slice, &beta, partials, CUDA_R_32F,
                   static_cast<int>(out), n * out, splits, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx (split-K)");
}

}  // namespace ruvdllm::cuda
