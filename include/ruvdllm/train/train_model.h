#pragma once
// A dense transformer (LLaDA, Dream, Llama, Qwen2) held in float for training: every weight,
// its gradient, and the activations one batch needs for its backward pass. The same math as
// Model::forward (model/), built from the per-layer passes in layers.h.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/config.h"
#include "ruvdllm/train/lora.h"

namespace ruvdllm {
class Model;
class Tokenizer;
}  // namespace ruvdllm

namespace ruvdllm::train {

class AdamW;  // optimizer.h

// How the device multiplies (cuda::MatmulPrecision): plain f32, TF32 tensor cores, or bf16
// operands in memory with f32 accumulation and f32 master weights. The CPU always computes in
// f32.
enum class DevicePrecision { F32, TF32, BF16 };
// "f32", "tf32" or "bf16"; Error naming the accepted values otherwise.
DevicePrecision parse_device_precision(const std::string& name);
const char* device_precision_name(DevicePrecision precision);

// One weight tensor, named and shaped as in GGUF (shape[0] is the innermost dimension).
struct Parameter {
  std::string name;            // "token_embd.weight", "blk.0.attn_q.weight", ...
  std::vector<int64_t> shape;  // GGUF order
  std::span<float> value;
  std::span<float> grad;       // empty when frozen
  bool decay = true;           // AdamW weight decay applies (false for norms and biases)
};

// n_seq sequences of seq_len tokens, one after another: what the model reads (mask tokens
// included), what each position should predict, and the weight of each position's loss
// (0: no loss at that position).
struct Batch {
  int64_t n_seq = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
  std::vector<float> weights;
  void validate(int64_t vocab_size) const;  // Error on inconsistent sizes or ids out of range
};

struct AttentionMode {
  MaskMode mask = MaskMode::Full;
  int64_t block_len = 0;
};

class TrainModel {
 public:
  // Fresh weights: N(0, init_std) for matrices (output projections scaled by 1/sqrt(2·n_layer)),
  // ones for norms, zeros for biases. MoE configs are refused (Error).
  static std::unique_ptr<TrainModel> create(const ModelConfig& config, uint64_t seed,
                                            float init_std = 0.02f);
  // Every weight of a loaded runtime model, dequantized to float.
  static std::unique_ptr<TrainModel> from_model(const Model& model);
  ~TrainModel();

  const ModelConfig& config() const;
  std::vector<Parameter>& parameters();
  const std::vector<Parameter>& parameters() const;
  int64_t n_parameters() const;
  void zero_grad();
  void set_attention(const AttentionMode& mode);  // default: Full (Causal when config().causal)

  // Where the passes below run: "cpu" (the default), "cuda" or "cuda:N". Values, gradients and
  // the optimiser stay in host memory either way; the device keeps a copy of the values, so
  // call values_changed() after changing them (an optimiser step, a checkpoint load). Error
  // when the build has no CUDA backend or the device is missing.
  void set_device(const std::string& device);
  const std::string& device() const;
  std::string device_description() const;  // e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"
  void values_changed();
  // Data parallelism: one replica of the device engine per CUDA device index in `devices` (a
  // single index is set_device("cuda:N")). forward_backward splits the batch's sequences evenly
  // across the replicas (Error when they do not divide) and runs them at once, one host thread
  // per GPU. With the optimiser on the device, device_optimizer_step sums the replicas'
  // gradients with one NCCL all-reduce and steps every replica with the same AdamW update, so
  // they stay bit-identical; forward_loss, forward_logits and sync_from_device use replica 0.
  // Error for an empty list, a duplicate, an index that does not exist, adapters attached, or
  // several devices in a build without CUDA or NCCL.
  void set_devices(const std::vector<int>& devices);
  int64_t n_replicas() const;  // 1 on the CPU or on one GPU
  // Replica `replica`'s device weights, flat in parameters() order, to check that replicas
  // agree. Overwrites the host values, leaving replica 0's there.
  std::vector<float> replica_values(int64_t replica);
  // The device's products (default TF32); kept across set_device calls, unused on the CPU.
  void set_device_precision(DevicePrecision precision);
  DevicePrecision device_precision() const;

