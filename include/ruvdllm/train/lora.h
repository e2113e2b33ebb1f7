#pragma once
// LoRA adapters on TrainModel's projections and their PEFT names.
//
// A projection y = x·Wᵀ gains y += (alpha/rank)·(x·Aᵀ)·Bᵀ with A [rank × in] and B [out × rank]
// (row-major, as PEFT stores lora_A.weight and lora_B.weight). The base weights are frozen.
//
// PEFT names follow the Llama-style Hugging Face modules (LLaDA's, Dream's/Qwen2's and Llama's
// converted checkpoints all use them):
//   attn_q → self_attn.q_proj   attn_k → self_attn.k_proj   attn_v → self_attn.v_proj
//   attn_output → self_attn.o_proj   ffn_gate → mlp.gate_proj   ffn_up → mlp.up_proj
//   ffn_down → mlp.down_proj
// e.g. "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
//
// An adapter folder holds adapter_model.safetensors (every A and B in F32, Hugging Face
// orientation: Q/K rows in the unpermuted half-rotation order Hugging Face's RoPE reads) and
// adapter_config.json (peft_type "LORA", r, lora_alpha, target_modules, ...).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ruvdllm::train {

// The projections LoRA can wrap, in GGUF naming.
enum class LoraTarget { AttnQ, AttnK, AttnV, AttnOutput, FfnGate, FfnUp, FfnDown };
constexpr int kLoraTargetCount = 7;

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16;
  std::vector<LoraTarget> targets = {LoraTarget::AttnQ, LoraTarget::AttnV};
  uint64_t seed = 1;  // A's initialisation
  double scale() const { return alpha / static_cast<double>(rank); }
  void validate() const;  // Error for rank < 1, a non-finite alpha, no or repeated targets
};

// "attn_q" (GGUF), "q_proj" (Hugging Face), LLaDA's "attn_out"/"ff_proj"/"ff_out" → the
// target; Error naming the accepted names otherwise.
LoraTarget parse_lora_target(std::string_view name);
std::string_view lora_target_gguf_name(LoraTarget t);  // "attn_q"
std::string_view lora_target_hf_name(LoraTarget t);    // "q_proj"
// "base_model.model.model.layers.{layer}.self_attn.q_proj.lora_{A|B}.weight"
std::string lora_tensor_name(int64_t layer, LoraTarget t, bool b_matrix);
// The same tensor under LLaDA's own remote-code module names, as PEFT names adapters trained
// on GSAI-ML's LLaDA: "base_model.model.model.transformer.blocks.{layer}.{q_proj|k_proj|v_proj|
// attn_out|ff_proj|up_proj|ff_out}.lora_{A|B}.weight". load_lora reads either naming.
std::string lora_tensor_name_llada(int64_t layer, LoraTarget t, bool b_matrix);

// The two files of an adapter folder.
std::string lora_weights_path(const std::string& folder);  // FOLDER/adapter_model.safetensors
std::string lora_config_path(const std::string& folder);   // FOLDER/adapter_config.json

// adapter_config.json as read back: Error naming the file for a missing or malformed field,
// a peft_type other than LORA, options this build does not implement (DoRA, rsLoRA, per-layer
// ranks, layers_to_transform) or an unknown target module.
struct LoraAdapterConfig {
  LoraOptions options;
  std::string base_model;  // base_model_name_or_path ("" when null)
};
LoraAdapterConfig read_lora_config(const std::string& folder);

}  // namespace ruvdllm::train
