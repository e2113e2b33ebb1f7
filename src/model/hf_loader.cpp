// Hugging Face checkpoints: config.json + safetensors (+ tokenizer.json). Where the names
// come from:
// - LLaDA (GSAI-ML/LLaDA-8B, modeling_llada.py, an OLMo derivative): model.transformer.wte,
//   blocks.N.{attn_norm, q_proj, k_proj, v_proj, attn_out, ff_norm, ff_proj (gate), up_proj,
//   ff_out (down)}, ln_f, model.transformer.ff_out (head). llama.cpp's gguf-py
//   tensor_mapping.py maps ff_proj to ffn_gate and up_proj to ffn_up the same way.
// - Dream, Qwen2, Llama, LLaDA-MoE (transformers' modeling_qwen2.py / modeling_llama.py
//   layout): model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
//   self_attn.{q,k}_norm, post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm,
//   lm_head. LLaDA-MoE (modeling_lladamoe.py): mlp.gate is the router and
//   mlp.experts.E.{gate,up,down}_proj the experts, as llama.cpp's LLaDAMoEModel converter reads.
// RoPE: Hugging Face code rotates halves (NeoX order) on unpermuted Q/K for every one of these
// models. llama.cpp's converter permutes LLaDA's and Llama's Q/K rows so that its normal-order
// RoPE gives the same result, so their GGUF files use RopeOrder::Normal and these use NeoX.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_map>

#include "model/model_internal.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/safetensors.h"

namespace ruvdllm::model_detail {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

class ConfigReader {
 public:
  ConfigReader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) fail("{}: expected a JSON object", path_);
  }

  const json* find(std::initializer_list<const char*> names) const {
    for (const char* name : names) {
      const auto it = j_.find(name);
      if (it != j_.end() && !it->is_null()) return &*it;
    }
    return nullptr;
  }
  int64_t integer(std::initializer_list<const char*> names, std::optional<int64_t> fallback = {}) const {
    const json* v = find(names);
    if (!v) {
      if (fallback) return *fallback;
      fail("{}: missing field {}", path_, *names.begin());
    }
    // Some configs give a list of eos ids; the first is the canonical one.
    if (v->is_array() && !v->empty()) v = &(*v)[0];
    if (!v->is_number_integer()) fail("{}: field {} is not an integer", path_, *names.begin());
    return v->get<int64_t>();
  }
  double number(std::initializer_list<const char*> names, double fallback) const {
    const json* v = find(names);
    if (!v) return fallback;
    if (!v->is_number()) fail("{}: field {} is not a number", path_, *names.begin());
    return v->get<double>();
  }
  bool boolean(std::initializer_list<const char*> names, bool fallback) const {
    const json* v = find(names);
    if (!v) return fallback;
    if (!v->is_boolean()) fail("{}: field {} is not true or false", path_, *names.begin());
    return v->get<bool>();
  }
  std::string string(const char* name) const {
    const json* v = find({name});
    return v && v->is_string() ? v->get<std::string>() : std::string();
  }
  const std::string& path() const { return path_; }

 private:
  const json& j_;
  std::string path_;
};

Arch arch_from_config(const ConfigReader& r) {
  std::string architecture;
  if (const json* a = r.find({"architectures"}); a && a->is_array() && !a->empty() && (*a)[0].is_string()) {
    architecture = (*a)[0].get<std::string>();
  }
  const std::string model_type = r.string("model_type");
  if (architecture == "LLaDAModelLM" || model_type == "llada") return Arch::LLaDA;
  if (architecture == "LLaDAMoEModel" || architecture == "LLaDAMoEModelLM" || model_type == "lladamoe" ||
      model_type == "llada_moe") {
    return Arch::LLaDAMoE;
  }
  if (architecture == "DreamModel" || model_type == "Dream" || model_type == "dream") return Arch::Dream;
  if (architecture == "LlamaForCausalLM" || model_type == "llama") return Arch::Llama;
  if (architecture == "Qwen2ForCausalLM" || model_type == "qwen2") return Arch::Qwen2;
  fail("{}: unknown architecture '{}' (model_type '{}'; supported: LLaDA, LLaDA-MoE, Dream, Llama, Qwen2)", r.path(),
       architecture, model_type);
}

