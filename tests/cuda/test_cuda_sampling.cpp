// CudaRowSampler against the CPU sampler (sample_position, sample_position_reference) on
// language-model-like random rows. Greedy proposals must match exactly (token) or to float
// rounding (scores). Sampled tokens must match the CPU's for at least 99% of rows: a draw that
// lands within rounding of a CDF boundary may legitimately differ, and every differing token
// must still lie in the CPU's kept (top-k/top-p) set.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/sampling.h"
#include "cuda_test_util.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/row_kernels.h"
#include "ruvdllm/diffusion/sampler.h"

namespace ruvdllm {
namespace {

using testing::CudaTest;
using testing::to_device;
using testing::to_host;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A broad normal background with a few clear favourites per row, like a language model's
// output (and never zeros).
std::vector<float> generate_lm_rows(int64_t rows, int64_t vocab, uint64_t seed) {
  std::vector<float> l(static_cast<size_t>(rows * vocab));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> background(0.0f, 2.0f);
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  for (auto& x : l) x = background(rng);
  for (int64_t r = 0; r < rows; ++r) {
    for (int k = 0; k < 4; ++k) l[static_cast<size_t>(r * vocab + token(rng))] += 6.0f + 1.5f * k;
  }
  return l;
}

// Cached: many cases reuse the same rows and the normal draws dominate the test's run time.
const std::vector<float>& lm_rows(int64_t rows, int64_t vocab, uint64_t seed) {
  static std::map<std::tuple<int64_t, int64_t, uint64_t>, std::vector<float>> cache;
  auto [it, added] = cache.try_emplace({rows, vocab, seed});
  if (added) it->second = generate_lm_rows(rows, vocab, seed);
  return it->second;
}

// What the CPU Sampler does to a candidate row before sampling it.
void prepare_row_cpu(float* row, const float* uncond, int64_t vocab, const SamplingOptions& o) {
  if (uncond != nullptr && o.cfg_scale > 0) cfg_combine(row, uncond, vocab, o.cfg_scale);
  if (o.mask_id >= 0 && o.mask_id < vocab) row[o.mask_id] = kNegInf;
}

// Token ids the CPU may draw from: the top-k / top-p support, like sample_position_reference.
std::set<int32_t> kept_set(const float* x, int64_t vocab, const SamplingOptions& o) {
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  const bool restrict_k = o.top_k > 0 && o.top_k < vocab;
  if (restrict_k) order.resize(static_cast<size_t>(o.top_k));
  if (o.top_p < 1.0f) {
    const double max = x[order[0]];
    double mass = 0;
    for (int32_t id : order) mass += std::exp((x[id] - max) / o.temperature);
    double cum = 0;
    for (size_t j = 0; j < order.size(); ++j) {
      cum += std::exp((x[order[j]] - max) / o.temperature);
      // A little slack: the GPU's boundary may include one entry within rounding of the target.
      if (cum >= o.top_p * mass * (1 + 1e-6)) {
        order.resize(j + 1);
        break;
      }
    }
  }
  std::set<int32_t> kept;
  for (int32_t id : order) {
    if (std::isfinite(x[id])) kept.insert(id);
  }
  return kept;
}

struct Case {
  int64_t vocab;
  int64_t rows;     // rows in the logits buffer
  int64_t sampled;  // how many of them are sampled (in a scrambled order)
};

struct RunResult {
  std::vector<Proposal> gpu;
  std::vector<Proposal> cpu;
  std::vector<float> gpu_rows;  // the whole logits buffer after the GPU call
  std::vector<float> cpu_rows;  // the same after the CPU's in-place changes
  std::vector<int64_t> rows;
};

// Samples `c.sampled` rows (not all, in a scrambled order, positions ≠ rows) on the GPU and,
// row by row, on the CPU from identical logits.
RunResult run_both(const Case& c, const SamplingOptions& o, int64_t step, uint64_t seed,
                   bool with_uncond = false) {
  RunResult r;
  std::vector<float> logits = lm_rows(c.rows, c.vocab, seed);
  std::vector<float> uncond;
  if (with_uncond) uncond = lm_rows(c.rows, c.vocab, seed + 1000);
  // A permutation (7 is coprime with every row count used here), cut to c.sampled rows.
  for (int64_t i = 0; i < c.sampled; ++i)
    r.rows.push_back(((c.rows - 1 - 7 * i) % c.rows + c.rows) % c.rows);
  std::vector<int64_t> positions;
  for (int64_t row : r.rows) positions.push_back(row * 3 + 11);

  auto d_logits = to_device(logits);
  cuda::DeviceArray<float> d_uncond;
  if (with_uncond) d_uncond = to_device(uncond);
  cuda::CudaRowSampler sampler(c.vocab, nullptr);
  r.gpu.resize(r.rows.size());
  sampler.sample(d_logits.data(), with_uncond ? d_uncond.data() : nullptr, c.rows, r.rows,
                 positions, o, step, r.gpu);
  r.gpu_rows = to_host(d_logits, logits.size());

  r.cpu_rows = logits;
  RowScratch scratch;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    float* row = r.cpu_rows.data() + r.rows[i] * c.vocab;
    prepare_row_cpu(row, with_uncond ? uncond.data() + r.rows[i] * c.vocab : nullptr, c.vocab, o);
    r.cpu.push_back(sample_position(row, c.vocab, o, step, positions[i], scratch));
  }
  return r;
}

const Case kCases[] = {{1000, 40, 40}, {8192, 40, 20}, {50000, 24, 12}};

double rel_diff(double got, double want) {
  return std::abs(got - want) / std::max(std::abs(want), 1e-30);
}

class CudaSamplingTest : public CudaTest {};

TEST_F(CudaSamplingTest, GreedyMatchesReference) {
  for (const Case& c : kCases) {
    for (Unmasking rule : {Unmasking::Confidence, Unmasking::Margin, Unmasking::Entropy}) {
      SamplingOptions o;
      o.rule = rule;
      o.mask_id = c.vocab / 3;
      const RunResult r = run_both(c, o, 3, 100 + static_cast<uint64_t>(c.vocab));
      double worst_conf = 0, worst_score = 0;
      for (size_t i = 0; i < r.gpu.size(); ++i) {
        const float* row = r.cpu_rows.data() + r.rows[i] * c.vocab;
        const Proposal want = sample_position_reference(row, c.vocab, o, 3, r.cpu[i].position);
        const Proposal& got = r.gpu[i];
        EXPECT_EQ(got.position, want.position);
        ASSERT_EQ(got.token, want.token) << "vocab " << c.vocab << " row " << r.rows[i];
        worst_conf = std::max(worst_conf, rel_diff(got.confidence, want.confidence));
        const double score_err =
            std::abs(double(got.score) - want.score) / std::max(1.0, std::abs(double(want.score)));
        worst_score = std::max(worst_score, score_err);
      }
      std::printf("  greedy vocab %6lld %-10s confidence rel %.1e, score err %.1e\n",
                  static_cast<long long>(c.vocab), unmasking_name(rule), worst_conf, worst_score);
      EXPECT_LT(worst_conf, 1e-5);
      EXPECT_LT(worst_score, 1e-4);
    }
  }
}

struct Mode {
  const char* name;
  float temperature;
  int64_t top_k;
  float top_p;
  bool gumbel;
  bool cfg;
};

const Mode kModes[] = {
    {"temp1", 1.0f, 0, 1.0f, false, false},
    {"topk50", 0.8f, 50, 1.0f, false, false},
    {"topp0.9", 0.8f, 0, 0.9f, false, false},
    {"topk40_topp0.8", 1.0f, 40, 0.8f, false, false},
    {"gumbel", 1.0f, 0, 1.0f, true, false},
    {"gumbel_topp0.9", 0.7f, 0, 0.9f, true, false},
    {"gumbel_topk20", 1.0f, 20, 1.0f, true, false},
    {"cfg_topp0.95", 1.2f, 0, 0.95f, false, true},
    {"topp0.3_hot", 3.0f, 0, 0.3f, false, false},
    {"topk1000", 2.0f, 1000, 1.0f, false, false},
};

TEST_F(CudaSamplingTest, SampledTokensMatchCpu) {
  for (const Mode& m : kModes) {
    int64_t total = 0, equal = 0;
    double worst_conf = 0;
    for (const Case& c : kCases) {
      for (int64_t step = 0; step < 4; ++step) {
        SamplingOptions o;
        o.rule = Unmasking::Confidence;
        o.temperature = m.temperature;
        o.top_k = m.top_k;
        o.top_p = m.top_p;
        o.gumbel = m.gumbel;
        o.cfg_scale = m.cfg ? 1.5f : 0.0f;
        o.seed = 99;
        o.mask_id = 5;
        const RunResult r = run_both(c, o, step, 7 * static_cast<uint64_t>(step) + 1, m.cfg);
        for (size_t i = 0; i < r.gpu.size(); ++i) {
          ++total;
          const float* row = r.cpu_rows.data() + r.rows[i] * c.vocab;
          const Proposal& got = r.gpu[i];
          ASSERT_NE(got.token, o.mask_id);
          ASSERT_GE(got.token, 0);
          ASSERT_LT(got.token, c.vocab);
          if (got.token == r.cpu[i].token) {
            ++equal;
            worst_conf = std::max(worst_conf, rel_diff(got.confidence, r.cpu[i].confidence));
          } else if (!m.gumbel || o.top_k > 0 || o.top_p < 1) {
            const std::set<int32_t> kept = kept_set(row, c.vocab, o);
            EXPECT_TRUE(kept.count(got.token)) << m.name << " vocab " << c.vocab << " token "
                                               << got.token << " outside the CPU's kept set";
          }
        }
      }
    }
    const double rate = static_cast<double>(equal) / static_cast<double>(total);
    std::printf("  %-16s %lld/%lld rows equal (%.2f%%), confidence rel %.1e\n", m.name,
                static_cast<long long>(equal), static_cast<long long>(total), 100 * rate,
                worst_conf);
    EXPECT_GE(rate, 0.99) << m.name;
    EXPECT_LT(worst_conf, 1e-5) << m.name;
  }
}

TEST_F(CudaSamplingTest, RowsModifiedInPlaceLikeCpu) {
  const Case c{8192, 12, 6};
  SamplingOptions o;
  o.temperature = 0.9f;
  o.top_p = 0.9f;
  o.cfg_scale = 0.75f;
  o.mask_id = 77;
  const RunResult r = run_both(c, o, 1, 5, true);
  const std::set<int64_t> sampled(r.rows.begin(), r.rows.end());
  for (int64_t row = 0; row < c.rows; ++row) {
    const float* got = r.gpu_rows.data() + row * c.vocab;
    const float* want = r.cpu_rows.data() + row * c.vocab;
    if (!sampled.count(row)) {
      // Untouched rows stay bit for bit.
      ASSERT_EQ(0, std::memcmp(got, want, static_cast<size_t>(c.vocab) * sizeof(float)))
          << "row " << row << " was not sampled but changed";
      continue;
    }
    EXPECT_EQ(got[o.mask_id], kNegInf);
    double worst = 0;
    for (int64_t i = 0; i < c.vocab; ++i) {
      if (i == o.mask_id) continue;
      worst =
          std::max(worst, std::abs(double(got[i]) - want[i]) / (std::abs(double(want[i])) + 1e-3));
    }
    EXPECT_LT(worst, 1e-6) << "row " << row;
  }
}

TEST_F(CudaSamplingTest, MaskTokenNeverChosenEvenWhenMostLikely) {
  const int64_t vocab = 1000, rows = 16;
  std::vector<float> logits = lm_rows(rows, vocab, 3);
  const int64_t mask = 123;
  for (int64_t r = 0; r < rows; ++r) logits[static_cast<size_t>(r * vocab + mask)] = 50.0f;
  for (float temperature : {0.0f, 1.0f}) {
    for (bool gumbel : {false, true}) {
      auto d = to_device(logits);
      SamplingOptions o;
      o.temperature = temperature;
      o.gumbel = gumbel;
      o.mask_id = mask;
      std::vector<int64_t> ids(rows);
      std::iota(ids.begin(), ids.end(), 0);
      std::vector<Proposal> out(rows);
      cuda::CudaRowSampler sampler(vocab, nullptr);
      sampler.sample(d.data(), nullptr, rows, ids, ids, o, 0, out);
      for (const Proposal& p : out) EXPECT_NE(p.token, mask);
    }
  }
}

// Rows where many entries share one value: radix ties in top-k and a nucleus boundary inside a
// run of equal weights larger than the GPU's sort capacity.
TEST_F(CudaSamplingTest, TiedRowsMatchCpu) {
  const int64_t vocab = 8192, rows = 24;
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> level(0, 3);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < vocab; ++i) {
      // Half the rows constant (every weight 1), half on four levels.
      logits[static_cast<size_t>(r * vocab + i)] = r % 2 == 0 ? 0.5f : 0.25f * level(rng);
    }
  }
  struct TieMode {
    int64_t top_k;
    float top_p;
    bool gumbel;
  };
  for (const TieMode& m :
       {TieMode{100, 1.0f, false}, TieMode{0, 0.5f, false}, TieMode{0, 0.3f, true},
        TieMode{3000, 0.7f, false}, TieMode{0, 1.0f, false}}) {
    SamplingOptions o;
    o.temperature = 1.0f;
    o.top_k = m.top_k;
    o.top_p = m.top_p;
    o.gumbel = m.gumbel;
    o.seed = 4;
    auto d = to_device(logits);
    std::vector<int64_t> ids(rows);
    std::iota(ids.begin(), ids.end(), 0);
    std::vector<Proposal> out(rows);
    cuda::CudaRowSampler sampler(vocab, nullptr);
    sampler.sample(d.data(), nullptr, rows, ids, ids, o, 2, out);
    int equal = 0;
    RowScratch scratch;
    for (int64_t r = 0; r < rows; ++r) {
      const Proposal want = sample_position(logits.data() + r * vocab, vocab, o, 2, r, scratch);
      equal += out[static_cast<size_t>(r)].token == want.token;
      EXPECT_NEAR(out[static_cast<size_t>(r)].confidence, want.confidence, 1e-5 * want.confidence);
    }
    EXPECT_GE(equal, rows - 1) << "top_k " << m.top_k << " top_p " << m.top_p;
  }
}

