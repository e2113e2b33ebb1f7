#pragma once
// Tensor element types, numbered exactly as GGUF (ggml_type) numbers them, so a GGUF
// tensor-info type field casts straight to TensorType.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ruvdllm {

enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,  // activation-only type of the K-quant dot products; never a weight type in files
  BF16 = 30,
};

struct TypeTraits {
  const char* name;      // lower case, as ggml names it: "f32", "q4_K", ...
  int64_t block_size;    // elements per block (1 for float types)
  size_t block_bytes;    // bytes per block
  bool quantized;
};

// Traits of a supported type. Throws Error for a type id ruvdllm does not support.
const TypeTraits& type_traits(TensorType type);
bool is_supported_type(uint32_t ggml_type);
// Accepts "f32", "F16", "bf16", "q8_0", "Q4_K", "q4_k_m" is NOT accepted (that is a file recipe).
std::optional<TensorType> type_from_name(std::string_view name);
const char* type_name(TensorType type);
// Bytes for n elements in one row. Throws Error when n is not a multiple of the block size.
size_t row_bytes(TensorType type, int64_t n);

}  // namespace ruvdllm
