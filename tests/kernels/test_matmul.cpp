#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <array>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/matmul_dot.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/core/tensor.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/kernels/matmul.h"
#include "ruvdllm/kernels/quant.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

constexpr TensorType kWeightTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16,
                                       TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_K,
                                       TensorType::Q5_K, TensorType::Q6_K};
constexpr TensorType kQuantTypes[] = {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_K,
                                      TensorType::Q5_K, TensorType::Q6_K};

// Runs `body` once per SIMD target compiled in and supported by this CPU, so the AVX2, SSE4
// and portable paths are checked, not only the best one.
template <class Body>
void for_each_simd_target(Body&& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    body(target);
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

// n rows of k random normal weights, quantized with the reference quantizer.
Tensor random_weight(TensorType type, int64_t k, int64_t n, uint64_t seed) {
  Tensor w("w", type, {k, n});
  const auto values = testing::random_normal(static_cast<size_t>(k * n), seed, 0.5f);
  for (int64_t r = 0; r < n; ++r) {
    quantize_row_reference(type, values.data() + r * k, static_cast<uint8_t*>(w.data()) + r * w.view().row_stride(), k);
  }
  return w;
}

std::vector<float> run_matmul(const TensorView& w, const std::vector<float>& x, int64_t m, int threads) {
  ThreadPool pool(threads);
  std::vector<float> y(static_cast<size_t>(m * w.rows()), std::nanf(""));
  matmul(w, x.data(), m, y.data(), pool);
  return y;
}

std::vector<float> dequantized(const TensorView& w) {
  std::vector<float> out(static_cast<size_t>(w.elements()));
  for (int64_t r = 0; r < w.rows(); ++r) dequantize_row_reference(w.type, w.row(r), out.data() + r * w.row_len(), w.row_len());
  return out;
}

// Σ |x|·|w| per output: the scale float rounding of a dot product is relative to.
std::vector<double> abs_dot(const std::vector<float>& wf, const std::vector<float>& x, int64_t m, int64_t k, int64_t n) {
  std::vector<double> out(static_cast<size_t>(m * n));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0;
      for (int64_t i = 0; i < k; ++i) s += std::fabs(static_cast<double>(x[r * k + i]) * wf[c * k + i]);
      out[r * n + c] = s;
    }
  }
  return out;
}

// A rigorous bound on |fast - exact| from quantizing the activations: each value moves by at
// most half a step d/2, plus d's rounding to f16 for Q8_0 (2^-11 relative), plus 1e-5 of the
// term magnitudes for float rounding.
std::vector<double> activation_error_bound(TensorType type, const std::vector<float>& wf, const std::vector<float>& x,
                                           int64_t m, int64_t k, int64_t n) {
  const int64_t block = matmul_detail::is_k_quant(type) ? 256 : 32;
  const double f16_rel = type == TensorType::Q8_0 || type == TensorType::Q4_0 ? 1.0 / 2048 : 0.0;
  std::vector<double> step(static_cast<size_t>(m * k));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t b = 0; b < k / block; ++b) {
      double amax = 0;
      for (int64_t i = b * block; i < (b + 1) * block; ++i) amax = std::max(amax, std::fabs(static_cast<double>(x[r * k + i])));
      for (int64_t i = b * block; i < (b + 1) * block; ++i) {
        step[r * k + i] = amax / 127 * 0.5001 + std::fabs(x[r * k + i]) * f16_rel * 1.01;
      }
    }
  }
  std::vector<double> out(static_cast<size_t>(m * n));
  const auto mag = abs_dot(wf, x, m, k, n);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0;
      for (int64_t i = 0; i < k; ++i) s += std::fabs(static_cast<double>(wf[c * k + i])) * step[r * k + i];
      out[r * n + c] = s + 1e-5 * mag[r * n + c];
    }
  }
  return out;
}

struct Shape {
  int64_t m, n, k;
};

