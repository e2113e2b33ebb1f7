#pragma once
// The training loop: masked-diffusion batches from the data mixture, AdamW with warmup and
// cosine decay, held-out NELBO every eval interval, atomic checkpoints, exact resumption, and
// the exported GGUF at the end.
//
// A run folder (TrainConfig::out_dir) holds:
//   config.toml   the config the run was started with
//   log.jsonl     one JSON object per step: step, loss (nats/token), lr, grad_norm, tokens,
//                 tokens_per_s, elapsed_s, and "heldout" {domain: {bits_per_token, ...}} on
//                 evaluation steps
//   ckpt          the latest checkpoint (checkpoint.h)
//   model.gguf    the trained model, written when the last step is done (a LoRA run writes it
//                 only with output.merge_lora)
//   adapter_model.safetensors, adapter_config.json   a LoRA run's PEFT adapter, rewritten at
//                 every checkpoint and at the end
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ruvdllm/train/eval.h"
#include "ruvdllm/train/train_config.h"

namespace ruvdllm::train {

struct StepStats {
  int64_t step = 0;   // steps completed, 1-based
  int64_t total = 0;
  double loss = 0;    // the step's per-token NELBO estimate, nats
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double masked_fraction = 0;
  int64_t tokens = 0;    // seen so far in the run, resumed steps included
  double tokens_per_s = 0;
  double elapsed_s = 0;  // in this process
  double eta_s = 0;
  std::vector<DomainNelbo> heldout;  // filled on evaluation steps
};

struct RunOptions {
  bool resume = false;  // continue from OUT/ckpt (Error when there is none)
  // Stop once this many steps are done, with a checkpoint but no export (-1: run to the end).
  // Lets tests interrupt a run at an exact step.
  int64_t stop_after = -1;
  // Polled after every step: when set, the step finishes, a checkpoint is written, and the
  // run returns (SIGINT).
  const std::atomic<bool>* stop = nullptr;
  bool progress = true;  // the progress line on stderr
  std::function<void(const StepStats&)> on_step;
};

struct RunResult {
  int64_t steps_done = 0;
  bool finished = false;     // reached config.steps and exported model.gguf
  bool interrupted = false;  // stopped by RunOptions::stop
  std::string checkpoint;    // path of the last checkpoint written
  std::string model_path;    // model.gguf when finished (adapter_model.safetensors for an unmerged LoRA run)
  std::vector<DomainNelbo> heldout;  // the last evaluation
};

// Error (before any step runs) for a bad config, missing data, a checkpoint that belongs to
// another run, or an output folder that already holds a checkpoint when resume is off.
RunResult run_training(const TrainConfig& config, const RunOptions& options);

}  // namespace ruvdllm::train
