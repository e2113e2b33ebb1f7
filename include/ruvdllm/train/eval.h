#pragma once
// Held-out evaluation of a masked-diffusion model: the NELBO, an upper bound on −log p(x), as
// bits per token and the perplexity bound exp(nats per token), per domain.
//
// Each window of seq_len tokens is scored under K noise levels t_1..t_K, stratified over
// (ε, 1) and fixed by the seed, so two models (or two checkpoints) are compared on the same
// windows, the same t and the same masks. The estimate per window is
//   (1/K) Σ_k (1/L) Σ_{masked l} −α′(t_k)/(1 − α(t_k)) · (−log p_θ(x_l | z_{t_k})).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/diffusion/schedule.h"
#include "ruvdllm/train/token_shards.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::train {

struct EvalOptions {
  int64_t samples = 8;      // K draws of t per window
  int64_t windows = 32;     // per domain, evenly spaced over the shards (fewer if they hold fewer)
  int64_t seq_len = 512;
  int64_t batch = 8;        // sequences per forward pass
  uint64_t seed = 0x5eed;
  NoiseSchedule schedule = NoiseSchedule::Linear;
  double eps = 1e-3;
};

struct EvalDomain {
  std::string name;
  const TokenShards* shards = nullptr;
};

struct DomainNelbo {
  std::string name;
  int64_t windows = 0;
  int64_t tokens = 0;            // windows × seq_len
  double nats_per_token = 0;
  double bits_per_token = 0;     // nats / ln 2
  double perplexity_bound = 0;   // exp(nats per token)
  double std_error_bits = 0;     // standard error of the mean over windows, in bits
};

// The core both kinds of held-out data share: n_sequences sequences of seq_len tokens, each
// written into `tokens` by sequence(index, tokens), which returns how many leading positions are
// prompt (never masked, not scored); each is scored over options.samples stratified draws of t.
DomainNelbo score_sequences(TrainModel& model, const std::string& name, int64_t n_sequences,
                            int64_t seq_len,
                            const std::function<int64_t(int64_t, std::vector<int32_t>&)>& sequence,
                            const EvalOptions& options, ThreadPool& pool);

// Error when a domain holds fewer than seq_len tokens or ids outside the model's vocabulary,
// or the model has no mask token.
std::vector<DomainNelbo> evaluate_nelbo(TrainModel& model, const std::vector<EvalDomain>& domains,
                                        const EvalOptions& options, ThreadPool& pool);

}  // namespace ruvdllm::train