void reject_rope_scaling(const ConfigReader& r) {
  const json* s = r.find({"rope_scaling"});
  if (!s || !s->is_object()) return;
  std::string type;
  if (auto it = s->find("rope_type"); it != s->end() && it->is_string()) type = it->get<std::string>();
  if (auto it = s->find("type"); type.empty() && it != s->end() && it->is_string()) type = it->get<std::string>();
  if (type != "default") fail("{}: rope_scaling '{}' is not supported", r.path(), type);
}

ModelConfig llada_config(const ConfigReader& r) {
  ModelConfig c;
  c.arch = Arch::LLaDA;
  c.n_embd = r.integer({"d_model", "hidden_size"});
  c.n_layer = r.integer({"n_layers", "num_hidden_layers"});
  c.n_head = r.integer({"n_heads", "num_attention_heads"});
  c.n_head_kv = r.integer({"n_kv_heads", "num_key_value_heads"}, c.n_head);
  c.n_ff = r.integer({"mlp_hidden_size", "intermediate_size"});
  // The embedding may be padded past the tokenizer's size; logits cover every row.
  c.vocab_size = r.integer({"embedding_size", "vocab_size"});
  c.context_length = r.integer({"max_sequence_length", "max_position_embeddings"});
  c.rope_base = static_cast<float>(r.number({"rope_theta"}, 10000.0));
  c.rms_eps = static_cast<float>(r.number({"rms_norm_eps"}, 1e-5));
  c.tied_output = r.boolean({"weight_tying", "tie_word_embeddings"}, false);
  c.qkv_bias = r.boolean({"include_qkv_bias"}, false);
  if (r.boolean({"include_bias"}, false)) fail("{}: include_bias (biases on every linear layer) is not supported", r.path());
  if (r.boolean({"attention_layer_norm"}, false)) fail("{}: attention_layer_norm is not supported", r.path());
  if (r.boolean({"alibi"}, false)) fail("{}: ALiBi attention is not supported", r.path());
  if (const std::string act = r.string("activation_type"); !act.empty() && act != "silu") {
    fail("{}: activation_type '{}' is not supported (only silu)", r.path(), act);
  }
  return c;
}

ModelConfig standard_config(const ConfigReader& r, Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.n_embd = r.integer({"hidden_size"});
  c.n_layer = r.integer({"num_hidden_layers"});
  c.n_head = r.integer({"num_attention_heads"});
  c.n_head_kv = r.integer({"num_key_value_heads"}, c.n_head);
  c.head_dim = r.integer({"head_dim"}, c.n_head > 0 ? c.n_embd / c.n_head : 0);
  c.vocab_size = r.integer({"vocab_size"});
  c.context_length = r.integer({"max_position_embeddings"});
  c.rope_base = static_cast<float>(r.number({"rope_theta"}, 10000.0));
  c.rms_eps = static_cast<float>(r.number({"rms_norm_eps"}, 1e-6));
  c.tied_output = r.boolean({"tie_word_embeddings"}, false);
  if (const std::string act = r.string("hidden_act"); !act.empty() && act != "silu") {
    fail("{}: hidden_act '{}' is not supported (only silu)", r.path(), act);
  }
  reject_rope_scaling(r);
  switch (arch) {
    case Arch::Qwen2:
    case Arch::Dream:
      c.qkv_bias = true;  // Qwen2's q/k/v projections always carry a bias
      c.n_ff = r.integer({"intermediate_size"});
      break;
    case Arch::Llama:
      c.qkv_bias = r.boolean({"attention_bias"}, false);
      if (r.boolean({"mlp_bias"}, false)) fail("{}: mlp_bias is not supported", r.path());
      c.n_ff = r.integer({"intermediate_size"});
      break;
    case Arch::LLaDAMoE:
      c.qkv_bias = r.boolean({"attention_bias"}, false);
      c.qk_norm = r.boolean({"qk_layernorm"}, true);
      c.n_ff = r.integer({"intermediate_size"}, 0);
      c.n_expert = r.integer({"num_experts", "num_local_experts"});
      c.n_expert_used = r.integer({"num_experts_per_tok"});
      c.n_ff_expert = r.integer({"expert_intermediate_size", "moe_intermediate_size"});
      c.expert_weights_norm = r.boolean({"norm_topk_prob"}, false);
      if (const json* shared = r.find({"shared_expert_intermediate_size"}); shared && !shared->is_null()) {
        fail("{}: shared experts are not supported", r.path());
      }
      if (const json* freq = r.find({"moe_layer_freq"}); freq && freq->is_array()) {
        for (const json& f : *freq) {
          if (f == 0) fail("{}: dense layers mixed with MoE layers (moe_layer_freq) are not supported", r.path());
        }
      }
      break;
    case Arch::LLaDA:
      break;
  }
  return c;
}

