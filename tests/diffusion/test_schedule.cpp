#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/rng.h"
#include "ruvdllm/diffusion/schedule.h"

namespace ruvdllm {
namespace {

constexpr NoiseSchedule kSchedules[] = {NoiseSchedule::Linear, NoiseSchedule::Cosine,
                                        NoiseSchedule::Sqrt};

TEST(Schedule, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_schedule("linear"), NoiseSchedule::Linear);
  EXPECT_EQ(parse_schedule("Log-Linear"), NoiseSchedule::Linear);
  EXPECT_EQ(parse_schedule("cosine"), NoiseSchedule::Cosine);
  EXPECT_EQ(parse_schedule("SQRT"), NoiseSchedule::Sqrt);
  EXPECT_THROW(parse_schedule("quadratic"), Error);
  EXPECT_THROW(parse_schedule(""), Error);
  for (NoiseSchedule s : kSchedules) EXPECT_EQ(parse_schedule(schedule_name(s)), s);
}

TEST(Schedule, AlphaFormulasAndEndpoints) {
  const double eps = 1e-3;
  EXPECT_DOUBLE_EQ(schedule_alpha(NoiseSchedule::Linear, 0.0, eps), 1.0);
  EXPECT_DOUBLE_EQ(schedule_alpha(NoiseSchedule::Linear, 1.0, eps), eps);
  EXPECT_DOUBLE_EQ(schedule_alpha(NoiseSchedule::Linear, 0.25, eps), 1 - 0.999 * 0.25);
  EXPECT_NEAR(schedule_alpha(NoiseSchedule::Cosine, 0.5, eps), std::cos(M_PI / 4), 1e-12);
  EXPECT_NEAR(schedule_alpha(NoiseSchedule::Cosine, 1.0, eps), 0.0, 1e-12);
  EXPECT_NEAR(schedule_alpha(NoiseSchedule::Sqrt, 0.36, eps), 1 - std::sqrt(0.36 + 1e-4), 1e-12);
  EXPECT_EQ(schedule_alpha(NoiseSchedule::Sqrt, 1.0, eps), 0.0);  // clamped, never negative
  for (NoiseSchedule s : kSchedules) {
    double previous = 2;
    for (int i = 0; i <= 100; ++i) {
      const double a = schedule_alpha(s, i / 100.0, eps);
      EXPECT_GE(a, 0.0);
      EXPECT_LE(a, 1.0);
      EXPECT_LE(a, previous) << schedule_name(s) << " t=" << i / 100.0;  // unmasking over time
      previous = a;
    }
  }
}

TEST(Schedule, DreamGridAndTransferProbability) {
  EXPECT_DOUBLE_EQ(timestep(0, 8, 1e-3), 1.0);
  EXPECT_DOUBLE_EQ(timestep(8, 8, 1e-3), 1e-3);
  EXPECT_DOUBLE_EQ(timestep(4, 8, 0.0), 0.5);
  // Linear: Dream's 1 − s/t.
  for (int k = 0; k < 7; ++k) {
    const double t = timestep(k, 8, 1e-3), s = timestep(k + 1, 8, 1e-3);
    EXPECT_NEAR(transfer_probability(NoiseSchedule::Linear, k, 8, 1e-3), 1 - s / t, 1e-12);
  }
  for (NoiseSchedule sch : kSchedules) {
    EXPECT_EQ(transfer_probability(sch, 7, 8, 1e-3), 1.0);  // the last step takes everything
    for (int k = 0; k < 7; ++k) {
      const double p = transfer_probability(sch, k, 8, 1e-3);
      EXPECT_GE(p, 0.0);
      EXPECT_LE(p, 1.0);
    }
  }
  // cos(πt/2) falls with slope π/2 at t = 1, so its first step unmasks more than linear's:
  // α(7/8) = cos(7π/16) ≈ 0.195 against 0.125.
  EXPECT_NEAR(transfer_probability(NoiseSchedule::Cosine, 0, 8, 0.0), std::cos(7 * M_PI / 16),
              1e-12);
  EXPECT_GT(transfer_probability(NoiseSchedule::Cosine, 0, 8, 0.0),
            transfer_probability(NoiseSchedule::Linear, 0, 8, 0.0));
}

TEST(Schedule, DreamCountsByHand) {
  // 10 masks, 4 steps, eps 0: t = 1, .75, .5, .25, 0.
  // k=0: floor(10·.25)=2; k=1: floor(8·(1/3))=2; k=2: floor(6·.5)=3; k=3: the remaining 3.
  int64_t masked = 10;
  const int64_t want[] = {2, 2, 3, 3};
  for (int k = 0; k < 4; ++k) {
    const int64_t n = timestep_transfer_count(NoiseSchedule::Linear, masked, k, 4, 0.0);
    EXPECT_EQ(n, want[k]) << "step " << k;
    masked -= n;
  }
  EXPECT_EQ(masked, 0);
}

TEST(Schedule, EvenCountsFollowLlada) {
  EXPECT_EQ(even_transfer_counts(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(even_transfer_counts(32, 32), std::vector<int64_t>(32, 1));
  EXPECT_EQ(even_transfer_counts(3, 5), (std::vector<int64_t>{1, 1, 1}));  // steps clamped
  EXPECT_EQ(even_transfer_counts(7, 0), (std::vector<int64_t>{7}));
  EXPECT_TRUE(even_transfer_counts(0, 4).empty());
}

TEST(Schedule, EveryScheduleEndsFullyUnmasked) {
  for (NoiseSchedule sch : kSchedules) {
    for (int64_t masks : {1, 2, 7, 32, 100, 257}) {
      for (int64_t steps : {1, 2, 3, 8, 31, 64, 300}) {
        int64_t masked = masks;
        int64_t committed = 0;
        for (int64_t k = 0; k < steps; ++k) {
          const int64_t n = timestep_transfer_count(sch, masked, k, steps, 1e-3);
          ASSERT_GE(n, 0);
          ASSERT_LE(n, masked);
          masked -= n;
          committed += n;
        }
        EXPECT_EQ(masked, 0) << schedule_name(sch) << " masks=" << masks << " steps=" << steps;
        EXPECT_EQ(committed, masks);
        const auto even = even_transfer_counts(masks, steps);
        EXPECT_EQ(std::accumulate(even.begin(), even.end(), int64_t{0}), masks);
        for (int64_t c : even) EXPECT_GE(c, 1);
      }
    }
  }
}

TEST(Schedule, MdlmAncestralEndsFullyUnmaskedAndMatchesTheExpectedRate) {
  // Each masked position moves with probability (α(s) − α(t))/(1 − α(t)).
  for (NoiseSchedule sch : kSchedules) {
    const int64_t n = 4000, steps = 8;
    std::vector<bool> masked(n, true);
    for (int64_t k = 0; k < steps; ++k) {
      const double p = transfer_probability(sch, k, steps, 1e-3);
      int64_t before = 0, moved = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (!masked[static_cast<size_t>(i)]) continue;
        ++before;
        if (random_uniform(random_key(3, k, i, RandomStream::Transfer)) < p || p >= 1) {
          masked[static_cast<size_t>(i)] = false;
          ++moved;
        }
      }
      if (before > 200 && p < 1) {
        const double sd = std::sqrt(before * p * (1 - p));
        EXPECT_NEAR(static_cast<double>(moved), before * p, 5 * sd + 1)
            << schedule_name(sch) << " step " << k;
      }
    }
    for (bool m : masked) ASSERT_FALSE(m);
  }
}

std::vector<int32_t> canvas_with(int64_t prompt, int64_t gen, int32_t mask) {
  std::vector<int32_t> c(static_cast<size_t>(prompt), 5);
  c.resize(static_cast<size_t>(prompt + gen), mask);
  return c;
}

TEST(Schedule, BlocksCoverTheAnswerOnlyWithStepsSpread) {
  const int32_t mask = 99;
  auto canvas = canvas_with(5, 8, mask);
  auto blocks = plan_blocks(canvas, mask, 5, 4, 4);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].begin, 5);
  EXPECT_EQ(blocks[0].end, 9);
  EXPECT_EQ(blocks[1].begin, 9);
  EXPECT_EQ(blocks[1].end, 13);
  EXPECT_EQ(blocks[0].steps, 2);
  EXPECT_EQ(blocks[1].steps, 2);

