#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/core/tensor.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/kernels/quant.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

constexpr TensorType kAllTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16,
                                    TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K,
                                    TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_K};

std::vector<uint8_t> quantize_ref(TensorType type, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_bytes(type, static_cast<int64_t>(x.size())));
  quantize_row_reference(type, x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

std::vector<float> dequantize_ref(TensorType type, const std::vector<uint8_t>& bytes, size_t n) {
  std::vector<float> y(n);
  dequantize_row_reference(type, bytes.data(), y.data(), static_cast<int64_t>(n));
  return y;
}

// Runs `body` once per SIMD target compiled in and supported by this CPU, so the AVX2 and SSE4
// paths are checked here too, not only the best one.
template <class Body>
void for_each_simd_target(Body&& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

uint16_t h(float v) { return f32_to_f16(v); }

// ---------------------------------------------------------------------------------------------
// Hand-made blocks: known bytes -> known values. Each expectation is written from the GGUF
// layout description, independently of the library's loops; both dequantizers are checked.

void expect_dequantizes_to(TensorType type, const void* block, const std::vector<float>& expected) {
  const int64_t n = static_cast<int64_t>(expected.size());
  std::vector<float> ref(expected.size()), fast(expected.size());
  dequantize_row_reference(type, block, ref.data(), n);
  for_each_simd_target([&] {
    dequantize_row(type, block, fast.data(), n);
    for (size_t i = 0; i < expected.size(); ++i)
      ASSERT_EQ(fast[i], expected[i]) << "fast, element " << i;
  });
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_EQ(ref[i], expected[i]) << "reference, element " << i;
}

TEST(QuantLayout, FloatTypes) {
  const uint16_t f16[] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0xFC00};
  expect_dequantizes_to(
      TensorType::F16, f16,
      {1.0f, -2.0f, 5.9604645e-8f, 65504.0f, -std::numeric_limits<float>::infinity()});
  const uint16_t bf16[] = {0x3F80, 0x4049, 0xBF00};
  expect_dequantizes_to(TensorType::BF16, bf16, {1.0f, 3.140625f, -0.5f});
  const float f32[] = {1.5f, -7.25f};
  expect_dequantizes_to(TensorType::F32, f32, {1.5f, -7.25f});
}

TEST(QuantLayout, Q4_0LowNibblesFirstThenHigh) {
  BlockQ4_0 b{};
  b.d = h(0.5f);
  for (int i = 0; i < 16; ++i) b.qs[i] = static_cast<uint8_t>(i | ((15 - i) << 4));
  std::vector<float> expected(32);
  for (int i = 0; i < 16; ++i) {
    expected[static_cast<size_t>(i)] = static_cast<float>(i - 8) * 0.5f;
    expected[static_cast<size_t>(i) + 16] = static_cast<float>(7 - i) * 0.5f;
  }
  EXPECT_EQ(expected[0], -4.0f);  // q 0 in the low nibble of byte 0
  EXPECT_EQ(expected[16], 3.5f);  // q 15 in the high nibble of byte 0
  expect_dequantizes_to(TensorType::Q4_0, &b, expected);
}

TEST(QuantLayout, Q8_0AndQ8_K) {
  BlockQ8_0 b0{};
  b0.d = h(0.25f);
  std::vector<float> e0(32);
  for (int i = 0; i < 32; ++i) {
    b0.qs[i] = static_cast<int8_t>(i * 8 - 128);
    e0[static_cast<size_t>(i)] = static_cast<float>(i * 8 - 128) * 0.25f;
  }
  expect_dequantizes_to(TensorType::Q8_0, &b0, e0);

  BlockQ8_K bk{};
  bk.d = 0.1f;
  std::vector<float> ek(256);
  for (int i = 0; i < 256; ++i) {
    bk.qs[i] = static_cast<int8_t>(i - 128);
    ek[static_cast<size_t>(i)] = static_cast<float>(i - 128) * 0.1f;
  }
  expect_dequantizes_to(TensorType::Q8_K, &bk, ek);
}

// Six-bit scales {1,2,3,4,33,46,59,63} and mins {5,6,7,8,17,38,50,61}, packed by hand:
// bytes 0-3: scale j | (scale j+4 >> 4) << 6; bytes 4-7: min j | (min j+4 >> 4) << 6;
// bytes 8-11: (scale j+4 & 15) | (min j+4 & 15) << 4.
constexpr uint8_t kPackedScales[12] = {0x81, 0x82, 0xC3, 0xC4, 0x45, 0x86,
                                       0xC7, 0xC8, 0x11, 0x6E, 0x2B, 0xDF};
constexpr int kScales[8] = {1, 2, 3, 4, 33, 46, 59, 63};
constexpr int kMins[8] = {5, 6, 7, 8, 17, 38, 50, 61};

TEST(QuantLayout, Q4_KScalePackingAndNibbleOrder) {
  BlockQ4_K b{};
  b.d = h(1.0f);
  b.dmin = h(0.5f);
  std::memcpy(b.scales, kPackedScales, 12);
  for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>((i % 16) | ((15 - i % 16) << 4));
  // Values 64g..64g+31 come from the low nibbles of qs[32g..32g+31] (sub-block 2g), values
  // 64g+32..64g+63 from their high nibbles (sub-block 2g+1).
  std::vector<float> expected(256);
  for (int e = 0; e < 256; ++e) {
    const int g = e / 64, l = e % 32, sub = e / 32;
    const uint8_t byte = b.qs[32 * g + l];
    const int q = (e % 64) < 32 ? (byte & 15) : (byte >> 4);
    expected[static_cast<size_t>(e)] =
        1.0f * static_cast<float>(kScales[sub]) * static_cast<float>(q) -
        0.5f * static_cast<float>(kMins[sub]);
  }
  EXPECT_EQ(expected[255], 63.0f * 0.0f - 30.5f);   // sub-block 7: scale 63, min 61, q = 0
  EXPECT_EQ(expected[224], 63.0f * 15.0f - 30.5f);  // q = 15 - 0
  EXPECT_EQ(expected[129], 33.0f * 1.0f - 8.5f);    // sub-block 4: scale 33, min 17
  expect_dequantizes_to(TensorType::Q4_K, &b, expected);
}

TEST(QuantLayout, Q5_KHighBitsFromQh) {
  BlockQ5_K b{};
  b.d = h(0.5f);
  b.dmin = h(0.25f);
  std::memcpy(b.scales, kPackedScales, 12);
  std::mt19937 rng(5);
  for (auto& v : b.qs) v = static_cast<uint8_t>(rng());
  for (auto& v : b.qh) v = static_cast<uint8_t>(rng());
  // Fifth bit of value 64g+l (l < 32) is bit 2g of qh[l]; of value 64g+32+l, bit 2g+1.
  std::vector<float> expected(256);
  for (int e = 0; e < 256; ++e) {
    const int g = e / 64, l = e % 32, sub = e / 32;
    const bool high_nibble = (e % 64) >= 32;
    const uint8_t byte = b.qs[32 * g + l];
    const int low4 = high_nibble ? (byte >> 4) : (byte & 15);
    const int bit = (b.qh[l] >> (2 * g + (high_nibble ? 1 : 0))) & 1;
    expected[static_cast<size_t>(e)] =
        0.5f * static_cast<float>(kScales[sub]) * static_cast<float>(low4 + 16 * bit) -
        0.25f * static_cast<float>(kMins[sub]);
  }
  // A literal spot check: set value 64·3+32+5 (sub-block 7) to 31 = 15 + the fifth bit.
  b.qs[32 * 3 + 5] |= 0xF0;
  b.qh[5] |= 0x80;
  expected[64 * 3 + 32 + 5] = 0.5f * 63.0f * 31.0f - 0.25f * 61.0f;
  expect_dequantizes_to(TensorType::Q5_K, &b, expected);
}

TEST(QuantLayout, Q6_KLowAndHighBitOrder) {
  BlockQ6_K b{};
  b.d = h(0.25f);
  std::mt19937 rng(6);
  for (auto& v : b.ql) v = static_cast<uint8_t>(rng());
  for (auto& v : b.qh) v = static_cast<uint8_t>(rng());
  for (auto& v : b.scales) v = static_cast<int8_t>(rng());
  b.ql[64 + 3] = 0xA0;  // value 128+64+3: high nibble 10 ...
  b.qh[32 + 3] = 0x20;  // ... and qh bits 4-5 = 2, so q = 10 + 32 - 32 = 10
  b.scales[12] = -3;
  // Within each half of 128 values (ql + 64·half, qh + 32·half): value 32k+l takes the low
  // nibble of ql[l + 32(k&1)] for k < 2 and the high nibble for k >= 2, and bits 2k..2k+1 of
  // qh[l]; sub-block scale e/16.
  std::vector<float> expected(256);
  for (int e = 0; e < 256; ++e) {
    const int half = e / 128, k = (e % 128) / 32, l = e % 32;
    const uint8_t byte = b.ql[64 * half + l + 32 * (k & 1)];
    const int low4 = k < 2 ? (byte & 15) : (byte >> 4);
    const int high2 = (b.qh[32 * half + l] >> (2 * k)) & 3;
    expected[static_cast<size_t>(e)] = 0.25f * static_cast<float>(b.scales[e / 16]) *
                                       static_cast<float>((low4 | (high2 << 4)) - 32);
  }
  EXPECT_EQ(expected[128 + 64 + 3], 0.25f * -3.0f * 10.0f);
  EXPECT_EQ(expected[128 + 3],
            0.25f * static_cast<float>(b.scales[8]) * -32.0f);  // low nibble 0, bits 0
  expect_dequantizes_to(TensorType::Q6_K, &b, expected);
}

// ---------------------------------------------------------------------------------------------
// Round-trip quality.

struct RoundTrip {
  double rel_rms;      // sqrt(Σ err² / Σ x²)
  double max_rel_abs;  // max |err| / max |x|
};

RoundTrip round_trip(TensorType type, const std::vector<float>& x) {
  const auto y = dequantize_ref(type, quantize_ref(type, x), x.size());
  double err2 = 0, x2 = 0, max_err = 0, amax = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = static_cast<double>(y[i]) - x[i];
    err2 += e * e;
    x2 += static_cast<double>(x[i]) * x[i];
    max_err = std::max(max_err, std::fabs(e));
    amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
  }
  return {std::sqrt(err2 / x2), max_err / amax};
}

