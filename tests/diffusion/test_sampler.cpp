// Unmasking rules on hand-made logits with known answers, and token sampling statistics.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/sampler.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Logits whose softmax is exactly `probs` (0 becomes −inf).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(p > 0 ? static_cast<float>(std::log(p)) : kNegInf);
  return l;
}

// A step's logits buffer: one row of `vocab` per position.
struct Canvas {
  int64_t vocab;
  std::vector<float> logits;
  Canvas(int64_t v, int64_t positions)
      : vocab(v), logits(static_cast<size_t>(v * positions), 0.0f) {}
  void set_row(int64_t position, const std::vector<float>& row) {
    std::copy(row.begin(), row.end(), logits.begin() + position * vocab);
  }
};

std::vector<int64_t> positions_of(const std::vector<Proposal>& commits) {
  std::vector<int64_t> p;
  for (const auto& c : commits) p.push_back(c.position);
  return p;
}

// Runs steps committing `count` positions each and returns the commit order.
std::vector<std::vector<int64_t>> run_steps(Canvas canvas, SamplingOptions options,
                                            std::vector<int64_t> candidates, int64_t count) {
  ThreadPool pool(1);
  Sampler sampler(canvas.vocab, options);
  std::vector<std::vector<int64_t>> order;
  for (int64_t step = 0; !candidates.empty(); ++step) {
    Transfer t;
    t.count = count;
    const auto& commits = sampler.step(canvas.logits.data(), nullptr, candidates, t, step, pool);
    order.push_back(positions_of(commits));
    for (const auto& c : commits) std::erase(candidates, c.position);
  }
  return order;
}

TEST(Unmasking, ParsesNamesAndAliases) {
  EXPECT_EQ(parse_unmasking("origin"), Unmasking::Origin);
  EXPECT_EQ(parse_unmasking("Confidence"), Unmasking::Confidence);
  EXPECT_EQ(parse_unmasking("low_confidence"), Unmasking::Confidence);
  EXPECT_EQ(parse_unmasking("maskgit_plus"), Unmasking::Confidence);
  EXPECT_EQ(parse_unmasking("topk_margin"), Unmasking::Margin);
  EXPECT_EQ(parse_unmasking("entropy"), Unmasking::Entropy);
  EXPECT_EQ(parse_unmasking("random"), Unmasking::Random);
  EXPECT_THROW(parse_unmasking("greedy"), Error);
  for (auto r : {Unmasking::Origin, Unmasking::Confidence, Unmasking::Margin, Unmasking::Entropy,
                 Unmasking::Random}) {
    EXPECT_EQ(parse_unmasking(unmasking_name(r)), r);
  }
}

TEST(Unmasking, RejectsBadOptions) {
  auto bad = [](auto change) {
    SamplingOptions o;
    change(o);
    return o;
  };
  EXPECT_THROW(validate_sampling(bad([](auto& o) { o.temperature = -1; })), Error);
  EXPECT_THROW(validate_sampling(bad([](auto& o) { o.temperature = NAN; })), Error);
  EXPECT_THROW(validate_sampling(bad([](auto& o) { o.top_p = 0; })), Error);
  EXPECT_THROW(validate_sampling(bad([](auto& o) { o.top_p = 1.5f; })), Error);
  EXPECT_THROW(validate_sampling(bad([](auto& o) { o.top_k = -1; })), Error);
  EXPECT_THROW(validate_sampling(bad([](auto& o) { o.alg_temp = -0.1f; })), Error);
  EXPECT_THROW(validate_sampling(bad([](auto& o) { o.cfg_scale = -1; })), Error);
  EXPECT_NO_THROW(validate_sampling(SamplingOptions{}));
  EXPECT_THROW(Sampler(0, SamplingOptions{}), Error);
}