TEST_F(CudaSamplingTest, DegenerateRowsMatchCpu) {
  const int64_t vocab = 1000, rows = 4;
  std::vector<float> logits = lm_rows(rows, vocab, 8);
  std::fill(logits.begin(), logits.begin() + vocab, kNegInf);  // nothing to prefer
  logits[static_cast<size_t>(vocab + 17)] = std::numeric_limits<float>::infinity();  // certain
  for (int64_t i = 0; i < vocab; i += 3) {  // NaNs are ignored
    logits[static_cast<size_t>(2 * vocab + i)] = std::numeric_limits<float>::quiet_NaN();
  }
  for (Unmasking rule :
       {Unmasking::Confidence, Unmasking::Margin, Unmasking::Entropy, Unmasking::Origin}) {
    for (float temperature : {0.0f, 0.9f}) {
      SamplingOptions o;
      o.rule = rule;
      o.temperature = temperature;
      auto d = to_device(logits);
      std::vector<int64_t> ids = {0, 1, 2, 3};
      std::vector<Proposal> out(rows);
      cuda::CudaRowSampler sampler(vocab, nullptr);
      sampler.sample(d.data(), nullptr, rows, ids, ids, o, 0, out);
      RowScratch scratch;
      for (int64_t r = 0; r < rows; ++r) {
        const Proposal want = sample_position(logits.data() + r * vocab, vocab, o, 0, r, scratch);
        const Proposal& got = out[static_cast<size_t>(r)];
        EXPECT_EQ(got.token, want.token) << "row " << r;
        EXPECT_NEAR(got.confidence, want.confidence, 1e-5 * std::max(1.0f, want.confidence));
        if (std::isinf(want.score)) {
          EXPECT_EQ(got.score, want.score);
        } else {
          EXPECT_NEAR(got.score, want.score, 1e-4 * std::max(1.0f, std::abs(want.score)));
        }
      }
    }
  }
}

