// Key and tensor names follow llama.cpp's src/llama-arch.cpp (LLM_KV_*, LLM_TENSOR_*); the
// loader (gguf_loader.cpp) reads exactly these back.
#include "ruvdllm/model/gguf_metadata.h"

#include <fmt/format.h>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"

namespace ruvdllm {

void write_model_metadata(const ModelConfig& c, const std::string& model_name, GgufWriter& writer) {
  auto key = [&c](const char* suffix) { return fmt::format("{}.{}", arch_name(c.arch), suffix); };
  auto set_u32 = [&writer](const std::string& k, int64_t v) {
    writer.set(k, GgufValue::u32(static_cast<uint32_t>(v)));
  };
  writer.set("general.architecture", GgufValue::string(arch_name(c.arch)));
  writer.set("general.name", GgufValue::string(model_name));
  set_u32(key("context_length"), c.context_length);
  set_u32(key("embedding_length"), c.n_embd);
  set_u32(key("block_count"), c.n_layer);
  set_u32(key("feed_forward_length"), c.n_ff);
  set_u32(key("attention.head_count"), c.n_head);
  set_u32(key("attention.head_count_kv"), c.n_head_kv);
  set_u32(key("attention.key_length"), c.head_dim);
  set_u32(key("attention.value_length"), c.head_dim);
  set_u32(key("rope.dimension_count"), c.head_dim);
  writer.set(key("rope.freq_base"), GgufValue::f32(c.rope_base));
  writer.set(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(c.rms_eps));
  writer.set(key("attention.causal"), GgufValue::boolean(c.causal));
  set_u32(key("vocab_size"), c.vocab_size);
  if (c.is_moe()) {
    set_u32(key("expert_count"), c.n_expert);
    set_u32(key("expert_used_count"), c.n_expert_used);
    set_u32(key("expert_feed_forward_length"), c.n_ff_expert);
    writer.set(key("expert_weights_norm"), GgufValue::boolean(c.expert_weights_norm));
  }
  writer.set("diffusion.shift_logits", GgufValue::boolean(c.shift_logits));
  if (c.mask_token_id >= 0) set_u32("tokenizer.ggml.mask_token_id", c.mask_token_id);
  if (c.bos_token_id >= 0) set_u32("tokenizer.ggml.bos_token_id", c.bos_token_id);
  if (c.eos_token_id >= 0) set_u32("tokenizer.ggml.eos_token_id", c.eos_token_id);
}

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& c) {
  const int64_t E = c.n_embd, V = c.vocab_size, D = c.head_dim;
  const int64_t q_dim = c.n_head * D, kv_dim = c.n_head_kv * D;
  std::vector<TensorSpec> specs;
  auto add = [&specs](std::string name, std::vector<int64_t> shape, TensorRole role, int64_t layer) {
    specs.push_back({std::move(name), std::move(shape), role, layer});
  };
  add("token_embd.weight", {E, V}, TensorRole::Matrix, -1);
  add("output_norm.weight", {E}, TensorRole::Norm, -1);
  if (!c.tied_output) add("output.weight", {E, V}, TensorRole::Matrix, -1);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    auto name = [il](const char* suffix) { return fmt::format("blk.{}.{}", il, suffix); };
    add(name("attn_norm.weight"), {E}, TensorRole::Norm, il);
    add(name("attn_q.weight"), {E, q_dim}, TensorRole::Matrix, il);
    add(name("attn_k.weight"), {E, kv_dim}, TensorRole::Matrix, il);
    add(name("attn_v.weight"), {E, kv_dim}, TensorRole::Matrix, il);
    if (c.qkv_bias) {
      add(name("attn_q.bias"), {q_dim}, TensorRole::Bias, il);
      add(name("attn_k.bias"), {kv_dim}, TensorRole::Bias, il);
      add(name("attn_v.bias"), {kv_dim}, TensorRole::Bias, il);
    }
    if (c.qk_norm) {  // per head, over head_dim (llama.cpp's llada-moe.cpp)
      add(name("attn_q_norm.weight"), {D}, TensorRole::Norm, il);
      add(name("attn_k_norm.weight"), {D}, TensorRole::Norm, il);
    }
    add(name("attn_output.weight"), {q_dim, E}, TensorRole::ResidualOutput, il);
    add(name("ffn_norm.weight"), {E}, TensorRole::Norm, il);
    if (c.is_moe()) {
      const int64_t F = c.n_ff_expert, X = c.n_expert;
      add(name("ffn_gate_inp.weight"), {E, X}, TensorRole::Router, il);
      add(name("ffn_gate_exps.weight"), {E, F, X}, TensorRole::Matrix, il);
      add(name("ffn_up_exps.weight"), {E, F, X}, TensorRole::Matrix, il);
      add(name("ffn_down_exps.weight"), {F, E, X}, TensorRole::ResidualOutput, il);
    } else {
      add(name("ffn_gate.weight"), {E, c.n_ff}, TensorRole::Matrix, il);
      add(name("ffn_up.weight"), {E, c.n_ff}, TensorRole::Matrix, il);
      add(name("ffn_down.weight"), {c.n_ff, E}, TensorRole::ResidualOutput, il);
    }
  }
  return specs;
}

TensorType storable_type(TensorType wanted, int64_t row_len) {
  const TypeTraits& t = type_traits(wanted);
  if (row_len % t.block_size == 0) return wanted;
  return t.quantized && row_len % 32 == 0 ? TensorType::Q8_0 : TensorType::F16;
}

TensorType storable_type(TensorType wanted, const TensorSpec& spec) {
  switch (spec.role) {
    case TensorRole::Matrix:
    case TensorRole::ResidualOutput:
      return storable_type(wanted, spec.shape[0]);
    case TensorRole::Router:
    case TensorRole::Norm:
    case TensorRole::Bias:
      break;
  }
  return TensorType::F32;
}

RopeOrder gguf_rope_order(Arch arch) {
  switch (arch) {
    case Arch::Dream:
    case Arch::Qwen2:
    case Arch::LLaDAMoE:
      return RopeOrder::NeoX;
    case Arch::LLaDA:
    case Arch::Llama:
      break;
  }
  return RopeOrder::Normal;
}

}  // namespace ruvdllm
