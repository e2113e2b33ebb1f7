// The dispatched element-wise and row-wise ops against their scalar references, on every SIMD
// target this machine supports, plus known answers and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "hwy/targets.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/ops.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
const int64_t kLengths[] = {1, 7, 63, 64, 65, 4096 + 3};

// Runs fn once per SIMD target that is both compiled in and supported by this CPU, so the
// AVX2/SSE4/emulated paths are tested on an AVX-512 machine too.
template <class Fn>
void for_each_target(Fn&& fn) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    fn();
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Largest |a-b| / |b| where b != 0, and requires a == 0 where b == 0.
double max_relative(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (b[i] == 0) {
      EXPECT_EQ(a[i], 0.0f) << "at " << i;
      continue;
    }
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]) / std::fabs(b[i]));
  }
  return worst;
}

TEST(RmsNorm, MatchesReferenceWithAndWithoutWeight) {
  for_each_target([] {
    for (int64_t n : kLengths) {
      const int64_t rows = 3;
      const auto x = testing::random_normal(static_cast<size_t>(rows * n), 11 + n, 2.0f);
      const auto w = testing::random_floats(static_cast<size_t>(n), 12 + n, 0.5f, 1.5f);
      for (const float* weight : {w.data(), static_cast<const float*>(nullptr)}) {
        std::vector<float> fast(x.size()), ref(x.size());
        rmsnorm(x.data(), weight, fast.data(), rows, n, 1e-5f);
        rmsnorm_reference(x.data(), weight, ref.data(), rows, n, 1e-5f);
        EXPECT_LE(max_relative(fast, ref), 1e-5) << "n " << n;
      }
    }
  });
}

TEST(RmsNorm, InPlaceGivesTheSameAsOutOfPlace) {
  const int64_t n = 65;
  auto x = testing::random_floats(2 * n, 3);
  const auto w = testing::random_floats(n, 4);
  std::vector<float> out(x.size());
  rmsnorm(x.data(), w.data(), out.data(), 2, n, 1e-6f);
  rmsnorm(x.data(), w.data(), x.data(), 2, n, 1e-6f);
  EXPECT_EQ(x, out);
}

TEST(RmsNorm, KnownAnswer) {
  // rms of (3, 4) is sqrt(12.5); eps is negligible.
  const float x[2] = {3, 4}, w[2] = {1, 2};
  float y[2];
  rmsnorm(x, w, y, 1, 2, 0.0f);
  EXPECT_NEAR(y[0], 3 / std::sqrt(12.5f), 1e-6);
  EXPECT_NEAR(y[1], 8 / std::sqrt(12.5f), 1e-6);
  EXPECT_THROW(rmsnorm(x, w, y, 1, 0, 1e-5f), Error);
}

TEST(Softmax, MatchesReferenceIncludingMaskedEntries) {
  for_each_target([] {
    for (int64_t n : kLengths) {
      const int64_t rows = 4;
      auto x = testing::random_normal(static_cast<size_t>(rows * n), 21 + n, 5.0f);
      // Mask every third entry of the second row and all but one entry of the last row.
      for (int64_t i = 0; i < n; i += 3) x[static_cast<size_t>(n + i)] = -kInf;
      for (int64_t i = 1; i < n; ++i) x[static_cast<size_t>(3 * n + i)] = -kInf;
      auto fast = x, ref = x;
      softmax(fast.data(), rows, n);
      softmax_reference(ref.data(), rows, n);
      EXPECT_LE(max_relative(fast, ref), 1e-5) << "n " << n;
      EXPECT_EQ(fast[static_cast<size_t>(3 * n)], 1.0f);
      for (int64_t r = 0; r < rows; ++r) {
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) sum += fast[static_cast<size_t>(r * n + i)];
        const bool fully_masked = r == 1 && n == 1;
        EXPECT_NEAR(sum, fully_masked ? 0.0 : 1.0, 1e-5) << "row " << r;
      }
    }
  });
}

