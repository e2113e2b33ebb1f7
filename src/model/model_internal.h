#pragma once
// Internal to the model layer: what a loader hands to the transformer, and the shared code
// that binds file tensors to layer weights with shape checks.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ruvdllm/core/tensor.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/config.h"
#include "ruvdllm/model/model.h"

namespace ruvdllm::model_detail {

// One 2-D view per expert. GGUF stacks experts in one 3-D tensor; Hugging Face keeps each
// expert's matrices as separate tensors, so the forward pass only ever sees this list.
struct ExpertWeights {
  std::vector<TensorView> gate, up, down;
};

struct LoadedModel {
  std::string path;
  std::string format;  // "gguf" or "safetensors"
  ModelConfig config;
  ModelWeights weights;
  std::vector<ExpertWeights> experts;  // one per layer; empty for dense models
  VocabInfo vocab;
  std::vector<TensorView> tensors;     // every tensor of the file(s), as stored
  std::shared_ptr<const void> files;   // keeps the memory maps alive
  // Small 1-D tensors (norms, biases) stored as F16/BF16 or unaligned, converted to aligned F32.
  std::vector<Tensor> converted;
};

// Where each weight lives in a file. Per-layer names hold "{}" for the layer index; per-expert
// names (Hugging Face) hold "{0}" for the layer and "{1}" for the expert.
struct TensorNaming {
  std::string token_embd, output_norm, output;
  std::string attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm;
  std::string ffn_norm, ffn_gate, ffn_up, ffn_down;
  std::string ffn_gate_inp, gate_exps, up_exps, down_exps;
  bool experts_stacked = true;
};

using TensorLookup = std::function<const TensorView*(const std::string& name)>;

// Fills model.weights and model.experts from model.config; throws Error naming model.path and
// the tensor when one is missing or its shape does not match the config.
void bind_weights(LoadedModel& model, const TensorNaming& naming, const TensorLookup& find);

LoadedModel load_gguf(const std::string& path);
// PATH: a directory, a .safetensors file or an index.json; config.json sits beside it.
LoadedModel load_hf(const std::string& path);

std::unique_ptr<Model> make_transformer(LoadedModel model);

// Splits [0, rows) into a few chunks per thread and runs fn(begin, end) on the pool.
void for_row_chunks(ThreadPool& pool, int64_t rows, int64_t min_rows_per_chunk,
                    const std::function<void(int64_t, int64_t)>& fn);

// A growable, 64-byte aligned float buffer reused across forward passes.
class ScratchBuffer {
 public:
  float* get(size_t n_floats);
  size_t capacity_bytes() const { return tensor_.nbytes(); }

 private:
  Tensor tensor_;
};

// Mixture-of-experts FFN: softmax router, top-k, optional renormalisation, then each expert's
// SwiGLU on the rows routed to it. out (n_tokens × n_embd) is overwritten.
struct MoeScratch {
  ScratchBuffer router, gathered, gate, up, down;
  std::vector<std::vector<std::pair<int64_t, float>>> routed;  // per expert: (token, weight)
};
void moe_ffn(const ModelConfig& config, const LayerWeights& layer, const ExpertWeights& experts,
             const float* x, int64_t n_tokens, float* out, MoeScratch& scratch, ThreadPool& pool);
size_t moe_scratch_floats(const ModelConfig& config, int64_t n_tokens);

}  // namespace ruvdllm::model_detail
