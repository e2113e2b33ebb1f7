#pragma once
// Internal to the io layer: the GGUF parser over bytes already in memory. GgufFile::open uses
// it on the mapped file; the fuzzer calls it on its input directly.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ruvdllm/io/gguf.h"

namespace ruvdllm::io {

struct GgufContents {
  uint32_t version = 3;
  size_t alignment = 32;
  size_t data_offset = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::vector<TensorView> tensors;  // data points into the parsed bytes
};

// `name` starts every error message (usually the path). Throws Error for any malformed input.
GgufContents parse_gguf(const uint8_t* data, size_t size, const std::string& name);

}  // namespace ruvdllm::io
