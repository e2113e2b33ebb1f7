// WgmmaGemm (src/cuda/wgmma_gemm.h), our Hopper bf16 GEMM, against an f64 product on the CPU of
// the same bf16 operands, on random inputs.
//
// Products of two bf16 values are exact in f32, so the only differences are the f32
// accumulation, bounded by (in + 2)·2⁻²⁴·Σ|x·w| (the order of the tensor cores' sums and of the
// stream-K partials is not specified), and the output's rounding: half a bf16 ulp, or one f32
// rounding after adding beta·y. The shapes make CTAs share tiles in every way stream-K can
// (a tile's slices over 2 to 64 CTAs, ranges that start and end mid-tile), and include row
// counts that are not a multiple of the 128- or 256-row tiles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/infer_kernels.h"
#include "cuda/swiglu.cuh"
#include "cuda/wgmma_gemm.h"
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

TEST(WgmmaGemmArgs, FitsWholeTilesOfOutputsAndSlicesOfInputs) {
  EXPECT_TRUE(cuda::WgmmaGemm::fits(1, 64, 128));
  EXPECT_TRUE(cuda::WgmmaGemm::fits(300, 4096, 12288));
  EXPECT_FALSE(cuda::WgmmaGemm::fits(0, 64, 128));
  EXPECT_FALSE(cuda::WgmmaGemm::fits(8, 96, 128));  // in not a multiple of 64
  EXPECT_FALSE(cuda::WgmmaGemm::fits(8, 64, 192));  // out not a multiple of 128
  EXPECT_FALSE(cuda::WgmmaGemm::fits(8, 0, 128));
}

// The interleaved gate|up layout (swiglu.cuh): each output's gate and up columns are 8 apart
// in one group of 16, and the gate and up columns of 64 outputs cover 128 columns once each.
TEST(SwigluLayout, AlternatesGroupsOfEightGateAndUpColumns) {
  std::vector<int> seen(128, 0);
  for (int64_t o = 0; o < 64; ++o) {
    const int64_t gate = cuda::swiglu_gate_column(o);
    EXPECT_LT(gate % 16, cuda::kSwigluGroup) << o;
    EXPECT_EQ(cuda::swiglu_output(gate), o);
    EXPECT_EQ(gate / 16, o / 8);
    ++seen[static_cast<size_t>(gate)];
    ++seen[static_cast<size_t>(gate + cuda::kSwigluGroup)];
  }
  for (size_t c = 0; c < seen.size(); ++c) EXPECT_EQ(seen[c], 1) << c;
}

class WgmmaGemm : public CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    if (!cuda::WgmmaGemm::available()) GTEST_SKIP() << "skipped, the GPU is not an H100/H200";
  }
};

struct Shape {
  int64_t n, in, out;
  int64_t pad;  // extra columns of y beyond the product's (ldy = out + pad, columns offset by 3)
};

// A random product over weights in blocks, its operands also on the device.
struct DeviceBlockProduct {
  DeviceBlockProduct(TensorType type, const Shape& sh, uint64_t seed)
      : host(testing::make_block_product(type, sh.n, sh.in, sh.out, seed)),
        x(to_device(host.x_bits)),
        w(to_device(host.blocks)) {}
  testing::BlockProduct host;
  cuda::DeviceArray<uint16_t> x;
  cuda::DeviceArray<uint8_t> w;
};

struct Product {
  std::vector<uint16_t> x_bits, w_bits;
  std::vector<double> want, magnitude;
};

Product make_product(const Shape& sh, uint64_t seed) {
  Product p;
  auto round = [](std::vector<float> v, std::vector<uint16_t>* bits) {
    bits->resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      (*bits)[i] = f32_to_bf16(v[i]);
      v[i] = bf16_to_f32((*bits)[i]);
    }
    return v;
  };
  const auto x =
      round(random_floats(static_cast<size_t>(sh.n * sh.in), seed, -1.0f, 1.0f), &p.x_bits);
  const auto w =
      round(random_floats(static_cast<size_t>(sh.out * sh.in), seed + 1, -1.0f, 1.0f), &p.w_bits);
  testing::reference_product(x, w, sh.n, sh.in, sh.out, &p.want, &p.magnitude);
  return p;
}

const __nv_bfloat16* as_bf16(const cuda::DeviceArray<uint16_t>& a) {
  return reinterpret_cast<const __nv_bfloat16*>(a.data());
}

