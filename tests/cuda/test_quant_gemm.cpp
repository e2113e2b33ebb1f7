// QuantGemm (src/cuda/quant_gemm.h), the products over weights kept in GGUF blocks, against an
// f64 product of the CPU's dequantized weights on random inputs.
//
// The GPU decodes each weight to the very bf16 value dequantize_to_bf16 writes (the CPU
// reference rounded to bf16; test_infer_kernels checks that bit for bit), so the reference uses
// those values and the only differences are the f32 accumulation, bounded by
// (in + 2)·2⁻²⁴·Σ|x·w| (the order of the tensor cores' sums is not specified), and the output's
// rounding: half a bf16 ulp, or one f32 rounding after adding beta·y.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/quant_gemm.h"
#include "cuda_test_util.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/kernels/quant.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using testing::CudaTest;
using testing::poisoned;
using testing::random_floats;
using testing::to_device;
using testing::to_host;

constexpr TensorType kBlockTypes[] = {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K,
                                      TensorType::Q5_K, TensorType::Q6_K};

TEST(QuantGemmArgs, SupportsBlockTypesWithWholeStages) {
  for (const TensorType t : kBlockTypes) {
    EXPECT_TRUE(cuda::QuantGemm::supports(t, 256)) << type_name(t);
    EXPECT_TRUE(cuda::QuantGemm::supports(t, 4096)) << type_name(t);
    EXPECT_FALSE(cuda::QuantGemm::supports(t, 0)) << type_name(t);
    EXPECT_FALSE(cuda::QuantGemm::supports(t, 96)) << type_name(t);
  }
  // Rows are walked in stages of 256 values: 384 is whole Q8_0 blocks, but not whole stages.
  EXPECT_FALSE(cuda::QuantGemm::supports(TensorType::Q8_0, 384));
  EXPECT_TRUE(cuda::QuantGemm::supports(TensorType::Q8_0, 768));
  for (const TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
    EXPECT_FALSE(cuda::QuantGemm::supports(t, 256)) << type_name(t);
  }
}

class QuantGemm : public CudaTest {};

struct Shape {
  int64_t n, in, out;
  int splits;   // forced; 0 lets the product choose
  int64_t pad;  // extra columns of y beyond the product's (ldy = out + pad, columns offset by 3)
};

testing::BlockProduct make_product(TensorType type, const Shape& sh, uint64_t seed) {
  return testing::make_block_product(type, sh.n, sh.in, sh.out, seed);
}

TEST_F(QuantGemm, MatchesTheDequantizedProduct) {
  cuda::QuantGemm gemm(nullptr);
  constexpr int64_t kColumn0 = 3;  // the product writes columns [3, 3 + out) of a wider y
  uint64_t seed = 4100;
  for (const TensorType type : kBlockTypes) {
    for (const Shape sh :
         {Shape{1, 256, 64, 0, 0}, Shape{5, 512, 200, 0, 5}, Shape{32, 1024, 130, 0, 3},
          Shape{70, 256, 96, 2, 0}, Shape{130, 768, 72, 4, 4}, Shape{33, 4096, 64, 0, 0}}) {
      const testing::BlockProduct p = make_product(type, sh, seed += 2);
      const auto dx = to_device(p.x_bits);
      const auto dw = to_device(p.blocks);
      const auto* x = reinterpret_cast<const __nv_bfloat16*>(dx.data());
      const int64_t ldy = sh.out + sh.pad;
      const int64_t col0 = sh.pad > 0 ? kColumn0 : 0;
      const auto cells = static_cast<size_t>(sh.n * ldy + col0);
      gemm.force_splits(sh.splits);
      const std::string label = std::string(type_name(type)) + " " + std::to_string(sh.n) + "x" +
                                std::to_string(sh.in) + "x" + std::to_string(sh.out) + " splits " +
                                std::to_string(gemm.splits_for(sh.n, sh.in, sh.out));
      const testing::ProductCheck check{sh.n, sh.in, sh.out, ldy, col0, p.want, p.magnitude, label};
      {
        auto y = poisoned<uint16_t>(cells);
        gemm.linear(reinterpret_cast<__nv_bfloat16*>(y.data()) + col0, ldy, x, dw.data(), type,
                    sh.n, sh.in, sh.out);
        check.bf16(to_host(y, cells));
      }
      {
        const auto y0 = random_floats(cells, seed + 7, -1.0f, 1.0f);
        auto y = to_device(y0);
        gemm.linear(y.data() + col0, ldy, x, dw.data(), type, sh.n, sh.in, sh.out, 1.0f);
        check.f32(to_host(y, cells), y0, 1.0f);
      }
    }
  }
  gemm.force_splits(0);
}

