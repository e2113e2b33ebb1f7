#include "ruvdllm/diffusion/schedule.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numbers>
#include <string>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/strings.h"

namespace ruvdllm {
namespace {

// Diffusion-LM's offset keeps √ differentiable at t = 0.
constexpr double kSqrtOffset = 1e-4;


}  // namespace

NoiseSchedule parse_schedule(std::string_view name) {
  const std::string n = ascii_lower(name);
  if (n == "linear" || n == "log-linear" || n == "loglinear") return NoiseSchedule::Linear;
  if (n == "cosine") return NoiseSchedule::Cosine;
  if (n == "sqrt") return NoiseSchedule::Sqrt;
  fail("unknown schedule '{}' (expected linear, cosine or sqrt)", name);
}

const char* schedule_name(NoiseSchedule schedule) {
  switch (schedule) {
    case NoiseSchedule::Linear:
      return "linear";
    case NoiseSchedule::Cosine:
      return "cosine";
    case NoiseSchedule::Sqrt:
      return "sqrt";
  }
  return "unknown";
}

double schedule_alpha(NoiseSchedule schedule, double t, double eps) {
  t = std::clamp(t, 0.0, 1.0);
  double a = 0;
  switch (schedule) {
    case NoiseSchedule::Linear:
      a = 1.0 - (1.0 - eps) * t;
      break;
    case NoiseSchedule::Cosine:
      a = std::cos(std::numbers::pi * t / 2);
      break;
    case NoiseSchedule::Sqrt:
      a = 1.0 - std::sqrt(t + kSqrtOffset);
      break;
  }
  return std::clamp(a, 0.0, 1.0);
}

double timestep(int64_t k, int64_t steps, double eps) {
  if (steps <= 0) return 1.0;
  return 1.0 - (static_cast<double>(k) / static_cast<double>(steps)) * (1.0 - eps);
}

double transfer_probability(NoiseSchedule schedule, int64_t k, int64_t steps, double eps) {
  if (k >= steps - 1) return 1.0;
  const double alpha_t = schedule_alpha(schedule, timestep(k, steps, eps), eps);
  const double alpha_s = schedule_alpha(schedule, timestep(k + 1, steps, eps), eps);
  const double masked_t = 1.0 - alpha_t;
  if (masked_t <= 0) return 1.0;
  return std::clamp((alpha_s - alpha_t) / masked_t, 0.0, 1.0);
}

int64_t timestep_transfer_count(NoiseSchedule schedule, int64_t masked, int64_t k, int64_t steps,
                                double eps) {
  if (masked <= 0) return 0;
  if (k >= steps - 1) return masked;
  const double p = transfer_probability(schedule, k, steps, eps);
  // The tiny slack keeps an exact product such as 4 · 0.25 from flooring to 0 after rounding.
  const auto n = static_cast<int64_t>(std::floor(static_cast<double>(masked) * p + 1e-9));
  return std::clamp<int64_t>(n, 0, masked);
}

std::vector<int64_t> even_transfer_counts(int64_t masks, int64_t steps) {
  if (masks <= 0) return {};
  steps = std::clamp<int64_t>(steps, 1, masks);
  std::vector<int64_t> counts(static_cast<size_t>(steps), masks / steps);
  for (int64_t i = 0; i < masks % steps; ++i) ++counts[static_cast<size_t>(i)];
  return counts;
}

std::vector<BlockPlan> plan_blocks(std::span<const int32_t> canvas, int32_t mask_id,
                                   int64_t region_begin, int64_t block_len, int64_t steps) {
  const auto end = static_cast<int64_t>(canvas.size());
  region_begin = std::clamp<int64_t>(region_begin, 0, end);
  const int64_t region = end - region_begin;
  if (block_len <= 0 || block_len > region) block_len = std::max<int64_t>(region, 1);

  std::vector<BlockPlan> blocks;
  for (int64_t b = region_begin; b < end; b += block_len) {
    BlockPlan block{b, std::min(end, b + block_len), 0, 0};
    for (int64_t p = block.begin; p < block.end; ++p) {
      block.masks += canvas[static_cast<size_t>(p)] == mask_id;
    }
    blocks.push_back(block);
  }

  std::vector<BlockPlan*> active;
  for (auto& block : blocks) {
    if (block.masks > 0) active.push_back(&block);
  }
  if (active.empty()) return blocks;
  const auto n_active = static_cast<int64_t>(active.size());
  steps = std::max(steps, n_active);
  for (int64_t i = 0; i < n_active; ++i) {
    BlockPlan& block = *active[static_cast<size_t>(i)];
    block.steps = std::min(block.masks, steps / n_active + (i < steps % n_active ? 1 : 0));
  }
  // Steps a short block could not use go, one at a time, to the first blocks with room.
  int64_t given = 0;
  for (const BlockPlan* block : active) given += block->steps;
  int64_t spare = steps - given;
  while (spare > 0) {
    bool placed = false;
    for (BlockPlan* block : active) {
      if (spare == 0) break;
      if (block->steps < block->masks) {
        ++block->steps;
        --spare;
        placed = true;
      }
    }
    if (!placed) break;
  }
  return blocks;
}

}  // namespace ruvdllm
