#pragma once
// How many masked positions to commit at each step: noise schedules α(t), the Dream-style
// timestep grid, LLaDA's semi-autoregressive blocks and MDLM's ancestral transfer probability.
//
// Time runs from t = 1 (all masked) to t = 0 (all unmasked); α(t) is the probability that a
// position is unmasked at time t, so 1 − α(t) is the mask probability (spec §6 A.2).
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ruvdllm {

enum class NoiseSchedule {
  Linear,  // α(t) = 1 − (1 − ε)t  (MDLM's log-linear schedule; LLaDA and Dream)
  Cosine,  // α(t) = cos(πt/2)
  Sqrt,    // α(t) = 1 − √(t + 1e-4)  (Diffusion-LM)
};

// "linear" (also "log-linear"), "cosine", "sqrt". Error for any other name.
NoiseSchedule parse_schedule(std::string_view name);
const char* schedule_name(NoiseSchedule schedule);

// α(t) for t in [0, 1], clamped to [0, 1].
double schedule_alpha(NoiseSchedule schedule, double t, double eps);

// Dream's grid t_k = 1 − (k/N)(1 − ε) for k = 0..N: t_0 = 1, t_N = ε.
double timestep(int64_t k, int64_t steps, double eps);

// Probability that a position still masked at step k (of N, 0-based) is unmasked by it:
// (α(s) − α(t)) / (1 − α(t)) with t = t_k, s = t_{k+1}. Exactly 1 at the last step, so the
// canvas always ends fully unmasked. For Linear this is Dream's 1 − s/t.
double transfer_probability(NoiseSchedule schedule, int64_t k, int64_t steps, double eps);

// Dream's count: floor(masked · transfer_probability), and every masked position at the last
// step. May be 0 on early steps (Dream behaves the same; the step still runs).
int64_t timestep_transfer_count(NoiseSchedule schedule, int64_t masked, int64_t k, int64_t steps,
                                double eps);

// LLaDA's get_num_transfer_tokens: step i of `steps` commits floor(m/S) + [i < m mod S].
// steps is clamped to [1, masks] so every step commits at least one token (masks = 0 gives {}).
std::vector<int64_t> even_transfer_counts(int64_t masks, int64_t steps);

// One block of the semi-autoregressive plan: positions [begin, end) of the canvas, the masks
// they held when planned and the steps they get.
struct BlockPlan {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t masks = 0;
  int64_t steps = 0;
};

// Splits [region_begin, canvas end) into blocks of block_len positions (block_len <= 0: one
// block; the last block may be shorter) and `steps` over the blocks that hold masks: equal
// shares, the remainder to the first blocks. The region is the generated span only, never the
// prompt, so blocks line up with the answer. Never fails:
//  - a block never gets more steps than it has masks; the excess goes to blocks that can use it,
//    so the total is min(steps, total masks) when steps allow;
//  - every block holding masks gets at least one step, so the total is raised to the number of
//    such blocks when steps is smaller;
//  - blocks without masks (e.g. plain text in an infilling prompt) get no steps.
std::vector<BlockPlan> plan_blocks(std::span<const int32_t> canvas, int32_t mask_id,
                                   int64_t region_begin, int64_t block_len, int64_t steps);

}  // namespace ruvdllm
