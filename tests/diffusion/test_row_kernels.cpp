// The SIMD row kernels of the sampler against their scalar references, on random rows of
// several lengths (odd ones included, to exercise the vector tails).
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ruvdllm/diffusion/rng.h"
#include "ruvdllm/diffusion/row_kernels.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
const int64_t kSizes[] = {1, 2, 7, 15, 16, 17, 63, 64, 65, 100, 1001, 4099, 50258};

// Runs the body once for every SIMD target compiled in and supported by this CPU, so each
// target's code is compared with the reference, not just the best one.
template <class Body>
void for_each_target(const Body& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST(RowKernels, Top2MatchesReference) {
  for_each_target([&] {
    for (int64_t n : kSizes) {
      for (uint64_t seed = 1; seed <= 3; ++seed) {
        auto x = testing::random_normal(static_cast<size_t>(n),
                                        seed * 100 + static_cast<uint64_t>(n), 3.0f);
        const RowTop2 want = row_top2_reference(x.data(), n);
        const RowTop2 got = row_top2(x.data(), n);
        EXPECT_EQ(got.max, want.max) << "n=" << n;
        EXPECT_EQ(got.argmax, want.argmax) << "n=" << n;
        EXPECT_EQ(got.second, want.second) << "n=" << n;
      }
    }
  });
}

TEST(RowKernels, Top2TiesPickFirstIndexAndRepeatSecond) {
  for_each_target([&] {
    for (int64_t n : {5, 40, 1000}) {
      auto x = testing::random_floats(static_cast<size_t>(n), 9, -1.0f, 1.0f);
      x[static_cast<size_t>(n / 2)] = 7.0f;
      x[static_cast<size_t>(n - 1)] = 7.0f;
      x[static_cast<size_t>(n / 3)] = 7.0f;
      const RowTop2 got = row_top2(x.data(), n);
      EXPECT_EQ(got.max, 7.0f);
      EXPECT_EQ(got.argmax, n / 3);
      EXPECT_EQ(got.second, 7.0f);  // the maximum repeats, so the margin is 0
      const RowTop2 want = row_top2_reference(x.data(), n);
      EXPECT_EQ(got.argmax, want.argmax);
    }
  });
}

TEST(RowKernels, Top2IgnoresNanAndNegativeInfinity) {
  for_each_target([&] {
    std::vector<float> x(37, -kInf);
    x[3] = std::numeric_limits<float>::quiet_NaN();
    x[20] = -5.0f;
    x[30] = -6.0f;
    const RowTop2 got = row_top2(x.data(), 37);
    EXPECT_EQ(got.argmax, 20);
    EXPECT_EQ(got.second, -6.0f);
    std::vector<float> all_masked(33, -kInf);
    EXPECT_EQ(row_top2(all_masked.data(), 33).max, -kInf);
  });
}

TEST(RowKernels, ExpSumsMatchReference) {
  for_each_target([&] {
    for (int64_t n : kSizes) {
      for (float inv_temp : {1.0f, 0.5f, 3.0f}) {
        auto x = testing::random_normal(static_cast<size_t>(n), static_cast<uint64_t>(n) + 5, 4.0f);
        if (n > 10) x[7] = -kInf;  // a banned token contributes nothing
        const float max = row_top2_reference(x.data(), n).max;
        std::vector<float> e_want(static_cast<size_t>(n)), e_got(static_cast<size_t>(n));
        const ExpSums want = row_exp_sums_reference(x.data(), n, max, inv_temp, e_want.data());
        const ExpSums got = row_exp_sums(x.data(), n, max, inv_temp, e_got.data());
        EXPECT_NEAR(got.sum, want.sum, 1e-5 * want.sum) << "n=" << n;
        EXPECT_NEAR(got.weighted, want.weighted, 1e-5 * std::fabs(want.weighted) + 1e-6)
            << "n=" << n;
        const auto diff =
            testing::compare(e_got.data(), e_want.data(), static_cast<size_t>(n), 1e-30);
        EXPECT_LE(diff.max_rel, 2e-6) << "n=" << n;
        EXPECT_TRUE(std::isfinite(got.weighted));
        // Without an output buffer the sums are the same.
        const ExpSums again = row_exp_sums(x.data(), n, max, inv_temp, nullptr);
        EXPECT_EQ(again.sum, got.sum);
      }
    }
  });
}

TEST(RowKernels, FindGreaterMatchesReference) {
  for_each_target([&] {
    for (int64_t n : kSizes) {
      auto x = testing::random_floats(static_cast<size_t>(n), static_cast<uint64_t>(n), 0.0f, 1.0f);
      for (float threshold : {0.5f, 0.99f, 0.9999f, 2.0f}) {
        for (int64_t begin : {int64_t{0}, n / 3, n - 1}) {
          EXPECT_EQ(find_greater(x.data(), begin, n, threshold),
                    find_greater_reference(x.data(), begin, n, threshold))
              << "n=" << n << " begin=" << begin << " threshold=" << threshold;
        }
      }
    }
  });
}

TEST(RowKernels, CumulativeSearchLandsOnTheTargetsEntry) {
  for_each_target([&] {
    for (int64_t n : kSizes) {
      auto e =
          testing::random_floats(static_cast<size_t>(n), static_cast<uint64_t>(n) + 1, 0.0f, 1.0f);
      if (n > 20) {
        for (int64_t i = 5; i < 15; ++i) e[static_cast<size_t>(i)] = 0.0f;  // zero-weight run
      }
      std::vector<double> prefix(static_cast<size_t>(n) + 1, 0.0);
      for (int64_t i = 0; i < n; ++i)
        prefix[static_cast<size_t>(i) + 1] =
            prefix[static_cast<size_t>(i)] + e[static_cast<size_t>(i)];
      const double total = prefix.back();
      for (double u : {0.0, 0.001, 0.25, 0.5, 0.77, 0.999999}) {
        const double target = u * total;
        const int64_t got = cumulative_search(e.data(), n, target);
        const int64_t want = cumulative_search_reference(e.data(), n, target);
        ASSERT_GE(got, 0);
        ASSERT_LT(got, n);
        EXPECT_GT(e[static_cast<size_t>(got)], 0.0f);
        // Chunk sums are added in float, so only a target within rounding of an entry boundary
        // may land one entry off.
        const double slack = 1e-5 * total;
        EXPECT_LE(prefix[static_cast<size_t>(got)], target + slack) << "n=" << n << " u=" << u;
        EXPECT_GT(prefix[static_cast<size_t>(got) + 1], target - slack) << "n=" << n << " u=" << u;
        if (got != want) {
          const auto first = static_cast<size_t>(std::min(got, want));
          EXPECT_NEAR(prefix[first + 1], target, slack);
        }
      }
      // A target beyond the total returns the last entry with weight.
      const int64_t beyond = cumulative_search(e.data(), n, total * 2);
      EXPECT_EQ(beyond, cumulative_search_reference(e.data(), n, total * 2));
    }
  });
}

TEST(RowKernels, MassAboveAndCollectRangeMatchReference) {
  for_each_target([&] {
    for (int64_t n : kSizes) {
      auto e =
          testing::random_floats(static_cast<size_t>(n), static_cast<uint64_t>(n) + 3, 0.0f, 1.0f);
      if (n > 30) {
        e[10] = e[11] = e[12] = 0.5f;  // a run of equal weights on a boundary
        e[20] = 0.0f;
      }
      for (float threshold : {0.0f, 0.25f, 0.5f, 0.9f, 1.0f}) {
        const MassAbove want = mass_above_reference(e.data(), n, threshold);
        const MassAbove got = mass_above(e.data(), n, threshold);
        EXPECT_EQ(got.count, want.count) << "n=" << n << " threshold=" << threshold;
        EXPECT_NEAR(got.mass, want.mass, 1e-6 * want.mass + 1e-9) << "n=" << n;
      }
      for (auto [lo, hi] : {std::pair{0.0f, 1.0f}, std::pair{0.25f, 0.5f}, std::pair{0.5f, 0.5f},
                            std::pair{0.7f, 0.7001f}}) {
        std::vector<int32_t> want(static_cast<size_t>(n) + kCollectPadding), got(want.size());
        const int64_t count = collect_range_reference(e.data(), n, lo, hi, want.data());
        ASSERT_EQ(collect_range(e.data(), n, lo, hi, got.data()), count) << "n=" << n;
        want.resize(static_cast<size_t>(count));
        got.resize(static_cast<size_t>(count));
        EXPECT_EQ(got, want) << "n=" << n << " range (" << lo << ", " << hi << "]";
      }
    }
  });
}

TEST(RowKernels, SelectedCumulativeSearchWalksOnlyTheSelection) {
  for_each_target([&] {
    for (int64_t n : kSizes) {
      auto e =
          testing::random_floats(static_cast<size_t>(n), static_cast<uint64_t>(n) + 8, 0.0f, 1.0f);
      if (n > 30) e[5] = e[6] = e[7] = 0.6f;
      for (Selection sel :
           {Selection{}, Selection{0.6f, 6}, Selection{0.6f, -1}, Selection{0.95f, 0}}) {
        std::vector<double> prefix(1, 0.0);
        for (int64_t i = 0; i < n; ++i) {
          const float w = e[static_cast<size_t>(i)];
          prefix.push_back(prefix.back() + (sel.contains(w, i) ? w : 0.0));
        }
        if (prefix.back() == 0) continue;
        for (double u : {0.0, 0.3, 0.61, 0.999}) {
          const double target = u * prefix.back();
          const int64_t got = cumulative_search(e.data(), n, target, sel);
          ASSERT_TRUE(sel.contains(e[static_cast<size_t>(got)], got))
              << "n=" << n << ": outside the selection";
          const double slack = 1e-5 * prefix.back();
          EXPECT_LE(prefix[static_cast<size_t>(got)], target + slack) << "n=" << n;
          EXPECT_GT(prefix[static_cast<size_t>(got) + 1], target - slack) << "n=" << n;
          const int64_t want = cumulative_search_reference(e.data(), n, target, sel);
          if (got != want) {
            EXPECT_NEAR(prefix[static_cast<size_t>(std::min(got, want)) + 1], target, slack);
          }
        }
      }
    }
  });
}

TEST(RowKernels, GumbelMaxMatchesReference) {
  for_each_target([&] {
    int agree = 0, total = 0;
    for (int64_t n : kSizes) {
      for (uint64_t key = 1; key <= 20; ++key) {
        auto x = testing::random_normal(static_cast<size_t>(n), key * 7 + static_cast<uint64_t>(n),
                                        2.0f);
        // Every other key restricts the competition to entries with weight above 0.5.
        const auto w = testing::random_floats(static_cast<size_t>(n), key, 0.0f, 1.0f);
        const float* weights = key % 2 ? w.data() : nullptr;
        const Selection sel{0.5f, -1};
        const GumbelMax want = row_gumbel_max_reference(x.data(), n, 0.7f, key, weights, sel);
        const GumbelMax got = row_gumbel_max(x.data(), n, 0.7f, key, weights, sel);
        if (want.value == -kInf) continue;  // nothing selected in a tiny row
        if (weights) {
          EXPECT_GT(w[static_cast<size_t>(got.index)], 0.5f);
        }
        // The vector log differs from std::log in the last bits, so near-ties may flip; the
        // chosen entry's value must still be the maximum to within that rounding.
        const float value_at_got = x[static_cast<size_t>(got.index)] * 0.7f +
                                   gumbel_noise(key, static_cast<uint32_t>(got.index));
        EXPECT_NEAR(value_at_got, want.value, 1e-4f * (1 + std::fabs(want.value)));
        EXPECT_NEAR(got.value, want.value, 1e-4f * (1 + std::fabs(want.value)));
        agree += got.index == want.index;
        ++total;
      }
    }
    EXPECT_GE(agree, total - 2);
  });
}

TEST(RowKernels, GumbelNoiseIsStandardGumbel) {
  // Mean of a standard Gumbel is the Euler–Mascheroni constant, variance π²/6.
  const int n = 200000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double g = gumbel_noise(12345, static_cast<uint32_t>(i));
    ASSERT_TRUE(std::isfinite(g));
    sum += g;
    sum2 += g * g;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.5772156649, 0.02);
  EXPECT_NEAR(var, 1.6449340668, 0.05);
}

