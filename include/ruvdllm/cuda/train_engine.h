#pragma once
// Forward and backward passes of a dense transformer (LLaDA, Dream, Llama, Qwen2) on one CUDA
// device: the same math as train::TrainModel. The engine holds a copy of the weights (f32, and
// bf16 for BF16 products), one batch's activations and the gradients on the device.
//
// Two ways to optimise:
// - on the host (the default): each forward_backward call copies the gradients back (through
//   one pinned staging buffer, layer by layer while the backward pass goes on) and adds them
//   into the caller's arrays; the caller steps and calls upload_values();
// - on the device (enable_device_optimizer): the f32 master weights and the AdamW moments live
//   on the device, gradients accumulate there, adamw_step updates everything in place, and the
//   host copies are refreshed only on request (download_values, get_moments).
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
  bool decay = true;           // the device AdamW applies weight decay (false: norms, biases)
};

enum class MatmulPrecision {
  F32,   // plain f32 arithmetic in every product: slower, used to check the math exactly
  TF32,  // tensor cores on TF32-rounded inputs (10-bit mantissa), f32 accumulation
  BF16,  // the linear layers and the head read bf16 operands from memory: bf16 copies of the
         // weights (refreshed on every upload and optimiser step) and of the activations where
         // they enter a product; f32 accumulation, f32 outputs, f32 weight gradients.
         // Attention's products too, with the stored softmax in bf16 (set_bf16_attention).
};

// One AdamW step with the same arithmetic as train::AdamW (PyTorch's AdamW): t is the 1-based
// step number for the bias corrections; max_norm > 0 clips the global gradient norm first.
struct AdamWStep {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  int64_t t = 1;
  double max_norm = 0;
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
  // In BF16 mode, attention's products read bf16 q, k, v and a softmax stored in bf16 too
  // (default on); off: f32 operands as TF32, the softmax stored in f32.
  void set_bf16_attention(bool on);
  bool bf16_attention() const;

  // Copies every host value to the device (and refreshes the bf16 copy); call after each host
  // optimiser step. With the optimiser on the device the device values are the current ones:
  // upload only host values changed on purpose (a loaded checkpoint).
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

  // ---- The optimiser on the device.
  // Allocates the AdamW moments (zero) and switches forward_backward to device gradients:
  // they accumulate in the engine's buffer until zero_gradients(), and no host gradient array
  // is touched. The trainable tensors are those given with a gradient pointer.
  void enable_device_optimizer();
  bool device_optimizer() const;
  void zero_gradients();
  // Clips and steps every trainable tensor on the device (see AdamWStep); the bf16 weight copy
  // follows. Returns the global gradient norm before clipping (√Σg², in double).
  double adamw_step(const AdamWStep& step);
  // The first and second moments of one trainable tensor, by name (count floats each).
  // Error for an unknown or frozen tensor.
  void set_moments(const std::string& name, const float* m, const float* v);
  void get_moments(const std::string& name, float* m, float* v);
  // Device master weights into every HostTensor::value.
  void download_values();
  // Device gradients into every non-null HostTensor::grad (overwritten), for tests.
  void download_gradients();

  // ---- Data parallelism (multi_gpu.h). The flat gradient buffer on the device, every
  // trainable tensor at its layout offset, and the stream (a cudaStream_t) the engine orders
  // its work on, so a collective can sum the replicas' buffers in place between
  // forward_backward and adamw_step.
  float* device_gradients();
  size_t gradient_count() const;
  void* stream_handle();
  int device_index() const;

  // Device bytes held now (weights, gradients, activations of the largest batch so far).
  size_t device_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvdllm::cuda