  // AdamW on the device. start_device_optimizer(opt) (device not the CPU, else it returns
  // false and changes nothing) moves opt's moments and the values to the device; from then on
  // gradients stay there (zero_grad clears them there; the host gradient arrays are no longer
  // written), device_optimizer_step clips and steps on the device, and the host values and
  // opt's moments are stale until sync_from_device() copies them back (before a checkpoint,
  // an export or anything else that reads them). opt.steps_done() stays current. Resuming is
  // exact: the device state after sync_from_device is the whole optimiser state.
  bool start_device_optimizer(AdamW& optimizer);
  bool device_optimizer_active() const;
  // Clips the global gradient norm to max_norm (<= 0: never) and steps with learning rate lr;
  // returns the norm before clipping, as AdamW::clip_gradients does.
  double device_optimizer_step(double lr, double max_norm);
  void sync_from_device();

  // Returns Σ_i weights[i] · CE_i over the batch and ADDS grad_scale · ∂(that sum)/∂θ into the
  // gradients. Only rows with weight > 0 go through the output head.
  double forward_backward(const Batch& batch, float grad_scale, ThreadPool& pool);
  // The same sum without gradients (evaluation).
  double forward_loss(const Batch& batch, ThreadPool& pool);
  // logits: n_seq·seq_len × vocab floats for every position (shifted for shift_logits models,
  // as Model::forward returns them).
  void forward_logits(std::span<const int32_t> tokens, int64_t n_seq, float* logits,
                      ThreadPool& pool);

  // Writes a GGUF (atomically) with llama.cpp's keys and tensor names for config().arch:
  // 2-D weights in `type`, norms and biases in F32, the tokenizer's vocabulary when given.
  // Model::load reads it back and computes the same logits.
  void save_gguf(const std::string& path, TensorType type, const Tokenizer* tokenizer) const;

  // LoRA (lora.h). add_lora freezes every base weight (their gradient buffer is released, so
  // parameters() lists them with an empty grad) and appends the adapters' A and B under their
  // PEFT names, A ~ Kaiming-uniform (bound 1/sqrt(in), as PEFT), B = 0, so the model computes
  // exactly what the base does until B trains. A base from a quantized GGUF (QLoRA) is held
  // dequantized in float, 4 bytes per weight; gradients flow through those frozen floats.
  // CPU only: Error when the device is not the CPU, or when adapters are already attached.
  void add_lora(const LoraOptions& options);
  bool has_lora() const;
  const LoraOptions& lora_options() const;  // Error without adapters
  int64_t n_trainable() const;              // values with a gradient
  // Writes FOLDER/adapter_model.safetensors and FOLDER/adapter_config.json (each atomically);
  // base_model goes to base_model_name_or_path. Error without adapters.
  void save_lora(const std::string& folder, const std::string& base_model) const;
  // Reads an adapter folder: attaches adapters with its rank, alpha and targets (add_lora) when
  // none are attached, or requires the same ones, and loads every A and B (F32, F16 or BF16).
  // Error naming the file and tensor for anything missing, misshapen or malformed.
  void load_lora(const std::string& folder);
  // Folds W += (alpha/rank)·B·A into every wrapped base weight and detaches the adapters; the
  // base stays frozen. For exporting a merged model with save_gguf.
  void merge_lora();

 private:
  // The passes on the device set by set_device; false when they run on the CPU.
  bool device_forward_backward(const Batch& batch, float grad_scale, bool backward, double* loss);
  bool device_forward_logits(std::span<const int32_t> tokens, int64_t n_seq, float* logits);
  bool device_zero_grad();  // false unless the optimiser is on the device

 public:
  struct Impl;  // public so the implementation files can share it; its header is private

 private:
  explicit TrainModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvdllm::train
