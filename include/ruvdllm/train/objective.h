#pragma once
// The masked-diffusion training objective (MDLM / LLaDA; spec §6 A.2, anchors §B.1): each
// sequence gets a noise level t ~ U(ε, 1), each of its tokens is replaced by the mask token
// with probability 1 − α(t), and the model is scored by cross-entropy on the masked positions,
// weighted by −α′(t)/(1 − α(t)) (1/t for the linear schedule) and divided by the number of
// scored tokens, so the batch loss is an unbiased estimate of the per-token NELBO.
//
// Every draw is a pure function of (seed, step, sequence index): a resumed run, a different
// micro-batch split or a different thread count sees the same t and the same masks.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "ruvdllm/diffusion/schedule.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::train {

// How the batch's noise levels are spread over (ε, 1).
enum class TimeSampling {
  Independent,  // i.i.d. uniform per sequence
  Antithetic,   // sequences 2k and 2k+1 get u and 1 − u
  Stratified,   // sequence i of n gets (i + u_i)/n: one draw per stratum (MDLM's low-discrepancy sampler)
};
// "independent", "antithetic", "stratified". Error for any other name.
TimeSampling parse_time_sampling(std::string_view name);
const char* time_sampling_name(TimeSampling sampling);

struct ObjectiveOptions {
  NoiseSchedule schedule = NoiseSchedule::Linear;
  double eps = 1e-3;  // t ~ U(eps, 1); also the linear schedule's ε
  TimeSampling sampling = TimeSampling::Stratified;
  int32_t mask_id = -1;
  uint64_t seed = 0;
  // Training masks one eligible position of a sequence that drew none, so no sequence is
  // wasted. That biases the loss upward by about E1(ε·L)/L (0.1% at L = 512, 9% at L = 32),
  // so evaluation turns it off to keep the NELBO estimate unbiased.
  bool at_least_one_mask = true;
};

// −α′(t)/(1 − α(t)): 1/t for Linear, (π/2)·sin(πt/2)/(1 − cos(πt/2)) for Cosine,
// 1/(2(t + 1e-4)) for Sqrt.
double loss_weight(NoiseSchedule schedule, double t);

// The noise level of sequence `index` among the `count` sequences of one optimizer step
// (all micro-batches together), in [eps, 1).
double draw_time(const ObjectiveOptions& options, int64_t step, int64_t index, int64_t count);

// Clean sequences, one after another, before noising.
struct CleanBatch {
  int64_t n_seq = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> tokens;  // n_seq × seq_len
  // SFT: positions [0, prompt_len[i]) of sequence i are never masked and carry no loss.
  // Empty: no prompts (pre-training).
  std::vector<int32_t> prompt_len;
  // Variable lengths: positions [length[i], seq_len) are padding, never masked, no loss.
  // Empty: every sequence is full (packed pre-training).
  std::vector<int32_t> length;
  void validate() const;  // Error on inconsistent sizes or prompt/length out of range
};

// The noised batch for the model and what was drawn for it.
struct DiffusionBatch {
  Batch batch;
  std::vector<double> t;    // per sequence
  int64_t n_masked = 0;     // positions that carry a loss
  int64_t n_scored = 0;     // positions eligible for masking (the loss normaliser)
};

// Noises sequences [first_index, first_index + clean.n_seq) of the `step_count` sequences of
// optimizer step `step`. Weights on masked positions are loss_weight(t) / n_scored; every other
// weight is 0. With accumulation over equal micro-batches, pass grad_scale = 1/accum to
// TrainModel::forward_backward and the sum is the step's per-token NELBO.
DiffusionBatch make_diffusion_batch(const CleanBatch& clean, const ObjectiveOptions& options,
                                    int64_t step, int64_t first_index, int64_t step_count);

}  // namespace ruvdllm::train