TEST_F(WgmmaGemm, MatchesTheCpuProduct) {
  cuda::WgmmaGemm gemm(nullptr);
  constexpr int64_t kColumn0 = 3;  // the product writes columns [3, 3 + out) of a wider y
  uint64_t seed = 5100;
  for (const Shape sh :
       {Shape{1, 64, 128, 0}, Shape{5, 256, 256, 5}, Shape{128, 512, 384, 0},
        Shape{129, 1024, 256, 3}, Shape{300, 768, 512, 0}, Shape{512, 4096, 128, 0},
        Shape{256, 2048, 1280, 2}, Shape{77, 320, 2048, 0}}) {
    const Product p = make_product(sh, seed += 2);
    const auto dx = to_device(p.x_bits);
    const auto dw = to_device(p.w_bits);
    const int64_t ldy = sh.out + sh.pad;
    const int64_t col0 = sh.pad > 0 ? kColumn0 : 0;
    const auto cells = static_cast<size_t>(sh.n * ldy + col0);
    const std::string label =
        std::to_string(sh.n) + "x" + std::to_string(sh.in) + "x" + std::to_string(sh.out);
    const testing::ProductCheck check{sh.n, sh.in, sh.out, ldy, col0, p.want, p.magnitude, label};
    {
      auto y = poisoned<uint16_t>(cells);
      gemm.linear(reinterpret_cast<__nv_bfloat16*>(y.data()) + col0, ldy, as_bf16(dx), as_bf16(dw),
                  sh.n, sh.in, sh.out);
      check.bf16(to_host(y, cells));
    }
    for (const float beta : {0.0f, 1.0f}) {
      const auto y0 = random_floats(cells, seed + 7, -1.0f, 1.0f);
      auto y = to_device(y0);
      gemm.linear(y.data() + col0, ldy, as_bf16(dx), as_bf16(dw), sh.n, sh.in, sh.out, beta);
      check.f32(to_host(y, cells), y0, beta);
    }
  }
}

// Stream-K's partials are added in CTA order, never in the order CTAs happen to finish.
TEST_F(WgmmaGemm, RepeatsTheSameBits) {
  cuda::WgmmaGemm gemm(nullptr);
  const Shape sh{384, 4096, 1280, 0};
  const auto x = random_floats(static_cast<size_t>(sh.n * sh.in), 5301, -1.0f, 1.0f);
  const auto w = random_floats(static_cast<size_t>(sh.out * sh.in), 5302, -1.0f, 1.0f);
  std::vector<uint16_t> xb(x.size()), wb(w.size());
  for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);
  for (size_t i = 0; i < w.size(); ++i) wb[i] = f32_to_bf16(w[i]);
  const auto dx = to_device(xb);
  const auto dw = to_device(wb);
  const auto m = static_cast<size_t>(sh.n * sh.out);
  std::vector<float> first;
  for (int run = 0; run < 4; ++run) {
    auto y = poisoned<float>(m);
    gemm.linear(y.data(), sh.out, as_bf16(dx), as_bf16(dw), sh.n, sh.in, sh.out);
    const auto got = to_host(y, m);
    if (run == 0) {
      first = got;
      continue;
    }
    size_t differ = 0;
    for (size_t i = 0; i < m; ++i) differ += std::memcmp(&got[i], &first[i], sizeof(float)) != 0;
    EXPECT_EQ(differ, 0u) << "run " << run;
  }
}

// How WgmmaGemm takes weights in blocks: wide tiles past 256 rows (all but Q4_K), and Q4_K / Q5_K
// decoded by the consumers into registers or by a decoding warpgroup.
struct Way {
  bool wide, registers;
};