TEST_F(CudaSamplingTest, RepeatsBitForBit) {
  const Case c{50000, 16, 16};
  SamplingOptions o;
  o.temperature = 0.8f;
  o.top_p = 0.9f;
  o.seed = 3;
  const RunResult a = run_both(c, o, 2, 17);
  const RunResult b = run_both(c, o, 2, 17);
  for (size_t i = 0; i < a.gpu.size(); ++i) {
    EXPECT_EQ(a.gpu[i].token, b.gpu[i].token);
    EXPECT_EQ(a.gpu[i].confidence, b.gpu[i].confidence);
    EXPECT_EQ(a.gpu[i].score, b.gpu[i].score);
  }
}

// Every check runs before the device is touched, so this test needs no GPU (the pointer is
// never dereferenced).
TEST(CudaSamplingArguments, BadArgumentsThrow) {
  const int64_t vocab = 1000, rows = 4;
  std::vector<float> host(8);
  float* logits = host.data();
  cuda::CudaRowSampler sampler(vocab, nullptr);
  SamplingOptions o;
  std::vector<int64_t> ids = {0, 1};
  std::vector<Proposal> out(2), short_out(1);
  EXPECT_THROW(sampler.sample(logits, nullptr, rows, ids, ids, o, 0, short_out), Error);
  EXPECT_THROW(sampler.sample(logits, nullptr, rows, ids, std::vector<int64_t>{0}, o, 0, out),
               Error);
  EXPECT_THROW(sampler.sample(logits, nullptr, rows, std::vector<int64_t>{0, 4}, ids, o, 0, out),
               Error);
  EXPECT_THROW(sampler.sample(logits, nullptr, rows, std::vector<int64_t>{-1, 0}, ids, o, 0, out),
               Error);
  EXPECT_THROW(sampler.sample(logits, nullptr, rows, std::vector<int64_t>{1, 1}, ids, o, 0, out),
               Error);
  EXPECT_THROW(sampler.sample(logits, nullptr, -1, ids, ids, o, 0, out), Error);
  EXPECT_THROW(sampler.sample(nullptr, nullptr, rows, ids, ids, o, 0, out), Error);
  SamplingOptions bad = o;
  bad.temperature = -1;
  EXPECT_THROW(sampler.sample(logits, nullptr, rows, ids, ids, bad, 0, out), Error);
  bad = o;
  bad.top_p = 1.5f;
  EXPECT_THROW(sampler.sample(logits, nullptr, rows, ids, ids, bad, 0, out), Error);
  bad = o;
  bad.temperature = 1;
  bad.top_k = 5000;
  cuda::CudaRowSampler wide(8192, nullptr);
  EXPECT_THROW(wide.sample(logits, nullptr, rows, ids, ids, bad, 0, out), Error);
  EXPECT_THROW(cuda::CudaRowSampler(0, nullptr), Error);
  EXPECT_THROW(cuda::CudaRowSampler(-5, nullptr), Error);
  EXPECT_THROW(cuda::CudaRowSampler(int64_t{1} << 31, nullptr), Error);
  // The messages name the problem.
  try {
    sampler.sample(logits, nullptr, rows, std::vector<int64_t>{0, 9}, ids, o, 0, out);
    FAIL() << "no error for a row out of range";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 9"), std::string::npos) << e.what();
  }
  // Nothing to do is not an error, and touches nothing.
  std::vector<Proposal> none;
  sampler.sample(nullptr, nullptr, rows, {}, {}, o, 0, none);
}

