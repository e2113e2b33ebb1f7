#pragma once
// Random weights in a type's GGUF block layout for the CUDA benchmarks: random bytes with a
// fixed finite f16 scale in every block (the kernels' speed does not depend on the values, and
// quantizing hundreds of MB of floats on the host would take longer than the benchmark).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "ruvdllm/core/half.h"
#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::cuda {

inline std::vector<uint8_t> random_blocks(TensorType type, int64_t rows, int64_t cols,
                                          uint64_t seed) {
  const TypeTraits& t = type_traits(type);
  const size_t bytes = row_bytes(type, cols) * static_cast<size_t>(rows);
  std::vector<uint8_t> data(bytes);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < bytes; i += 8) {
    const uint64_t r = rng();
    std::memcpy(data.data() + i, &r, std::min<size_t>(8, bytes - i));
  }
  const uint16_t scale = f32_to_f16(0.01f);
  size_t scale_at = 0;  // offset of the block's f16 scale(s)
  if (type == TensorType::Q6_K) scale_at = offsetof(BlockQ6_K, d);
  if (t.quantized) {
    for (size_t b = 0; b < bytes; b += t.block_bytes) {
      std::memcpy(data.data() + b + scale_at, &scale, 2);
      if (type == TensorType::Q4_K || type == TensorType::Q5_K)
        std::memcpy(data.data() + b + 2, &scale, 2);
    }
  } else if (type == TensorType::F16) {
    for (size_t i = 0; i < bytes; i += 2) std::memcpy(data.data() + i, &scale, 2);
  }
  return data;
}

}  // namespace ruvdllm::cuda