// Weights in GGUF blocks decode to the bf16 values the CPU's dequantization rounds to (what
// dequantize_to_bf16 writes, which test_infer_kernels checks bit for bit), so the same bound holds
// against an f64 product of those values. Past 256 rows the wide tiles (64 outputs × 512 rows in
// CTA pairs, two decoding threads per weight row) run for all but Q4_K: 300, 512, 520 and 600
// rows (two row tiles, the second mostly past the end), and with them off, two or three 256-row
// tiles.
TEST_F(WgmmaGemm, DecodesBlocksInsideTheTiles) {
  cuda::WgmmaGemm gemm(nullptr);
  gemm.set_wide_tiles(true);
  EXPECT_TRUE(gemm.takes_wide_tiles(TensorType::Q8_0));
  EXPECT_TRUE(gemm.takes_wide_tiles(TensorType::Q5_K));
  EXPECT_FALSE(gemm.takes_wide_tiles(TensorType::Q4_K));  // measured no faster
  EXPECT_FALSE(gemm.takes_wide_tiles(TensorType::BF16));
  gemm.set_wide_tiles(false);
  EXPECT_FALSE(gemm.takes_wide_tiles(TensorType::Q8_0));
  EXPECT_TRUE(gemm.register_decoding());  // the default, measured faster
  {
    testing::ScopedEnv warpgroup("RUVDLLM_CUDA_DECODE", "warpgroup");
    EXPECT_FALSE(cuda::WgmmaGemm(nullptr).register_decoding());
    testing::ScopedEnv bad("RUVDLLM_CUDA_DECODE", "threads");
    EXPECT_THROW(cuda::WgmmaGemm{nullptr}, Error);
  }
  uint64_t seed = 5500;
  // Q4_K and Q5_K in tiles of up to 256 rows, decoded both ways: by the consumers into registers
  // and by the decoding warpgroup (the other types always take the latter).
  for (const Way way : {Way{true, true}, Way{false, true}, Way{false, false}})
    for (const TensorType type : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K,
                                  TensorType::Q5_K, TensorType::Q6_K}) {
      const bool wide = way.wide;
      if (!way.registers && type != TensorType::Q4_K && type != TensorType::Q5_K) continue;
      gemm.set_wide_tiles(wide);
      gemm.set_register_decoding(way.registers);
      // Q6_K's rows must be multiples of 2048 values (16-byte row strides for its 210-byte
      // chunks); its copies read 14 bytes past each chunk, zeros past a row's last one.
      const std::vector<Shape> shapes =
          type == TensorType::Q6_K
              ? std::vector<Shape>{Shape{5, 2048, 128, 0}, Shape{130, 4096, 384, 3},
                                   Shape{300, 2048, 256, 0}, Shape{520, 2048, 128, 0}}
              : std::vector<Shape>{Shape{5, 256, 128, 0},    Shape{130, 512, 384, 3},
                                   Shape{300, 1024, 256, 0}, Shape{64, 4096, 128, 0},
                                   Shape{512, 2048, 384, 0}, Shape{600, 1024, 256, 2}};
      for (const Shape sh : shapes) {
        const std::string label = std::string(type_name(type)) + " " + std::to_string(sh.n) + "x" +
                                  std::to_string(sh.in) + "x" + std::to_string(sh.out) +
                                  (wide ? " wide tiles" : " 128 x 256 tiles") +
                                  (way.registers ? "" : ", decoding warpgroup");
        const DeviceBlockProduct d(type, sh, seed += 2);
        const int64_t ldy = sh.out + sh.pad;
        const auto cells = static_cast<size_t>(sh.n * ldy);
        const auto y0 = random_floats(cells, seed + 9, -1.0f, 1.0f);
        auto y = to_device(y0);
        auto yb = poisoned<uint16_t>(cells);
        ASSERT_TRUE(cuda::WgmmaGemm::fits_blocks(type, sh.n, sh.in, sh.out)) << label;
        gemm.linear_blocks(y.data(), ldy, as_bf16(d.x), d.w.data(), type, sh.n, sh.in, sh.out,
                           1.0f);
        gemm.linear_blocks(reinterpret_cast<__nv_bfloat16*>(yb.data()), ldy, as_bf16(d.x),
                           d.w.data(), type, sh.n, sh.in, sh.out);
        const testing::ProductCheck check{sh.n, sh.in,       sh.out,           ldy,
                                          0,    d.host.want, d.host.magnitude, label};
        check.f32(to_host(y, cells), y0, 1.0f);
        check.bf16(to_host(yb, cells));
      }
    }
  // Q6_K rows of 1024 values (840 bytes) cannot be copied at their stride; in must hold whole
  // 256-value chunks.
  EXPECT_FALSE(cuda::WgmmaGemm::fits_blocks(TensorType::Q6_K, 256, 1024, 4096));
  EXPECT_TRUE(cuda::WgmmaGemm::fits_blocks(TensorType::Q6_K, 256, 4096, 4096));
  EXPECT_FALSE(cuda::WgmmaGemm::fits_blocks(TensorType::Q8_0, 256, 320, 4096));
  EXPECT_FALSE(cuda::WgmmaGemm::fits_blocks(TensorType::BF16, 256, 4096, 4096));
}