std::vector<Shape> shapes(TensorType type, bool full) {
  std::vector<Shape> out;
  const std::vector<int64_t> ms = full ? std::vector<int64_t>{1, 3, 17, 64} : std::vector<int64_t>{3, 17};
  const std::vector<int64_t> ns = full ? std::vector<int64_t>{1, 7, 33, 130} : std::vector<int64_t>{7, 130};
  std::vector<int64_t> ks{256, 768};
  if (full && !matmul_detail::is_k_quant(type)) ks.insert(ks.end(), {512, 96});
  if (full && !type_traits(type).quantized) ks.insert(ks.end(), {33, 1});  // odd k: bf16 pairs
  for (int64_t m : ms) {
    for (int64_t n : ns) {
      for (int64_t k : ks) out.push_back({m, n, k});
    }
  }
  return out;
}

std::string describe(TensorType type, const Shape& s) {
  return std::string(type_name(type)) + " m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
         " k=" + std::to_string(s.k);
}

// ------------------------------------------------------------------------------------------

TEST(MatmulActivations, MatchQuantizeRowReferenceOnEveryTarget) {
  constexpr int64_t k = 512;
  auto x = testing::random_normal(k, 11, 2.0f);
  // Ties: with amax 127 the scale is exactly 1, so x.5 values must round away from zero.
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  x[3] = 0.5f;
  x[4] = -0.5f;
  std::fill(x.begin() + 256, x.begin() + 288, 0.0f);  // an all-zero block: d = 0, q = 0
  for_each_simd_target([&](int64_t) {
    for (TensorType wtype : {TensorType::Q8_0, TensorType::Q4_K}) {
      for (int64_t group_rows : {1, 4}) {
        const int64_t lane = group_rows - 1;
        const auto layout = matmul_detail::act_layout(wtype, k, group_rows);
        std::vector<uint8_t> group(layout.group_bytes);
        matmul_detail::quantize_activation_row(layout, 8, x.data(), group.data(), lane);
        std::vector<uint8_t> ref(row_bytes(layout.type, k));
        quantize_row_reference(layout.type, x.data(), ref.data(), k);
        // Value i of this row is byte i % 4 of lane `lane` of quad slot i / 4.
        const auto q = [&](int64_t i) {
          return static_cast<int8_t>(group[static_cast<size_t>(((i / 4) * group_rows + lane) * 4 + i % 4)]);
        };
        const auto at = [&](size_t offset, int64_t index, auto type) {
          decltype(type) v;
          std::memcpy(&v, group.data() + offset + (index * group_rows + lane) * sizeof(v), sizeof(v));
          return v;
        };
        if (layout.type == TensorType::Q8_0) {
          const auto* blocks = reinterpret_cast<const BlockQ8_0*>(ref.data());
          for (int64_t b = 0; b < k / 32; ++b) {
            int sum = 0;
            for (int i = 0; i < 32; ++i) {
              ASSERT_EQ(q(b * 32 + i), blocks[b].qs[i]) << "block " << b << " value " << i;
              sum += blocks[b].qs[i];
            }
            EXPECT_EQ(at(layout.d_offset, b, float{}), f16_to_f32(blocks[b].d));
            EXPECT_EQ(at(layout.corr_offset, b, int32_t{}), -8 * sum);
          }
          EXPECT_EQ(q(1), 3);
          EXPECT_EQ(q(2), -4);
          EXPECT_EQ(q(3), 1);
          EXPECT_EQ(q(4), -1);
        } else {
          const auto* blocks = reinterpret_cast<const BlockQ8_K*>(ref.data());
          for (int64_t b = 0; b < k / 256; ++b) {
            for (int i = 0; i < 256; ++i) ASSERT_EQ(q(b * 256 + i), blocks[b].qs[i]) << "block " << b << " value " << i;
            EXPECT_EQ(at(layout.d_offset, b, float{}), blocks[b].d);
            for (int p = 0; p < 8; ++p) {
              const auto pair = at(layout.sum16_offset, b * 8 + p, std::array<int16_t, 2>{});
              EXPECT_EQ(pair[0], blocks[b].bsums[2 * p]);
              EXPECT_EQ(pair[1], blocks[b].bsums[2 * p + 1]);
            }
            for (int p = 0; p < 4; ++p) {
              const auto pair = at(layout.sum32_offset, b * 4 + p, std::array<int16_t, 2>{});
              EXPECT_EQ(pair[0], blocks[b].bsums[4 * p] + blocks[b].bsums[4 * p + 1]);
              EXPECT_EQ(pair[1], blocks[b].bsums[4 * p + 2] + blocks[b].bsums[4 * p + 3]);
            }
          }
        }
      }
    }
  });
}