  // 10 generated, blocks of 4 (the last one short), 7 steps: 3, 2, 2.
  canvas = canvas_with(3, 10, mask);
  blocks = plan_blocks(canvas, mask, 3, 4, 7);
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[2].end - blocks[2].begin, 2);
  EXPECT_EQ(blocks[0].steps, 3);
  EXPECT_EQ(blocks[1].steps, 2);
  EXPECT_EQ(blocks[2].steps, 2);

  // 10 steps over blocks of 8 and 2 masks: the short block can use 2, the rest go to block 0.
  canvas = canvas_with(0, 10, mask);
  blocks = plan_blocks(canvas, mask, 0, 8, 10);
  EXPECT_EQ(blocks[0].steps, 8);
  EXPECT_EQ(blocks[1].steps, 2);

  // Fewer steps than blocks: every block still gets one.
  blocks = plan_blocks(canvas, mask, 0, 2, 1);
  ASSERT_EQ(blocks.size(), 5u);
  for (const auto& b : blocks) EXPECT_EQ(b.steps, 1);

  // block_len 0: one block over the whole answer, steps clamped to its masks.
  blocks = plan_blocks(canvas, mask, 0, 0, 64);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].steps, 10);
}

TEST(Schedule, BlocksSkipTextInsideAnInfillingRegion) {
  const int32_t mask = 99;
  // text, 3 masks, 4 text, 2 masks, text
  std::vector<int32_t> canvas = {1, 2, mask, mask, mask, 3, 4, 5, 6, mask, mask, 7};
  auto blocks = plan_blocks(canvas, mask, 2, 3, 6);
  ASSERT_EQ(blocks.size(), 4u);  // [2,5) [5,8) [8,11) [11,12)
  EXPECT_EQ(blocks[0].masks, 3);
  EXPECT_EQ(blocks[1].masks, 0);
  EXPECT_EQ(blocks[1].steps, 0);
  EXPECT_EQ(blocks[2].masks, 2);
  EXPECT_EQ(blocks[3].steps, 0);
  EXPECT_EQ(blocks[0].steps + blocks[2].steps, 5);  // 6 steps, but only 5 masks
}