VocabInfo read_tokenizer(const std::string& dir, ModelConfig& c) {
  VocabInfo v;
  const std::string tokenizer_path = (fs::path(dir) / "tokenizer.json").string();
  std::error_code ec;
  if (!fs::exists(tokenizer_path, ec)) return v;
  const json t = read_json(tokenizer_path);
  if (!t.is_object()) fail("{}: expected a JSON object", tokenizer_path);
  v.model = "hf";
  std::unordered_map<int64_t, std::string> by_id;
  auto add = [&](const std::string& token, const json& id) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) fail("{}: token '{}' has no valid id", tokenizer_path, token);
    by_id[id.get<int64_t>()] = token;
  };
  if (auto m = t.find("model"); m != t.end() && m->is_object()) {
    if (auto vocab = m->find("vocab"); vocab != m->end() && vocab->is_object()) {
      for (const auto& [token, id] : vocab->items()) add(token, id);
    }
    if (auto merges = m->find("merges"); merges != m->end() && merges->is_array()) v.n_merges = merges->size();
  }
  if (auto added = t.find("added_tokens"); added != t.end() && added->is_array()) {
    for (const json& a : *added) {
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id")) {
        fail("{}: malformed entry in added_tokens", tokenizer_path);
      }
      add(a["content"].get<std::string>(), a["id"]);
    }
  }
  // Ids past the model's vocabulary could never be fed to it, so they are dropped; gaps get
  // placeholders as llama.cpp's converter writes them.
  v.tokens.resize(static_cast<size_t>(std::max<int64_t>(c.vocab_size, 0)));
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    auto it = by_id.find(static_cast<int64_t>(i));
    v.tokens[i] = it != by_id.end() ? it->second : "[PAD" + std::to_string(i) + "]";
  }
  if (c.mask_token_id < 0) {
    for (const char* mask : {"<|mdm_mask|>", "<|mask|>"}) {
      for (size_t i = 0; i < v.tokens.size() && c.mask_token_id < 0; ++i) {
        if (v.tokens[i] == mask) c.mask_token_id = static_cast<int64_t>(i);
      }
    }
  }
  const std::string tokenizer_config = (fs::path(dir) / "tokenizer_config.json").string();
  if (fs::exists(tokenizer_config, ec)) {
    const json tc = read_json(tokenizer_config);
    if (tc.is_object() && tc.contains("chat_template") && tc["chat_template"].is_string()) {
      v.chat_template = tc["chat_template"].get<std::string>();
    }
  }
  return v;
}

TensorNaming llada_naming() {
  TensorNaming n;
  n.token_embd = "model.transformer.wte.weight";
  n.output_norm = "model.transformer.ln_f.weight";
  n.output = "model.transformer.ff_out.weight";
  const std::string b = "model.transformer.blocks.{}.";
  n.attn_norm = b + "attn_norm.weight";
  n.wq = b + "q_proj.weight";
  n.wk = b + "k_proj.weight";
  n.wv = b + "v_proj.weight";
  n.wo = b + "attn_out.weight";
  n.bq = b + "q_proj.bias";
  n.bk = b + "k_proj.bias";
  n.bv = b + "v_proj.bias";
  n.ffn_norm = b + "ff_norm.weight";
  n.ffn_gate = b + "ff_proj.weight";
  n.ffn_up = b + "up_proj.weight";
  n.ffn_down = b + "ff_out.weight";
  return n;
}

