// The masked-diffusion objective: what gets masked, with which weights, and that every draw is
// reproducible from (seed, step, sequence index).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/schedule.h"
#include "ruvdllm/train/objective.h"

namespace ruvdllm::train {
namespace {

constexpr int32_t kMask = 99;

CleanBatch make_clean(int64_t n_seq, int64_t seq_len) {
  CleanBatch c;
  c.n_seq = n_seq;
  c.seq_len = seq_len;
  c.tokens.resize(static_cast<size_t>(n_seq * seq_len));
  for (size_t i = 0; i < c.tokens.size(); ++i) c.tokens[i] = static_cast<int32_t>((i * 7 + 3) % 90);
  return c;
}

ObjectiveOptions options(NoiseSchedule schedule = NoiseSchedule::Linear,
                         TimeSampling sampling = TimeSampling::Stratified) {
  ObjectiveOptions o;
  o.schedule = schedule;
  o.sampling = sampling;
  o.mask_id = kMask;
  o.seed = 1234;
  return o;
}

TEST(Objective, MaskingRateFollowsTheSchedule) {
  for (NoiseSchedule schedule : {NoiseSchedule::Linear, NoiseSchedule::Cosine, NoiseSchedule::Sqrt}) {
    const int64_t n_seq = 64, L = 1024;
    const ObjectiveOptions o = options(schedule);
    const DiffusionBatch b = make_diffusion_batch(make_clean(n_seq, L), o, 5, 0, n_seq);
    // Per sequence, the masked count is Binomial(L, 1 − α(t)): check each within 5σ (+1 for the
    // forced mask) and the batch total within 4σ.
    double expected_total = 0, variance_total = 0;
    int64_t masked_total = 0;
    for (int64_t s = 0; s < n_seq; ++s) {
      const double p = 1.0 - schedule_alpha(schedule, b.t[s], o.eps);
      int64_t masked = 0;
      for (int64_t i = 0; i < L; ++i) masked += b.batch.inputs[s * L + i] == kMask;
      const double mean = p * L, sd = std::sqrt(L * p * (1 - p));
      EXPECT_LE(std::fabs(masked - mean), 5 * sd + 1.0) << "schedule " << schedule_name(schedule) << " t " << b.t[s];
      expected_total += mean;
      variance_total += L * p * (1 - p);
      masked_total += masked;
    }
    EXPECT_LE(std::fabs(masked_total - expected_total), 4 * std::sqrt(variance_total) + n_seq * 0.05)
        << schedule_name(schedule);
    EXPECT_EQ(b.n_masked, masked_total);
  }
}

TEST(Objective, LinearWeightsAreExactlyInverseTimeOverTokenCount) {
  const int64_t n_seq = 6, L = 37;
  const CleanBatch clean = make_clean(n_seq, L);
  const DiffusionBatch b = make_diffusion_batch(clean, options(), 11, 0, n_seq);
  const double N = static_cast<double>(n_seq * L);
  EXPECT_EQ(b.n_scored, n_seq * L);
  int64_t masked = 0;
  for (int64_t s = 0; s < n_seq; ++s) {
    EXPECT_GE(b.t[s], 1e-3);
    EXPECT_LT(b.t[s], 1.0);
    const float expected = static_cast<float>(1.0 / b.t[s] / N);
    for (int64_t i = 0; i < L; ++i) {
      const size_t p = static_cast<size_t>(s * L + i);
      EXPECT_EQ(b.batch.targets[p], clean.tokens[p]);
      if (b.batch.inputs[p] == kMask) {
        EXPECT_EQ(b.batch.weights[p], expected);
        ++masked;
      } else {
        EXPECT_EQ(b.batch.inputs[p], clean.tokens[p]);
        EXPECT_EQ(b.batch.weights[p], 0.0f);
      }
    }
  }
  EXPECT_EQ(masked, b.n_masked);
  EXPECT_GT(masked, 0);
}

TEST(Objective, LossWeightIsMinusAlphaPrimeOverOneMinusAlpha) {
  for (NoiseSchedule schedule : {NoiseSchedule::Linear, NoiseSchedule::Cosine, NoiseSchedule::Sqrt}) {
    for (double t : {0.01, 0.2, 0.5, 0.77, 0.95}) {
      const double h = 1e-6, eps = 1e-3;
      const double derivative =
          (schedule_alpha(schedule, t + h, eps) - schedule_alpha(schedule, t - h, eps)) / (2 * h);
      const double expected = -derivative / (1.0 - schedule_alpha(schedule, t, eps));
      EXPECT_NEAR(loss_weight(schedule, t), expected, 1e-5 * expected) << schedule_name(schedule) << " t " << t;
    }
  }
  EXPECT_DOUBLE_EQ(loss_weight(NoiseSchedule::Linear, 0.25), 4.0);
}

TEST(Objective, SftNeverMasksThePromptAndPaddingCarriesNoLoss) {
  const int64_t n_seq = 40, L = 24;
  CleanBatch clean = make_clean(n_seq, L);
  for (int64_t s = 0; s < n_seq; ++s) {
    clean.prompt_len.push_back(static_cast<int32_t>(s % 10));
    clean.length.push_back(static_cast<int32_t>(L - s % 5));
  }
  const DiffusionBatch b = make_diffusion_batch(clean, options(), 3, 0, n_seq);
  int64_t scored = 0;
  for (int64_t s = 0; s < n_seq; ++s) scored += clean.length[s] - clean.prompt_len[s];
  EXPECT_EQ(b.n_scored, scored);
  for (int64_t s = 0; s < n_seq; ++s) {
    int64_t masked_answer = 0;
    for (int64_t i = 0; i < L; ++i) {
      const size_t p = static_cast<size_t>(s * L + i);
      const bool outside = i < clean.prompt_len[s] || i >= clean.length[s];
      if (outside) {
        EXPECT_EQ(b.batch.inputs[p], clean.tokens[p]) << "seq " << s << " pos " << i;
        EXPECT_EQ(b.batch.weights[p], 0.0f);
      } else if (b.batch.inputs[p] == kMask) {
        ++masked_answer;
        EXPECT_EQ(b.batch.weights[p], static_cast<float>(1.0 / b.t[s] / static_cast<double>(scored)));
      }
    }
    EXPECT_GE(masked_answer, 1) << "every answer gets at least one mask";
  }
}

TEST(Objective, AtLeastOneMaskPerSequenceOnlyWhenAsked) {
  const int64_t n_seq = 400, L = 3;
  ObjectiveOptions o = options(NoiseSchedule::Linear, TimeSampling::Stratified);
  const DiffusionBatch forced = make_diffusion_batch(make_clean(n_seq, L), o, 0, 0, n_seq);
  o.at_least_one_mask = false;
  const DiffusionBatch free = make_diffusion_batch(make_clean(n_seq, L), o, 0, 0, n_seq);
  int64_t empty_forced = 0, empty_free = 0;
  for (int64_t s = 0; s < n_seq; ++s) {
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < L; ++i) {
      a += forced.batch.inputs[s * L + i] == kMask;
      b += free.batch.inputs[s * L + i] == kMask;
    }
    empty_forced += a == 0;
    empty_free += b == 0;
  }
  EXPECT_EQ(empty_forced, 0);
  EXPECT_GT(empty_free, 20);  // low-t strata leave many 3-token sequences unmasked
}

TEST(Objective, TimeSamplingModes) {
  const int64_t n = 1000;
  ObjectiveOptions o = options(NoiseSchedule::Linear, TimeSampling::Stratified);
  for (int64_t i = 0; i < n; ++i) {
    const double u = (draw_time(o, 9, i, n) - o.eps) / (1 - o.eps);
    EXPECT_GE(u, static_cast<double>(i) / n - 1e-12);
    EXPECT_LT(u, static_cast<double>(i + 1) / n + 1e-12);
  }
  o.sampling = TimeSampling::Antithetic;
  for (int64_t i = 0; i < n; i += 2) {
    EXPECT_NEAR(draw_time(o, 9, i, n) + draw_time(o, 9, i + 1, n), 1.0 + o.eps, 1e-12);
  }
  o.sampling = TimeSampling::Independent;
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += draw_time(o, 9, i, n);
  mean /= n;
  EXPECT_NEAR(mean, (1 + o.eps) / 2, 4 * 0.2887 / std::sqrt(static_cast<double>(n)));
  // Independent draws do not depend on the batch size; another step draws anew.
  EXPECT_EQ(draw_time(o, 9, 3, n), draw_time(o, 9, 3, 10));
  EXPECT_NE(draw_time(o, 9, 3, n), draw_time(o, 10, 3, n));
  EXPECT_EQ(parse_time_sampling("Antithetic"), TimeSampling::Antithetic);
  EXPECT_THROW(parse_time_sampling("sobol"), Error);
}

TEST(Objective, MicroBatchesDrawWhatTheFullBatchDraws) {
  const int64_t n_seq = 8, L = 50;
  const CleanBatch full = make_clean(n_seq, L);
  const DiffusionBatch whole = make_diffusion_batch(full, options(), 17, 0, n_seq);
  for (int64_t half = 0; half < 2; ++half) {
    CleanBatch part;
    part.n_seq = n_seq / 2;
    part.seq_len = L;
    part.tokens.assign(full.tokens.begin() + half * (n_seq / 2) * L, full.tokens.begin() + (half + 1) * (n_seq / 2) * L);
    const DiffusionBatch b = make_diffusion_batch(part, options(), 17, half * (n_seq / 2), n_seq);
    for (int64_t i = 0; i < part.n_seq * L; ++i) {
      const size_t p = static_cast<size_t>(half * (n_seq / 2) * L + i);
      EXPECT_EQ(b.batch.inputs[i], whole.batch.inputs[p]);
      // Each half is normalised by its own token count: twice the full batch's weight.
      EXPECT_FLOAT_EQ(b.batch.weights[i], 2 * whole.batch.weights[p]);
    }
  }
  // Same inputs again: the same draws; another seed: other draws.
  const DiffusionBatch again = make_diffusion_batch(full, options(), 17, 0, n_seq);
  EXPECT_EQ(again.batch.inputs, whole.batch.inputs);
  ObjectiveOptions other = options();
  other.seed = 99;
  EXPECT_NE(make_diffusion_batch(full, other, 17, 0, n_seq).batch.inputs, whole.batch.inputs);
}

TEST(Objective, BadInputsAreErrors) {
  CleanBatch clean = make_clean(2, 8);
  ObjectiveOptions o = options();
  o.mask_id = -1;
  EXPECT_THROW(make_diffusion_batch(clean, o, 0, 0, 2), Error);
  EXPECT_THROW(make_diffusion_batch(clean, options(), 0, 1, 2), Error);  // past the step's sequences
  clean.prompt_len = {3, 9};
  EXPECT_THROW(make_diffusion_batch(clean, options(), 0, 0, 2), Error);
  clean.prompt_len = {3};
  EXPECT_THROW(make_diffusion_batch(clean, options(), 0, 0, 2), Error);
  clean = make_clean(2, 8);
  clean.tokens.pop_back();
  EXPECT_THROW(make_diffusion_batch(clean, options(), 0, 0, 2), Error);
}

}  // namespace
}  // namespace ruvdllm::train
