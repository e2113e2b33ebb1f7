#pragma once
// Internal to TrainModel (src/train/train_model*.cpp): where each weight sits in the flat
// value/gradient buffers, and the activations one batch keeps for its backward pass.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ruvdllm/core/tensor.h"
#include "ruvdllm/train/lora.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::train::detail {

// Offsets (in floats) into the value and gradient buffers; kAbsent for tensors the config
// does not have.
constexpr int64_t kAbsent = -1;
struct LayerSlots {
  int64_t attn_norm = kAbsent, wq = kAbsent, wk = kAbsent, wv = kAbsent;
  int64_t bq = kAbsent, bk = kAbsent, bv = kAbsent, q_norm = kAbsent, k_norm = kAbsent;
  int64_t wo = kAbsent, ffn_norm = kAbsent, gate = kAbsent, up = kAbsent, down = kAbsent;
};
struct ModelSlots {
  int64_t token_embd = kAbsent, output_norm = kAbsent;
  int64_t output = kAbsent;  // == token_embd when the head is tied
  std::vector<LayerSlots> layers;
};

// A float buffer that only grows, so steps of the same shape never allocate.
class Buffer {
 public:
  float* get(size_t n) {
    if (n > data_.size()) data_.resize(n);
    return data_.data();
  }
  float* zeroed(size_t n);

 private:
  std::vector<float> data_;
};

// What the forward pass leaves for the backward pass, per layer.
struct LayerActivations {
  Buffer attn_rstd, attn_in;            // RMSNorm 1/rms and normed input of q/k/v
  Buffer q_raw, k_raw, q_rstd, k_rstd;  // q and k before their norms (qk_norm only)
  Buffer q, k, v;                       // as attention read them (after bias, norm, RoPE)
  Buffer probs, att;                    // softmax saved by attention_forward; wo's input
  Buffer ffn_rstd, ffn_in;              // normed input of gate/up
  Buffer gate, up, hidden;              // hidden = swiglu(gate, up): ffn_down's input
};

struct Activations {
  // 2·n_layer + 1 states of the residual stream: before layer 0's attention, before its FFN,
  // before layer 1's attention, ..., the last layer's output.
  std::vector<Buffer> residual;
  std::vector<LayerActivations> layers;
  Buffer final_rstd, final_out;  // after output_norm
  std::vector<int32_t> positions;
  // The rows that go through the output head, and the final-norm row each is scored from
  // (row − 1 within a sequence for shift_logits models).
  std::vector<int64_t> rows, sources;
  std::vector<int32_t> row_targets;
  std::vector<float> row_weights;
  Buffer head_in, logits, dlogits;
  // Backward scratch shared by every layer.
  Buffer d_residual, d_normed, d_head_in, d_att, dq, dk, dv, dq_raw, dk_raw;
  Buffer d_gate, d_up, d_hidden, norm_partials;
};

// One LoRA adapter on one projection of one layer. A [rank × in] and B [out × rank] sit in
// TrainModel::Impl::lora_values at a_slot/b_slot, their gradients in `grads` at the same
// offsets (with adapters attached, `grads` holds the adapters' gradients only).
struct LoraAdapter {
  LoraTarget target = LoraTarget::AttnQ;
  int64_t layer = 0;
  int64_t in = 0, out = 0;
  int64_t a_slot = kAbsent, b_slot = kAbsent;
  size_t a_param = 0, b_param = 0;  // indices into parameters
  Buffer u;   // x·Aᵀ from the last forward pass (T × rank), for the backward pass
  Buffer du;  // the backward pass's gradient at the rank bottleneck (T × rank)
};

struct LoraState {
  LoraOptions options;
  float scale = 0;
  Tensor values;
  std::vector<LoraAdapter> adapters;
  // adapters index per layer and target, or kAbsent.
  std::vector<std::array<int64_t, kLoraTargetCount>> index;
  LoraAdapter* find(int64_t layer, LoraTarget t) {
    if (index.empty()) return nullptr;
    const int64_t i = index[static_cast<size_t>(layer)][static_cast<size_t>(t)];
    return i == kAbsent ? nullptr : &adapters[static_cast<size_t>(i)];
  }
};

