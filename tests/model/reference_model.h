#pragma once
// An independent float64 transformer that reads a GGUF file through the io layer and the
// reference dequantizer only, and shares no code with src/model: its own metadata parsing,
// RMSNorm, RoPE, softmax attention, SwiGLU and mixture of experts. Slow and simple on purpose.
#include <cstdint>
#include <string>
#include <vector>

namespace ruvdllm::testing {

enum class RefMask { Full, Causal, BlockCausal };

struct RefOptions {
  int64_t n_seq = 1;
  RefMask mask = RefMask::Full;
  int64_t block_len = 0;
  // Deliberate mistakes, so tests can show the comparison notices each part of the model.
  bool flip_rope_order = false;
  bool skip_shift = false;
  bool skip_qk_norm = false;
  bool skip_expert_renorm = false;
  // What matmul.h promises for quantized weights: each activation row is quantized (Q8_0 for
  // Q8_0/Q4_0 weights, Q8_K for K-quants) before the dot products. Off: exact float64 inputs.
  bool quantize_activations = true;
};

class ReferenceModel {
 public:
  explicit ReferenceModel(const std::string& gguf_path);
  // tokens: n_seq sequences of equal length, one after another; returns tokens × vocab logits.
  std::vector<double> forward(const std::vector<int32_t>& tokens, const RefOptions& options) const;
  int64_t vocab_size() const { return vocab_; }

 private:
  struct Matrix {  // out rows of in values
    int64_t in = 0, out = 0;
    std::vector<double> w;
    int activation_type = 0;  // TensorType the inputs are quantized to; 0 (F32) for none
  };
  struct Layer {
    std::vector<double> attn_norm, ffn_norm, bq, bk, bv, q_norm, k_norm;
    Matrix wq, wk, wv, wo, gate, up, down, router;
    std::vector<Matrix> exp_gate, exp_up, exp_down;
  };

  std::vector<double> sequence(const int32_t* tokens, int64_t n, const RefOptions& options) const;
  static std::vector<double> apply(const Matrix& m, const std::vector<double>& x, const RefOptions& options);

  std::string arch_;
  int64_t vocab_ = 0, embd_ = 0, n_layer_ = 0, n_head_ = 0, n_head_kv_ = 0, head_dim_ = 0;
  int64_t n_expert_ = 0, n_expert_used_ = 0;
  bool expert_norm_ = false, neox_ = false, shift_ = false;
  double eps_ = 1e-5, rope_base_ = 10000;
  Matrix embd_matrix_, output_;
  std::vector<double> output_norm_;
  std::vector<Layer> layers_;
};

}  // namespace ruvdllm::testing
