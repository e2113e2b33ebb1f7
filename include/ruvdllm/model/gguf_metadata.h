#pragma once
// The GGUF layout llama.cpp writes for each supported architecture: metadata keys and the
// canonical list of tensors (names, shapes, roles). Every writer of model files (random
// models, trained models) uses this one description, so they cannot drift apart.
#include <cstdint>
#include <string>
#include <vector>

#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/model/config.h"

namespace ruvdllm {

class GgufWriter;

// What a tensor does, which decides its initialisation and the type it is stored in.
enum class TensorRole {
  Matrix,          // a 2-D (or stacked 3-D) weight read by matmul
  ResidualOutput,  // a Matrix that writes into the residual stream (attn_output, ffn_down)
  Router,          // MoE gate: 2-D but kept in F32, since routing is a discrete choice
  Norm,            // RMSNorm weight, F32
  Bias,            // F32
};

struct TensorSpec {
  std::string name;            // "token_embd.weight", "blk.0.attn_q.weight", ...
  std::vector<int64_t> shape;  // GGUF order (shape[0] innermost)
  TensorRole role;
  int64_t layer = -1;          // -1 for tensors outside the blocks
};

// general.architecture, general.name and the {arch}.* hyper-parameters, diffusion.shift_logits
// and the bos/eos/mask ids of config (those that are set). The config must be valid.
void write_model_metadata(const ModelConfig& config, const std::string& model_name,
                          GgufWriter& writer);

// Every tensor a model of this config has, in the order llama.cpp writes them: token_embd,
// output_norm, output (unless tied), then each block's attention and FFN tensors.
std::vector<TensorSpec> model_tensor_specs(const ModelConfig& config);

// The type a weight with rows of row_len elements is stored in when `wanted` is asked for:
// like llama.cpp's quantizer, rows a block type cannot hold fall back to Q8_0 (rows of 32),
// else F16. Norms and biases are always F32 (see TensorRole).
TensorType storable_type(TensorType wanted, int64_t row_len);
TensorType storable_type(TensorType wanted, const TensorSpec& spec);

// The RoPE pairing llama.cpp applies to an architecture's GGUF weights: NeoX for qwen2, dream
// and llada-moe; Normal for llama and llada, whose converter permutes the Q/K rows to match.
RopeOrder gguf_rope_order(Arch arch);

}  // namespace ruvdllm
