// GGUF models as llama.cpp's convert_hf_to_gguf.py writes them. Key and tensor names follow
// llama.cpp's src/llama-arch.cpp (LLM_KV_*, LLM_TENSOR_*) and the per-model loaders in
// src/models/{llada,llada-moe,dream}.cpp; RoPE order follows llama_model_rope_type (NeoX for
// qwen2, dream and llada-moe; normal for llama and llada, whose converter permutes Q/K).
#include <memory>
#include <string>
#include <unordered_map>

#include "model/model_internal.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"

namespace ruvdllm::model_detail {
namespace {

class MetadataReader {
 public:
  MetadataReader(const GgufFile& file, std::string prefix) : file_(file), prefix_(std::move(prefix)) {}

  std::string key(const char* suffix) const { return prefix_ + "." + suffix; }
  int64_t required_int(const char* suffix) const {
    const std::string k = key(suffix);
    if (!file_.has(k)) fail("{}: missing metadata key {}", file_.path(), k);
    return file_.get_int(k, 0);
  }
  int64_t optional_int(const char* suffix, int64_t fallback) const { return file_.get_int(key(suffix), fallback); }
  double required_float(const char* suffix) const {
    const std::string k = key(suffix);
    if (!file_.has(k)) fail("{}: missing metadata key {}", file_.path(), k);
    return file_.get_float(k, 0);
  }
  double optional_float(const char* suffix, double fallback) const { return file_.get_float(key(suffix), fallback); }
  bool optional_bool(const char* suffix, bool fallback) const { return file_.get_bool(key(suffix), fallback); }

