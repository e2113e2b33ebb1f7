#pragma once
// Forward and backward passes of a dense transformer (LLaDA, Dream, Llama, Qwen2) on one CUDA
// device: the same math as train::TrainModel, with the host keeping the f32 master weights and
// the optimiser. The engine holds a copy of the weights, one batch's activations and the
// gradients on the device; each forward_backward call copies the gradients back (through one
// pinned staging buffer, layer by layer while the backward pass goes on) and adds them into
// the caller's arrays.
//
// Plain C++ (no CUDA headers), built only when RUVDLLM_HAVE_CUDA is defined.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ruvdllm/kernels/ops.h"
#include "ruvdllm/model/config.h"

namespace ruvdllm::cuda {

// One weight tensor as the host holds it. Names and shapes as llama.cpp writes them in GGUF:
// token_embd.weight [n_embd, vocab], output_norm.weight, output.weight (absent when the head is
// tied to token_embd), blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
// ffn_gate, ffn_up, ffn_down}.weight and, with qkv_bias, blk.N.attn_{q,k,v}.bias.
struct HostTensor {
  std::string name;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the innermost dimension
  float* value = nullptr;      // read by upload_values()
  float* grad = nullptr;       // forward_backward adds into it; null for a frozen tensor
};

enum class MatmulPrecision {
  F32,   // plain f32 arithmetic in every product: slower, used to check the math exactly
  TF32,  // tensor cores on TF32-rounded inputs (10-bit mantissa), f32 accumulation
  BF16,  // cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF on the same f32 operands. On an H100 with
         // cuBLAS 13.1 it gave bit-identical losses and the same speed as TF32;
         // bf16 operands in memory, 1.3-3x faster per product there, are not implemented yet.
};

class CudaTrainEngine {
 public:
  // Validates that `tensors` holds exactly the weights `config` needs, with GGUF shapes, then
  // allocates the device copies and uploads the values. Error for MoE or qk_norm configs, a
  // missing, unknown, duplicated or misshapen tensor, a bad device index or a CUDA failure.
  CudaTrainEngine(const ModelConfig& config, std::vector<HostTensor> tensors, int device = 0,
                  MatmulPrecision precision = MatmulPrecision::TF32);
  ~CudaTrainEngine();
  CudaTrainEngine(const CudaTrainEngine&) = delete;
  CudaTrainEngine& operator=(const CudaTrainEngine&) = delete;

  const ModelConfig& config() const;
  std::string device_name() const;
  MatmulPrecision precision() const;
  void set_precision(MatmulPrecision precision);

  // Copies every host value to the device; call after each optimiser step.
  void upload_values();

  // n_seq sequences of seq_len tokens, one after another. Returns Σ_i weights[i]·CE_i (CE of
  // the model's distribution at position i against targets[i]; only rows with weight > 0 go
  // through the output head) and ADDS grad_scale · ∂(that sum)/∂θ into every non-null host
  // gradient. Error for inconsistent sizes, ids outside the vocabulary, negative or non-finite
  // weights, more positions than the context, or BlockCausal without block_len > 0.
  double forward_backward(int64_t n_seq, int64_t seq_len, std::span<const int32_t> inputs,
                          std::span<const int32_t> targets, std::span<const float> weights,
                          float grad_scale, MaskMode mask, int64_t block_len = 0);
  // The same sum, without gradients.
  double forward_loss(int64_t n_seq, int64_t seq_len, std::span<const int32_t> inputs,
                      std::span<const int32_t> targets, std::span<const float> weights,
                      MaskMode mask, int64_t block_len = 0);
  // logits: tokens.size() × vocab floats, every position (shifted for shift_logits models, as
  // Model::forward returns them).
  void forward_logits(std::span<const int32_t> tokens, int64_t n_seq, float* logits, MaskMode mask,
                      int64_t block_len = 0);

  // Device bytes held now (weights, gradients, activations of the largest batch so far).
  size_t device_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvdllm::cuda