TEST(MatmulDecode, LevelsTimesScalesEqualDequantizeRowReference) {
  for (TensorType type : kQuantTypes) {
    const int64_t block = matmul_detail::is_k_quant(type) ? 256 : 32;
    Tensor w = random_weight(type, 4 * block, 3, 5);
    const auto ref = dequantized(w.view());
    matmul_detail::DecodedBlock dec;
    for (int64_t r = 0; r < 3; ++r) {
      for (int64_t b = 0; b < 4; ++b) {
        matmul_detail::decode_block(type, w.view().row(r) + b * type_traits(type).block_bytes, &dec);
        const int gs = matmul_detail::group_size(type);
        for (int64_t i = 0; i < block; ++i) {
          float v;
          if (!matmul_detail::is_k_quant(type)) {
            v = static_cast<float>(dec.levels[i]) * dec.d;
          } else {
            const float scale = dec.d * static_cast<float>(dec.scale[i / gs]);
            v = scale * static_cast<float>(dec.levels[i]);
            if (type != TensorType::Q6_K) v -= dec.dmin * static_cast<float>(dec.min[i / gs]);
          }
          ASSERT_EQ(v, ref[r * 4 * block + b * block + i]) << type_name(type) << " row " << r << " value " << b * block + i;
        }
      }
    }
  }
}

// The fast path against the reference that quantizes activations the same way: only float
// rounding of the scale products differs, so the bound is 1e-5 of Σ|x||w| (an off-by-one
// activation level would move the result by ~4e-5 of it at these sizes).
TEST(Matmul, QuantizedMatchesQuantizedReferenceOnEveryTarget) {
  bool best = true;
  for_each_simd_target([&](int64_t) {
    for (TensorType type : kQuantTypes) {
      for (const Shape& s : shapes(type, best)) {
        SCOPED_TRACE(describe(type, s));
        Tensor w = random_weight(type, s.k, s.n, 100 + s.k + s.n);
        const auto x = testing::random_normal(static_cast<size_t>(s.m * s.k), 200 + s.m, 1.0f);
        const auto fast = run_matmul(w.view(), x, s.m, 2);
        std::vector<float> ref(fast.size());
        matmul_quantized_reference(w.view(), x.data(), s.m, ref.data());
        const auto mag = abs_dot(dequantized(w.view()), x, s.m, s.k, s.n);
        for (size_t i = 0; i < fast.size(); ++i) {
          ASSERT_LE(std::fabs(static_cast<double>(fast[i]) - ref[i]), 1e-5 * mag[i] + 1e-30)
              << "output " << i << ": " << fast[i] << " vs " << ref[i];
        }
      }
    }
    best = false;  // other targets: a smaller grid
  });
}

// Against exact math on the dequantized weights. Quantized types: every output within the
// rigorous activation-quantization bound, and ~0.5% relative RMS error overall (1.5% allowed).
// Float types: 1e-5 of Σ|x||w| (bf16-rounded activations, if that kernel runs: 2^-8).
TEST(Matmul, MatchesReferenceForEveryType) {
  for (TensorType type : kWeightTypes) {
    for (const Shape& s : shapes(type, true)) {
      SCOPED_TRACE(describe(type, s));
      Tensor w = random_weight(type, s.k, s.n, 300 + s.k * 7 + s.n);
      const auto x = testing::random_normal(static_cast<size_t>(s.m * s.k), 400 + s.m, 1.0f);
      const auto fast = run_matmul(w.view(), x, s.m, 2);
      std::vector<float> ref(fast.size());
      matmul_reference(w.view(), x.data(), s.m, ref.data());
      const auto wf = dequantized(w.view());
      const bool quantized = type_traits(type).quantized;
      std::vector<double> bound;
      if (quantized) {
        bound = activation_error_bound(type, wf, x, s.m, s.k, s.n);
      } else {
        bound = abs_dot(wf, x, s.m, s.k, s.n);
        const bool bf16_kernel = type == TensorType::BF16 && bf16_weights_round_activations();
        for (double& b : bound) b *= bf16_kernel ? 1.0 / 256 : 1e-5;
      }
      double err2 = 0, ref2 = 0;
      for (size_t i = 0; i < fast.size(); ++i) {
        const double e = static_cast<double>(fast[i]) - ref[i];
        ASSERT_LE(std::fabs(e), bound[i]) << "output " << i << ": " << fast[i] << " vs " << ref[i];
        err2 += e * e;
        ref2 += static_cast<double>(ref[i]) * ref[i];
      }
      if (quantized && fast.size() >= 100) {
        EXPECT_LE(std::sqrt(err2 / ref2), 0.015);
      }
    }
  }
}

