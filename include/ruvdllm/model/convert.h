#pragma once
// Writing a loaded model (GGUF or a Hugging Face checkpoint) out as a GGUF file in llama.cpp's
// layout: its keys, tensor names and Q/K row order, so llama.cpp and ruvdllm both read it.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "ruvdllm/core/tensor_type.h"

namespace ruvdllm {

class GgufWriter;
class Model;
class ThreadPool;

struct ConvertOptions {
  std::string model_name;  // general.name; empty: derived from the architecture
  // Adds keys after the model's own (the CLI puts the tokenizer in here, since the model layer
  // does not know the text layer). May override any key.
  std::function<void(GgufWriter&)> extra_metadata;
  // (tensors written, total), after each tensor.
  std::function<void(size_t, size_t)> progress;
  // Called once per matrix whose rows the requested type cannot hold, with the type used.
  std::function<void(const std::string& tensor, TensorType used)> on_fallback;
};

// Weight matrices are stored as `type` (or the nearest type their rows fit, see
// storable_type); norms, biases and the MoE router stay F32. Tensors are converted one at a
// time while the file is written, so memory stays near one tensor's size beyond the mapped
// input. Writes atomically; throws Error naming PATH or the tensor on failure.
void write_gguf(const Model& model, const std::string& path, TensorType type, ThreadPool& pool,
                const ConvertOptions& options = {});

// llama.cpp's general.file_type number for a file whose matrices are mostly `type`, so other
// GGUF tools label it correctly.
uint32_t gguf_file_type(TensorType type);

}  // namespace ruvdllm
