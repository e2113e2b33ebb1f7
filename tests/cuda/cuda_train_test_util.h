#pragma once
// A random training batch for the CUDA training tests: random tokens, half the positions
// weighted (0.5 to 1.5), the rest not counted.
#include <cstdint>
#include <random>

#include "ruvdllm/model/config.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::testing {

// Random targets, or targets that are a fixed function of the input token (a model can learn
// those, so a loss can be seen to fall).
enum class BatchTargets { Random, FromInputs };

inline train::Batch random_batch(const ModelConfig& c, int64_t n_seq, int64_t seq_len,
                                 uint64_t seed, BatchTargets targets) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  std::uniform_real_distribution<float> weight(0.5f, 1.5f);
  train::Batch b;
  b.n_seq = n_seq;
  b.seq_len = seq_len;
  for (int64_t i = 0; i < n_seq * seq_len; ++i) {
    b.inputs.push_back(token(rng));
    b.targets.push_back(targets == BatchTargets::Random
                            ? token(rng)
                            : static_cast<int32_t>((b.inputs.back() * 7 + 3) % c.vocab_size));
    b.weights.push_back(rng() % 2 == 0 ? weight(rng) : 0.0f);
  }
  return b;
}

}  // namespace ruvdllm::testing