TEST(Schedule, BlockPlanGrid) {
  const int32_t mask = 7;
  for (int64_t gen : {1, 2, 5, 16, 33, 100}) {
    for (int64_t block_len : {0, 1, 3, 4, 7, 16, 32, 200}) {
      for (int64_t steps : {1, 2, 3, 5, 8, 13, 64, 250}) {
        const auto canvas = canvas_with(3, gen, mask);
        const auto blocks = plan_blocks(canvas, mask, 3, block_len, steps);
        int64_t covered = 3, total_steps = 0, total_masks = 0, min_steps = 1 << 30, max_steps = 0;
        for (const auto& b : blocks) {
          EXPECT_EQ(b.begin, covered);
          EXPECT_GT(b.end, b.begin);
          covered = b.end;
          EXPECT_GE(b.steps, 1);
          EXPECT_LE(b.steps, b.masks);
          total_steps += b.steps;
          total_masks += b.masks;
          min_steps = std::min(min_steps, b.steps);
          max_steps = std::max(max_steps, b.steps);
        }
        EXPECT_EQ(covered, 3 + gen);
        EXPECT_EQ(total_masks, gen);
        const auto n_blocks = static_cast<int64_t>(blocks.size());
        EXPECT_EQ(total_steps, std::clamp(steps, n_blocks, gen))
            << "gen=" << gen << " block_len=" << block_len << " steps=" << steps;
        // Steps are spread evenly whenever no block is too short to take its share.
        if (gen % std::max<int64_t>(block_len, 1) == 0 && steps <= gen) {
          EXPECT_LE(max_steps - min_steps, 1) << "gen=" << gen << " block_len=" << block_len;
        }
      }
    }
  }
}

}  // namespace
}  // namespace ruvdllm
