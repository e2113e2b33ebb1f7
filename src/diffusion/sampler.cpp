// One step's choice of positions: score candidates in parallel, then commit the chosen ones.
#include "ruvdllm/diffusion/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/rng.h"
#include "ruvdllm/diffusion/row_kernels.h"

namespace ruvdllm {

void choose_top(std::span<const Proposal> proposals, int64_t count, float alg_temp, uint64_t seed,
                int64_t step, std::vector<size_t>* chosen) {
  chosen->clear();
  const auto n = static_cast<int64_t>(proposals.size());
  count = std::clamp<int64_t>(count, 0, n);
  if (count == 0) return;
  struct Keyed {
    double key;
    int64_t position;
    size_t index;
  };
  std::vector<Keyed> keyed(proposals.size());
  for (size_t i = 0; i < proposals.size(); ++i) {
    double key = proposals[i].score;
    if (std::isnan(key)) key = -std::numeric_limits<double>::infinity();
    if (alg_temp > 0) {
      // Gumbel-top-k: the top `count` of score/τ + Gumbel noise are distributed as `count`
      // draws without replacement from softmax(score/τ).
      const double u = random_uniform(
          random_key(seed, step, proposals[i].position, RandomStream::PositionChoice));
      key = key / alg_temp - std::log(-std::log(std::max(u, 1e-300)));
    }
    keyed[i] = {key, proposals[i].position, i};
  }
  auto better = [](const Keyed& a, const Keyed& b) {
    return a.key > b.key || (a.key == b.key && a.position < b.position);
  };
  if (count < n) std::nth_element(keyed.begin(), keyed.begin() + count, keyed.end(), better);
  for (int64_t i = 0; i < count; ++i) chosen->push_back(keyed[static_cast<size_t>(i)].index);
  std::sort(chosen->begin(), chosen->end(),
            [&](size_t a, size_t b) { return proposals[a].position < proposals[b].position; });
}

namespace {

// A chooser that breaks its contract would silently commit the wrong tokens; the check is
// cheap next to the step it ends.
void check_chosen(const std::vector<Proposal>& committed, int64_t count) {
  if (static_cast<int64_t>(committed.size()) != count) {
    fail("sampler: the position chooser committed {} proposals, {} were asked for",
         committed.size(), count);
  }
  for (size_t i = 1; i < committed.size(); ++i) {
    if (committed[i - 1].position >= committed[i].position) {
      fail(
          "sampler: the position chooser's commits are not strictly ascending by position "
          "({} then {})",
          committed[i - 1].position, committed[i].position);
    }
  }
}

}  // namespace

Sampler::Sampler(int64_t vocab, const SamplingOptions& options) : vocab_(vocab), options_(options) {
  if (vocab <= 0) fail("sampler: vocabulary size must be positive, got {}", vocab);
  validate_sampling(options);
}

void sample_rows(float* logits, const float* uncond, int64_t vocab,
                 std::span<const int64_t> positions, int64_t first_row,
                 const SamplingOptions& options, int64_t step, ThreadPool& pool,
                 std::vector<RowScratch>* scratch, std::vector<Proposal>* out) {
  out->resize(positions.size());
  if (scratch->size() < static_cast<size_t>(pool.size()))
    scratch->resize(static_cast<size_t>(pool.size()));
  const bool guided = uncond != nullptr && options.cfg_scale > 0;
  pool.parallel_for(static_cast<int64_t>(positions.size()), [&](int64_t r, int thread) {
    const int64_t position = positions[static_cast<size_t>(r)];
    const int64_t offset = (position - first_row) * vocab;
    float* row = logits + offset;
    if (guided) cfg_combine(row, uncond + offset, vocab, options.cfg_scale);
    if (options.mask_id >= 0 && options.mask_id < vocab) {
      row[options.mask_id] = -std::numeric_limits<float>::infinity();
    }
    (*out)[static_cast<size_t>(r)] = sample_position(row, vocab, options, step, position,
                                                     (*scratch)[static_cast<size_t>(thread)]);
  });
}

const std::vector<Proposal>& Sampler::step(float* logits, const float* uncond,
                                           std::span<const int64_t> candidates,
                                           const Transfer& transfer, int64_t step, ThreadPool& pool,
                                           int64_t first_row) {
  return this->step(
      [&](std::span<const int64_t> positions, std::vector<Proposal>* out) {
        sample_rows(logits, uncond, vocab_, positions, first_row, options_, step, pool, &scratch_,
                    out);
      },
      candidates, transfer, step);
}

const std::vector<Proposal>& Sampler::step(const RowProposer& propose,
                                           std::span<const int64_t> candidates,
                                           const Transfer& transfer, int64_t step) {
  return this->step(propose, TopChooser{}, candidates, transfer, step);
}

const std::vector<Proposal>& Sampler::step(const RowProposer& propose, const TopChooser& choose,
                                           std::span<const int64_t> candidates,
                                           const Transfer& transfer, int64_t step) {
  committed_.clear();
  if (candidates.empty()) return committed_;
  const auto n = static_cast<int64_t>(candidates.size());

  switch (options_.rule) {
    case Unmasking::Origin: {
      // Which positions move is independent of the logits, so only they are sampled.
      positions_.clear();
      for (int64_t p : candidates) {
        const bool move = transfer.probability >= 1.0 ||
                          random_uniform(random_key(options_.seed, step, p,
                                                    RandomStream::Transfer)) < transfer.probability;
        if (move) positions_.push_back(p);
      }
      std::sort(positions_.begin(), positions_.end());
      propose(positions_, &committed_);
      return committed_;
    }
    case Unmasking::Random: {
      proposals_.resize(candidates.size());
      for (size_t i = 0; i < candidates.size(); ++i) {
        proposals_[i].position = candidates[i];
        proposals_[i].score = static_cast<float>(random_uniform(
            random_key(options_.seed, step, candidates[i], RandomStream::RandomScore)));
      }
      choose_top(proposals_, std::min(transfer.count, n), options_.alg_temp, options_.seed, step,
                 &chosen_);
      positions_.clear();
      for (size_t i : chosen_) positions_.push_back(proposals_[i].position);
      propose(positions_, &committed_);
      for (size_t i = 0; i < chosen_.size(); ++i)
        committed_[i].score = proposals_[chosen_[i]].score;
      return committed_;
    }
    case Unmasking::Confidence:
    case Unmasking::Margin:
    case Unmasking::Entropy: {
      const int64_t count = std::clamp<int64_t>(transfer.count, 0, n);
      if (choose && choose(candidates, count, &committed_)) {
        check_chosen(committed_, count);
        return committed_;
      }
      committed_.clear();  // a declining chooser may have left something behind
      propose(candidates, &proposals_);
      choose_top(proposals_, count, options_.alg_temp, options_.seed, step, &chosen_);
      for (size_t i : chosen_) committed_.push_back(proposals_[i]);
      return committed_;
    }
  }
  return committed_;
}

}  // namespace ruvdllm