TEST(Unmasking, ConfidenceCommitsTheMostConfidentFirst) {
  // Four masked positions whose best tokens have p = 0.5, 0.9, 0.3, 0.7.
  const int64_t V = 8;
  Canvas canvas(V, 4);
  const double top[] = {0.5, 0.9, 0.3, 0.7};
  for (int64_t p = 0; p < 4; ++p) {
    std::vector<double> probs(V, (1 - top[p]) / (V - 1));
    probs[static_cast<size_t>(p + 2)] = top[p];
    canvas.set_row(p, logits_of(probs));
  }
  SamplingOptions o;
  o.rule = Unmasking::Confidence;
  const auto order = run_steps(canvas, o, {0, 1, 2, 3}, 1);
  EXPECT_EQ(order, (std::vector<std::vector<int64_t>>{{1}, {3}, {0}, {2}}));
  // Two per step: {1, 3} then {0, 2}; tokens are the argmax and confidence its probability.
  ThreadPool pool(1);
  Sampler sampler(V, o);
  std::vector<int64_t> candidates = {0, 1, 2, 3};
  const auto commits =
      sampler.step(canvas.logits.data(), nullptr, candidates, Transfer{2, 0}, 0, pool);
  ASSERT_EQ(positions_of(commits), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(commits[0].token, 3);
  EXPECT_NEAR(commits[0].confidence, 0.9, 1e-6);
  EXPECT_NEAR(commits[1].confidence, 0.7, 1e-6);
}

TEST(Unmasking, MarginPicksTheBiggestGap) {
  const int64_t V = 8;
  Canvas canvas(V, 2);
  canvas.set_row(0, logits_of({0.5, 0.45, 0.01, 0.01, 0.01, 0.01, 0.01, 0.0}));  // gap 0.05
  canvas.set_row(1, logits_of({0.1, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.0}));        // gap 0.3
  SamplingOptions o;
  o.rule = Unmasking::Margin;
  EXPECT_EQ(run_steps(canvas, o, {0, 1}, 1).front(), std::vector<int64_t>{1});
  o.rule = Unmasking::Confidence;  // confidence prefers the 0.5 position instead
  EXPECT_EQ(run_steps(canvas, o, {0, 1}, 1).front(), std::vector<int64_t>{0});
  RowScratch scratch;
  o.rule = Unmasking::Margin;
  EXPECT_NEAR(sample_position(canvas.logits.data() + V, V, o, 0, 1, scratch).score, 0.3, 1e-6);
  // A repeated maximum has no margin.
  const auto tied = logits_of({0.4, 0.4, 0.2, 0, 0, 0, 0, 0});
  EXPECT_NEAR(sample_position(tied.data(), V, o, 0, 0, scratch).score, 0.0, 1e-7);
}

TEST(Unmasking, EntropyCommitsTheLowestEntropyFirst) {
  const int64_t V = 8;
  const std::vector<std::vector<double>> rows = {
      {0.6, 0.1, 0.1, 0.1, 0.1, 0, 0, 0},  // H ≈ 1.23 but the most confident
      {0.55, 0.45, 0, 0, 0, 0, 0, 0},      // H ≈ 0.69: the surest overall
      std::vector<double>(8, 0.125),       // H = ln 8 ≈ 2.08
  };
  Canvas canvas(V, 3);
  for (int64_t p = 0; p < 3; ++p) canvas.set_row(p, logits_of(rows[static_cast<size_t>(p)]));
  SamplingOptions o;
  o.rule = Unmasking::Entropy;
  EXPECT_EQ(run_steps(canvas, o, {0, 1, 2}, 1), (std::vector<std::vector<int64_t>>{{1}, {0}, {2}}));
  o.rule = Unmasking::Confidence;
  EXPECT_EQ(run_steps(canvas, o, {0, 1, 2}, 1), (std::vector<std::vector<int64_t>>{{0}, {1}, {2}}));
  // The score is Σ p log p = −H.
  o.rule = Unmasking::Entropy;
  RowScratch scratch;
  for (int64_t p = 0; p < 3; ++p) {
    double h = 0;
    for (double q : rows[static_cast<size_t>(p)]) h -= q > 0 ? q * std::log(q) : 0;
    EXPECT_NEAR(sample_position(canvas.logits.data() + p * V, V, o, 0, p, scratch).score, -h, 1e-5);
  }
}

TEST(Unmasking, TiesGoToTheLowerPosition) {
  const int64_t V = 16;
  Canvas canvas(V, 6);
  const auto row = testing::random_normal(V, 4);
  for (int64_t p = 0; p < 6; ++p) canvas.set_row(p, row);
  for (auto rule : {Unmasking::Confidence, Unmasking::Margin, Unmasking::Entropy}) {
    SamplingOptions o;
    o.rule = rule;
    const auto order = run_steps(canvas, o, {1, 2, 3, 4, 5}, 2);
    EXPECT_EQ(order, (std::vector<std::vector<int64_t>>{{1, 2}, {3, 4}, {5}}))
        << unmasking_name(rule);
  }
}

TEST(Unmasking, RandomCommitsTheCountUniformly) {
  const int64_t V = 8, n = 10;
  Canvas canvas(V, n);
  for (int64_t p = 0; p < n; ++p)
    canvas.set_row(p, testing::random_normal(V, static_cast<uint64_t>(p)));
  SamplingOptions o;
  o.rule = Unmasking::Random;
  ThreadPool pool(1);
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  std::vector<int> hits(n, 0);
  const int trials = 3000;
  for (int s = 0; s < trials; ++s) {
    Sampler sampler(V, o);
    const auto commits = sampler.step(canvas.logits.data(), nullptr, all, Transfer{3, 0}, s, pool);
    ASSERT_EQ(commits.size(), 3u);
    for (const auto& c : commits) hits[static_cast<size_t>(c.position)]++;
  }
  const double expect = trials * 0.3, sd = std::sqrt(trials * 0.3 * 0.7);
  for (int h : hits) EXPECT_NEAR(h, expect, 5 * sd);
  // The same seed and step repeat; another seed moves.
  Sampler a(V, o), b(V, o);
  o.seed = 99;
  Sampler c(V, o);
  const auto pa = positions_of(a.step(canvas.logits.data(), nullptr, all, Transfer{3, 0}, 1, pool));
  EXPECT_EQ(pa, positions_of(b.step(canvas.logits.data(), nullptr, all, Transfer{3, 0}, 1, pool)));
  int differ = 0;
  for (int step = 0; step < 10; ++step) {
    differ +=
        positions_of(a.step(canvas.logits.data(), nullptr, all, Transfer{3, 0}, step, pool)) !=
        positions_of(c.step(canvas.logits.data(), nullptr, all, Transfer{3, 0}, step, pool));
  }
  EXPECT_GT(differ, 5);
}

TEST(Unmasking, OriginMovesEachPositionWithTheTransferProbability) {
  const int64_t V = 4, n = 4000;
  Canvas canvas(V, n);
  SamplingOptions o;
  o.rule = Unmasking::Origin;
  Sampler sampler(V, o);
  ThreadPool pool(2);
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  Transfer t;
  t.probability = 0.3;
  const auto& commits = sampler.step(canvas.logits.data(), nullptr, all, t, 0, pool);
  EXPECT_NEAR(static_cast<double>(commits.size()), n * 0.3, 5 * std::sqrt(n * 0.21));
  for (size_t i = 1; i < commits.size(); ++i)
    EXPECT_LT(commits[i - 1].position, commits[i].position);
  t.probability = 1.0;
  EXPECT_EQ(sampler.step(canvas.logits.data(), nullptr, all, t, 1, pool).size(),
            static_cast<size_t>(n));
  t.probability = 0.0;
  EXPECT_TRUE(sampler.step(canvas.logits.data(), nullptr, all, t, 2, pool).empty());
}

TEST(Unmasking, AlgTempSamplesPositionsFromSoftmaxOfScores) {
  const int64_t V = 4;
  Canvas canvas(V, 2);
  canvas.set_row(0, logits_of({0.8, 0.1, 0.05, 0.05}));
  canvas.set_row(1, logits_of({0.2, 0.3, 0.25, 0.25}));  // confidence 0.3
  SamplingOptions o;
  o.rule = Unmasking::Confidence;
  o.alg_temp = 0.5f;
  Sampler sampler(V, o);
  ThreadPool pool(1);
  const std::vector<int64_t> both = {0, 1};
  int first = 0;
  const int trials = 4000;
  for (int s = 0; s < trials; ++s) {
    first += sampler.step(canvas.logits.data(), nullptr, both, Transfer{1, 0}, s, pool)
                 .front()
                 .position == 0;
  }
  const double p = 1 / (1 + std::exp(-(0.8 - 0.3) / 0.5));
  EXPECT_NEAR(first, trials * p, 5 * std::sqrt(trials * p * (1 - p)));
}

std::vector<double> softmax(const std::vector<float>& logits, float temperature) {
  std::vector<double> p(logits.size());
  double z = 0;
  for (size_t i = 0; i < logits.size(); ++i) z += p[i] = std::exp(logits[i] / temperature);
  for (double& q : p) q /= z;
  return p;
}

// Token frequencies over n draws, each at its own (step, position).
std::vector<double> frequencies(const std::vector<float>& logits, const SamplingOptions& o, int n) {
  RowScratch scratch;
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < n; ++i) {
    const auto p = sample_position(logits.data(), static_cast<int64_t>(logits.size()), o, i / 97,
                                   i % 97, scratch);
    f[static_cast<size_t>(p.token)] += 1.0 / n;
  }
  return f;
}