// SwiGLU applied to a gate|up product's tiles (the engine's weights interleaved in groups of 8)
// gives the same bits as the product written in bf16 and then swiglu_rows over the interleaved
// layout, in every tile way (registers, decoding warpgroup, wide pairs, the staged store of a
// range's last tile and the direct one of the others, rows past the last full tile), and is
// silu(gate)·up of the f64 product within bf16 rounding.
TEST_F(WgmmaGemm, AppliesSwigluToGateUpTiles) {
  cuda::WgmmaGemm gemm(nullptr);
  uint64_t seed = 5900;
  for (const Way way : {Way{true, true}, Way{false, true}, Way{false, false}})
    for (const TensorType type : {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q8_0}) {
      if (!way.registers && type == TensorType::Q8_0) continue;
      gemm.set_wide_tiles(way.wide);
      gemm.set_register_decoding(way.registers);
      for (const Shape sh : {Shape{5, 256, 256, 0}, Shape{130, 1024, 768, 3},
                             Shape{256, 2048, 1024, 8}, Shape{600, 512, 256, 1}}) {
        const std::string label = std::string(type_name(type)) + " " + std::to_string(sh.n) + "x" +
                                  std::to_string(sh.in) + "x" + std::to_string(sh.out) +
                                  (way.wide ? " wide tiles" : "") +
                                  (way.registers ? "" : ", decoding warpgroup");
        const DeviceBlockProduct d(type, sh, seed += 2);
        const int64_t width = sh.out / 2, ldh = width + sh.pad;
        const auto cells = static_cast<size_t>(sh.n * ldh);
        auto gate_up = poisoned<uint16_t>(static_cast<size_t>(sh.n * sh.out));
        auto want = poisoned<uint16_t>(static_cast<size_t>(sh.n * width));
        auto got = poisoned<uint16_t>(cells);
        auto* gate_up_bf16 = reinterpret_cast<__nv_bfloat16*>(gate_up.data());
        gemm.linear_blocks(gate_up_bf16, sh.out, as_bf16(d.x), d.w.data(), type, sh.n, sh.in,
                           sh.out);
        cuda::swiglu_rows(reinterpret_cast<__nv_bfloat16*>(want.data()), gate_up_bf16, sh.n, width,
                          nullptr, /*interleaved=*/true);
        gemm.linear_blocks_swiglu(reinterpret_cast<__nv_bfloat16*>(got.data()), ldh, as_bf16(d.x),
                                  d.w.data(), type, sh.n, sh.in, sh.out);
        const auto want_bits = to_host(want, static_cast<size_t>(sh.n * width));
        const auto got_bits = to_host(got, cells);
        int64_t differ = 0, off = 0, padding_written = 0;
        for (int64_t r = 0; r < sh.n; ++r) {
          for (int64_t o = 0; o < width; ++o) {
            const uint16_t bits = got_bits[r * ldh + o];
            differ += bits != want_bits[r * width + o];
            const int64_t g = cuda::swiglu_gate_column(o);
            const double gate = d.host.want[r * sh.out + g],
                         up = d.host.want[r * sh.out + g + cuda::kSwigluGroup];
            const double ref = gate / (1.0 + std::exp(-gate)) * up;
            off += std::abs(bf16_to_f32(bits) - ref) >
                   0.03 * std::abs(ref) + 2e-3 * (1.0 + std::abs(gate)) * (1.0 + std::abs(up));
          }
          for (int64_t o = width; o < ldh; ++o) {
            padding_written += got_bits[r * ldh + o] != uint16_t{0xFFFF};
          }
        }
        EXPECT_EQ(differ, 0) << label << ": values that differ from product + swiglu_rows";
        EXPECT_EQ(off, 0) << label << ": values away from silu(gate)·up";
        EXPECT_EQ(padding_written, 0) << label << ": written past the output's width";
      }
    }
  const auto x = to_device(std::vector<uint16_t>(8 * 256, 0x3F80));
  const auto w = to_device(std::vector<uint16_t>(128 * 256, 0x3F80));
  auto h = to_device(std::vector<uint16_t>(8 * 64, 0));
  EXPECT_THROW(gemm.linear_blocks_swiglu(reinterpret_cast<__nv_bfloat16*>(h.data()), 64, as_bf16(x),
                                         w.data(), TensorType::BF16, 8, 256, 128),
               Error);  // bf16 weights
  EXPECT_THROW(gemm.linear_blocks_swiglu(reinterpret_cast<__nv_bfloat16*>(h.data()), 32, as_bf16(x),
                                         w.data(), TensorType::Q8_0, 8, 256, 128),
               Error);  // h's rows narrower than out / 2
}

