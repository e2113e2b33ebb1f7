#pragma once
// Hyper-parameters of a supported architecture, read from GGUF metadata (llama.cpp's keys)
// or from a Hugging Face config.json.
#include <cstdint>
#include <string>

#include "ruvdllm/kernels/ops.h"

namespace ruvdllm {

enum class Arch { LLaDA, LLaDAMoE, Dream, Llama, Qwen2 };
const char* arch_name(Arch arch);  // GGUF general.architecture value: "llada", "llada-moe", ...
Arch arch_from_name(const std::string& name);  // Error for an unknown architecture

struct ModelConfig {
  Arch arch = Arch::LLaDA;
  int64_t vocab_size = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;  // usually n_embd / n_head
  int64_t n_ff = 0;      // dense FFN width
  int64_t context_length = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  RopeOrder rope_order = RopeOrder::Normal;
  bool qkv_bias = false;      // Dream / Qwen2
  bool qk_norm = false;       // LLaDA-MoE: RMSNorm on q and k
  bool tied_output = false;   // output head shares token_embd
  bool shift_logits = false;  // Dream: logits of position i predict token i+1 (diffusion.shift_logits)
  bool causal = false;        // llama / qwen2 default attention
  // Mixture of experts (LLaDA-MoE): softmax gating, top-k of n_expert experts.
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_expert = 0;
  bool expert_weights_norm = false;  // renormalise the top-k gate weights to sum to 1
  // Special tokens (-1 when absent).
  int64_t mask_token_id = -1;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;

  bool is_moe() const { return n_expert > 0; }
  // Throws Error naming the field when a value is missing, zero or inconsistent.
  void validate() const;
};

}  // namespace ruvdllm