void expect_distribution(const std::vector<double>& got, const std::vector<double>& want, int n,
                         const std::string& what) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0) {
      EXPECT_EQ(got[i], 0.0) << what << ": token " << i << " is outside the support";
    } else {
      EXPECT_NEAR(got[i], want[i], 5 * std::sqrt(want[i] * (1 - want[i]) / n) + 1e-9)
          << what << ": token " << i;
    }
  }
}

const std::vector<float> kLogits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f};

TEST(TokenSampling, TemperatureSamplesTheTemperedSoftmax) {
  const int n = 20000;
  for (bool gumbel : {false, true}) {
    for (float t : {0.7f, 1.0f, 1.5f}) {
      SamplingOptions o;
      o.temperature = t;
      o.gumbel = gumbel;
      expect_distribution(frequencies(kLogits, o, n), softmax(kLogits, t), n,
                          "temperature " + std::to_string(t) + (gumbel ? " gumbel" : ""));
    }
  }
  SamplingOptions greedy;  // temperature 0: always the argmax
  expect_distribution(frequencies(kLogits, greedy, 500), {0, 0, 0, 0, 1, 0}, 500, "argmax");
}

TEST(TokenSampling, TopKKeepsTheKMostLikely) {
  const int n = 20000;
  for (bool gumbel : {false, true}) {
    SamplingOptions o;
    o.temperature = 1;
    o.top_k = 3;  // tokens 4, 0, 1
    o.gumbel = gumbel;
    const double z = std::exp(2.0) + std::exp(1.0) + std::exp(0.5);
    expect_distribution(frequencies(kLogits, o, n),
                        {std::exp(1.0) / z, std::exp(0.5) / z, 0, 0, std::exp(2.0) / z, 0}, n,
                        gumbel ? "top-k gumbel" : "top-k");
  }
}

