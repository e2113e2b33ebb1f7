#pragma once
// Turns logits into committed tokens: per-position token sampling (temperature, top-k, top-p,
// Gumbel-max, classifier-free guidance) and the unmasking rules that pick which masked
// positions a step commits.
//
// Deliberate differences from llama.cpp's diffusion example (anchors.md §A.3):
//  - entropy commits the LOWEST-entropy positions first (score Σ p log p, larger = surer);
//  - Gumbel noise is drawn per position and per vocabulary entry, in the log domain;
//  - confidence, margin and entropy come from the temperature-only softmax, never from the
//    top-k/top-p-truncated distribution the token is drawn from.
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "ruvdllm/core/thread_pool.h"

namespace ruvdllm {

enum class Unmasking {
  Origin,      // each masked position independently with the schedule's transfer probability
               // (Dream "origin", MDLM ancestral sampling)
  Confidence,  // highest p(sampled token) first (LLaDA low-confidence remasking, Dream
               // maskgit_plus)
  Margin,      // largest p(top-1) − p(top-2) first (Dream topk_margin)
  Entropy,     // lowest entropy first: score Σ p log p
  Random,      // uniformly random positions (LLaDA random remasking)
};

// "origin", "confidence", "margin", "entropy", "random" (and the aliases "low_confidence",
// "maskgit_plus", "topk_margin"). Error for any other name.
Unmasking parse_unmasking(std::string_view name);
const char* unmasking_name(Unmasking rule);

struct SamplingOptions {
  Unmasking rule = Unmasking::Confidence;
  float temperature = 0;  // 0: argmax
  int64_t top_k = 0;      // keep the k most likely tokens; 0 (or >= vocab): off
  float top_p = 1;        // keep the smallest most-likely set with mass >= top_p; 1: off
  // Draw tokens as argmax(logits/τ + Gumbel) (LLaDA's sampler) instead of by inverse CDF. Both
  // sample softmax(logits/τ) restricted by top-k/top-p; Gumbel costs a hash and two logs per
  // vocabulary entry.
  bool gumbel = false;
  float alg_temp =
      0;  // > 0: choose positions by sampling softmax(score/alg_temp) without replacement
  float cfg_scale =
      0;  // classifier-free guidance weight w (used when unconditional logits are given)
  uint64_t seed = 0;
  // Never sampled (its logit is set to −inf in each candidate row): committing the mask token
  // would leave the position masked. -1: none.
  int64_t mask_id = -1;
};

// Error naming the option for a value out of range (temperature < 0, top_p outside (0, 1], ...).
void validate_sampling(const SamplingOptions& options);

// One masked position's sampled token.
struct Proposal {
  int64_t position = 0;
  int32_t token = 0;
  float confidence = 0;  // p(token) under softmax(logits/τ) (τ = 0: softmax(logits))
  float score = 0;       // the rule's ranking score; larger commits first
};

// Working memory for sampling one row (one per thread).
struct RowScratch {
  std::vector<float> exps;
  std::vector<std::pair<float, int32_t>> candidates;
  std::vector<int32_t> indices;
};

// Samples the token of one position from its row of `vocab` logits and scores it for the rule
// (Origin and Random get score 0: their scores do not depend on the logits). Randomness is
// keyed by (seed, step, position). With τ = 0 the token is the argmax (lowest id on ties).
Proposal sample_position(const float* logits, int64_t vocab, const SamplingOptions& options,
                         int64_t step, int64_t position, RowScratch& scratch);
// Plain scalar reference in double precision with full sorts, for tests.
Proposal sample_position_reference(const float* logits, int64_t vocab,
                                   const SamplingOptions& options, int64_t step, int64_t position);

// Proposals for the rows of `positions` (row p at logits + (p − first_row)·vocab), in parallel,
// into out[i] for positions[i]. Each row is modified in place: guidance (options.cfg_scale > 0
// and `uncond` not null, same layout) is combined into it and the mask token's logit is set to
// −inf. `scratch` grows to one entry per pool thread.
void sample_rows(float* logits, const float* uncond, int64_t vocab,
                 std::span<const int64_t> positions, int64_t first_row,
                 const SamplingOptions& options, int64_t step, ThreadPool& pool,
                 std::vector<RowScratch>* scratch, std::vector<Proposal>* out);

// How many of a step's candidates to commit.
struct Transfer {
  int64_t count = 0;       // ranking rules (all but Origin)
  double probability = 0;  // Origin: each candidate independently; >= 1 commits all
};

// Indices of the `count` best proposals, ascending: the largest scores with ties to the lower
// position, or with alg_temp > 0 a sample without replacement from softmax(score/alg_temp)
// (Gumbel-top-k, noise keyed by (seed, step, position)). Uses partial selection, not a sort.
void choose_top(std::span<const Proposal> proposals, int64_t count, float alg_temp, uint64_t seed,
                int64_t step, std::vector<size_t>* chosen);

// The per-step sampler: scores candidate rows in parallel and picks the ones to commit.
class Sampler {
 public:
  Sampler(int64_t vocab, const SamplingOptions& options);

  // Row p of `logits` (for each candidate position p) is at logits + (p − first_row)·vocab.
  // Candidate rows are modified in place: guidance (cfg_scale > 0 and `uncond` not null, same
  // layout) is combined into them and the mask token's logit is set to −inf.
  // Softmax work is done only for rows that need it: every candidate for confidence, margin
  // and entropy; only the committed ones for origin and random. Candidates must be distinct
  // and >= first_row. Returns the committed proposals, ascending by position (valid until the
  // next call).
  const std::vector<Proposal>& step(float* logits, const float* uncond,
                                    std::span<const int64_t> candidates, const Transfer& transfer,
                                    int64_t step, ThreadPool& pool, int64_t first_row = 0);

  // The same choice with the per-row sampling done elsewhere (e.g. on a GPU, where the logits
  // stay): propose(positions, out) must fill out[i] with sample_position's proposal for
  // positions[i] (guidance and the mask token's −inf applied as above).
  using RowProposer =
      std::function<void(std::span<const int64_t> positions, std::vector<Proposal>* out)>;
  const std::vector<Proposal>& step(const RowProposer& propose,
                                    std::span<const int64_t> candidates, const Transfer& transfer,
                                    int64_t step);

  // For the ranking rules (confidence, margin, entropy) the proposals and the choice may both
  // be made elsewhere, so that only the committed proposals travel (e.g. from a GPU).
  // choose(candidates, count, committed) either fills `committed` with exactly what propose +
  // choose_top would commit (`count` proposals, ascending by position; count is already
  // clamped to [0, candidates.size()]) and returns true, or returns false to have `propose`
  // used instead. An empty `choose`, and the rules origin and random, always use `propose`.
  using TopChooser = std::function<bool(std::span<const int64_t> candidates, int64_t count,
                                        std::vector<Proposal>* committed)>;
  const std::vector<Proposal>& step(const RowProposer& propose, const TopChooser& choose,
                                    std::span<const int64_t> candidates, const Transfer& transfer,
                                    int64_t step);

  const SamplingOptions& options() const { return options_; }

 private:
  int64_t vocab_;
  SamplingOptions options_;
  std::vector<RowScratch> scratch_;
  std::vector<Proposal> proposals_;
  std::vector<Proposal> committed_;
  std::vector<int64_t> positions_;
  std::vector<size_t> chosen_;
};

}  // namespace ruvdllm
