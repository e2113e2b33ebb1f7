#pragma once
// Where each host weight lives in the engine's one device buffer of values (and the matching
// buffer of gradients). Weights that one product reads together sit side by side: q, k and v
// rows form one [q_dim + 2·kv_dim × n_embd] matrix (and their biases one vector), gate and up
// one [2·n_ff × n_embd] matrix, so each of those products is a single GEMM.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ruvdllm/cuda/train_engine.h"
#include "ruvdllm/model/config.h"

namespace ruvdllm::cuda {

struct ParamSlot {
  HostTensor tensor;
  size_t offset = 0;  // floats from the start of the device buffer
  size_t count = 0;
};

struct LayerOffsets {
  size_t attn_norm, wqkv, bqkv, wo, ffn_norm, wgu, wdown;  // bqkv only with qkv_bias
};

struct ParamLayout {
  std::vector<ParamSlot> slots;
  std::vector<LayerOffsets> layers;
  size_t token_embd = 0, output_norm = 0, output = 0;  // output == token_embd when tied
  size_t total = 0;                                    // floats, padding included
  // Layer l's tensors (and only they) lie in [layer_begin[l], layer_begin[l + 1]); the
  // tensors outside the blocks follow from layer_begin[n_layer] = token_embd on.
  std::vector<size_t> layer_begin;
};

// Error naming the tensor for an unknown, duplicated, missing or misshapen tensor, a null value
// pointer, or a config the engine does not handle (MoE, qk_norm).
ParamLayout build_param_layout(const ModelConfig& config, std::vector<HostTensor> tensors);

}  // namespace ruvdllm::cuda