TEST(TokenSampling, TopPKeepsTheSmallestSetReachingP) {
  // softmax: token 4 0.538, token 0 0.198, token 1 0.120, ...: 0.538 + 0.198 >= 0.7.
  const int n = 20000;
  const double z = std::exp(2.0) + std::exp(1.0);
  for (bool gumbel : {false, true}) {
    SamplingOptions o;
    o.temperature = 1;
    o.top_p = 0.7f;
    o.gumbel = gumbel;
    expect_distribution(frequencies(kLogits, o, n),
                        {std::exp(1.0) / z, 0, 0, 0, std::exp(2.0) / z, 0}, n,
                        gumbel ? "top-p gumbel" : "top-p");
    // top-k 3 first, then top-p 0.8 of the renormalised {4, 0, 1}: 0.629 + 0.231 >= 0.8.
    o.top_k = 3;
    o.top_p = 0.8f;
    expect_distribution(frequencies(kLogits, o, n),
                        {std::exp(1.0) / z, 0, 0, 0, std::exp(2.0) / z, 0}, n,
                        gumbel ? "top-k+top-p gumbel" : "top-k+top-p");
  }
}

TEST(TokenSampling, TopPOnLargeFlatAndPeakedRowsDrawsOnlyFromTheNucleus) {
  const int64_t V = 8000;
  for (int shape = 0; shape < 2; ++shape) {
    auto x = testing::random_normal(V, 77 + static_cast<uint64_t>(shape), 1.0f);
    if (shape == 1) {  // a few favourites over a long tail
      for (int64_t i = 0; i < 5; ++i)
        x[static_cast<size_t>(i * 797)] += 6.0f + static_cast<float>(i);
    }
    auto weight = [&](int32_t id) {
      return std::exp(static_cast<double>(x[static_cast<size_t>(id)]));
    };
    for (float top_p : {0.3f, 0.9f}) {
      // The nucleus by a full sort: most likely first, lower id on ties.
      std::vector<int32_t> order(V);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return weight(a) > weight(b); });
      double z = 0;
      for (int32_t id : order) z += weight(id);
      std::vector<bool> in_nucleus(V, false);
      double nucleus_mass = 0;
      for (int32_t id : order) {
        in_nucleus[static_cast<size_t>(id)] = true;
        nucleus_mass += weight(id);
        if (nucleus_mass >= top_p * z) break;
      }
      // E[q(token)] under q = the renormalised nucleus is Σ q²: a statistic with a known mean.
      double expect = 0;
      for (int32_t id = 0; id < V; ++id) {
        if (in_nucleus[static_cast<size_t>(id)]) expect += std::pow(weight(id) / nucleus_mass, 2);
      }
      for (bool gumbel : {false, true}) {
        SamplingOptions o;
        o.temperature = 1;
        o.top_p = top_p;
        o.gumbel = gumbel;
        RowScratch scratch;
        const int draws = 2000;
        double mean = 0;
        for (int i = 0; i < draws; ++i) {
          const auto p = sample_position(x.data(), V, o, i, 1, scratch);
          ASSERT_TRUE(in_nucleus[static_cast<size_t>(p.token)])
              << "token " << p.token << " is outside the nucleus";
          mean += weight(p.token) / nucleus_mass / draws;
        }
        EXPECT_NEAR(mean, expect, 0.1 * expect)
            << "shape " << shape << " top_p " << top_p << (gumbel ? " gumbel" : "");
      }
    }
  }
}