 private:
  const GgufFile& file_;
  std::string prefix_;
};

ModelConfig config_from_gguf(const GgufFile& file) {
  const std::string& path = file.path();
  if (!file.has("general.architecture")) fail("{}: missing metadata key general.architecture", path);
  const std::string arch_string = file.get_string("general.architecture");
  ModelConfig c;
  try {
    c.arch = arch_from_name(arch_string);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  const MetadataReader meta(file, arch_string);

  c.n_embd = meta.required_int("embedding_length");
  c.n_layer = meta.required_int("block_count");
  c.n_head = meta.required_int("attention.head_count");
  c.n_head_kv = meta.optional_int("attention.head_count_kv", c.n_head);
  c.context_length = meta.required_int("context_length");
  c.rms_eps = static_cast<float>(meta.required_float("attention.layer_norm_rms_epsilon"));
  c.rope_base = static_cast<float>(meta.optional_float("rope.freq_base", 10000.0));
  c.head_dim = c.n_head > 0 ? meta.optional_int("attention.key_length", c.n_embd / c.n_head) : 0;
  if (meta.optional_int("attention.value_length", c.head_dim) != c.head_dim) {
    fail("{}: {} differs from the key length {}, which is not supported", path,
         meta.key("attention.value_length"), c.head_dim);
  }
  if (meta.optional_int("rope.dimension_count", c.head_dim) != c.head_dim) {
    fail("{}: {} is {} but the head size is {}; partial rotary embeddings are not supported", path,
         meta.key("rope.dimension_count"), meta.optional_int("rope.dimension_count", 0), c.head_dim);
  }
  if (file.find_tensor("rope_freqs.weight") || file.find_tensor("blk.0.rope_freqs.weight")) {
    fail("{}: per-dimension RoPE frequency factors (rope_freqs.weight) are not supported", path);
  }
  const std::string scaling = file.get_string(meta.key("rope.scaling.type"), "none");
  if (scaling != "none" && !(scaling == "linear" && meta.optional_float("rope.scaling.factor", 1.0) == 1.0)) {
    fail("{}: RoPE scaling '{}' is not supported", path, scaling);
  }

  c.n_expert = meta.optional_int("expert_count", 0);
  c.n_expert_used = meta.optional_int("expert_used_count", 0);
  if (c.arch == Arch::LLaDAMoE && c.n_expert <= 0) fail("{}: missing metadata key {}", path, meta.key("expert_count"));
  if (c.is_moe()) {
    c.n_ff = meta.optional_int("feed_forward_length", 0);
    // llama.cpp's fallback when the expert width is absent (src/models/llada-moe.cpp).
    const int64_t fallback = c.n_expert_used > 0 ? c.n_ff / c.n_expert_used : 0;
    c.n_ff_expert = meta.optional_int("expert_feed_forward_length", fallback);
    c.expert_weights_norm = meta.optional_bool("expert_weights_norm", false);
    const int64_t gating = meta.optional_int("expert_gating_func", 1);
    if (gating != 1) fail("{}: expert gating function {} is not supported (only softmax)", path, gating);
  } else {
    c.n_ff = meta.required_int("feed_forward_length");
  }

  const TensorView* embd = file.find_tensor("token_embd.weight");
  if (file.has(meta.key("vocab_size"))) {
    c.vocab_size = meta.required_int("vocab_size");
  } else if (file.has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(file.find("tokenizer.ggml.tokens")->array_size());
  } else if (embd) {
    c.vocab_size = embd->ne(1);
  }

  const bool neox = c.arch == Arch::Qwen2 || c.arch == Arch::Dream || c.arch == Arch::LLaDAMoE;
  c.rope_order = neox ? RopeOrder::NeoX : RopeOrder::Normal;
  c.qkv_bias = c.arch == Arch::Qwen2 || c.arch == Arch::Dream || file.find_tensor("blk.0.attn_q.bias");
  c.qk_norm = c.arch == Arch::LLaDAMoE || file.find_tensor("blk.0.attn_q_norm.weight");
  c.tied_output = file.find_tensor("output.weight") == nullptr;
  c.causal = meta.optional_bool("attention.causal", c.arch == Arch::Llama || c.arch == Arch::Qwen2);
  // Dream's converter writes no key and llama.cpp's diffusion example then shifts; LLaDA's
  // converters write false. Causal models keep plain next-token rows unless the file says so.
  c.shift_logits = file.get_bool("diffusion.shift_logits", c.arch == Arch::Dream);

  c.mask_token_id = file.get_int("tokenizer.ggml.mask_token_id", -1);
  c.bos_token_id = file.get_int("tokenizer.ggml.bos_token_id", -1);
  c.eos_token_id = file.get_int("tokenizer.ggml.eos_token_id", -1);
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  return c;
}

VocabInfo vocab_from_gguf(const GgufFile& file) {
  VocabInfo v;
  v.model = file.get_string("tokenizer.ggml.model");
  v.pre = file.get_string("tokenizer.ggml.pre");
  if (const GgufValue* tokens = file.find("tokenizer.ggml.tokens")) v.tokens = tokens->as_string_array();
  if (const GgufValue* merges = file.find("tokenizer.ggml.merges")) v.n_merges = merges->array_size();
  v.chat_template = file.get_string("tokenizer.chat_template");
  return v;
}

TensorNaming gguf_naming() {
  TensorNaming n;
  n.token_embd = "token_embd.weight";
  n.output_norm = "output_norm.weight";
  n.output = "output.weight";
  n.attn_norm = "blk.{}.attn_norm.weight";
  n.wq = "blk.{}.attn_q.weight";
  n.wk = "blk.{}.attn_k.weight";
  n.wv = "blk.{}.attn_v.weight";
  n.wo = "blk.{}.attn_output.weight";
  n.bq = "blk.{}.attn_q.bias";
  n.bk = "blk.{}.attn_k.bias";
  n.bv = "blk.{}.attn_v.bias";
  n.q_norm = "blk.{}.attn_q_norm.weight";
  n.k_norm = "blk.{}.attn_k_norm.weight";
  n.ffn_norm = "blk.{}.ffn_norm.weight";
  n.ffn_gate = "blk.{}.ffn_gate.weight";
  n.ffn_up = "blk.{}.ffn_up.weight";
  n.ffn_down = "blk.{}.ffn_down.weight";
  n.ffn_gate_inp = "blk.{}.ffn_gate_inp.weight";
  n.gate_exps = "blk.{}.ffn_gate_exps.weight";
  n.up_exps = "blk.{}.ffn_up_exps.weight";
  n.down_exps = "blk.{}.ffn_down_exps.weight";
  n.experts_stacked = true;
  return n;
}

}  // namespace

LoadedModel load_gguf(const std::string& path) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
  LoadedModel m;
  m.path = path;
  m.format = "gguf";
  m.files = file;
  m.tensors = file->tensors();
  try {
    m.config = config_from_gguf(*file);
    m.vocab = vocab_from_gguf(*file);
  } catch (const Error& e) {
    // Metadata type errors come from the io layer without the file name.
    const std::string what = e.what();
    if (what.rfind(path, 0) == 0) throw;
    fail("{}: {}", path, what);
  }
  std::unordered_map<std::string, const TensorView*> by_name;
  for (const TensorView& t : file->tensors()) by_name.emplace(t.name, &t);
  bind_weights(m, gguf_naming(), [&by_name](const std::string& name) -> const TensorView* {
    const auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  });
  return m;
}

}  // namespace ruvdllm::model_detail