// ---- the choice of positions on the device (sample_top) ----

struct TopRun {
  std::vector<Proposal> want;  // sample + choose_top on the host
  std::vector<Proposal> got;   // sample_top
};

// Rows [0, n + 3) of language-model-like logits in which every fifth row repeats the one before
// (equal scores, so ties to the lower position decide) and two rows are all −inf (score −inf,
// the key NaN scores also get). n of the rows are candidates, in a shuffled order, at positions
// that fall as the row rises (so a repeated row sits at the lower position).
struct TopCase {
  int64_t vocab = 1000;
  int64_t n;
  int64_t n_rows;
  std::vector<int64_t> rows, positions;
  cuda::DeviceArray<float> logits;

  explicit TopCase(int64_t candidates) : n(candidates), n_rows(candidates + 3) {
    std::vector<float> host = lm_rows(n_rows, vocab, 41);
    for (int64_t r = 1; r < n_rows; r += 5)
      std::copy_n(host.begin() + (r - 1) * vocab, vocab, host.begin() + r * vocab);
    for (int64_t r : {n_rows / 2, n_rows - 1})
      std::fill_n(host.begin() + r * vocab, vocab, kNegInf);
    logits = to_device(host);
    std::vector<int64_t> all(static_cast<size_t>(n_rows));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), std::mt19937(static_cast<uint32_t>(candidates)));
    rows.assign(all.begin(), all.begin() + n);
    for (int64_t r : rows) positions.push_back(5 * (n_rows - r) + 2);
  }
};

