#pragma once
// Vocabulary-row kernels of the token sampler: one pass each over a row of logits. Each has a
// plain scalar reference (`*_reference`) that tests compare the dispatched SIMD version with.
// Rows are indexed with 32-bit integers internally: n must be below 2^31.
#include <cstdint>

namespace ruvdllm {

// The largest value, its first index, and the second-largest element (equal to the largest
// when the maximum repeats). NaN entries are ignored; a row with no finite-or-infinite value
// larger than −inf reports argmax 0.
struct RowTop2 {
  float max = 0;
  int64_t argmax = 0;
  float second = 0;
};
RowTop2 row_top2(const float* x, int64_t n);
RowTop2 row_top2_reference(const float* x, int64_t n);

// With d_i = (x_i − max)·inv_temp and e_i = exp(d_i): sum = Σ e_i (the softmax denominator
// relative to the max) and weighted = Σ e_i·d_i, so that Σ p log p = weighted/sum − log(sum).
// When `exps` is not null it receives e_i. −inf logits give e_i = 0 and add nothing.
struct ExpSums {
  double sum = 0;
  double weighted = 0;
};
ExpSums row_exp_sums(const float* x, int64_t n, float max, float inv_temp, float* exps);
ExpSums row_exp_sums_reference(const float* x, int64_t n, float max, float inv_temp, float* exps);

// The first index i in [begin, n) with x[i] > threshold, or n when there is none.
int64_t find_greater(const float* x, int64_t begin, int64_t n, float threshold);
int64_t find_greater_reference(const float* x, int64_t begin, int64_t n, float threshold);

// A subset of a row of weights e_i >= 0 given by a cut: e_i > threshold, or e_i == threshold
// with i <= tie_index (a nucleus boundary may fall inside a run of equal weights). The default
// (threshold −1) selects every entry.
struct Selection {
  float threshold = -1.0f;
  int64_t tie_index = -1;
  bool contains(float e, int64_t i) const {
    return e > threshold || (e == threshold && i <= tie_index);
  }
};

// Count and total of the entries with e_i > threshold.
struct MassAbove {
  int64_t count = 0;
  double mass = 0;
};
MassAbove mass_above(const float* e, int64_t n, float threshold);
MassAbove mass_above_reference(const float* e, int64_t n, float threshold);

// Writes the indices i with lo < e_i <= hi, ascending, to `out` and returns how many. `out`
// needs room for that count plus kCollectPadding (vector stores may spill past the end).
constexpr int64_t kCollectPadding = 64;
int64_t collect_range(const float* e, int64_t n, float lo, float hi, int32_t* out);
int64_t collect_range_reference(const float* e, int64_t n, float lo, float hi, int32_t* out);

// Inverse-CDF walk in index order over the selected entries: the first selected i whose
// running total exceeds target. When rounding leaves the target unreached, the last selected
// index with e_i > 0 (0 if none), so the result always has weight.
int64_t cumulative_search(const float* e, int64_t n, double target, Selection selection = {});
int64_t cumulative_search_reference(const float* e, int64_t n, double target,
                                    Selection selection = {});

// Gumbel-max: argmax_i (x_i·inv_temp + g_i) with g_i = −log(−log u_i), u_i = vocab_uniform(key, i)
// (rng.h). Each row gets its own key, hence its own noise. With `e` given, only the entries the
// selection holds compete. Returns the winning index and value.
struct GumbelMax {
  int64_t index = 0;
  float value = 0;
};
GumbelMax row_gumbel_max(const float* x, int64_t n, float inv_temp, uint64_t key,
                         const float* e = nullptr, Selection selection = {});
GumbelMax row_gumbel_max_reference(const float* x, int64_t n, float inv_temp, uint64_t key,
                                   const float* e = nullptr, Selection selection = {});
// The Gumbel noise the two functions above add to entry i (scalar, for candidate lists).
float gumbel_noise(uint64_t key, uint32_t i);

// Classifier-free guidance (LLaDA): cond[i] = uncond[i] + (scale + 1)·(cond[i] − uncond[i]).
void cfg_combine(float* cond, const float* uncond, int64_t n, float scale);
void cfg_combine_reference(float* cond, const float* uncond, int64_t n, float scale);

}  // namespace ruvdllm
