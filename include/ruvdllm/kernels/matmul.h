#pragma once
// Y = X · Wᵀ for weights of any supported type: the one operation that costs most of a step.
#include <cstdint>
#include <span>

#include "ruvdllm/core/tensor.h"
#include "ruvdllm/core/thread_pool.h"

namespace ruvdllm {

// w: a 2-D weight of shape {k, n} (n rows of k elements, GGUF order) in any supported type.
// x: m rows of k floats (row stride k). y: m rows of n floats (row stride n), overwritten.
// Quantized weights: x is quantized per row (Q8_0 or Q8_K) and integer dot products are used.
// F16/BF16/F32 weights: floating-point GEMM, with x rounded to bf16 for BF16 weights where
// bf16_weights_round_activations() says so.
void matmul(const TensorView& w, const float* x, int64_t m, float* y, ThreadPool& pool);

// One input, several weights (q, k and v; gate and up): ys[i] = x · ws[i]ᵀ, each exactly as
// matmul(*ws[i], x, m, ys[i]) computes it. Quantized weights of one type share one
// quantization of x and one pass over the thread pool; anything else runs one matmul each.
void matmul_shared_input(std::span<const TensorView* const> ws, const float* x, int64_t m,
                         std::span<float* const> ys, ThreadPool& pool);

// Same with only rows [n_begin, n_end) of w; y then has row stride (n_end - n_begin).
void matmul_rows(const TensorView& w, int64_t n_begin, int64_t n_end, const float* x,
                 int64_t m, float* y, ThreadPool& pool);

// Reference: dequantizes w and accumulates in double. For tests only.
void matmul_reference(const TensorView& w, const float* x, int64_t m, float* y);

// Reference of what the fast path computes for quantized types: x quantized the same way as
// the fast path (Q8_0 or Q8_K), then exact integer dot products. The fast path must match
// this to float rounding; the difference to matmul_reference is the activation quantization.
void matmul_quantized_reference(const TensorView& w, const float* x, int64_t m, float* y);

// True when BF16 weights run on the AVX-512 BF16 kernel, which rounds x to bf16 (as llama.cpp
// does for BF16 weights), moving each product by up to 2^-9 of itself; false when they are
// converted to f32 (our own f32 kernels or OpenBLAS). Depends on the CPU and on OpenBLAS's core.
bool bf16_weights_round_activations();

// Name of the SIMD target chosen at run time (e.g. "AVX3_DL", "AVX2", "NEON"), for `info`.
const char* simd_target_name();

}  // namespace ruvdllm