// The mask token's −inf is the only in-place change (no guidance), and writing it again
// changes nothing, so every call sees the same rows.
TopRun run_top(cuda::CudaRowSampler& sampler, TopCase& c, const SamplingOptions& o, int64_t step,
               int64_t count) {
  TopRun r;
  std::vector<Proposal> all(c.rows.size());
  sampler.sample(c.logits.data(), nullptr, c.n_rows, c.rows, c.positions, o, step, all);
  std::vector<size_t> chosen;
  choose_top(all, count, o.alg_temp, o.seed, step, &chosen);
  for (size_t i : chosen) r.want.push_back(all[i]);
  r.got.assign(3, Proposal{});  // stale contents must be replaced
  sampler.sample_top(c.logits.data(), nullptr, c.n_rows, c.rows, c.positions, o, step, count,
                     &r.got);
  return r;
}

::testing::AssertionResult same_proposals(const std::vector<Proposal>& got,
                                          const std::vector<Proposal>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << got.size() << " proposals, want " << want.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const Proposal &g = got[i], &w = want[i];
    const bool same_score = g.score == w.score || (std::isnan(g.score) && std::isnan(w.score));
    if (g.position != w.position || g.token != w.token || g.confidence != w.confidence ||
        !same_score) {
      return ::testing::AssertionFailure()
             << "entry " << i << ": got (position " << g.position << ", token " << g.token
             << ", confidence " << g.confidence << ", score " << g.score << "), want (position "
             << w.position << ", token " << w.token << ", confidence " << w.confidence << ", score "
             << w.score << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

TEST_F(CudaSamplingTest, SampleTopEqualsSampleThenChooseTop) {
  for (int64_t n : {int64_t{1}, int64_t{257}, int64_t{4096}}) {
    TopCase c(n);
    cuda::CudaRowSampler sampler(c.vocab, nullptr);
    for (Unmasking rule : {Unmasking::Confidence, Unmasking::Margin, Unmasking::Entropy}) {
      for (float temperature : {0.0f, 0.9f}) {
        for (float alg_temp : {0.0f, 0.7f}) {
          for (int64_t count : {int64_t{0}, int64_t{1}, n / 3, n, n + 5, int64_t{-2}}) {
            SamplingOptions o;
            o.rule = rule;
            o.temperature = temperature;
            o.alg_temp = alg_temp;
            o.seed = 21;
            o.mask_id = 7;
            const int64_t step = count + 2;
            const TopRun r = run_top(sampler, c, o, step, count);
            ASSERT_EQ(static_cast<int64_t>(r.want.size()), std::clamp<int64_t>(count, 0, n));
            ASSERT_TRUE(same_proposals(r.got, r.want))
                << "n " << n << " " << unmasking_name(rule) << " temperature " << temperature
                << " alg_temp " << alg_temp << " count " << count;
          }
        }
      }
    }
  }
}

TEST_F(CudaSamplingTest, SampleTopBreaksTiesTowardTheLowerPosition) {
  // Identical greedy rows: every score is equal, so the lowest positions are committed.
  const int64_t vocab = 1000, n = 300;
  std::vector<float> row = lm_rows(1, vocab, 5);
  std::vector<float> host;
  for (int64_t r = 0; r < n; ++r) host.insert(host.end(), row.begin(), row.end());
  auto d = to_device(host);
  std::vector<int64_t> rows(n), positions(n);
  std::iota(rows.begin(), rows.end(), 0);
  std::shuffle(rows.begin(), rows.end(), std::mt19937(3));
  for (int64_t i = 0; i < n; ++i)
    positions[static_cast<size_t>(i)] = 1000 - 3 * rows[static_cast<size_t>(i)];
  cuda::CudaRowSampler sampler(vocab, nullptr);
  SamplingOptions o;
  std::vector<Proposal> got;
  sampler.sample_top(d.data(), nullptr, n, rows, positions, o, 0, 10, &got);
  std::vector<int64_t> lowest(positions);
  std::sort(lowest.begin(), lowest.end());
  lowest.resize(10);
  ASSERT_EQ(got.size(), 10u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].position, lowest[i]);
    EXPECT_EQ(got[i].score, got[0].score);
  }
}