// The AVX-512 BF16 kernels directly (the driver may prefer OpenBLAS on some CPUs): x rounded
// to bf16 moves each product by at most 2^-9 of itself.
TEST(Matmul, Bf16KernelMatchesReference) {
  const matmul_detail::Bf16Kernels* kern = matmul_detail::bf16_kernels();
  if (!kern) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  for (auto [m, n, k] : {Shape{1, 1, 2}, Shape{9, 70, 33}, Shape{17, 64, 256}, Shape{8, 40, 517}}) {
    SCOPED_TRACE(describe(TensorType::BF16, {m, n, k}));
    Tensor w = random_weight(TensorType::BF16, k, n, 900 + k);
    const auto x = testing::random_normal(static_cast<size_t>(m * k), 901);
    const int64_t g = kern->group_rows, pairs = (k + 1) / 2;
    std::vector<uint16_t> xb(static_cast<size_t>((m + g - 1) / g * pairs * g * 2), 0);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t i = 0; i < k; ++i) xb[static_cast<size_t>((r / g) * pairs * g * 2 + ((i / 2) * g + r % g) * 2 + i % 2)] = f32_to_bf16(x[r * k + i]);
    }
    std::vector<float> y(static_cast<size_t>(m * n), std::nanf("")), ref(y.size());
    std::vector<uint8_t> panel(kern->panel_bytes(k));
    for (int64_t c0 = 0; c0 < n; c0 += kern->panel_rows) {
      const int64_t cols = std::min(kern->panel_rows, n - c0);
      kern->unpack(w.view().row(c0), w.view().row_stride(), cols, k, panel.data());
      kern->multiply(panel.data(), xb.data(), m, k, y.data() + c0, n, cols);
    }
    matmul_reference(w.view(), x.data(), m, ref.data());
    const auto mag = abs_dot(dequantized(w.view()), x, m, k, n);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_LE(std::fabs(static_cast<double>(y[i]) - ref[i]), mag[i] / 256) << i;
  }
}

// The own f32 kernels directly, on every target that has them (the driver uses them only
// where OpenBLAS runs a generic core). Weight rows with a stride wider than k, tails of both
// activation strips and weight-row groups, k across the kernel's 256-value chunks. Bound: the
// f32 summation of k products, |error| <= γ_k Σ|w·x| with γ_k = k·u / (1 − k·u), u = 2^-24.
TEST(Matmul, FloatKernelMatchesReference) {
  int tested = 0;
  for_each_simd_target([&](int64_t) {
    const matmul_detail::FloatKernels* kern = matmul_detail::float_kernels();
    if (!kern) return;
    ++tested;
    for (auto [m, n, k] : {Shape{1, 1, 1}, Shape{9, 70, 33}, Shape{33, 64, 256}, Shape{17, 13, 517}, Shape{40, 9, 600}}) {
      SCOPED_TRACE(describe(TensorType::F32, {m, n, k}));
      const int64_t ldw = k + 5;
      const auto w = testing::random_normal(static_cast<size_t>(n * ldw), 950 + k, 0.5f);
      const auto x = testing::random_normal(static_cast<size_t>(m * k), 951 + m);
      const int64_t strips = (m + kern->lanes - 1) / kern->lanes;
      std::vector<float> packed(static_cast<size_t>(strips * k * kern->lanes) + 16);
      float* aligned = packed.data() + (16 - reinterpret_cast<uintptr_t>(packed.data()) / 4 % 16) % 16;
      for (int64_t s = 0; s < strips; ++s) kern->pack_activations(x.data(), m, k, s, aligned);
      std::vector<float> y(static_cast<size_t>(m * n), std::nanf(""));
      kern->multiply(aligned, m, k, w.data(), ldw, n, y.data(), n);
      const double u = std::ldexp(1.0, -24), gamma = k * u / (1 - k * u);
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t c = 0; c < n; ++c) {
          double exact = 0, mag = 0;
          for (int64_t i = 0; i < k; ++i) {
            const double p = static_cast<double>(w[static_cast<size_t>(c * ldw + i)]) * x[static_cast<size_t>(r * k + i)];
            exact += p;
            mag += std::fabs(p);
          }
          ASSERT_LE(std::fabs(y[static_cast<size_t>(r * n + c)] - exact), gamma * mag) << "row " << r << " col " << c;
        }
      }
    }
  });