TEST(TokenSampling, ConfidenceIgnoresTopKAndTopP) {
  SamplingOptions o;
  o.temperature = 1;
  o.top_k = 1;
  RowScratch scratch;
  const auto p = sample_position(kLogits.data(), 6, o, 0, 0, scratch);
  EXPECT_EQ(p.token, 4);
  EXPECT_NEAR(p.confidence, softmax(kLogits, 1)[4], 1e-6);  // not 1, the truncated value
  o.temperature = 0.5f;                                     // but it does follow the temperature
  EXPECT_NEAR(sample_position(kLogits.data(), 6, o, 0, 0, scratch).confidence,
              softmax(kLogits, 0.5f)[4], 1e-6);
}

TEST(TokenSampling, GumbelNoiseIsDrawnPerPosition) {
  // Identical flat rows at many positions: with one shared noise vector every position would
  // pick the same token.
  const int64_t V = 1000;
  std::vector<float> flat(V, 0.0f);
  SamplingOptions o;
  o.temperature = 1;
  o.gumbel = true;
  RowScratch scratch;
  std::set<int32_t> tokens;
  for (int64_t p = 0; p < 64; ++p)
    tokens.insert(sample_position(flat.data(), V, o, 0, p, scratch).token);
  EXPECT_GE(tokens.size(), 55u);
  // ...and per step: the same position draws anew at the next step.
  std::set<int32_t> over_steps;
  for (int64_t s = 0; s < 64; ++s)
    over_steps.insert(sample_position(flat.data(), V, o, s, 3, scratch).token);
  EXPECT_GE(over_steps.size(), 55u);
}

