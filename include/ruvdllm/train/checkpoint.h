#pragma once
// Training checkpoints: one safetensors file holding every trainable parameter ("model/NAME";
// for a LoRA run just the adapters, the frozen base comes from model.init_from), AdamW's
// moments ("adam_m/NAME", "adam_v/NAME") in f32, and in its metadata the step, AdamW's step
// count and the TOML config of the run. Written as DIR/ckpt.tmp and renamed to DIR/ckpt, so a
// crash at any moment leaves either the previous checkpoint or the new one, never half of one.
// Being safetensors, a checkpoint opens in any tool (safetensors.numpy, ruvdllm info).
#include <cstdint>
#include <map>
#include <string>

#include "ruvdllm/train/optimizer.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::train {

struct CheckpointInfo {
  int64_t step = 0;        // optimizer steps completed
  std::string config_text; // the TOML the run was started with
  std::map<std::string, std::string> metadata;  // everything stored, for messages
};

// The checkpoint file inside a run folder.
std::string checkpoint_path(const std::string& out_dir);

void save_checkpoint(const std::string& out_dir, const TrainModel& model, AdamW& optimizer,
                     int64_t step, const std::string& config_text);

// Reads PATH into the model's values and the optimizer's moments and step count. Error naming
// PATH and the tensor when a parameter is missing, has another shape, or the file is not a
// ruvdllm checkpoint.
CheckpointInfo load_checkpoint(const std::string& path, TrainModel& model, AdamW& optimizer);

}  // namespace ruvdllm::train