#if defined(__x86_64__)
  if (tested == 0 && hwy::SupportedTargets() & HWY_AVX2) ADD_FAILURE() << "no target ran the f32 kernels";
#endif
}

// q, k and v (or gate and up) from one quantization of x: bit for bit what separate matmuls
// give, for every weight type, with weights of different row counts (GQA's narrower k and v),
// and for a mixed-type set, which falls back to one matmul each.
TEST(Matmul, SharedInputEqualsSeparateMatmuls) {
  ThreadPool pool(2);
  const int64_t m = 37, k = 256;
  const auto x = testing::random_normal(static_cast<size_t>(m * k), 777);
  auto check = [&](const std::vector<const Tensor*>& weights) {
    std::vector<const TensorView*> views;
    std::vector<std::vector<float>> separate, shared;
    std::vector<TensorView> held;
    held.reserve(weights.size());
    for (const Tensor* w : weights) held.push_back(w->view());
    std::vector<float*> outs;
    for (const TensorView& v : held) {
      views.push_back(&v);
      separate.emplace_back(static_cast<size_t>(m * v.rows()));
      matmul(v, x.data(), m, separate.back().data(), pool);
      shared.emplace_back(static_cast<size_t>(m * v.rows()), std::nanf(""));
    }
    for (auto& s : shared) outs.push_back(s.data());
    matmul_shared_input(views, x.data(), m, outs, pool);
    for (size_t i = 0; i < weights.size(); ++i) EXPECT_EQ(shared[i], separate[i]) << "product " << i;
  };
  for (TensorType type : kWeightTypes) {
    SCOPED_TRACE(type_name(type));
    Tensor q = random_weight(type, k, 192, 801), kk = random_weight(type, k, 64, 802), v = random_weight(type, k, 70, 803);
    check({&q, &kk, &v});
  }
  Tensor a = random_weight(TensorType::Q8_0, k, 96, 804), b = random_weight(TensorType::Q4_K, k, 64, 805);
  check({&a, &b});
  const TensorView av = a.view();
  const TensorView* one[] = {&av};
  std::vector<float> y(static_cast<size_t>(m * 96));
  float* const two[] = {y.data(), y.data()};
  EXPECT_THROW(matmul_shared_input(one, x.data(), m, two, pool), Error);
}

TEST(Matmul, OneAndTwoThreadsGiveIdenticalBits) {
  for_each_simd_target([&](int64_t) {
    for (TensorType type : kWeightTypes) {
      SCOPED_TRACE(type_name(type));
      const int64_t m = 37, n = 301, k = 512;
      Tensor w = random_weight(type, k, n, 500);
      const auto x = testing::random_normal(static_cast<size_t>(m * k), 501);
      const auto one = run_matmul(w.view(), x, m, 1);
      const auto two = run_matmul(w.view(), x, m, 2);
      EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
    }
  });
}