struct Bound {
  TensorType type;
  double rel_rms;
  double max_rel_abs;
};

// Measured on normal data (σ 0.05 and 0.002, seeds 1-3, rows 256/512/4096), worst case, relative
// RMS error and max |err| / max |x|: F16 0.022% / 0.041%, BF16 0.18% / 0.33%, Q8_0 0.58% / 0.41%,
// Q8_K 0.74% / 0.39%, Q6_K 1.79% / 1.67%, Q5_K 3.66% / 3.65%, Q4_K 7.45% / 7.42%,
// Q4_0 9.0% / 10.5%. F16 and BF16 bounds are their half-ulp limits 2^-11 and 2^-8.
constexpr Bound kNormalBounds[] = {
    {TensorType::F32, 0.0, 0.0},        {TensorType::F16, 2.5e-4, 4.9e-4},
    {TensorType::BF16, 2.2e-3, 3.9e-3}, {TensorType::Q8_0, 0.007, 0.0045},
    {TensorType::Q8_K, 0.009, 0.0045},  {TensorType::Q6_K, 0.021, 0.02},
    {TensorType::Q5_K, 0.042, 0.042},   {TensorType::Q4_K, 0.085, 0.085},
    {TensorType::Q4_0, 0.105, 0.13},  // the extreme opposite the exact one clips at +7·d
};