TEST(TokenSampling, MaskTokenIsNeverSampled) {
  const int64_t V = 8;
  Canvas canvas(V, 3);
  for (int64_t p = 0; p < 3; ++p) {
    auto row = testing::random_normal(V, static_cast<uint64_t>(p) + 10);
    row[5] = 50.0f;  // the model loves the mask token
    canvas.set_row(p, row);
  }
  SamplingOptions o;
  o.mask_id = 5;
  o.temperature = 1;
  Sampler sampler(V, o);
  ThreadPool pool(1);
  const std::vector<int64_t> all = {0, 1, 2};
  for (const auto& c : sampler.step(canvas.logits.data(), nullptr, all, Transfer{3, 0}, 0, pool)) {
    EXPECT_NE(c.token, 5);
  }
}

TEST(TokenSampling, ClassifierFreeGuidanceFollowsTheFormula) {
  // cond: token 0 at 1.0, token 1 at 0.9; uncond: 1.0 and 0.5. With w = 1, token 1 becomes
  // 0.5 + 2·0.4 = 1.3 > 1.0; without guidance token 0 wins.
  const int64_t V = 4;
  const std::vector<float> cond = {1.0f, 0.9f, -1.0f, -2.0f}, uncond = {1.0f, 0.5f, -1.0f, -1.0f};
  ThreadPool pool(1);
  const std::vector<int64_t> one = {0};
  for (float w : {0.0f, 1.0f}) {
    SamplingOptions o;
    o.cfg_scale = w;
    Sampler sampler(V, o);
    auto logits = cond;
    const auto commits = sampler.step(logits.data(), uncond.data(), one, Transfer{1, 0}, 0, pool);
    EXPECT_EQ(commits.front().token, w > 0 ? 1 : 0);
    if (w > 0) {
      for (int64_t i = 0; i < V; ++i) {
        EXPECT_NEAR(logits[static_cast<size_t>(i)],
                    uncond[static_cast<size_t>(i)] +
                        (w + 1) * (cond[static_cast<size_t>(i)] - uncond[static_cast<size_t>(i)]),
                    1e-6);
      }
    }
  }
}

TEST(TokenSampling, FastPathMatchesReference) {
  for (int64_t V : {17, 1001, 50258}) {
    int rows = 0, agree = 0;
    for (float t : {0.0f, 0.8f}) {
      for (int64_t k : {0, 40}) {
        for (float top_p : {1.0f, 0.9f}) {
          for (bool gumbel : {false, true}) {
            for (auto rule : {Unmasking::Confidence, Unmasking::Margin, Unmasking::Entropy}) {
              SamplingOptions o;
              o.temperature = t;
              o.top_k = k;
              o.top_p = top_p;
              o.gumbel = gumbel;
              o.rule = rule;
              o.seed = 17;
              RowScratch scratch;
              for (int64_t p = 0; p < 4; ++p) {
                // Peaked (σ = 3) and flat (σ = 1) rows alternate.
                const auto x = testing::random_normal(
                    static_cast<size_t>(V), static_cast<uint64_t>(V * 10 + p), p % 2 ? 1.0f : 3.0f);
                const auto got = sample_position(x.data(), V, o, 2, p, scratch);
                const auto want = sample_position_reference(x.data(), V, o, 2, p);
                ++rows;
                agree += got.token == want.token;
                if (t == 0) {
                  EXPECT_EQ(got.token, want.token);
                }
                EXPECT_NEAR(got.confidence, want.confidence, 1e-4 * want.confidence + 1e-7);
                EXPECT_NEAR(got.score, want.score, 1e-4 * std::fabs(want.score) + 1e-6)
                    << unmasking_name(rule) << " V=" << V;
              }
            }
          }
        }
      }
    }
    // Sampling paths differ from the reference only by rounding at a CDF or Gumbel boundary.
    EXPECT_GE(agree, rows - 2) << "V=" << V;
  }
}

