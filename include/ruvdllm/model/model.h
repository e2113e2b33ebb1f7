#pragma once
// A loaded transformer (weights in place in the mapped file) and its forward pass.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ruvdllm/core/tensor.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/config.h"

namespace ruvdllm {

// Keys and values of positions already computed (a prompt prefix, finished blocks).
// Layout per layer: n_tokens × n_head_kv × head_dim floats for K, the same for V.
struct KVCache {
  int64_t n_tokens = 0;
  std::vector<std::vector<float>> k;  // one per layer
  std::vector<std::vector<float>> v;
  // Final-normed hidden state of the last cached position (n_embd floats): a shifted-logits
  // model (Dream) scores the first position after the cache with it.
  std::vector<float> last_hidden;
  // A backend that keeps the keys and values itself (the CUDA engine) leaves k, v and
  // last_hidden empty and stamps the cache with the fill it belongs to (0: none), so that a
  // cache it did not fill is recognised as such.
  uint64_t device_fill = 0;
  void clear();
};

struct ForwardOptions {
  int64_t n_seq = 1;               // tokens hold n_seq sequences of equal length, one after another
  MaskMode mask = MaskMode::Full;  // attention within each sequence
  int64_t block_len = 0;           // for MaskMode::BlockCausal
  // With a cache (n_seq must be 1): this pass's tokens follow the cached ones (positions
  // continue from cache->n_tokens) and attend to them; when append_to_cache is set, this pass's
  // K/V are appended afterwards.
  KVCache* cache = nullptr;
  bool append_to_cache = false;
  // With a cache, instead of append_to_cache: the first extend_rows tokens (at most all of
  // them) extend it. They attend to the cached tokens and to each other only, so their keys,
  // values and logits are those a pass of their own with append_to_cache gives, and they are
  // appended; the remaining tokens attend to all of them and are not kept. A generation's
  // first step of a block appends the finished block before it this way, in the same pass.
  int64_t extend_rows = 0;
  // The rows of each sequence (ascending, relative to this pass) whose logits the caller will
  // read; unset: all. Only these go through the output head (a generation step samples the
  // masked rows of one block, not the whole canvas); the other rows of `logits` hold
  // unspecified values. An empty list computes no logits and writes nothing (a pass that only
  // extends the cache). With float weights the head's GEMM may round a row differently when it
  // has fewer rows (OpenBLAS picks its kernels by size): within f32 rounding of the full pass.
  std::optional<std::span<const int64_t>> logit_rows;
};

// Throws Error("WHO: forward: ...") unless o.extend_rows fits a pass of n_tokens: 0, or 1 to
// n_tokens with a cache and without append_to_cache.
void check_extend_rows(const ForwardOptions& o, int64_t n_tokens, const std::string& who);
// How many of a pass's n_tokens go into o.cache: all with append_to_cache, else extend_rows;
// 0 without a cache.
inline int64_t rows_appended(const ForwardOptions& o, int64_t n_tokens) {
  if (!o.cache) return 0;
  return o.append_to_cache ? n_tokens : o.extend_rows;
}

// The per-layer tensors of a transformer. Absent optional tensors have data == nullptr.
struct LayerWeights {
  TensorView attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm;
  TensorView ffn_norm, ffn_gate, ffn_up, ffn_down;                     // dense FFN
  TensorView ffn_gate_inp, ffn_gate_exps, ffn_up_exps, ffn_down_exps;  // MoE
};
struct ModelWeights {
  TensorView token_embd, output_norm, output;  // output == token_embd when tied
  std::vector<LayerWeights> layers;
};

// Vocabulary strings and special ids as stored in the file (the tokenizer layer builds on it).
struct VocabInfo {
  std::string model;  // tokenizer.ggml.model: "gpt2", "llama", ... ; "hf" for tokenizer.json
  std::string pre;    // tokenizer.ggml.pre
  std::vector<std::string> tokens;
  size_t n_merges = 0;
  std::string chat_template;
};

class Model {
 public:
  // PATH: a .gguf file, a .safetensors file, a *.safetensors.index.json, or a Hugging Face
  // directory (config.json + safetensors [+ tokenizer.json]). Throws Error("PATH: PROBLEM").
  static std::unique_ptr<Model> load(const std::string& path);
  virtual ~Model() = default;

  virtual const ModelConfig& config() const = 0;
  virtual const ModelWeights& weights() const = 0;
  virtual const VocabInfo& vocab() const = 0;
  virtual const std::string& format() const = 0;  // "gguf" or "safetensors"
  virtual std::vector<TensorView> all_tensors() const = 0;
  virtual size_t weight_bytes() const = 0;

  // logits: tokens.size() × vocab_size floats. Dream-style shifted models return logits
  // already shifted, so row i always scores the token at position i. Not re-entrant: scratch
  // buffers belong to the model, so run one forward at a time per model.
  virtual void forward(std::span<const int32_t> tokens, const ForwardOptions& options,
                       float* logits, ThreadPool& pool) = 0;
  // Bytes of activations forward() needs for n tokens (for `info` and memory checks).
  virtual size_t activation_bytes(int64_t n_tokens) const = 0;
};

}  // namespace ruvdllm
