#pragma once
// Models with random weights, in the exact GGUF layout llama.cpp writes, for tests and benchmarks.
#include <cstdint>
#include <functional>
#include <string>

#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/model/config.h"

namespace ruvdllm {

// Named shapes: "test" (tiny), "160m", "1b", "8b" (LLaDA-8B), for arch llada or dream
// (and llada-moe with "test"). Error for an unknown name.
ModelConfig shape_config(Arch arch, const std::string& shape);

struct InitOptions {
  TensorType type = TensorType::F16;  // type of 2-D weight matrices; norms stay F32
  uint64_t seed = 1;
  // Standard deviation of the 2-D weights before depth scaling. Tests raise it so attention
  // is sharp and every part of the forward pass moves the logits measurably.
  float init_std = 0.02f;
  bool write_vocab = true;  // a byte-level placeholder vocabulary in tokenizer.ggml.*
  std::function<void(size_t, size_t)> progress;  // (tensors written, total), when set
};
// Writes a random-weight model (GGUF, atomically) with std-0.02-style init scaled for depth.
void write_random_model(const ModelConfig& config, const InitOptions& options,
                        const std::string& path);

}  // namespace ruvdllm