TEST(Matmul, RowRangeEqualsColumnsOfFullMatmul) {
  ThreadPool pool(2);
  for (TensorType type : kWeightTypes) {
    SCOPED_TRACE(type_name(type));
    const int64_t m = 9, n = 203, k = 256;
    Tensor w = random_weight(type, k, n, 600);
    const auto x = testing::random_normal(static_cast<size_t>(m * k), 601);
    const auto full = run_matmul(w.view(), x, m, 2);
    const auto mag = abs_dot(dequantized(w.view()), x, m, k, n);
    for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 203}, {5, 100}, {64, 128}, {200, 203}, {17, 18}}) {
      const int64_t cols = end - begin;
      std::vector<float> part(static_cast<size_t>(m * cols));
      matmul_rows(w.view(), begin, end, x.data(), m, part.data(), pool);
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const size_t i = static_cast<size_t>(r * n + begin + c);
          const float got = part[static_cast<size_t>(r * cols + c)];
          if (type_traits(type).quantized) {
            ASSERT_EQ(got, full[i]) << "range [" << begin << "," << end << ") row " << r << " col " << c;
          } else {  // OpenBLAS may take another edge kernel for a column at another offset
            ASSERT_LE(std::fabs(static_cast<double>(got) - full[i]), 1e-6 * mag[i]);
          }
        }
      }
    }
  }
}

TEST(Matmul, EmptyShapesAreNoOps) {
  ThreadPool pool(2);
  Tensor w = random_weight(TensorType::Q8_0, 64, 4, 700);
  const auto x = testing::random_normal(64 * 2, 701);
  std::vector<float> y(8, 1.0f);
  matmul(w.view(), x.data(), 0, y.data(), pool);
  matmul_rows(w.view(), 2, 2, x.data(), 2, y.data(), pool);
  EXPECT_EQ(y[0], 1.0f);
}

TEST(Matmul, BadInputThrowsError) {
  ThreadPool pool(1);
  Tensor w = random_weight(TensorType::Q8_0, 64, 4, 800);
  const auto x = testing::random_normal(64 * 2, 801);
  std::vector<float> y(8);

  TensorView odd = w.view();
  odd.shape = {48, 4};  // not a multiple of 32
  EXPECT_THROW(matmul(odd, x.data(), 2, y.data(), pool), Error);

  TensorView unsupported = w.view();
  unsupported.type = static_cast<TensorType>(3);
  EXPECT_THROW(matmul(unsupported, x.data(), 2, y.data(), pool), Error);

  TensorView activation_only = w.view();
  activation_only.type = TensorType::Q8_K;
  activation_only.shape = {256, 1};
  EXPECT_THROW(matmul(activation_only, x.data(), 1, y.data(), pool), Error);

  TensorView no_data = w.view();
  no_data.data = nullptr;
  EXPECT_THROW(matmul(no_data, x.data(), 2, y.data(), pool), Error);

  TensorView short_data = w.view();
  short_data.nbytes = 10;
  EXPECT_THROW(matmul(short_data, x.data(), 2, y.data(), pool), Error);

  TensorView three_d = w.view();
  three_d.shape = {64, 2, 2};
  EXPECT_THROW(matmul(three_d, x.data(), 2, y.data(), pool), Error);

  EXPECT_THROW(matmul(w.view(), nullptr, 2, y.data(), pool), Error);
  EXPECT_THROW(matmul(w.view(), x.data(), 2, nullptr, pool), Error);
  EXPECT_THROW(matmul(w.view(), x.data(), -1, y.data(), pool), Error);
  EXPECT_THROW(matmul_rows(w.view(), 3, 5, x.data(), 2, y.data(), pool), Error);
  EXPECT_THROW(matmul_rows(w.view(), 3, 2, x.data(), 2, y.data(), pool), Error);
  EXPECT_THROW(matmul_reference(odd, x.data(), 2, y.data()), Error);
  EXPECT_THROW(matmul_quantized_reference(odd, x.data(), 2, y.data()), Error);
}

TEST(Matmul, ReportsTheChosenTarget) {
  const std::string best = hwy::TargetName(hwy::SupportedAndGeneratedTargets().front());
  EXPECT_EQ(simd_target_name(), best);
  for_each_simd_target([](int64_t target) { EXPECT_STREQ(simd_target_name(), hwy::TargetName(target)); });
}

}  // namespace
}  // namespace ruvdllm
