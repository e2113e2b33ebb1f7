// LoRA's names (GGUF projections ↔ PEFT's Llama-style module names) and adapter_config.json.
#include "ruvdllm/train/lora.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ruvdllm/core/error.h"

namespace ruvdllm::train {
namespace {

struct TargetNames {
  LoraTarget target;
  std::string_view gguf, hf, hf_block;  // hf_block: the module holding it in a decoder layer
  std::string_view llada;               // LLaDA's remote-code name, directly in its block
};
constexpr TargetNames kTargets[kLoraTargetCount] = {
    {LoraTarget::AttnQ, "attn_q", "q_proj", "self_attn", "q_proj"},
    {LoraTarget::AttnK, "attn_k", "k_proj", "self_attn", "k_proj"},
    {LoraTarget::AttnV, "attn_v", "v_proj", "self_attn", "v_proj"},
    {LoraTarget::AttnOutput, "attn_output", "o_proj", "self_attn", "attn_out"},
    {LoraTarget::FfnGate, "ffn_gate", "gate_proj", "mlp", "ff_proj"},
    {LoraTarget::FfnUp, "ffn_up", "up_proj", "mlp", "up_proj"},
    {LoraTarget::FfnDown, "ffn_down", "down_proj", "mlp", "ff_out"},
};

const TargetNames& names_of(LoraTarget t) { return kTargets[static_cast<int>(t)]; }

}  // namespace

void LoraOptions::validate() const {
  if (rank < 1 || rank > 65536) fail("LoRA rank {} must be between 1 and 65536", rank);
  if (!std::isfinite(alpha) || alpha == 0) fail("LoRA alpha {} must be a finite nonzero number", alpha);
  if (targets.empty()) fail("LoRA needs at least one target projection");
  std::set<LoraTarget> seen;
  for (LoraTarget t : targets) {
    if (!seen.insert(t).second) fail("LoRA target {} is listed twice", lora_target_gguf_name(t));
  }
}

LoraTarget parse_lora_target(std::string_view name) {
  for (const TargetNames& n : kTargets) {
    if (name == n.gguf || name == n.hf || name == n.llada) return n.target;
  }
  fail("unknown LoRA target '{}' (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down, "
       "or their Hugging Face names q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; "
       "LLaDA's attn_out, ff_proj, ff_out)",
       name);
}

std::string_view lora_target_gguf_name(LoraTarget t) { return names_of(t).gguf; }
std::string_view lora_target_hf_name(LoraTarget t) { return names_of(t).hf; }

std::string lora_tensor_name(int64_t layer, LoraTarget t, bool b_matrix) {
  const TargetNames& n = names_of(t);
  return fmt::format("base_model.model.model.layers.{}.{}.{}.lora_{}.weight", layer, n.hf_block, n.hf,
                     b_matrix ? 'B' : 'A');
}

std::string lora_tensor_name_llada(int64_t layer, LoraTarget t, bool b_matrix) {
  return fmt::format("base_model.model.model.transformer.blocks.{}.{}.lora_{}.weight", layer, names_of(t).llada,
                     b_matrix ? 'B' : 'A');
}

std::string lora_weights_path(const std::string& folder) {
  return (std::filesystem::path(folder) / "adapter_model.safetensors").string();
}

std::string lora_config_path(const std::string& folder) {
  return (std::filesystem::path(folder) / "adapter_config.json").string();
}

LoraAdapterConfig read_lora_config(const std::string& folder) {
  const std::string path = lora_config_path(folder);
  if (!std::filesystem::is_directory(folder)) fail("{}: no such adapter folder", folder);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open (an adapter folder holds adapter_config.json and adapter_model.safetensors)", path);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("{}: not a JSON object", path);

  auto field = [&](const char* key) -> const nlohmann::json& {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) fail("{}: lacks '{}'", path, key);
    return *it;
  };
  // Options PEFT writes as false/null/empty when unused; any other value changes the math.
  auto unused = [&](const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null() || *it == false) return;
    if ((it->is_object() || it->is_array()) && it->empty()) return;
    fail("{}: '{}' = {} is not supported by ruvdllm's LoRA", path, key, it->dump());
  };

  const nlohmann::json& type = field("peft_type");
  if (!type.is_string() || type.get<std::string>() != "LORA") {
    fail("{}: peft_type {} is not \"LORA\"", path, type.dump());
  }
  LoraAdapterConfig out;
  const nlohmann::json& r = field("r");
  if (!r.is_number_integer() || r.get<int64_t>() < 1) fail("{}: r = {} is not a positive integer", path, r.dump());
  out.options.rank = r.get<int64_t>();
  const nlohmann::json& alpha = field("lora_alpha");
  if (!alpha.is_number()) fail("{}: lora_alpha = {} is not a number", path, alpha.dump());
  out.options.alpha = alpha.get<double>();
  const nlohmann::json& modules = field("target_modules");
  if (!modules.is_array()) {
    fail("{}: target_modules = {} must be a list of module names", path, modules.dump());
  }
  out.options.targets.clear();
  for (const nlohmann::json& m : modules) {
    if (!m.is_string()) fail("{}: target_modules entry {} is not a string", path, m.dump());
    try {
      out.options.targets.push_back(parse_lora_target(m.get<std::string>()));
    } catch (const Error& e) {
      fail("{}: target_modules: {}", path, e.what());
    }
  }
  for (const char* key : {"use_dora", "use_rslora", "rank_pattern", "alpha_pattern", "layers_to_transform",
                          "modules_to_save"}) {
    unused(key);
  }
  if (const auto it = j.find("bias"); it != j.end() && !(it->is_string() && *it == "none")) {
    fail("{}: bias = {} is not supported (only \"none\")", path, it->dump());
  }
  if (const auto it = j.find("base_model_name_or_path"); it != j.end() && it->is_string()) {
    out.base_model = it->get<std::string>();
  }
  try {
    out.options.validate();
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  return out;
}

}  // namespace ruvdllm::train
