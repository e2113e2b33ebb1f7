#include "cuda/infer_gemm.h"

#include <cstdlib>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/launch_util.h"
#include "ruvdllm/core/env_choice.h"

namespace ruvdllm::cuda {

namespace {
constexpr size_t kWorkspaceBytes = size_t{32} << 20;
constexpr int64_t kTile = 128;  // cuBLAS's usual output tile edge at these shapes
}  // namespace

InferGemm::InferGemm(cudaStream_t stream, Engines engines) : workspace_(kWorkspaceBytes) {
  const std::string_view way = env_choice<std::string_view>(
      "RUVDLLM_CUDA_GEMM", {{"auto", "auto"}, {"cublas", "cublas"}, {"wgmma", "wgmma"}});
  const bool hopper = WgmmaGemm::available();
  if (way == "wgmma" && !hopper) {
    throw_error("RUVDLLM_CUDA_GEMM=wgmma needs an H100/H200 (sm_90a) GPU");
  }
  own_dense_ = way == "wgmma";
  const bool wanted =
      engines == Engines::Any ? way != "cublas" : engines == Engines::DenseWeights && own_dense_;
  if (wanted && hopper) {
    own_ = std::make_unique<WgmmaGemm>(stream);
  }
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

// Column-major view: yᵀ (out × n) = w (stored in × out, transposed) · xᵀ (in × n); a batch of
// `splits` products over consecutive slices of `in` when splits > 1.
void InferGemm::run(void* y, cudaDataType y_type, const void* x, const void* w,
                    cudaDataType operand_type, int64_t n, int64_t in, int64_t out, float beta,
                    int splits, int64_t ldx) {
  const float alpha = 1.0f;
  const int rows = cublas_int(n, "rows"), inner = cublas_int(in, "in"),
            outputs = cublas_int(out, "out");
  if (ldx == 0) ldx = in;
  if (ldx < in) throw_error("InferGemm: ldx " + std::to_string(ldx) + " is below in");
  const int x_stride = cublas_int(ldx, "ldx");
  // f32 operands must mean f32 arithmetic, never TF32, whatever the environment says.
  const cublasComputeType_t compute =
      operand_type == CUDA_R_32F ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  if (splits == 1 && operand_type == CUDA_R_16BF && uses_own(n, in, out)) {
    const auto* xb = static_cast<const __nv_bfloat16*>(x);
    const auto* wb = static_cast<const __nv_bfloat16*>(w);
    if (y_type == CUDA_R_16BF) {
      own_->linear(static_cast<__nv_bfloat16*>(y), out, xb, wb, n, in, out, ldx);
    } else {
      own_->linear(static_cast<float*>(y), out, xb, wb, n, in, out, beta, ldx);
    }
    return;
  }
  if (splits == 1) {
    check_cublas(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, outputs, rows, inner, &alpha, w,
                              operand_type, inner, x, operand_type, x_stride, &beta, y, y_type,
                              outputs, compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
    return;
  }
  if (splits < 1 || splits > kMaxSplits || in % splits != 0) {
    throw_error("InferGemm::linear_split: " + std::to_string(in) + " does not split in " +
                std::to_string(splits));
  }
  // Slice s of both operands starts s·slice columns into their rows (same leading dimension).
  const int64_t slice = in / splits;
  check_cublas(cublasGemmStridedBatchedEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, outputs, rows,
                                          static_cast<int>(slice), &alpha, w, operand_type, inner,
                                          slice, x, operand_type, x_stride, slice, &beta, y, y_type,
                                          outputs, n * out, splits, compute, CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx (split-K)");
}

void InferGemm::linear(float* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n,
                       int64_t in, int64_t out, float beta, int64_t ldx) {
  run(y, CUDA_R_32F, x, w, CUDA_R_16BF, n, in, out, beta, 1, ldx);
}

void InferGemm::linear(__nv_bfloat16* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n,
                       int64_t in, int64_t out, int64_t ldx) {
  run(y, CUDA_R_16BF, x, w, CUDA_R_16BF, n, in, out, 0.0f, 1, ldx);
}

void InferGemm::linear(float* y, const float* x, const float* w, int64_t n, int64_t in, int64_t out,
                       float beta, int64_t ldx) {
  run(y, CUDA_R_32F, x, w, CUDA_R_32F, n, in, out, beta, 1, ldx);
}

void InferGemm::linear_split(float* partials, const __nv_bfloat16* x, const __nv_bfloat16* w,
                             int64_t n, int64_t in, int64_t out, int splits, int64_t ldx) {
  run(partials, CUDA_R_32F, x, w, CUDA_R_16BF, n, in, out, 0.0f, splits, ldx);
}

void InferGemm::linear_split(float* partials, const float* x, const float* w, int64_t n, int64_t in,
                             int64_t out, int splits, int64_t ldx) {
  run(partials, CUDA_R_32F, x, w, CUDA_R_32F, n, in, out, 0.0f, splits, ldx);
}

bool InferGemm::uses_own(int64_t n, int64_t in, int64_t out) const {
  return own_ && own_dense_ && WgmmaGemm::fits(n, in, out);
}

bool InferGemm::takes_blocks(TensorType type, const void* w, int64_t n, int64_t in,
                             int64_t out) const {
  if (!own_ || !WgmmaGemm::fits_blocks(type, n, in, out) || !aligned(w, 16)) return false;
  if (own_dense_) return true;
  // Measured on an 8B step (H200, against dequantizing for cuBLAS): Q4_K −36% at 128 rows, −22%
  // at 256, −6% at 512 (Q5_K −7%); Q8_0 −19% and −10% (with every product on ours; it lost 8% at
  // 256 rows before the decoding warps shared the copying); Q5_K −32% and −17%. The 4096 × 4096
  // product (16 slices per CTA at 256 rows, 31 at 512) measured slower than dequantizing at 256 and
  // 512 rows for every type (512: 43–50 against 38–42 µs).
  const int64_t min_rows = blocks_min_rows(type);
  return min_rows > 0 && n >= min_rows && n <= blocks_max_rows(type) &&
         own_->slices_per_cta(n, in, out) >= 32;
}

int64_t InferGemm::blocks_max_rows(TensorType type) {
  // The three 8B products it takes at 512 rows (bench_cuda_quant_gemm, H200), µs per layer,
  // against dequantizing: Q4_K in two 256-row tiles 419 against 447, head 1010 against 1116;
  // Q5_K in wide tiles 442 against 472, head 1037 against 1199; Q8_0 a tie (466 / 467, head
  // 1111 / 1188); Q4_0 slower (451 against 438), so it stays on dequantizing past 256 rows.
  return type == TensorType::Q4_0 ? 256 : 512;
}

int64_t InferGemm::blocks_min_rows(TensorType type) {
  // Per layer at 64 rows (bench_cuda_quant_gemm, H200), the four products took 193 µs here
  // against 294 in QuantGemm for Q4_K, 207 against 302 for Q5_K and 252 against 271 for Q8_0;
  // Q4_0's were a tie (250 / 255), and QuantGemm keeps them to 64 rows (fused_rows_measured).
  // At 32 rows the K-quants' products tie per layer, but the 8B Q4_K step with them all here
  // took 7.15 against 8.04 ms. Q6_K is decoded here too (RUVDLLM_CUDA_GEMM=wgmma), but the 8B
  // Q6_K step with it measured slower than dequantizing: 12.31 against 11.04 ms at 32
  // positions, 14.10 against 13.31 at 256 (H200); its 210-byte chunks land 2-byte aligned in
  // the copied slots, so the decoder reads pairs of bytes.
  switch (type) {
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      return 1;
    case TensorType::Q8_0:
      return 64;
    case TensorType::Q4_0:
      return 128;
    default:
      return 0;
  }
}

void InferGemm::linear_blocks(float* y, int64_t ldy, const __nv_bfloat16* x, const void* w,
                              TensorType type, int64_t n, int64_t in, int64_t out, float beta,
                              int64_t ldx) {
  if (!own_) throw_error("InferGemm::linear_blocks: WgmmaGemm is not available here");
  own_->linear_blocks(y, ldy, x, w, type, n, in, out, beta, ldx);
}

void InferGemm::linear_blocks(__nv_bfloat16* y, int64_t ldy, const __nv_bfloat16* x, const void* w,
                              TensorType type, int64_t n, int64_t in, int64_t out, int64_t ldx) {
  if (!own_) throw_error("InferGemm::linear_blocks: WgmmaGemm is not available here");
  own_->linear_blocks(y, ldy, x, w, type, n, in, out, ldx);
}

void InferGemm::linear_blocks_swiglu(__nv_bfloat16* h, int64_t ldh, const __nv_bfloat16* x,
                                     const void* w, TensorType type, int64_t n, int64_t in,
                                     int64_t out, int64_t ldx) {
  if (!own_) throw_error("InferGemm::linear_blocks_swiglu: WgmmaGemm is not available here");
  own_->linear_blocks_swiglu(h, ldh, x, w, type, n, in, out, ldx);
}

int InferGemm::blocks_parts(TensorType type, const void* w, int64_t n, int64_t in,
                            int64_t out) const {
  if (!own_ || !WgmmaGemm::fits_blocks(type, n, in, out) || !aligned(w, 16)) return 1;
  const int64_t min_rows = blocks_min_rows(type);
  if (min_rows <= 0 || n < min_rows || n > blocks_max_rows(type)) return 1;
  return own_->k_parts_for(n, in, out);
}

void InferGemm::linear_blocks_split(float* partials, int64_t ldy, const __nv_bfloat16* x,
                                    const void* w, TensorType type, int64_t n, int64_t in,
                                    int64_t out, int parts) {
  if (!own_) throw_error("InferGemm::linear_blocks_split: WgmmaGemm is not available here");
  own_->linear_blocks_split(partials, ldy, x, w, type, n, in, out, parts);
}

int InferGemm::split_for(int64_t n, int64_t in, int64_t out) const {
  if (uses_own(n, in, out)) return 1;  // stream-K already spreads a few tiles over every SM
  const int64_t tiles = ((out + kTile - 1) / kTile) * ((n + kTile - 1) / kTile);
  return 2 * tiles <= multiprocessors_ && in % (kMaxSplits * 64) == 0 ? kMaxSplits : 1;
}

}  // namespace ruvdllm::cuda
