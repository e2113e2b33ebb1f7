#include "ruvdllm/core/tensor_type.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/strings.h"

namespace ruvdllm {
namespace {

struct Entry {
  TensorType type;
  TypeTraits traits;
};

constexpr std::array<Entry, 9> kTypes{{
    {TensorType::F32, {"f32", 1, 4, false}},
    {TensorType::F16, {"f16", 1, 2, false}},
    {TensorType::Q4_0, {"q4_0", 32, 18, true}},
    {TensorType::Q8_0, {"q8_0", 32, 34, true}},
    {TensorType::Q4_K, {"q4_K", 256, 144, true}},
    {TensorType::Q5_K, {"q5_K", 256, 176, true}},
    {TensorType::Q6_K, {"q6_K", 256, 210, true}},
    {TensorType::Q8_K, {"q8_K", 256, 292, true}},
    {TensorType::BF16, {"bf16", 1, 2, false}},
}};

const Entry* lookup(uint32_t id) {
  for (const auto& e : kTypes) {
    if (static_cast<uint32_t>(e.type) == id) return &e;
  }
  return nullptr;
}

}  // namespace

const TypeTraits& type_traits(TensorType type) {
  const Entry* e = lookup(static_cast<uint32_t>(type));
  if (!e) fail("unsupported tensor type {}", static_cast<uint32_t>(type));
  return e->traits;
}

bool is_supported_type(uint32_t ggml_type) { return lookup(ggml_type) != nullptr; }

std::optional<TensorType> type_from_name(std::string_view name) {
  const std::string lower = ascii_lower(name);
  for (const auto& e : kTypes) {
    if (ascii_lower(e.traits.name) == lower) return e.type;
  }
  return std::nullopt;
}

const char* type_name(TensorType type) {
  const Entry* e = lookup(static_cast<uint32_t>(type));
  return e ? e->traits.name : "unknown";
}

size_t row_bytes(TensorType type, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (n < 0 || n % t.block_size != 0) {
    fail("row of {} elements is not a multiple of {}'s block size {}", n, t.name, t.block_size);
  }
  return static_cast<size_t>(n / t.block_size) * t.block_bytes;
}

}  // namespace ruvdllm