// K cut into parts, each part's product in its own f32 block of n rows: the parts add up to the
// product, and each is a real part (part 0 alone is not the whole product).
TEST_F(WgmmaGemm, CutsKIntoPartsThatAddUpToTheProduct) {
  cuda::WgmmaGemm gemm(nullptr);
  EXPECT_GT(gemm.k_parts_for(256, 12288, 4096), 1);  // the 8B FFN-down product: 32 tiles
  EXPECT_GT(gemm.k_parts_for(128, 12288, 4096), 1);
  EXPECT_GT(gemm.k_parts_for(256, 4096, 4096), 1);   // the attention-output product
  EXPECT_EQ(gemm.k_parts_for(256, 4096, 12288), 1);  // 96 tiles fill the GPU
  EXPECT_EQ(gemm.k_parts_for(512, 12288, 4096), 1);  // only up to 256 rows
  EXPECT_EQ(gemm.k_parts_for(64, 12288, 4096), 1);   // measured from 128 rows
  gemm.set_k_parts(cuda::WgmmaGemm::KParts::Any);
  EXPECT_EQ(gemm.k_parts_for(64, 2048, 256), 4);
  EXPECT_EQ(gemm.k_parts_for(256, 512, 256), 2);  // parts of whole 256-value chunks
  EXPECT_EQ(gemm.k_parts_for(256, 256, 256), 1);
  gemm.set_k_parts(cuda::WgmmaGemm::KParts::Off);
  EXPECT_EQ(gemm.k_parts_for(256, 12288, 4096), 1);
  {
    testing::ScopedEnv off("RUVDLLM_CUDA_K_PARTS", "0");
    EXPECT_EQ(cuda::WgmmaGemm(nullptr).k_parts_for(256, 12288, 4096), 1);
    testing::ScopedEnv bad("RUVDLLM_CUDA_K_PARTS", "yes");
    EXPECT_THROW(cuda::WgmmaGemm{nullptr}, Error);
  }
  uint64_t seed = 6100;
  for (const TensorType type :
       {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q8_0, TensorType::Q4_0}) {
    for (const int parts : {2, 4}) {
      for (const Shape sh : {Shape{150, 2048, 256, 0}, Shape{256, 2048, 384, 4}}) {
        const std::string label = std::string(type_name(type)) + " " + std::to_string(sh.n) +
                                  " rows in " + std::to_string(parts) + " parts";
        const DeviceBlockProduct d(type, sh, seed += 2);
        const int64_t ldy = sh.out + sh.pad;
        const auto cells = static_cast<size_t>(sh.n * ldy);
        auto y = to_device(std::vector<float>(cells * parts, 0.0f));
        gemm.linear_blocks_split(y.data(), ldy, as_bf16(d.x), d.w.data(), type, sh.n, sh.in, sh.out,
                                 parts);
        const auto got = to_host(y, cells * parts);
        std::vector<float> sum(cells, 0.0f), first(got.begin(), got.begin() + cells);
        for (int part = 0; part < parts; ++part) {
          for (size_t c = 0; c < cells; ++c) sum[c] += got[part * cells + c];
        }
        const testing::ProductCheck check{sh.n, sh.in,       sh.out,           ldy,
                                          0,    d.host.want, d.host.magnitude, label};
        check.f32(sum, std::vector<float>(cells, 0.0f), 0.0f);
        EXPECT_GT(testing::rel_error(first, sum), 0.1)
            << label << ": part 0 holds the whole product";
      }
    }
  }
  const auto x = to_device(std::vector<uint16_t>(256 * 1024, 0x3F80));
  const auto w = to_device(std::vector<uint8_t>(128 * 1024 / 256 * 144, 0));
  auto y = to_device(std::vector<float>(256 * 128 * 4, 0.0f));
  EXPECT_THROW(gemm.linear_blocks_split(y.data(), 128, as_bf16(x), w.data(), TensorType::Q4_K, 256,
                                        1024, 128, 8),  // 8 parts of 128 values
               Error);
  EXPECT_THROW(gemm.linear_blocks_split(y.data(), 128, as_bf16(x), w.data(), TensorType::Q4_K, 300,
                                        1024, 128, 2),  // past 256 rows
               Error);
}

