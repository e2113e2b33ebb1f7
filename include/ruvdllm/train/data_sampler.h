#pragma once
// Training windows: seq_len consecutive tokens at a random offset of a randomly chosen domain
// (prose, code, ...), domains picked in proportion to their mixture weights. Windows cross
// document boundaries (the shards join documents with EOS): packing, with no padding.
// Every window is a pure function of (seed, step, sequence index).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ruvdllm/train/token_shards.h"

namespace ruvdllm::train {

struct DataDomain {
  std::string name;
  TokenShards shards;
  double weight = 1.0;
};

class DataSampler {
 public:
  // Error when there is no domain, a weight is negative or all are zero, or a domain with a
  // positive weight holds fewer than seq_len tokens or ids at or above vocab_size.
  DataSampler(std::vector<DataDomain> domains, int64_t seq_len, int32_t vocab_size, uint64_t seed);

  int64_t seq_len() const { return seq_len_; }
  const std::vector<DataDomain>& domains() const { return domains_; }
  // The domain that sequence `index` of step `step` comes from.
  size_t domain_of(int64_t step, int64_t index) const;
  // Fills out (seq_len tokens) with that sequence's window.
  void sample(int64_t step, int64_t index, std::span<int32_t> out) const;

 private:
  std::vector<DataDomain> domains_;
  std::vector<double> cumulative_;  // normalised, last entry 1
  int64_t seq_len_;
  uint64_t seed_;
};

}  // namespace ruvdllm::train