TEST(TokenSampling, SameSeedSameTokensAtAnyThreadCount) {
  const int64_t V = 5000, n = 64;
  Canvas canvas(V, n);
  for (int64_t p = 0; p < n; ++p)
    canvas.set_row(p, testing::random_normal(V, static_cast<uint64_t>(p), 2.0f));
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  for (auto rule :
       {Unmasking::Confidence, Unmasking::Entropy, Unmasking::Random, Unmasking::Origin}) {
    SamplingOptions o;
    o.rule = rule;
    o.temperature = 1;
    o.top_p = 0.9f;
    o.seed = 5;
    std::vector<std::vector<std::pair<int64_t, int32_t>>> results;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      Sampler sampler(V, o);
      Transfer t{16, 0.4};
      std::vector<std::pair<int64_t, int32_t>> r;
      for (const auto& c : sampler.step(canvas.logits.data(), nullptr, all, t, 0, pool))
        r.emplace_back(c.position, c.token);
      results.push_back(r);
    }
    EXPECT_FALSE(results[0].empty());
    EXPECT_EQ(results[0], results[1]) << unmasking_name(rule);
    EXPECT_EQ(results[0], results[2]) << unmasking_name(rule);
  }
}

// ---- a chooser for the ranking rules (the GPU's propose_top) ----

struct ChooserCase {
  Canvas canvas{50, 40};
  std::vector<int64_t> candidates;  // unsorted, a subset of the rows
  ChooserCase() {
    for (int64_t p = 0; p < 40; ++p)
      canvas.set_row(p, testing::random_normal(50, 300 + static_cast<uint64_t>(p), 2.0f));
    // Two identical rows: equal scores, so the tie-break by position matters.
    canvas.set_row(22, testing::random_normal(50, 300 + 7, 2.0f));
    for (int64_t i = 0; i < 33; ++i) candidates.push_back((39 - 11 * i % 40 + 40) % 40);
  }
};

struct ChooserRun {
  std::vector<Proposal> commits;
  int proposer_calls = 0;
  int chooser_calls = 0;
};

// One step with a chooser that either does the whole work itself (sample_rows + choose_top on
// its own copy of the logits) or declines.
ChooserRun step_with_chooser(const ChooserCase& c, const SamplingOptions& o, const Transfer& t,
                             bool accept) {
  ThreadPool pool(1);
  Sampler sampler(c.canvas.vocab, o);
  std::vector<float> logits = c.canvas.logits;
  std::vector<float> chooser_logits = c.canvas.logits;
  std::vector<RowScratch> scratch;
  ChooserRun run;
  const int64_t step = 3;
  run.commits = sampler.step(
      [&](std::span<const int64_t> positions, std::vector<Proposal>* out) {
        ++run.proposer_calls;
        sample_rows(logits.data(), nullptr, c.canvas.vocab, positions, 0, o, step, pool, &scratch,
                    out);
      },
      [&](std::span<const int64_t> candidates, int64_t count, std::vector<Proposal>* committed) {
        ++run.chooser_calls;
        EXPECT_LE(count, static_cast<int64_t>(candidates.size()));
        EXPECT_GE(count, 0);
        if (!accept) {
          committed->push_back(Proposal{});  // junk a declining chooser leaves must not count
          return false;
        }
        std::vector<Proposal> all;
        sample_rows(chooser_logits.data(), nullptr, c.canvas.vocab, candidates, 0, o, step, pool,
                    &scratch, &all);
        std::vector<size_t> chosen;
        choose_top(all, count, o.alg_temp, o.seed, step, &chosen);
        committed->clear();
        for (size_t i : chosen) committed->push_back(all[i]);
        return true;
      },
      c.candidates, t, step);
  return run;
}

std::vector<Proposal> step_without_chooser(const ChooserCase& c, const SamplingOptions& o,
                                           const Transfer& t) {
  ThreadPool pool(1);
  Sampler sampler(c.canvas.vocab, o);
  std::vector<float> logits = c.canvas.logits;
  return sampler.step(logits.data(), nullptr, c.candidates, t, 3, pool);
}

void expect_same_commits(const std::vector<Proposal>& got, const std::vector<Proposal>& want,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].position, want[i].position) << what << " commit " << i;
    EXPECT_EQ(got[i].token, want[i].token) << what << " commit " << i;
    EXPECT_EQ(got[i].confidence, want[i].confidence) << what << " commit " << i;
    EXPECT_EQ(got[i].score, want[i].score) << what << " commit " << i;
  }
}