TEST(QuantRoundTrip, NormalDataWithinBounds) {
  for (const Bound& bound : kNormalBounds) {
    double worst_rms = 0, worst_abs = 0;
    // A weight-like scale, and a small one that puts the K-quant d in the f16 subnormal range.
    for (float stddev : {0.05f, 0.002f}) {
      for (uint64_t seed : {1, 2, 3}) {
        for (size_t n : {256, 512, 4096}) {
          const auto x = testing::random_normal(n, seed * 100 + n, stddev);
          const RoundTrip r = round_trip(bound.type, x);
          worst_rms = std::max(worst_rms, r.rel_rms);
          worst_abs = std::max(worst_abs, r.max_rel_abs);
        }
      }
    }
    SCOPED_TRACE(type_name(bound.type));
    std::printf("  %-5s relative RMS %.5f, max |err| / max |x| %.5f\n", type_name(bound.type),
                worst_rms, worst_abs);
    EXPECT_LE(worst_rms, bound.rel_rms);
    EXPECT_LE(worst_abs, bound.max_rel_abs);
  }
}

TEST(QuantRoundTrip, FloatTypesAtTheirPrecision) {
  auto x = testing::random_normal(4096, 11, 3.0f);
  x[0] = 1e-6f;   // f16 subnormal range
  x[1] = -70000;  // f16 overflow
  x[2] = 1e-40f;  // f32 subnormal
  const auto f32 = dequantize_ref(TensorType::F32, quantize_ref(TensorType::F32, x), x.size());
  const auto f16 = dequantize_ref(TensorType::F16, quantize_ref(TensorType::F16, x), x.size());
  const auto bf16 = dequantize_ref(TensorType::BF16, quantize_ref(TensorType::BF16, x), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(f32[i], x[i]);
    if (i >= 3) {
      ASSERT_LE(std::fabs(f16[i] - x[i]), std::fabs(x[i]) / 2048) << i;
      ASSERT_LE(std::fabs(bf16[i] - x[i]), std::fabs(x[i]) / 256) << i;
    }
  }
  EXPECT_NEAR(f16[0], 1e-6f, 3e-8f);  // half a subnormal step
  EXPECT_TRUE(std::isinf(f16[1]) && f16[1] < 0);
  EXPECT_EQ(bf16[2], 0.0f + bf16_to_f32(f32_to_bf16(1e-40f)));
}

