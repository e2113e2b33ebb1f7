#include "ruvdllm/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "ruvdllm/core/error.h"

namespace ruvdllm::train {
namespace {

// Large enough to amortise a task hand-out, small enough to balance two to sixteen threads.
constexpr size_t kChunkElements = 1 << 16;

}  // namespace

double LrSchedule::at(int64_t step) const {
  if (step < warmup) {
    return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  }
  const int64_t decay_steps = std::max<int64_t>(1, total - warmup);
  const double progress =
      std::clamp(static_cast<double>(step - warmup) / static_cast<double>(decay_steps), 0.0, 1.0);
  return min_lr + 0.5 * (1.0 + std::cos(std::numbers::pi * progress)) * (peak - min_lr);
}

AdamW::AdamW(std::vector<Parameter>& parameters, const AdamWOptions& options) : options_(options) {
  if (!(options.beta1 >= 0 && options.beta1 < 1) || !(options.beta2 >= 0 && options.beta2 < 1)) {
    fail("AdamW betas ({}, {}) must lie in [0, 1)", options.beta1, options.beta2);
  }
  if (!(options.eps > 0)) fail("AdamW epsilon {} must be positive", options.eps);
  if (!(options.weight_decay >= 0)) fail("weight decay {} must not be negative", options.weight_decay);
  for (Parameter& p : parameters) {
    if (p.grad.empty()) continue;
    if (p.grad.size() != p.value.size()) {
      fail("parameter {} has {} values but {} gradients", p.name, p.value.size(), p.grad.size());
    }
    slots_.push_back({&p, std::vector<float>(p.value.size(), 0.0f), std::vector<float>(p.value.size(), 0.0f)});
  }
  for (size_t s = 0; s < slots_.size(); ++s) {
    const size_t n = slots_[s].m.size();
    for (size_t begin = 0; begin < n; begin += kChunkElements) {
      chunks_.push_back({s, begin, std::min(n, begin + kChunkElements)});
    }
  }
}

double AdamW::gradient_norm(ThreadPool& pool) const {
  std::vector<double> partial(chunks_.size(), 0.0);
  pool.parallel_for(static_cast<int64_t>(chunks_.size()), [&](int64_t c, int) {
    const Chunk& chunk = chunks_[static_cast<size_t>(c)];
    const float* g = slots_[chunk.slot].parameter->grad.data();
    double sum = 0;
    for (size_t i = chunk.begin; i < chunk.end; ++i) sum += static_cast<double>(g[i]) * g[i];
    partial[static_cast<size_t>(c)] = sum;
  });
  double total = 0;
  for (double p : partial) total += p;
  return std::sqrt(total);
}

double AdamW::clip_gradients(double max_norm, ThreadPool& pool) {
  const double norm = gradient_norm(pool);
  if (max_norm <= 0 || !(norm > max_norm)) return norm;
  const float scale = static_cast<float>(max_norm / norm);
  pool.parallel_for(static_cast<int64_t>(chunks_.size()), [&](int64_t c, int) {
    const Chunk& chunk = chunks_[static_cast<size_t>(c)];
    float* g = slots_[chunk.slot].parameter->grad.data();
    for (size_t i = chunk.begin; i < chunk.end; ++i) g[i] *= scale;
  });
  return norm;
}

void AdamW::step(double lr, ThreadPool& pool) {
  ++steps_done_;
  const double t = static_cast<double>(steps_done_);
  const float beta1 = static_cast<float>(options_.beta1);
  const float beta2 = static_cast<float>(options_.beta2);
  const float step_size = static_cast<float>(lr / (1.0 - std::pow(options_.beta1, t)));
  const float v_correction = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(options_.beta2, t)));
  const float eps = static_cast<float>(options_.eps);
  pool.parallel_for(static_cast<int64_t>(chunks_.size()), [&](int64_t c, int) {
    const Chunk& chunk = chunks_[static_cast<size_t>(c)];
    Slot& slot = slots_[chunk.slot];
    float* w = slot.parameter->value.data();
    const float* g = slot.parameter->grad.data();
    float* m = slot.m.data();
    float* v = slot.v.data();
    const float keep = slot.parameter->decay ? static_cast<float>(1.0 - lr * options_.weight_decay) : 1.0f;
    for (size_t i = chunk.begin; i < chunk.end; ++i) {
      m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
      v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
      const float denom = std::sqrt(v[i]) * v_correction + eps;
      w[i] = w[i] * keep - step_size * m[i] / denom;
    }
  });
}

}  // namespace ruvdllm::train
