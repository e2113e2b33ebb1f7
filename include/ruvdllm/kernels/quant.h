#pragma once
// Block layouts byte-identical to GGUF's, and scalar reference (de)quantization.
// Scalar code here is the definition every SIMD path is tested against.
#include <cstddef>
#include <cstdint>
#include <functional>

#include "ruvdllm/core/tensor.h"

namespace ruvdllm {

constexpr int kQK0 = 32;   // elements per Q4_0 / Q8_0 block
constexpr int kQKK = 256;  // elements per K-quant super-block
constexpr int kKScaleBytes = 12;

struct BlockQ4_0 {
  uint16_t d;           // f16 scale
  uint8_t qs[kQK0 / 2];  // element j in the low nibble of qs[j], element j+16 in the high nibble
};
struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[kQK0];
};
struct BlockQ4_K {
  uint16_t d;     // f16 super-block scale for the 6-bit scales
  uint16_t dmin;  // f16 super-block scale for the 6-bit mins
  uint8_t scales[kKScaleBytes];  // 8 sub-block scales and mins, 6 bits each, packed
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQKK / 8];  // fifth bits
  uint8_t qs[kQKK / 2];  // low four bits
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];  // low four bits
  uint8_t qh[kQKK / 4];  // high two bits
  int8_t scales[kQKK / 16];
  uint16_t d;
};
// Activations for K-quant dot products: one float scale, int8 values, and the sum of each
// group of 16 values (lets the min terms of Q4_K/Q5_K be applied once per group).
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// Scalar reference conversions of one row of n elements (n a multiple of the block size;
// Error otherwise). Every TensorType is accepted, float types included.
void quantize_row_reference(TensorType type, const float* x, void* out, int64_t n);
void dequantize_row_reference(TensorType type, const void* in, float* y, int64_t n);

// Fast (SIMD-dispatched where it pays) versions with the same results within float rounding.
void quantize_row(TensorType type, const float* x, void* out, int64_t n);
void dequantize_row(TensorType type, const void* in, float* y, int64_t n);

// Converts a whole tensor to another type, row by row on the pool, reporting progress as
// (rows done, rows total). The result has the same name and shape.
class ThreadPool;
Tensor convert_tensor(const TensorView& src, TensorType dst_type, ThreadPool& pool,
                      const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ruvdllm