TEST(Chooser, RankingRulesCommitWhatTheHostPathCommits) {
  const ChooserCase c;
  for (Unmasking rule : {Unmasking::Confidence, Unmasking::Margin, Unmasking::Entropy}) {
    for (float alg_temp : {0.0f, 0.7f}) {
      for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{11}, int64_t{33}, int64_t{50}}) {
        SamplingOptions o;
        o.rule = rule;
        o.temperature = 0.8f;
        o.alg_temp = alg_temp;
        o.seed = 9;
        const Transfer t{count, 0};
        const std::string what = std::string(unmasking_name(rule)) + " alg_temp " +
                                 std::to_string(alg_temp) + " count " + std::to_string(count);
        const std::vector<Proposal> want = step_without_chooser(c, o, t);
        ASSERT_EQ(static_cast<int64_t>(want.size()), std::min<int64_t>(count, 33)) << what;
        const ChooserRun accepted = step_with_chooser(c, o, t, true);
        EXPECT_EQ(accepted.chooser_calls, 1) << what;
        EXPECT_EQ(accepted.proposer_calls, 0) << what;
        expect_same_commits(accepted.commits, want, what + " (chooser)");
        const ChooserRun declined = step_with_chooser(c, o, t, false);
        EXPECT_EQ(declined.chooser_calls, 1) << what;
        EXPECT_EQ(declined.proposer_calls, 1) << what;
        expect_same_commits(declined.commits, want, what + " (declined)");
      }
    }
  }
}

TEST(Chooser, TiedScoresGoToTheLowerPositionThroughTheChooser) {
  const ChooserCase c;  // rows 7 and 22 are identical; both are candidates
  SamplingOptions o;
  o.rule = Unmasking::Confidence;
  Transfer t{1, 0};
  // Find a count at which exactly one of the pair is committed: the lower one must be.
  bool seen = false;
  for (int64_t count = 1; count <= 33 && !seen; ++count) {
    t.count = count;
    const auto commits = step_with_chooser(c, o, t, true).commits;
    const auto positions = positions_of(commits);
    const bool has7 = std::count(positions.begin(), positions.end(), 7) > 0;
    const bool has22 = std::count(positions.begin(), positions.end(), 22) > 0;
    if (has7 != has22) {
      seen = true;
      EXPECT_TRUE(has7) << "count " << count;
    }
  }
  EXPECT_TRUE(seen);
}

TEST(Chooser, NotAskedForOriginOrRandom) {
  const ChooserCase c;
  for (Unmasking rule : {Unmasking::Origin, Unmasking::Random}) {
    SamplingOptions o;
    o.rule = rule;
    o.temperature = 1.0f;
    o.seed = 4;
    const Transfer t{7, 0.3};
    const std::vector<Proposal> want = step_without_chooser(c, o, t);
    ASSERT_FALSE(want.empty()) << unmasking_name(rule);
    const ChooserRun run = step_with_chooser(c, o, t, true);
    EXPECT_EQ(run.chooser_calls, 0) << unmasking_name(rule);
    EXPECT_EQ(run.proposer_calls, 1) << unmasking_name(rule);
    expect_same_commits(run.commits, want, unmasking_name(rule));
  }
}

TEST(Chooser, BrokenChooserIsAnError) {
  const ChooserCase c;
  SamplingOptions o;
  ThreadPool pool(1);
  Sampler sampler(c.canvas.vocab, o);
  const auto never = [](std::span<const int64_t>, std::vector<Proposal>*) {
    FAIL() << "the proposer should not run";
  };
  const auto too_few = [](std::span<const int64_t>, int64_t, std::vector<Proposal>* committed) {
    committed->assign(1, Proposal{});
    return true;
  };
  EXPECT_THROW(sampler.step(never, too_few, c.candidates, Transfer{3, 0}, 0), Error);
  const auto unsorted = [](std::span<const int64_t>, int64_t, std::vector<Proposal>* committed) {
    committed->assign(2, Proposal{});
    (*committed)[0].position = 5;
    (*committed)[1].position = 2;
    return true;
  };
  EXPECT_THROW(sampler.step(never, unsorted, c.candidates, Transfer{2, 0}, 0), Error);
}

}  // namespace
}  // namespace ruvdllm
