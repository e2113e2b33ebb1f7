#pragma once
// Everything a training run needs, read from a TOML file. Every key is checked: an unknown
// key, a wrong type or an out-of-range value is an Error naming the file and the key.
// configs/default-model.toml documents every key.
//
// Relative paths are taken relative to the working directory (runs start from the project
// root), never to the config file.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/diffusion/schedule.h"
#include "ruvdllm/model/config.h"
#include "ruvdllm/train/lora.h"
#include "ruvdllm/train/objective.h"
#include "ruvdllm/train/optimizer.h"

namespace ruvdllm::train {

struct DataSpec {
  std::string name;  // the domain ("prose", "code"), reported per domain in logs and eval
  std::string path;  // a TokenShards folder or .tok file; a .jsonl file with data.format "sft"
  double weight = 1.0;  // mixture weight (training data only)
};

struct ModelSpec {
  // A model to start from (any format Model::load reads); empty: fresh weights of `shape`.
  std::string init_from;
  // Fresh weights: arch and dimensions from [model]; vocab_size and the special ids default
  // to the tokenizer's.
  ModelConfig shape;
  float init_std = 0.02f;
  // tokenizer.json or GGUF whose vocabulary the exported model carries; empty: init_from's
  // own vocabulary when it has one, else none (tests with synthetic ids).
  std::string tokenizer;
};

struct TrainConfig {
  std::string source;  // the file it came from, for messages
  std::string text;    // the TOML as written, stored in checkpoints

  ModelSpec model;
  std::vector<DataSpec> train_data;
  std::vector<DataSpec> heldout_data;
  int64_t seq_len = 512;
  // data.format: "pretrain" (packed token shards) or "sft" (prompt/response JSONL, sft_data.h;
  // needs a tokenizer: model.tokenizer or init_from's vocabulary).
  bool sft = false;

  int64_t steps = 1000;
  int64_t batch_size = 8;  // sequences per micro-batch
  int64_t grad_accum = 1;  // micro-batches per optimizer step
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 100;
  AdamWOptions adamw;
  double grad_clip = 1.0;  // global norm; 0 turns clipping off
  uint64_t seed = 1;
  int threads = 0;  // 0: one per physical core
  std::string device = "cpu";  // where the passes run: cpu, cuda or cuda:N
  // train.devices (--devices 0,1): data-parallel training on these CUDA devices, one replica
  // each, the batch_size sequences of each micro-batch split evenly across them (TrainModel::
  // set_devices). Empty: `device` alone. When set, `device` is "cuda:" + the first index.
  std::vector<int> devices;
  // train.precision: the device's products, "bf16", "tf32" or "f32"; empty: bf16 on a CUDA
  // device, f32 on the CPU. The CPU computes in f32 only: "bf16" or "tf32" with device cpu is
  // an Error (run_training), rather than a silently different run. With a CUDA device AdamW
  // runs there too (TrainModel::start_device_optimizer).
  std::string precision;

  NoiseSchedule schedule = NoiseSchedule::Linear;
  double t_eps = 1e-3;
  TimeSampling t_sampling = TimeSampling::Stratified;

  int64_t eval_interval = 0;  // steps between held-out evaluations (0: only at the end)
  int64_t eval_samples = 4;   // Monte-Carlo draws of t per window
  int64_t eval_windows = 16;  // windows per held-out domain

  int64_t checkpoint_interval = 0;  // steps between checkpoints (0: only at the end)

  std::string out_dir = "runs/train";
  TensorType export_type = TensorType::F16;  // of model.gguf's matrices: F16 or Q8_0

  // [lora]: train adapters on the frozen model.init_from (required) instead of every weight;
  // the run folder then holds the PEFT adapter (lora.h) instead of model.gguf. CPU only.
  // lora.seed is train.seed.
  std::optional<LoraOptions> lora;
  bool merge_lora = false;  // output.merge_lora: also write model.gguf with the adapters merged

  int64_t sequences_per_step() const { return batch_size * grad_accum; }
  int64_t tokens_per_step() const { return sequences_per_step() * seq_len; }
  LrSchedule lr_schedule() const { return {lr, min_lr, warmup_steps, steps}; }
};

// "0,1" → {0, 1}. Error for an empty list, an entry that is not a non-negative integer, or a
// duplicate.
std::vector<int> parse_device_list(std::string_view text);
// The command line's --device and --devices over the config's train.device/train.devices
// (empty device / no devices: not given). Error for both at once (device cpu included), a
// bad list (parse_device_list), or several devices with [lora].
void apply_device_options(TrainConfig& config, const std::string& device,
                          const std::optional<std::string>& devices);

// `source` names the text in messages ("CONFIG.toml: train.lr must be a number").
TrainConfig parse_train_config(std::string_view toml_text, const std::string& source);
TrainConfig load_train_config(const std::string& path);

}  // namespace ruvdllm::train
