#include "ruvdllm/train/data_sampler.h"

#include <utility>

#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/rng.h"

namespace ruvdllm::train {
namespace {

constexpr auto kDomainStream = static_cast<RandomStream>(0x7441);
constexpr auto kOffsetStream = static_cast<RandomStream>(0x7442);

}  // namespace

DataSampler::DataSampler(std::vector<DataDomain> domains, int64_t seq_len, int32_t vocab_size,
                         uint64_t seed)
    : domains_(std::move(domains)), seq_len_(seq_len), seed_(seed) {
  if (domains_.empty()) fail("no training data: give at least one domain");
  if (seq_len <= 0) fail("seq_len {} must be positive", seq_len);
  double total = 0;
  for (const DataDomain& d : domains_) {
    if (!(d.weight >= 0)) fail("data domain '{}': weight {} must not be negative", d.name, d.weight);
    if (d.weight > 0 && d.shards.n_tokens() < seq_len) {
      fail("data domain '{}': {} tokens, fewer than seq_len {}", d.name, d.shards.n_tokens(), seq_len);
    }
    if (d.shards.vocab_size() > vocab_size) {
      fail("data domain '{}': token ids up to {} but the model's vocabulary has {}", d.name,
           d.shards.vocab_size() - 1, vocab_size);
    }
    total += d.weight;
  }
  if (!(total > 0)) fail("data domains: the mixture weights sum to 0");
  double running = 0;
  for (const DataDomain& d : domains_) {
    running += d.weight;
    cumulative_.push_back(running / total);
  }
  cumulative_.back() = 1.0;
}

size_t DataSampler::domain_of(int64_t step, int64_t index) const {
  const double u = random_uniform(random_key(seed_, step, index, kDomainStream));
  for (size_t d = 0; d < cumulative_.size(); ++d) {
    // A zero-weight domain has an empty interval and is never chosen.
    if (u < cumulative_[d] && domains_[d].weight > 0) return d;
  }
  return cumulative_.size() - 1;
}

void DataSampler::sample(int64_t step, int64_t index, std::span<int32_t> out) const {
  if (static_cast<int64_t>(out.size()) != seq_len_) {
    fail("window buffer holds {} tokens, expected {}", out.size(), seq_len_);
  }
  const DataDomain& domain = domains_[domain_of(step, index)];
  const uint64_t starts = static_cast<uint64_t>(domain.shards.n_tokens() - seq_len_ + 1);
  // Modulo bias is below starts / 2^64: irrelevant for any corpus.
  const uint64_t offset = mix64(random_key(seed_, step, index, kOffsetStream)) % starts;
  domain.shards.read(static_cast<int64_t>(offset), out);
}

}  // namespace ruvdllm::train