TEST(RowKernels, CfgCombineMatchesFormula) {
  for_each_target([&] {
    for (int64_t n : kSizes) {
      auto c = testing::random_normal(static_cast<size_t>(n), 3, 2.0f);
      auto u = testing::random_normal(static_cast<size_t>(n), 4, 2.0f);
      auto got = c, want = c;
      cfg_combine(got.data(), u.data(), n, 1.5f);
      cfg_combine_reference(want.data(), u.data(), n, 1.5f);
      for (int64_t i = 0; i < n; ++i) {
        const float formula = u[static_cast<size_t>(i)] +
                              2.5f * (c[static_cast<size_t>(i)] - u[static_cast<size_t>(i)]);
        EXPECT_NEAR(want[static_cast<size_t>(i)], formula, 1e-5f * (1 + std::fabs(formula)));
        EXPECT_NEAR(got[static_cast<size_t>(i)], formula, 1e-5f * (1 + std::fabs(formula)));
      }
    }
  });
}

TEST(Rng, DrawsAreUniformAndKeyed) {
  const uint64_t a = random_key(1, 0, 5, RandomStream::Token);
  EXPECT_NE(a, random_key(2, 0, 5, RandomStream::Token));
  EXPECT_NE(a, random_key(1, 1, 5, RandomStream::Token));
  EXPECT_NE(a, random_key(1, 0, 6, RandomStream::Token));
  EXPECT_NE(a, random_key(1, 0, 5, RandomStream::Gumbel));
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const double u = random_uniform(random_key(7, i, 3, RandomStream::Token));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    const float v = vocab_uniform(a, static_cast<uint32_t>(i));
    ASSERT_GT(v, 0.0f);
    ASSERT_LT(v, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
}

}  // namespace
}  // namespace ruvdllm