// x's rows ldx values apart (the engine pads its normed hidden rows) give the same bits as
// packed rows, split or not.
TEST_F(QuantGemm, ReadsRowsOfXAtAnyPitch) {
  cuda::QuantGemm gemm(nullptr);
  const int64_t n = 33, in = 1024, out = 96, ldx = in + 64;
  const auto cells = static_cast<size_t>(n * out);
  for (const TensorType type : kBlockTypes) {
    const testing::BlockProduct p = testing::make_block_product(type, n, in, out, 4400);
    const auto dw = to_device(p.blocks);
    for (const int splits : {1, 2}) {
      gemm.force_splits(splits);
      auto run = [&](const std::vector<uint16_t>& x_bits, int64_t pitch) {
        const auto dx = to_device(x_bits);
        auto y = poisoned<float>(cells);
        gemm.linear(y.data(), out, reinterpret_cast<const __nv_bfloat16*>(dx.data()), dw.data(),
                    type, n, in, out, 0.0f, pitch);
        return to_host(y, cells);
      };
      const auto packed = run(p.x_bits, 0);
      const auto pitched = run(testing::with_row_pitch(p.x_bits, n, in, ldx, 4402), ldx);
      EXPECT_EQ(std::memcmp(packed.data(), pitched.data(), cells * sizeof(float)), 0)
          << type_name(type) << " splits " << splits;
    }
  }
  gemm.force_splits(0);
  auto y = poisoned<float>(8);
  auto x = poisoned<uint16_t>(2048);
  const auto* xb = reinterpret_cast<const __nv_bfloat16*>(x.data());
  EXPECT_THROW(gemm.linear(y.data(), 8, xb, nullptr, TensorType::Q8_0, 1, 256, 8, 0.0f, 248),
               Error);
  EXPECT_THROW(gemm.linear(y.data(), 8, xb, nullptr, TensorType::Q8_0, 1, 256, 8, 0.0f, 260),
               Error);
}

// Weights that start at an odd address (a part of a stacked matrix can) decode byte by byte.
TEST_F(QuantGemm, HandlesUnalignedWeights) {
  cuda::QuantGemm gemm(nullptr);
  const Shape sh{9, 512, 80, 0, 0};
  for (const TensorType type : kBlockTypes) {
    const testing::BlockProduct p = make_product(type, sh, 4300 + static_cast<uint64_t>(type));
    std::vector<uint8_t> shifted(p.blocks.size() + 1, 0);
    std::copy(p.blocks.begin(), p.blocks.end(), shifted.begin() + 1);
    const auto dx = to_device(p.x_bits);
    const auto dw = to_device(shifted);
    const auto m = static_cast<size_t>(sh.n * sh.out);
    auto y = poisoned<float>(m);
    gemm.linear(y.data(), sh.out, reinterpret_cast<const __nv_bfloat16*>(dx.data()), dw.data() + 1,
                type, sh.n, sh.in, sh.out);
    const auto got = to_host(y, m);
    size_t bad = 0;
    for (size_t i = 0; i < m; ++i) {
      const double bound = (static_cast<double>(sh.in) + 2) * 0x1p-24 * p.magnitude[i] +
                           0x1p-24 * std::fabs(p.want[i]);
      bad += !(std::fabs(got[i] - p.want[i]) <= bound);
    }
    EXPECT_EQ(bad, 0u) << type_name(type);
  }
}

TEST_F(QuantGemm, RejectsUnsupportedWeightsAndShapes) {
  cuda::QuantGemm gemm(nullptr);
  cuda::DeviceArray<float> y(64);
  EXPECT_THROW(gemm.linear(y.data(), 8, nullptr, nullptr, TensorType::F16, 1, 256, 8), Error);
  EXPECT_THROW(gemm.linear(y.data(), 8, nullptr, nullptr, TensorType::Q8_0, 1, 128, 8), Error);
  EXPECT_THROW(gemm.linear(y.data(), 4, nullptr, nullptr, TensorType::Q8_0, 1, 256, 8), Error);
  EXPECT_THROW(gemm.linear(y.data(), 8, nullptr, nullptr, TensorType::Q8_0, -1, 256, 8), Error);
  EXPECT_NO_THROW(gemm.linear(y.data(), 8, nullptr, nullptr, TensorType::Q8_0, 0, 256, 8));
  cuda::DeviceArray<__nv_bfloat16> x(2 * 256);
  EXPECT_THROW(gemm.linear(y.data(), 8, x.data() + 1, nullptr, TensorType::Q8_0, 1, 256, 8), Error);
}

}  // namespace
}  // namespace ruvdllm