TEST_F(CudaSamplingTest, SampleTopRepeatsBitForBit) {
  TopCase c(257);
  cuda::CudaRowSampler sampler(c.vocab, nullptr);
  SamplingOptions o;
  o.rule = Unmasking::Entropy;
  o.temperature = 0.8f;
  o.alg_temp = 0.3f;
  o.seed = 8;
  std::vector<Proposal> a, b;
  sampler.sample_top(c.logits.data(), nullptr, c.n_rows, c.rows, c.positions, o, 4, 40, &a);
  sampler.sample_top(c.logits.data(), nullptr, c.n_rows, c.rows, c.positions, o, 4, 40, &b);
  EXPECT_TRUE(same_proposals(a, b));
  // A different step draws different position noise.
  sampler.sample_top(c.logits.data(), nullptr, c.n_rows, c.rows, c.positions, o, 5, 40, &b);
  EXPECT_FALSE(same_proposals(a, b));
}

// Checked before the device is touched, so no GPU is needed.
TEST(CudaSamplingArguments, SampleTopBadArgumentsThrow) {
  const int64_t vocab = 1000, rows = 4;
  std::vector<float> host(8);
  float* logits = host.data();
  cuda::CudaRowSampler sampler(vocab, nullptr);
  SamplingOptions o;
  std::vector<int64_t> ids = {0, 1};
  std::vector<Proposal> out;
  for (Unmasking rule : {Unmasking::Origin, Unmasking::Random}) {
    SamplingOptions bad = o;
    bad.rule = rule;
    EXPECT_THROW(sampler.sample_top(logits, nullptr, rows, ids, ids, bad, 0, 1, &out), Error);
  }
  EXPECT_THROW(sampler.sample_top(logits, nullptr, rows, ids, ids, o, 0, 1, nullptr), Error);
  EXPECT_THROW(
      sampler.sample_top(logits, nullptr, rows, ids, std::vector<int64_t>{0}, o, 0, 1, &out),
      Error);
  EXPECT_THROW(
      sampler.sample_top(logits, nullptr, rows, ids, std::vector<int64_t>{3, 3}, o, 0, 1, &out),
      Error);
  EXPECT_THROW(
      sampler.sample_top(logits, nullptr, rows, ids, std::vector<int64_t>{-1, 3}, o, 0, 1, &out),
      Error);
  EXPECT_THROW(
      sampler.sample_top(logits, nullptr, rows, std::vector<int64_t>{0, 4}, ids, o, 0, 1, &out),
      Error);
  EXPECT_THROW(
      sampler.sample_top(logits, nullptr, rows, std::vector<int64_t>{1, 1}, ids, o, 0, 1, &out),
      Error);
  try {
    sampler.sample_top(logits, nullptr, rows, ids, std::vector<int64_t>{9, 9}, o, 0, 1, &out);
    FAIL() << "no error for a repeated position";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("position 9"), std::string::npos) << e.what();
  }
  // Positions too far apart for the bitmap check take the sorted path.
  try {
    sampler.sample_top(logits, nullptr, rows, std::vector<int64_t>{0, 1, 2},
                       std::vector<int64_t>{5, int64_t{1} << 40, 5}, o, 0, 1, &out);
    FAIL() << "no error for a repeated far-apart position";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("position 5"), std::string::npos) << e.what();
  }
  // No candidates: nothing committed, nothing touched.
  out.assign(2, Proposal{});
  sampler.sample_top(nullptr, nullptr, rows, {}, {}, o, 0, 3, &out);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace ruvdllm