// y (T × out) += scale·(x·Aᵀ)·Bᵀ, keeping x·Aᵀ in adapter.u.
void lora_forward(LoraAdapter& adapter, const LoraState& lora, const float* x, int64_t T, float* y,
                  ThreadPool& pool);
// With dy = ∂/∂y: dA and dB (in grads) += their gradients, dx (T × in) += the delta's ∂/∂x.
void lora_backward(LoraAdapter& adapter, const LoraState& lora, float* grads, const float* dy,
                   const float* x, int64_t T, float* dx, ThreadPool& pool);

}  // namespace ruvdllm::train::detail

namespace ruvdllm::train {

// The passes on a GPU (train_model_device.cpp); null when they run on the CPU.
class DeviceEngine;
// Replicas 1..N-1 and their NCCL communicators, for data parallelism (set_devices); replica
// 0 is Impl::engine.
class DeviceReplicas;

struct TrainModel::Impl {
  Impl();
  ~Impl();
  std::string device = "cpu";
  std::unique_ptr<DeviceEngine> engine;
  std::unique_ptr<DeviceReplicas> replicas;  // null on the CPU or one GPU
  bool device_values_stale = true;
  DevicePrecision device_precision = DevicePrecision::TF32;
  AdamW* device_optimizer = nullptr;  // set while AdamW runs on the device
  ModelConfig config;
  AttentionMode attention;
  Tensor values, grads;  // every parameter, one after another, 64-byte aligned
  std::vector<Parameter> parameters;
  detail::ModelSlots slots;
  detail::Activations acts;

  // Lays the parameters of the config out in GGUF order (all zero) and records where each one
  // sits. Error for an invalid or MoE config.
  void lay_out(const ModelConfig& model_config);

  float* value(int64_t slot) { return slot == detail::kAbsent ? nullptr : values.f32() + slot; }
  const float* value(int64_t slot) const {
    return slot == detail::kAbsent ? nullptr : values.f32() + slot;
  }
  // Null for a frozen base (adapters attached): its gradients are never computed.
  float* grad(int64_t slot) {
    return slot == detail::kAbsent || base_frozen ? nullptr : grads.f32() + slot;
  }
  bool base_frozen = false;
  detail::LoraState lora;  // no adapters while lora.adapters is empty
  // The adapter on (layer, target), or null.
  detail::LoraAdapter* lora_at(int64_t layer, LoraTarget t) { return lora.find(layer, t); }
  float* lora_value(int64_t slot) { return lora.values.f32() + slot; }

  // Every layer over n_seq sequences of seq_len tokens, keeping what the backward pass needs;
  // ends with the final norm's output in acts.final_out.
  void forward(const int32_t* tokens, int64_t n_seq, int64_t seq_len, ThreadPool& pool);
  // Sets acts.rows/sources to the rows with weight > 0 (every row when weights is null),
  // and gathers their final hidden states into acts.head_in. Returns the row count.
  int64_t select_head_rows(const int32_t* targets, const float* weights, int64_t n_seq,
                           int64_t seq_len);
  // Output head and weighted cross entropy on the selected rows; with `backward`, also adds
  // grad_scale · the gradient of every parameter.
  double head_loss(const int32_t* tokens, int64_t n_seq, int64_t seq_len, float grad_scale,
                   bool backward, ThreadPool& pool);
  // logits (rows × vocab) of the selected rows, into out.
  void head_logits(float* out, ThreadPool& pool);

 private:
  void backward(const int32_t* tokens, int64_t n_seq, int64_t seq_len, ThreadPool& pool);
  // The adapter's pass on (layer, target), when that projection has one.
  void lora_forward(int64_t layer, LoraTarget t, const float* x, int64_t T, float* y, ThreadPool& pool) {
    if (detail::LoraAdapter* a = lora_at(layer, t)) detail::lora_forward(*a, lora, x, T, y, pool);
  }
  void lora_backward(int64_t layer, LoraTarget t, const float* dy, const float* x, int64_t T,
                     float* dx, ThreadPool& pool) {
    if (detail::LoraAdapter* a = lora_at(layer, t)) {
      detail::lora_backward(*a, lora, grads.f32(), dy, x, T, dx, pool);
    }
  }
};

}  // namespace ruvdllm::train
