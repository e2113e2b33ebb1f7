#include "ruvdllm/model/config.h"

#include <array>
#include <utility>

#include "ruvdllm/core/error.h"

namespace ruvdllm {
namespace {

constexpr std::array<std::pair<Arch, const char*>, 5> kArchNames{{
    {Arch::LLaDA, "llada"},
    {Arch::LLaDAMoE, "llada-moe"},
    {Arch::Dream, "dream"},
    {Arch::Llama, "llama"},
    {Arch::Qwen2, "qwen2"},
}};

}  // namespace

const char* arch_name(Arch arch) {
  for (const auto& [a, name] : kArchNames) {
    if (a == arch) return name;
  }
  return "unknown";
}

Arch arch_from_name(const std::string& name) {
  for (const auto& [a, n] : kArchNames) {
    if (name == n) return a;
  }
  fail("unknown architecture '{}' (supported: llada, llada-moe, dream, llama, qwen2)", name);
}

void ModelConfig::validate() const {
  auto positive = [](int64_t value, const char* field) {
    if (value <= 0) fail("model config: {} must be positive (is {})", field, value);
  };
  positive(vocab_size, "vocab_size");
  positive(n_embd, "n_embd");
  positive(n_layer, "n_layer");
  positive(n_head, "n_head");
  positive(n_head_kv, "n_head_kv");
  positive(head_dim, "head_dim");
  positive(context_length, "context_length");
  if (n_head % n_head_kv != 0) {
    fail("model config: n_head {} is not a multiple of n_head_kv {}", n_head, n_head_kv);
  }
  if (head_dim % 2 != 0) fail("model config: head_dim {} must be even for RoPE", head_dim);
  if (!(rope_base > 0.0f)) fail("model config: rope_base must be positive (is {})", rope_base);
  if (!(rms_eps > 0.0f)) fail("model config: rms_eps must be positive (is {})", rms_eps);
  if (is_moe()) {
    positive(n_expert_used, "n_expert_used");
    positive(n_ff_expert, "n_ff_expert");
    if (n_expert_used > n_expert) {
      fail("model config: n_expert_used {} exceeds n_expert {}", n_expert_used, n_expert);
    }
  } else {
    if (n_expert_used != 0) fail("model config: n_expert_used {} without experts", n_expert_used);
    positive(n_ff, "n_ff");
  }
  auto token = [&](int64_t id, const char* field) {
    if (id < -1 || id >= vocab_size) {
      fail("model config: {} {} is outside the vocabulary of {}", field, id, vocab_size);
    }
  };
  token(mask_token_id, "mask_token_id");
  token(bos_token_id, "bos_token_id");
  token(eos_token_id, "eos_token_id");
}

}  // namespace ruvdllm
