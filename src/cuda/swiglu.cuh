#pragma once
// SwiGLU's arithmetic and the gate|up layouts, shared by the element-wise kernel
// (infer_kernels.cu) and WgmmaGemm's epilogue that applies it to a gate|up product's tiles
// (wgmma_work.cuh), so that both write the same bits.
#include <cstdint>

namespace ruvdllm::cuda {

// gate|up with weight rows interleaved in groups of kSwigluGroup (the engine's layout for
// weights kept in blocks): rows [16g, 16g + 8) are the gate rows of outputs [8g, 8g + 8) and
// rows [16g + 8, 16g + 16) their up rows. A wgmma accumulator thread holds outputs r and r + 8
// of the same rows of x, so it holds each output's gate and up values together.
constexpr int kSwigluGroup = 8;

// Host code and kernels both map columns (nvcc builds with --expt-relaxed-constexpr).

// The output column of interleaved gate|up column c (a gate column: c % 16 < 8).
constexpr int64_t swiglu_output(int64_t c) {
  return c / (2 * kSwigluGroup) * kSwigluGroup + c % kSwigluGroup;
}
// The gate column of output o (its up column is kSwigluGroup further).
constexpr int64_t swiglu_gate_column(int64_t o) {
  return o / kSwigluGroup * (2 * kSwigluGroup) + o % kSwigluGroup;
}

#if defined(__CUDACC__)
// silu(g)·u in f32. For a bf16 result the exponential and the division run on the
// special-function unit (relative error ~1e-7, far below bf16's 4e-3): the precise ones made the
// kernel instruction-bound at 8B's shape. The f32 (exact) mode keeps expf and a true division.
template <typename Out>
__device__ inline float silu_times(float g, float u) {
  if constexpr (sizeof(Out) == 2) return __fdividef(g, 1.0f + __expf(-g)) * u;
  return g / (1.0f + expf(-g)) * u;
}
#endif

}  // namespace ruvdllm::cuda