TEST(QuantRoundTrip, OutliersStayExactEnough) {
  // Large activations/weights next to small ones: the outlier must survive, and the error on
  // the rest must stay bounded relative to the outlier's block.
  for (const Bound& bound : kNormalBounds) {
    auto x = testing::random_normal(1024, 21, 0.02f);
    for (size_t i : {7u, 300u, 301u, 777u}) x[i] = (i % 2 ? -1.0f : 1.0f) * 1.5f;
    const auto y = dequantize_ref(bound.type, quantize_ref(bound.type, x), x.size());
    SCOPED_TRACE(type_name(bound.type));
    for (size_t i : {7u, 300u, 301u, 777u}) EXPECT_NEAR(y[i], x[i], bound.max_rel_abs * 1.5) << i;
    double max_err = 0;
    for (size_t i = 0; i < x.size(); ++i)
      max_err = std::max(max_err, std::fabs(static_cast<double>(y[i]) - x[i]));
    EXPECT_LE(max_err, 1.5 * std::max(bound.max_rel_abs, 1e-6) * 1.5);
  }
}

TEST(QuantRoundTrip, ConstantBlocks) {
  for (TensorType type : kAllTypes) {
    for (float c : {0.7f, -0.3f, 1e-3f}) {
      const std::vector<float> x(512, c);
      const auto y = dequantize_ref(type, quantize_ref(type, x), x.size());
      SCOPED_TRACE(type_name(type));
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(y[i], c, std::fabs(c) * 4e-3) << c << " at " << i;
    }
  }
}

TEST(QuantRoundTrip, AllZeroRowsStayZero) {
  const std::vector<float> x(512, 0.0f);
  for (TensorType type : kAllTypes) {
    const auto y = dequantize_ref(type, quantize_ref(type, x), x.size());
    for (float v : y) ASSERT_EQ(v, 0.0f) << type_name(type);
  }
}