TensorNaming standard_naming() {
  TensorNaming n;
  n.token_embd = "model.embed_tokens.weight";
  n.output_norm = "model.norm.weight";
  n.output = "lm_head.weight";
  const std::string b = "model.layers.{}.";
  n.attn_norm = b + "input_layernorm.weight";
  n.wq = b + "self_attn.q_proj.weight";
  n.wk = b + "self_attn.k_proj.weight";
  n.wv = b + "self_attn.v_proj.weight";
  n.wo = b + "self_attn.o_proj.weight";
  n.bq = b + "self_attn.q_proj.bias";
  n.bk = b + "self_attn.k_proj.bias";
  n.bv = b + "self_attn.v_proj.bias";
  n.q_norm = b + "self_attn.q_norm.weight";
  n.k_norm = b + "self_attn.k_norm.weight";
  n.ffn_norm = b + "post_attention_layernorm.weight";
  n.ffn_gate = b + "mlp.gate_proj.weight";
  n.ffn_up = b + "mlp.up_proj.weight";
  n.ffn_down = b + "mlp.down_proj.weight";
  n.ffn_gate_inp = b + "mlp.gate.weight";
  n.gate_exps = "model.layers.{0}.mlp.experts.{1}.gate_proj.weight";
  n.up_exps = "model.layers.{0}.mlp.experts.{1}.up_proj.weight";
  n.down_exps = "model.layers.{0}.mlp.experts.{1}.down_proj.weight";
  n.experts_stacked = false;
  return n;
}

}  // namespace

LoadedModel load_hf(const std::string& path) {
  std::error_code ec;
  const std::string dir = fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
  const std::string config_path = (fs::path(dir.empty() ? "." : dir) / "config.json").string();
  if (!fs::exists(config_path, ec)) fail("{}: no config.json beside the weights (looked for {})", path, config_path);
  const json config_json = read_json(config_path);
  const ConfigReader r(config_json, config_path);

  LoadedModel m;
  m.path = path;
  m.format = "safetensors";
  const Arch arch = arch_from_config(r);
  m.config = arch == Arch::LLaDA ? llada_config(r) : standard_config(r, arch);
  ModelConfig& c = m.config;
  if (c.head_dim == 0 && c.n_head > 0) c.head_dim = c.n_embd / c.n_head;
  c.rope_order = RopeOrder::NeoX;
  c.causal = arch == Arch::Llama || arch == Arch::Qwen2;
  c.shift_logits = arch == Arch::Dream;
  c.mask_token_id = r.integer({"mask_token_id"}, -1);
  c.bos_token_id = r.integer({"bos_token_id"}, -1);
  c.eos_token_id = r.integer({"eos_token_id"}, -1);
  m.vocab = read_tokenizer(dir.empty() ? "." : dir, c);
  // llama.cpp's converter hard-codes LLaDA-MoE's mask id; its config.json does not carry it.
  constexpr int64_t kLLaDAMoEMask = 156895;
  if (arch == Arch::LLaDAMoE && c.mask_token_id < 0 && kLLaDAMoEMask < c.vocab_size) c.mask_token_id = kLLaDAMoEMask;
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", config_path, e.what());
  }

  auto files = std::make_shared<const SafetensorsFile>(SafetensorsFile::open(path));
  m.files = files;
  m.tensors = files->tensors();
  // Tied checkpoints may still ship a head; Hugging Face ignores it, and so do we.
  std::unordered_map<std::string, const TensorView*> by_name;
  for (const TensorView& t : files->tensors()) by_name.emplace(t.name, &t);
  const TensorNaming naming = arch == Arch::LLaDA ? llada_naming() : standard_naming();
  bind_weights(m, naming, [&by_name](const std::string& name) -> const TensorView* {
    const auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  });
  return m;
}

}  // namespace ruvdllm::model_detail