TEST(Softmax, ConstantRowIsUniformAndMaskedRowIsZero) {
  for_each_target([] {
    for (int64_t n : kLengths) {
      std::vector<float> row(static_cast<size_t>(n), 0.75f);
      softmax(row.data(), 1, n);
      for (float p : row) ASSERT_EQ(p, 1.0f / static_cast<float>(n)) << "n " << n;
      std::vector<float> masked(static_cast<size_t>(n), -kInf);
      softmax(masked.data(), 1, n);
      for (float p : masked) ASSERT_EQ(p, 0.0f) << "n " << n;
    }
  });
  std::vector<float> masked(5, -kInf);
  softmax_reference(masked.data(), 1, 5);
  for (float p : masked) EXPECT_EQ(p, 0.0f);
}

TEST(Softmax, LargeLogitsStayFinite) {
  std::vector<float> row = {1000, 999, -1000, 1000};
  softmax(row.data(), 1, 4);
  EXPECT_NEAR(row[0], 1 / (2 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(row[1], std::exp(-1.0) / (2 + std::exp(-1.0)), 1e-6);
  EXPECT_EQ(row[2], 0.0f);
}

TEST(Swiglu, MatchesReference) {
  for_each_target([] {
    for (int64_t n : kLengths) {
      const auto gate = testing::random_floats(static_cast<size_t>(n), 31 + n, -8.0f, 8.0f);
      const auto up = testing::random_normal(static_cast<size_t>(n), 32 + n);
      std::vector<float> fast(gate.size()), ref(gate.size());
      swiglu(gate.data(), up.data(), fast.data(), n);
      swiglu_reference(gate.data(), up.data(), ref.data(), n);
      EXPECT_LE(max_relative(fast, ref), 1e-5) << "n " << n;
    }
  });
}

TEST(Swiglu, ExtremeGatesDoNotOverflow) {
  for_each_target([] {
    const std::vector<float> gate = {100, -100, 1000, -1000, 0, 88.8f, -88.8f};
    const std::vector<float> up(gate.size(), 2.0f);
    std::vector<float> out(gate.size());
    swiglu(gate.data(), up.data(), out.data(), static_cast<int64_t>(gate.size()));
    for (float o : out) EXPECT_TRUE(std::isfinite(o)) << o;
    EXPECT_FLOAT_EQ(out[0], 200.0f);
    EXPECT_LT(std::fabs(out[1]), 1e-30f);
    EXPECT_FLOAT_EQ(out[2], 2000.0f);
    EXPECT_EQ(out[3], 0.0f);
    EXPECT_EQ(out[4], 0.0f);
  });
}

TEST(Swiglu, OutputMayAliasGate) {
  auto gate = testing::random_floats(65, 5, -4.0f, 4.0f);
  const auto up = testing::random_floats(65, 6);
  std::vector<float> out(65);
  swiglu(gate.data(), up.data(), out.data(), 65);
  swiglu(gate.data(), up.data(), gate.data(), 65);
  EXPECT_EQ(gate, out);
}

TEST(AddInplace, AddsElementwise) {
  for_each_target([] {
    for (int64_t n : kLengths) {
      auto y = testing::random_floats(static_cast<size_t>(n), 41 + n);
      const auto x = testing::random_floats(static_cast<size_t>(n), 42 + n);
      auto expected = y;
      for (size_t i = 0; i < expected.size(); ++i) expected[i] += x[i];
      add_inplace(y.data(), x.data(), n);
      EXPECT_EQ(y, expected) << "n " << n;
    }
  });
}

struct RopeCase {
  int64_t head_dim, rot_dim;
  float base;
  RopeOrder order;
};

TEST(Rope, MatchesReferenceAtLongPositions) {
  const RopeCase cases[] = {
      {64, 64, 500000.0f, RopeOrder::Normal}, {64, 64, 10000.0f, RopeOrder::NeoX},
      {64, 64, 10000.0f, RopeOrder::Normal},  {64, 64, 500000.0f, RopeOrder::NeoX},
      {40, 32, 10000.0f, RopeOrder::Normal},  {40, 32, 500000.0f, RopeOrder::NeoX},
      {128, 6, 10000.0f, RopeOrder::Normal},  {7, 6, 10000.0f, RopeOrder::NeoX},
  };
  const std::vector<int32_t> positions = {0, 1, 2, 17, 4095, 65536, 99999, 100000, 77777};
  const int64_t n_tokens = static_cast<int64_t>(positions.size()), n_heads = 3;
  for_each_target([&] {
    for (const RopeCase& c : cases) {
      SCOPED_TRACE(::testing::Message()
                   << "head_dim " << c.head_dim << " rot_dim " << c.rot_dim << " base " << c.base
                   << " neox " << (c.order == RopeOrder::NeoX));
      const auto x = testing::random_floats(static_cast<size_t>(n_tokens * n_heads * c.head_dim),
                                            51 + c.head_dim + c.rot_dim);
      auto fast = x, ref = x;
      rope(fast.data(), n_tokens, n_heads, c.head_dim, c.rot_dim, positions.data(), c.base,
           c.order);
      rope_reference(ref.data(), n_tokens, n_heads, c.head_dim, c.rot_dim, positions.data(), c.base,
                     c.order);
      EXPECT_LE(testing::compare(fast.data(), ref.data(), fast.size()).max_abs, 1e-5);
      // Elements past rot_dim are untouched, bit for bit.
      for (int64_t row = 0; row < n_tokens * n_heads; ++row) {
        for (int64_t e = c.rot_dim; e < c.head_dim; ++e) {
          const size_t at = static_cast<size_t>(row * c.head_dim + e);
          ASSERT_EQ(fast[at], x[at]);
          ASSERT_EQ(ref[at], x[at]);
        }
      }
    }
  });
}

TEST(Rope, PositionZeroIsIdentity) {
  for_each_target([] {
    for (RopeOrder order : {RopeOrder::Normal, RopeOrder::NeoX}) {
      const std::vector<int32_t> positions(5, 0);
      const auto x = testing::random_floats(5 * 2 * 64, 61);
      auto y = x;
      rope(y.data(), 5, 2, 64, 64, positions.data(), 10000.0f, order);
      EXPECT_EQ(y, x);
    }
  });
}

TEST(Rope, RotatesTheFirstPairByThePosition) {
  // Pair 0 has frequency 1, so (1, 0) at position p becomes (cos p, sin p).
  for (RopeOrder order : {RopeOrder::Normal, RopeOrder::NeoX}) {
    std::vector<float> x(8, 0.0f);
    x[0] = 1;
    const int32_t position = 3;
    rope(x.data(), 1, 1, 8, 8, &position, 10000.0f, order);
    const size_t partner = order == RopeOrder::Normal ? 1 : 4;
    EXPECT_NEAR(x[0], std::cos(3.0), 1e-7);
    EXPECT_NEAR(x[partner], std::sin(3.0), 1e-7);
  }
}

TEST(Rope, RejectsBadDimensions) {
  std::vector<float> x(64);
  const int32_t position = 1;
  EXPECT_THROW(rope(x.data(), 1, 1, 8, 7, &position, 10000.0f, RopeOrder::Normal), Error);
  EXPECT_THROW(rope(x.data(), 1, 1, 8, 10, &position, 10000.0f, RopeOrder::NeoX), Error);
  EXPECT_THROW(rope(x.data(), 1, 1, 8, 8, &position, 0.0f, RopeOrder::NeoX), Error);
  EXPECT_THROW(rope_reference(x.data(), 1, 1, 0, 0, &position, 10000.0f, RopeOrder::NeoX), Error);
}

}  // namespace
}  // namespace ruvdllm
