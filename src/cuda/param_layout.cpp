#include "cuda/param_layout.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <utility>

#include "ruvdllm/core/error.h"

namespace ruvdllm::cuda {
namespace {

// Each group starts on a 256-byte boundary, which cuBLAS's fastest kernels want.
constexpr size_t kAlignFloats = 64;

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

}  // namespace

ParamLayout build_param_layout(const ModelConfig& c, std::vector<HostTensor> tensors) {
  c.validate();
  if (c.is_moe()) fail("CUDA training: mixture-of-experts models are not supported");
  if (c.qk_norm) fail("CUDA training: models with q/k norms are not supported");
  const int64_t E = c.n_embd, V = c.vocab_size, F = c.n_ff;
  const int64_t q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim;

  // The expected tensors in layout order; a vector of names per group placed back to back.
  std::vector<std::vector<std::pair<std::string, std::vector<int64_t>>>> groups;
  std::vector<size_t> first_group_of_layer;
  for (int64_t il = 0; il < c.n_layer; ++il) {
    first_group_of_layer.push_back(groups.size());
    auto name = [il](const char* suffix) { return fmt::format("blk.{}.{}", il, suffix); };
    groups.push_back({{name("attn_norm.weight"), {E}}});
    groups.push_back({{name("attn_q.weight"), {E, q_dim}},
                      {name("attn_k.weight"), {E, kv_dim}},
                      {name("attn_v.weight"), {E, kv_dim}}});
    if (c.qkv_bias) {
      groups.push_back({{name("attn_q.bias"), {q_dim}},
                        {name("attn_k.bias"), {kv_dim}},
                        {name("attn_v.bias"), {kv_dim}}});
    }
    groups.push_back({{name("attn_output.weight"), {q_dim, E}}});
    groups.push_back({{name("ffn_norm.weight"), {E}}});
    groups.push_back({{name("ffn_gate.weight"), {E, F}}, {name("ffn_up.weight"), {E, F}}});
    groups.push_back({{name("ffn_down.weight"), {F, E}}});
  }
  first_group_of_layer.push_back(groups.size());
  groups.push_back({{"token_embd.weight", {E, V}}});
  groups.push_back({{"output_norm.weight", {E}}});
  if (!c.tied_output) groups.push_back({{"output.weight", {E, V}}});

  std::map<std::string, HostTensor> given;
  for (HostTensor& t : tensors) {
    const std::string name = t.name;
    if (!t.value) fail("CUDA training: tensor {} has no values", name);
    if (!given.emplace(name, std::move(t)).second)
      fail("CUDA training: tensor {} is given twice", name);
  }

  ParamLayout layout;
  std::map<std::string, size_t> offset_of;
  size_t cursor = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& group = groups[gi];
    cursor = (cursor + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
    if (layout.layer_begin.size() < first_group_of_layer.size() &&
        first_group_of_layer[layout.layer_begin.size()] == gi) {
      layout.layer_begin.push_back(cursor);
    }
    for (const auto& [name, shape] : group) {
      auto it = given.find(name);
      if (it == given.end()) fail("CUDA training: tensor {} is missing", name);
      if (it->second.shape != shape) {
        fail("CUDA training: tensor {} has shape {}, expected {}", name,
             shape_string(it->second.shape), shape_string(shape));
      }
      size_t count = 1;
      for (int64_t d : shape) count *= static_cast<size_t>(d);
      layout.slots.push_back({std::move(it->second), cursor, count});
      given.erase(it);
      offset_of[name] = cursor;
      cursor += count;
    }
  }
  if (!given.empty()) {
    fail("CUDA training: tensor {} is not part of a {} model with this config",
         given.begin()->first, arch_name(c.arch));
  }
  layout.total = (cursor + kAlignFloats - 1) / kAlignFloats * kAlignFloats;

  for (int64_t il = 0; il < c.n_layer; ++il) {
    auto at = [&](const char* suffix) {
      return offset_of.at(fmt::format("blk.{}.{}", il, suffix));
    };
    LayerOffsets l{};
    l.attn_norm = at("attn_norm.weight");
    l.wqkv = at("attn_q.weight");
    l.bqkv = c.qkv_bias ? at("attn_q.bias") : 0;
    l.wo = at("attn_output.weight");
    l.ffn_norm = at("ffn_norm.weight");
    l.wgu = at("ffn_gate.weight");
    l.wdown = at("ffn_down.weight");
    layout.layers.push_back(l);
  }
  layout.token_embd = offset_of.at("token_embd.weight");
  layout.output_norm = offset_of.at("output_norm.weight");
  layout.output = c.tied_output ? layout.token_embd : offset_of.at("output.weight");
  return layout;
}

}  // namespace ruvdllm::cuda
