#pragma once
// AdamW over a model's flat float parameters (the f32 master weights), its learning-rate
// schedule and global-norm gradient clipping.
#include <cstdint>
#include <span>
#include <vector>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::train {

// Linear warmup to `peak` over `warmup` steps, then cosine decay to `min_lr` at `total`
// steps (and min_lr after). Steps are 0-based: step s < warmup uses peak·(s + 1)/warmup.
struct LrSchedule {
  double peak = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup = 0;
  int64_t total = 1;
  double at(int64_t step) const;
};

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled; never applied to Parameter::decay == false
};

class AdamW {
 public:
  // Keeps references to the parameters' spans; frozen parameters (empty grad) are skipped.
  AdamW(std::vector<Parameter>& parameters, const AdamWOptions& options);

  // √(Σ grad²) over every trainable parameter (accumulated in double, in a fixed order, so
  // it never depends on the thread count).
  double gradient_norm(ThreadPool& pool) const;
  // Scales every gradient by max_norm / norm when norm > max_norm (max_norm <= 0: never).
  // Returns the norm before clipping.
  double clip_gradients(double max_norm, ThreadPool& pool);
  // One update with learning rate lr (PyTorch's AdamW: θ ← θ(1 − lr·wd), then the
  // bias-corrected Adam step). Gradients are left as they are.
  void step(double lr, ThreadPool& pool);

  int64_t steps_done() const { return steps_done_; }
  const AdamWOptions& options() const { return options_; }

  // Saved and restored by checkpoints: one m and one v array per trainable parameter, in the
  // order of the parameter list.
  size_t n_states() const { return slots_.size(); }
  const Parameter& state_parameter(size_t i) const { return *slots_[i].parameter; }
  std::span<float> first_moment(size_t i) { return slots_[i].m; }
  std::span<float> second_moment(size_t i) { return slots_[i].v; }
  void set_steps_done(int64_t steps) { steps_done_ = steps; }

 private:
  struct Slot {
    Parameter* parameter;
    std::vector<float> m;
    std::vector<float> v;
  };
  // Fixed-size pieces of the parameter arrays, the unit of parallel work.
  struct Chunk {
    size_t slot;
    size_t begin;
    size_t end;
  };
  AdamWOptions options_;
  std::vector<Slot> slots_;
  std::vector<Chunk> chunks_;
  int64_t steps_done_ = 0;
};

}  // namespace ruvdllm::train
