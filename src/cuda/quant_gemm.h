#pragma once
// Products whose weights stay in GGUF blocks on the device: y = x · wᵀ with w decoded tile by
// tile into shared memory (bf16, bit-identical to dequantize_to_bf16's values) and multiplied
// on the tensor cores (mma.sync m16n8k16, f32 accumulation), so a pass reads each weight's
// 4.5–8.5 bits once instead of writing and re-reading a bf16 copy of it.
//
// This is issue 5's "dequantize into shared-memory tiles that feed tensor-core MMA"; the other
// way (dequantize_to_bf16 into a scratch matrix, then cuBLAS) is kept, and the inference
// engine picks per product by row count (bench_cuda_infer_kernels measures both).
//
// A CTA computes 32, 64 or 128 rows × 64 outputs, walking `in` in stages of 256 values. When
// those tiles would leave the GPU idle (few rows, few outputs), `in` is also cut into 2–8
// slices run by separate CTAs whose f32 partials a second kernel sums in order, so results do
// not depend on timing.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/device_buffer.h"
#include "ruvdllm/core/tensor_type.h"

namespace ruvdllm::cuda {

class QuantGemm {
 public:
  explicit QuantGemm(cudaStream_t stream);

  static constexpr int kStageValues = 256;  // `in` must be a multiple of this
  static constexpr int kMaxSplits = 8;

  // Q4_0, Q8_0, Q4_K, Q5_K or Q6_K weights with rows of `in` values, in a multiple of 256.
  static bool supports(TensorType type, int64_t in);

  // For r < n, c < out: y[r·ldy + c] = Σ_i x[r·ldx + i] · w[c][i] (ldx 0: in), w being `out` rows
  // of `in` values in type's blocks (row stride: row_bytes(type, in)). bf16 output, or f32 output
  // y = product + beta·y. Error for an unsupported type or shape, or an x that is not 16-byte
  // aligned.
  void linear(__nv_bfloat16* y, int64_t ldy, const __nv_bfloat16* x, const void* w, TensorType type,
              int64_t n, int64_t in, int64_t out, int64_t ldx = 0);
  void linear(float* y, int64_t ldy, const __nv_bfloat16* x, const void* w, TensorType type,
              int64_t n, int64_t in, int64_t out, float beta = 0.0f, int64_t ldx = 0);

  // Slices of `in` the product runs in (1, 2, 4 or 8).
  int splits_for(int64_t n, int64_t in, int64_t out) const;
  // Tests and benchmarks: use this many slices where `in` allows (0: choose).
  void force_splits(int splits) { forced_splits_ = splits; }

 private:
  template <typename Y>
  void run(Y* y, int64_t ldy, const __nv_bfloat16* x, const void* w, TensorType type, int64_t n,
           int64_t in, int64_t out, float beta, int64_t ldx);

  cudaStream_t stream_;
  int multiprocessors_ = 0;
  int forced_splits_ = 0;
  DeviceArray<float> partials_;  // fixed size, allocated up front so a graph capture is safe
};

}  // namespace ruvdllm::cuda