TEST(QuantRoundTrip, NonFiniteInputStaysDefined) {
  // Corrupt weights must not crash or hang a conversion; finite blocks stay accurate.
  auto x = testing::random_normal(512, 31, 0.1f);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[40] = std::numeric_limits<float>::infinity();
  for (TensorType type : kAllTypes) {
    std::vector<uint8_t> out(row_bytes(type, 512));
    std::vector<float> y(512);
    quantize_row_reference(type, x.data(), out.data(), 512);
    quantize_row(type, x.data(), out.data(), 512);
    dequantize_row(type, out.data(), y.data(), 512);
    EXPECT_NEAR(y[300], x[300], 0.02) << type_name(type);  // a super-block with neither
  }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization contract.

TEST(QuantActivation, Q8RoundsHalfAwayFromZeroWithUnroundedScale) {
  // amax 127 gives d = 1 exactly, so x·id lands exactly on the ties.
  std::vector<float> x(256, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  x[3] = 0.5f;
  x[4] = -126.5f;
  x[40] = 1.49999988f;  // just below a tie
  for_each_simd_target([&] {
    for (bool fast : {false, true}) {
      std::vector<BlockQ8_0> q0(8);
      std::vector<BlockQ8_K> qk(1);
      (fast ? quantize_row : quantize_row_reference)(TensorType::Q8_0, x.data(), q0.data(), 256);
      (fast ? quantize_row : quantize_row_reference)(TensorType::Q8_K, x.data(), qk.data(), 256);
      SCOPED_TRACE(fast ? "fast" : "reference");
      const int8_t want[5] = {127, 3, -4, 1, -127};
      for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(q0[0].qs[i], want[i]) << i;
        EXPECT_EQ(qk[0].qs[i], want[i]) << i;
      }
      EXPECT_EQ(q0[1].qs[8], 127);  // 1.49999988 is its block's amax
      EXPECT_EQ(qk[0].qs[40], 1);
      EXPECT_EQ(f16_to_f32(q0[0].d), 1.0f);
      EXPECT_EQ(qk[0].d, 1.0f);
      EXPECT_EQ(qk[0].bsums[0], 127 + 3 - 4 + 1 - 127);
      EXPECT_EQ(qk[0].bsums[2], 1);
      EXPECT_EQ(q0[2].d, 0);  // an all-zero block has d = 0 and q = 0
      for (int i = 0; i < 32; ++i) EXPECT_EQ(q0[2].qs[i], 0);
    }
  });
}

TEST(QuantActivation, Q8_0StoresF16OfScaleButRoundsWithF32Scale) {
  auto x = testing::random_normal(32, 3, 1.0f);
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  BlockQ8_0 b;
  quantize_row_reference(TensorType::Q8_0, x.data(), &b, 32);
  const float d = amax / 127.0f;
  EXPECT_EQ(b.d, f32_to_f16(d));
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(b.qs[i], static_cast<int>(std::round(x[static_cast<size_t>(i)] * (1.0f / d))));
}

// ---------------------------------------------------------------------------------------------
// Fast paths against the reference.

// Q8 quantization may differ from the reference by one level where x·id lies within an ulp
// of a rounding boundary; anything more is a bug.
template <class Block>
void expect_q8_close(const std::vector<Block>& fast, const std::vector<Block>& ref,
                     size_t block_len) {
  size_t off_by_one = 0, total = 0;
  for (size_t b = 0; b < ref.size(); ++b) {
    if constexpr (std::is_same_v<Block, BlockQ8_K>) {
      ASSERT_EQ(fast[b].d, ref[b].d);
      for (int g = 0; g < 16; ++g) {
        int sum = 0;
        for (int i = 16 * g; i < 16 * g + 16; ++i) sum += fast[b].qs[i];
        ASSERT_EQ(fast[b].bsums[g], sum) << "block " << b << " group " << g;
      }
    } else {
      ASSERT_EQ(fast[b].d, ref[b].d);
    }
    for (size_t i = 0; i < block_len; ++i) {
      const int diff = std::abs(fast[b].qs[i] - ref[b].qs[i]);
      ASSERT_LE(diff, 1) << "block " << b << " element " << i;
      off_by_one += diff;
      ++total;
    }
  }
  EXPECT_LE(static_cast<double>(off_by_one), 0.001 * static_cast<double>(total));
}

TEST(QuantFast, ListsTheTargetsCompared) {
  std::string names;
  for (int64_t target : hwy::SupportedAndGeneratedTargets())
    names += std::string(" ") + hwy::TargetName(target);
  std::printf("  SIMD targets compared against the reference:%s\n", names.c_str());
  EXPECT_FALSE(names.empty());
}

TEST(QuantFast, Q8QuantizationMatchesReference) {
  for_each_simd_target([&] {
    for (int64_t n : {256, 512, 768, 4096}) {
      for (uint64_t seed : {1, 2}) {
        auto x =
            testing::random_normal(static_cast<size_t>(n), seed + static_cast<uint64_t>(n), 2.0f);
        x[5] = 40.0f;  // an outlier shifts the scale of its block
        std::vector<BlockQ8_0> r0(static_cast<size_t>(n) / 32), f0(r0.size());
        quantize_row_reference(TensorType::Q8_0, x.data(), r0.data(), n);
        quantize_row(TensorType::Q8_0, x.data(), f0.data(), n);
        expect_q8_close(f0, r0, 32);
        std::vector<BlockQ8_K> rk(static_cast<size_t>(n) / 256), fk(rk.size());
        quantize_row_reference(TensorType::Q8_K, x.data(), rk.data(), n);
        quantize_row(TensorType::Q8_K, x.data(), fk.data(), n);
        expect_q8_close(fk, rk, 256);
      }
    }
  });
}

TEST(QuantFast, HalfAndBfloatConversionsAreExact) {
  // Every non-NaN half value, to and from float.
  std::vector<uint16_t> halves;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    if (!std::isnan(f16_to_f32(static_cast<uint16_t>(bits))))
      halves.push_back(static_cast<uint16_t>(bits));
  }
  std::vector<float> values(halves.size());
  for (size_t i = 0; i < halves.size(); ++i) values[i] = f16_to_f32(halves[i]);
  // Floats across the whole range, ties included, plus specials for bf16.
  auto x = testing::random_normal(9999, 4, 1.0f);
  std::mt19937 rng(9);
  for (size_t i = 0; i < x.size(); i += 3)
    x[i] *= std::ldexp(1.0f, static_cast<int>(rng() % 60) - 30);
  x[1] = 1.0f + 1.0f / 2048;  // f16 tie
  x[4] = 1.0f + 1.0f / 256;   // bf16 tie
  x[7] = 65520.0f;            // rounds to f16 infinity
  x[10] = std::numeric_limits<float>::infinity();
  x[13] = -0.0f;
  std::vector<float> with_nan = x;
  with_nan[16] = std::numeric_limits<float>::quiet_NaN();

  for_each_simd_target([&] {
    for (int64_t n :
         std::initializer_list<int64_t>{1, 7, 33, 1000, static_cast<int64_t>(halves.size())}) {
      std::vector<float> fast(static_cast<size_t>(n));
      dequantize_row(TensorType::F16, halves.data(), fast.data(), n);
      ASSERT_EQ(std::memcmp(fast.data(), values.data(), fast.size() * 4), 0)
          << "f16 -> f32, n " << n;
    }
    for (int64_t n : {1, 15, 17, 9999}) {
      std::vector<uint16_t> ref(static_cast<size_t>(n)), fast(static_cast<size_t>(n));
      quantize_row_reference(TensorType::F16, x.data(), ref.data(), n);
      quantize_row(TensorType::F16, x.data(), fast.data(), n);
      ASSERT_EQ(ref, fast) << "f32 -> f16, n " << n;
      quantize_row_reference(TensorType::BF16, with_nan.data(), ref.data(), n);
      quantize_row(TensorType::BF16, with_nan.data(), fast.data(), n);
      ASSERT_EQ(ref, fast) << "f32 -> bf16, n " << n;
      std::vector<float> back_ref(static_cast<size_t>(n)), back_fast(static_cast<size_t>(n));
      dequantize_row_reference(TensorType::BF16, ref.data(), back_ref.data(), n);
      dequantize_row(TensorType::BF16, ref.data(), back_fast.data(), n);
      ASSERT_EQ(std::memcmp(back_ref.data(), back_fast.data(), back_ref.size() * 4), 0)
          << "bf16 -> f32";
    }
  });
}