// x's rows ldx values apart (the engine pads its normed hidden rows) give the same bits as
// packed rows, with bf16 weights and with weights in blocks.
TEST_F(WgmmaGemm, ReadsRowsOfXAtAnyPitch) {
  cuda::WgmmaGemm gemm(nullptr);
  const Shape sh{40, 1024, 256, 0};
  const int64_t ldx = sh.in + 64;
  const testing::BlockProduct p =
      testing::make_block_product(TensorType::Q4_K, sh.n, sh.in, sh.out, 5700);
  const Product dense = make_product(sh, 5702);
  const auto cells = static_cast<size_t>(sh.n * sh.out);
  auto run = [&](const std::vector<uint16_t>& x_bits, int64_t pitch, bool blocks) {
    const auto dx = to_device(x_bits);
    auto y = poisoned<float>(cells);
    if (blocks) {
      const auto dw = to_device(p.blocks);
      gemm.linear_blocks(y.data(), sh.out, as_bf16(dx), dw.data(), TensorType::Q4_K, sh.n, sh.in,
                         sh.out, 0.0f, pitch);
    } else {
      const auto dw = to_device(dense.w_bits);
      gemm.linear(y.data(), sh.out, as_bf16(dx), as_bf16(dw), sh.n, sh.in, sh.out, 0.0f, pitch);
    }
    return to_host(y, cells);
  };
  for (const bool blocks : {false, true}) {
    const auto& x = blocks ? p.x_bits : dense.x_bits;
    const auto packed = run(x, 0, blocks);
    const auto pitched = run(testing::with_row_pitch(x, sh.n, sh.in, ldx, 5704), ldx, blocks);
    EXPECT_EQ(std::memcmp(packed.data(), pitched.data(), cells * sizeof(float)), 0)
        << (blocks ? "Q4_K" : "bf16");
  }
  auto y = poisoned<float>(cells);
  const auto dx = to_device(dense.x_bits);
  const auto dw = to_device(dense.w_bits);
  EXPECT_THROW(
      gemm.linear(y.data(), sh.out, as_bf16(dx), as_bf16(dw), sh.n, sh.in, sh.out, 0.0f, sh.in - 8),
      Error);
  EXPECT_THROW(
      gemm.linear(y.data(), sh.out, as_bf16(dx), as_bf16(dw), sh.n, sh.in, sh.out, 0.0f, sh.in + 4),
      Error);
}

TEST_F(WgmmaGemm, RejectsShapesAndAddressesItCannotTake) {
  {
    testing::ScopedEnv off("RUVDLLM_CUDA_WIDE_TILES", "0");
    EXPECT_FALSE(cuda::WgmmaGemm(nullptr).takes_wide_tiles(TensorType::Q8_0));
  }
  {
    testing::ScopedEnv bad("RUVDLLM_CUDA_WIDE_TILES", "yes");
    EXPECT_THROW(cuda::WgmmaGemm{nullptr}, Error);
  }
  EXPECT_TRUE(cuda::WgmmaGemm(nullptr).takes_wide_tiles(TensorType::Q8_0));
  cuda::WgmmaGemm gemm(nullptr);
  cuda::DeviceArray<uint16_t> x(4096), w(4096);
  cuda::DeviceArray<float> y(4096);
  EXPECT_THROW(gemm.linear(y.data(), 192, as_bf16(x), as_bf16(w), 4, 64, 192), Error);
  EXPECT_THROW(gemm.linear(y.data(), 128, as_bf16(x), as_bf16(w), 4, 96, 128), Error);
  EXPECT_THROW(gemm.linear(y.data(), 100, as_bf16(x), as_bf16(w), 4, 64, 128), Error);  // ldy
  // A bf16 x that starts one element in is 2-byte aligned only: the copy engine needs 16.
  EXPECT_THROW(gemm.linear(y.data(), 128, as_bf16(x) + 1, as_bf16(w), 4, 64, 128), Error);
}

}  // namespace
}  // namespace ruvdllm
