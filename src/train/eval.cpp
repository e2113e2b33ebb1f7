#include "ruvdllm/train/eval.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/objective.h"

namespace ruvdllm::train {
namespace {

// Window w of n over a stream of `total` tokens: evenly spaced, first at 0, last at the end.
int64_t window_offset(int64_t w, int64_t n, int64_t total, int64_t seq_len) {
  if (n <= 1) return 0;
  return w * (total - seq_len) / (n - 1);
}

}  // namespace

DomainNelbo score_sequences(TrainModel& model, const std::string& name, int64_t n_sequences,
                            int64_t seq_len,
                            const std::function<int64_t(int64_t, std::vector<int32_t>&)>& sequence,
                            const EvalOptions& options, ThreadPool& pool) {
  if (options.samples <= 0) fail("eval samples {} must be positive", options.samples);
  if (options.windows <= 0) fail("eval windows {} must be positive", options.windows);
  if (options.batch <= 0) fail("eval batch {} must be positive", options.batch);
  const ModelConfig& config = model.config();
  if (config.mask_token_id < 0) fail("the model has no mask token; its NELBO is undefined");

  ObjectiveOptions objective;
  objective.schedule = options.schedule;
  objective.eps = options.eps;
  objective.sampling = TimeSampling::Stratified;
  objective.mask_id = static_cast<int32_t>(config.mask_token_id);
  objective.seed = options.seed;
  objective.at_least_one_mask = false;  // unbiased: a draw that masks nothing scores 0

  const int64_t L = seq_len;
  const int64_t K = options.samples;
  std::vector<double> per_sequence(static_cast<size_t>(n_sequences), 0.0);
  std::vector<int32_t> tokens(static_cast<size_t>(L));
  int64_t scored_tokens = 0;
  for (int64_t w = 0; w < n_sequences; ++w) {
    const int64_t prompt_len = sequence(w, tokens);
    scored_tokens += L - prompt_len;
    // The sequence's K draws, in forward passes of at most `batch` sequences.
    for (int64_t k0 = 0; k0 < K; k0 += options.batch) {
      const int64_t n = std::min(options.batch, K - k0);
      CleanBatch clean;
      clean.n_seq = n;
      clean.seq_len = L;
      clean.tokens.reserve(static_cast<size_t>(n * L));
      for (int64_t s = 0; s < n; ++s) clean.tokens.insert(clean.tokens.end(), tokens.begin(), tokens.end());
      if (prompt_len > 0) clean.prompt_len.assign(static_cast<size_t>(n), prompt_len);
      const DiffusionBatch noised = make_diffusion_batch(clean, objective, w, k0, K);
      // Weights are normalised by this pass's scored tokens; rescale to the sequence's K draws.
      per_sequence[static_cast<size_t>(w)] +=
          model.forward_loss(noised.batch, pool) * static_cast<double>(n) / static_cast<double>(K);
    }
  }
  double mean = 0;
  for (double v : per_sequence) mean += v;
  mean /= static_cast<double>(n_sequences);
  double var = 0;
  for (double v : per_sequence) var += (v - mean) * (v - mean);
  const double std_error =
      n_sequences > 1 ? std::sqrt(var / static_cast<double>(n_sequences - 1) / static_cast<double>(n_sequences)) : 0.0;
  DomainNelbo r;
  r.name = name;
  r.windows = n_sequences;
  r.tokens = scored_tokens;
  r.nats_per_token = mean;
  r.bits_per_token = mean / std::numbers::ln2;
  r.perplexity_bound = std::exp(mean);
  r.std_error_bits = std_error / std::numbers::ln2;
  return r;
}

std::vector<DomainNelbo> evaluate_nelbo(TrainModel& model, const std::vector<EvalDomain>& domains,
                                        const EvalOptions& options, ThreadPool& pool) {
  if (options.seq_len <= 0) fail("eval seq_len {} must be positive", options.seq_len);
  const int64_t L = options.seq_len;
  std::vector<DomainNelbo> results;
  for (const EvalDomain& domain : domains) {
    if (!domain.shards) fail("eval domain '{}' has no shards", domain.name);
    const int64_t total = domain.shards->n_tokens();
    if (total < L) fail("eval domain '{}': {} tokens, fewer than seq_len {}", domain.name, total, L);
    if (domain.shards->vocab_size() > model.config().vocab_size) {
      fail("eval domain '{}': token ids up to {} but the model's vocabulary has {}", domain.name,
           domain.shards->vocab_size() - 1, model.config().vocab_size);
    }
    const int64_t n_windows = std::min(options.windows, total / L);
    results.push_back(score_sequences(
        model, domain.name, n_windows, L,
        [&](int64_t w, std::vector<int32_t>& window) {
          domain.shards->read(window_offset(w, n_windows, total, L), window);
          return int64_t{0};
        },
        options, pool));
  }
  return results;
}

}  // namespace ruvdllm::train