// Random bytes exercise every level and scale; the f16 scales are set to finite values.
std::vector<uint8_t> random_blocks(TensorType type, int64_t n, uint64_t seed) {
  std::vector<uint8_t> bytes(row_bytes(type, n));
  std::mt19937_64 rng(seed);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  std::normal_distribution<float> scale(0.0f, 0.01f);
  const size_t block_bytes = type_traits(type).block_bytes;
  for (size_t off = 0; off < bytes.size(); off += block_bytes) {
    uint8_t* block = bytes.data() + off;
    auto set_half = [&](size_t at) {
      const uint16_t v = f32_to_f16(scale(rng));
      std::memcpy(block + at, &v, 2);
    };
    switch (type) {
      case TensorType::Q4_0:
      case TensorType::Q8_0:
        set_half(0);
        break;
      case TensorType::Q4_K:
      case TensorType::Q5_K:
        set_half(0);
        set_half(2);
        break;
      case TensorType::Q6_K:
        set_half(offsetof(BlockQ6_K, d));
        break;
      default:
        break;
    }
  }
  return bytes;
}

TEST(QuantFast, DequantizationMatchesReferenceBitForBit) {
  const TensorType types[] = {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K,
                              TensorType::Q5_K, TensorType::Q6_K};
  for_each_simd_target([&] {
    for (TensorType type : types) {
      SCOPED_TRACE(type_name(type));
      for (int64_t n : {256, 512, 4352}) {
        for (uint64_t seed : {1, 2}) {
          // Both made-up bytes and real quantizer output.
          const auto x =
              testing::random_normal(static_cast<size_t>(n), seed * 7 + static_cast<uint64_t>(n));
          for (const auto& bytes : {random_blocks(type, n, seed), quantize_ref(type, x)}) {
            std::vector<float> ref(static_cast<size_t>(n)), fast(static_cast<size_t>(n));
            dequantize_row_reference(type, bytes.data(), ref.data(), n);
            dequantize_row(type, bytes.data(), fast.data(), n);
            ASSERT_EQ(std::memcmp(ref.data(), fast.data(), ref.size() * 4), 0) << "n " << n;
          }
        }
      }
    }
  });
}

