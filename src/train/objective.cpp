#include "ruvdllm/train/objective.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/strings.h"
#include "ruvdllm/diffusion/rng.h"

namespace ruvdllm::train {
namespace {

// Streams of the training draws, disjoint from the sampler's (rng.h numbers those from 1).
constexpr auto kTimeStream = static_cast<RandomStream>(0x7431);
constexpr auto kMaskStream = static_cast<RandomStream>(0x7432);
constexpr auto kForcedMaskStream = static_cast<RandomStream>(0x7433);

// The Sqrt schedule's offset, as schedule.cpp defines it.
constexpr double kSqrtOffset = 1e-4;

}  // namespace

TimeSampling parse_time_sampling(std::string_view name) {
  const std::string n = ascii_lower(name);
  if (n == "independent") return TimeSampling::Independent;
  if (n == "antithetic") return TimeSampling::Antithetic;
  if (n == "stratified") return TimeSampling::Stratified;
  fail("unknown t sampling '{}' (expected independent, antithetic or stratified)", name);
}

const char* time_sampling_name(TimeSampling sampling) {
  switch (sampling) {
    case TimeSampling::Independent:
      return "independent";
    case TimeSampling::Antithetic:
      return "antithetic";
    case TimeSampling::Stratified:
      return "stratified";
  }
  return "unknown";
}

double loss_weight(NoiseSchedule schedule, double t) {
  switch (schedule) {
    case NoiseSchedule::Linear:
      return 1.0 / t;
    case NoiseSchedule::Cosine: {
      const double a = std::numbers::pi * t / 2;
      return (std::numbers::pi / 2) * std::sin(a) / (1.0 - std::cos(a));
    }
    case NoiseSchedule::Sqrt:
      return 1.0 / (2.0 * (t + kSqrtOffset));
  }
  return 0;
}

double draw_time(const ObjectiveOptions& options, int64_t step, int64_t index, int64_t count) {
  if (count <= 0 || index < 0 || index >= count) {
    fail("sequence index {} outside the step's {} sequences", index, count);
  }
  double u = 0;
  switch (options.sampling) {
    case TimeSampling::Independent:
      u = random_uniform(random_key(options.seed, step, index, kTimeStream));
      break;
    case TimeSampling::Antithetic: {
      const double r = random_uniform(random_key(options.seed, step, index / 2, kTimeStream));
      u = index % 2 == 0 ? r : 1.0 - r;
      break;
    }
    case TimeSampling::Stratified: {
      const double r = random_uniform(random_key(options.seed, step, index, kTimeStream));
      u = (static_cast<double>(index) + r) / static_cast<double>(count);
      break;
    }
  }
  // 1 − r can be exactly 1; keep t inside [eps, 1).
  const double t = options.eps + (1.0 - options.eps) * u;
  return std::min(t, std::nextafter(1.0, 0.0));
}

void CleanBatch::validate() const {
  if (n_seq <= 0 || seq_len <= 0) fail("batch of {} × {} tokens is empty", n_seq, seq_len);
  if (static_cast<int64_t>(tokens.size()) != n_seq * seq_len) {
    fail("batch holds {} tokens, expected {} × {}", tokens.size(), n_seq, seq_len);
  }
  if (!prompt_len.empty() && static_cast<int64_t>(prompt_len.size()) != n_seq) {
    fail("batch has {} prompt lengths for {} sequences", prompt_len.size(), n_seq);
  }
  if (!length.empty() && static_cast<int64_t>(length.size()) != n_seq) {
    fail("batch has {} sequence lengths for {} sequences", length.size(), n_seq);
  }
  for (int64_t s = 0; s < n_seq; ++s) {
    const int64_t len = length.empty() ? seq_len : length[static_cast<size_t>(s)];
    const int64_t prompt = prompt_len.empty() ? 0 : prompt_len[static_cast<size_t>(s)];
    if (len < 0 || len > seq_len) fail("sequence {} has length {} outside [0, {}]", s, len, seq_len);
    if (prompt < 0 || prompt > len) fail("sequence {} has prompt length {} outside [0, {}]", s, prompt, len);
  }
}

DiffusionBatch make_diffusion_batch(const CleanBatch& clean, const ObjectiveOptions& options,
                                    int64_t step, int64_t first_index, int64_t step_count) {
  clean.validate();
  if (options.mask_id < 0) fail("the model has no mask token; masked diffusion needs one");
  if (!(options.eps > 0 && options.eps < 1)) fail("t epsilon {} outside (0, 1)", options.eps);
  if (first_index < 0 || first_index + clean.n_seq > step_count) {
    fail("sequences [{}, {}) outside the step's {} sequences", first_index,
         first_index + clean.n_seq, step_count);
  }
  const int64_t L = clean.seq_len;
  DiffusionBatch out;
  out.batch.n_seq = clean.n_seq;
  out.batch.seq_len = L;
  out.batch.inputs = clean.tokens;
  out.batch.targets = clean.tokens;
  out.batch.weights.assign(clean.tokens.size(), 0.0f);
  out.t.resize(static_cast<size_t>(clean.n_seq));

  // Mask first, weight afterwards: the weights need the batch's scored-token count.
  std::vector<uint8_t> masked(clean.tokens.size(), 0);
  for (int64_t s = 0; s < clean.n_seq; ++s) {
    const int64_t index = first_index + s;
    const int64_t begin = clean.prompt_len.empty() ? 0 : clean.prompt_len[static_cast<size_t>(s)];
    const int64_t end = clean.length.empty() ? L : clean.length[static_cast<size_t>(s)];
    const double t = draw_time(options, step, index, step_count);
    out.t[static_cast<size_t>(s)] = t;
    out.n_scored += end - begin;
    if (end <= begin) continue;
    const double mask_probability = 1.0 - schedule_alpha(options.schedule, t, options.eps);
    const uint64_t key = random_key(options.seed, step, index, kMaskStream);
    int64_t count = 0;
    for (int64_t i = begin; i < end; ++i) {
      if (random_uniform(key, static_cast<uint64_t>(i)) < mask_probability) {
        masked[static_cast<size_t>(s * L + i)] = 1;
        ++count;
      }
    }
    if (count == 0 && options.at_least_one_mask) {
      const double r = random_uniform(random_key(options.seed, step, index, kForcedMaskStream));
      const int64_t i = begin + std::min(end - begin - 1, static_cast<int64_t>(r * static_cast<double>(end - begin)));
      masked[static_cast<size_t>(s * L + i)] = 1;
    }
  }
  if (out.n_scored == 0) return out;
  for (int64_t s = 0; s < clean.n_seq; ++s) {
    const float weight = static_cast<float>(loss_weight(options.schedule, out.t[static_cast<size_t>(s)]) /
                                            static_cast<double>(out.n_scored));
    for (int64_t i = 0; i < L; ++i) {
      const size_t p = static_cast<size_t>(s * L + i);
      if (!masked[p]) continue;
      out.batch.inputs[p] = options.mask_id;
      out.batch.weights[p] = weight;
      ++out.n_masked;
    }
  }
  return out;
}

}  // namespace ruvdllm::train
