#pragma once
// Internal to the io layer: the single-file safetensors parser over bytes already in memory.
// SafetensorsFile::open uses it on each mapped shard; the fuzzer calls it on its input.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ruvdllm/core/tensor.h"

namespace ruvdllm::io {

struct SafetensorsContents {
  std::vector<TensorView> tensors;  // in data order; data points into the parsed bytes
  std::map<std::string, std::string> metadata;
};

// `name` starts every error message (usually the path). Throws Error for any malformed input.
SafetensorsContents parse_safetensors(const uint8_t* data, size_t size, const std::string& name);

}  // namespace ruvdllm::io