TEST(QuantFast, OtherTypesFallBackToReference) {
  const auto x = testing::random_normal(512, 77);
  for (TensorType type :
       {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::F32}) {
    std::vector<uint8_t> fast(row_bytes(type, 512));
    quantize_row(type, x.data(), fast.data(), 512);
    EXPECT_EQ(fast, quantize_ref(type, x)) << type_name(type);
  }
  const auto q8k = quantize_ref(TensorType::Q8_K, x);
  std::vector<float> y(512);
  dequantize_row(TensorType::Q8_K, q8k.data(), y.data(), 512);
  EXPECT_EQ(y, dequantize_ref(TensorType::Q8_K, q8k, 512));
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(QuantErrors, RowLengthNotMultipleOfBlock) {
  std::vector<float> x(300, 1.0f);
  std::vector<uint8_t> out(4096);
  EXPECT_THROW(quantize_row(TensorType::Q4_0, x.data(), out.data(), 33), Error);
  EXPECT_THROW(quantize_row_reference(TensorType::Q8_0, x.data(), out.data(), 40), Error);
  EXPECT_THROW(quantize_row(TensorType::Q8_K, x.data(), out.data(), 255), Error);
  EXPECT_THROW(dequantize_row(TensorType::Q4_K, out.data(), x.data(), 100), Error);
  EXPECT_THROW(dequantize_row_reference(TensorType::Q6_K, out.data(), x.data(), 300), Error);
  EXPECT_THROW(quantize_row(TensorType::F16, x.data(), out.data(), -1), Error);
  EXPECT_THROW(quantize_row(static_cast<TensorType>(3), x.data(), out.data(), 32), Error);
  try {
    quantize_row(TensorType::Q5_K, x.data(), out.data(), 300);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q5_K"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("300"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// convert_tensor.

Tensor make_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                   uint64_t seed) {
  Tensor t(name, type, shape);
  const TensorView& v = t.view();
  for (int64_t r = 0; r < v.rows(); ++r) {
    const auto x = testing::random_normal(static_cast<size_t>(v.row_len()),
                                          seed + static_cast<uint64_t>(r), 0.1f);
    quantize_row_reference(type, x.data(), static_cast<uint8_t*>(t.data()) + r * v.row_stride(),
                           v.row_len());
  }
  return t;
}

TEST(ConvertTensor, MatchesRowWiseReferenceConversion) {
  struct Pair {
    TensorType from, to;
  };
  const Pair pairs[] = {
      {TensorType::F32, TensorType::Q8_0},  {TensorType::F32, TensorType::Q4_K},
      {TensorType::BF16, TensorType::Q6_K}, {TensorType::F16, TensorType::Q5_K},
      {TensorType::Q8_0, TensorType::F32},  {TensorType::Q4_K, TensorType::Q8_0},
      {TensorType::F32, TensorType::BF16},  {TensorType::Q4_0, TensorType::F16},
      {TensorType::Q6_K, TensorType::Q4_0}, {TensorType::BF16, TensorType::Q8_K},
  };
  ThreadPool pool(2);
  for (const Pair& p : pairs) {
    SCOPED_TRACE(std::string(type_name(p.from)) + " -> " + type_name(p.to));
    const Tensor src = make_tensor("blk.0.ffn_up.weight", p.from, {512, 7, 3}, 5);
    const Tensor dst = convert_tensor(src.view(), p.to, pool);
    EXPECT_EQ(dst.view().name, "blk.0.ffn_up.weight");
    EXPECT_EQ(dst.view().shape, src.view().shape);
    EXPECT_EQ(dst.view().type, p.to);
    ASSERT_EQ(dst.nbytes(), row_bytes(p.to, 512) * 21);
    std::vector<float> row(512);
    std::vector<uint8_t> expected(row_bytes(p.to, 512));
    for (int64_t r = 0; r < 21; ++r) {
      dequantize_row_reference(p.from, src.view().row(r), row.data(), 512);
      quantize_row_reference(p.to, row.data(), expected.data(), 512);
      ASSERT_EQ(std::memcmp(expected.data(), dst.view().row(r), expected.size()), 0) << "row " << r;
    }
  }
}

TEST(ConvertTensor, SameTypeCopiesBytes) {
  ThreadPool pool(2);
  const Tensor src = make_tensor("w", TensorType::Q4_K, {256, 9}, 8);
  const Tensor dst = convert_tensor(src.view(), TensorType::Q4_K, pool);
  ASSERT_EQ(dst.nbytes(), src.nbytes());
  EXPECT_EQ(std::memcmp(dst.data(), src.data(), src.nbytes()), 0);
}

TEST(ConvertTensor, ReportsProgressFromCallingThreadUpToTotal) {
  ThreadPool pool(2);
  const Tensor src = make_tensor("token_embd.weight", TensorType::F32, {256, 5000}, 3);
  std::vector<std::pair<int64_t, int64_t>> calls;
  const auto caller = std::this_thread::get_id();
  bool other_thread = false;
  const Tensor dst =
      convert_tensor(src.view(), TensorType::Q8_0, pool, [&](int64_t done, int64_t total) {
        if (std::this_thread::get_id() != caller) other_thread = true;
        calls.emplace_back(done, total);
      });
  EXPECT_FALSE(other_thread);
  ASSERT_GE(calls.size(), 2u);
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].second, 5000);
    if (i > 0) {
      EXPECT_GT(calls[i].first, calls[i - 1].first);
    }
  }
  EXPECT_EQ(calls.back().first, 5000);
  // Spot-check the last row, converted in the last chunk.
  std::vector<uint8_t> expected(row_bytes(TensorType::Q8_0, 256));
  quantize_row_reference(TensorType::Q8_0, src.f32() + 4999 * 256, expected.data(), 256);
  EXPECT_EQ(std::memcmp(expected.data(), dst.view().row(4999), expected.size()), 0);
}

TEST(ConvertTensor, RejectsRowsThatDoNotFitTheTargetBlock) {
  ThreadPool pool(1);
  const Tensor src = make_tensor("output.weight", TensorType::F16, {100, 4}, 1);
  try {
    convert_tensor(src.view(), TensorType::Q4_K, pool);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("output.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("f16"), std::string::npos) << msg;
    EXPECT_NE(msg.find("q4_K"), std::string::npos) << msg;
  }
  TensorView truncated = src.view();
  truncated.nbytes -= 2;
  EXPECT_THROW(convert_tensor(truncated, TensorType::F32, pool), Error);
}

}  // namespace
}  // namespace ruvdllm
