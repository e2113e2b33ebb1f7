// The CUDA inference kernels (src/cuda/infer_kernels.h) against the CPU on random inputs.
// Dequantization and embedding must match the CPU reference bit for bit: the GPU forms each
// value with the reference's own product/difference order (no fused multiply-add), so the
// f32 value is identical and its round-to-nearest-even bf16 is too. The f32 element-wise
// kernels (RMSNorm, q/k/v split with RoPE, SwiGLU) differ from f64 references by float
// rounding and then by the bf16 rounding of the result; each test states its bound. Outputs
// start poisoned (0xFF bytes, a NaN), so an element a kernel fails to write fails the check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/infer_gemm.h"
#include "cuda/infer_kernels.h"
#include "cuda/swiglu.cuh"
#include "cuda/train_kernels.h"
#include "cuda/wgmma_gemm.h"
#include "cuda_test_util.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/kernels/ops.h"
#include "ruvdllm/kernels/quant.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using cuda::bf16;
using testing::CudaTest;
using testing::poisoned;
using testing::random_floats;
using testing::to_device;
using testing::to_host;

constexpr TensorType kAllTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16,
                                    TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K,
                                    TensorType::Q5_K, TensorType::Q6_K};

// bf16 keeps 8 significant bits: rounding moves a value by at most half an ulp, 2^-8 of it.
constexpr double kBf16HalfUlp = 1.0 / 256.0;

bf16* as_bf16(uint16_t* p) { return reinterpret_cast<bf16*>(p); }

std::vector<uint16_t> cpu_bf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = f32_to_bf16(x[i]);
  return out;
}

// x rounded to bf16 in place; returns the bf16 bits (what a bf16 GEMM output would hold).
std::vector<uint16_t> round_to_bf16(std::vector<float>* x) {
  std::vector<uint16_t> bits = cpu_bf16(*x);
  for (size_t i = 0; i < x->size(); ++i) (*x)[i] = bf16_to_f32(bits[i]);
  return bits;
}

// Rows of random floats in type's block layout, made by ruvdllm's own CPU quantizer.
std::vector<uint8_t> quantize_rows(TensorType type, const std::vector<float>& x, int64_t rows,
                                   int64_t cols) {
  const size_t stride = row_bytes(type, cols);
  std::vector<uint8_t> out(stride * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    quantize_row_reference(type, x.data() + r * cols, out.data() + stride * r, cols);
  return out;
}

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Blocks of random bytes, so every bit of every level, scale and min field is exercised
// (quantizers leave some patterns rare), with finite random f16 super-block scales.
std::vector<uint8_t> random_blocks(TensorType type, int64_t rows, int64_t cols, uint64_t seed) {
  const TypeTraits& t = type_traits(type);
  const size_t n_blocks = static_cast<size_t>(rows * cols / t.block_size);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  std::vector<uint8_t> out(n_blocks * t.block_bytes);
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  for (size_t b = 0; b < n_blocks; ++b) {
    uint8_t* block = out.data() + b * t.block_bytes;
    switch (type) {
      case TensorType::Q4_0:
      case TensorType::Q8_0:
        put_f16(block, scale(rng));
        break;
      case TensorType::Q4_K:
      case TensorType::Q5_K:
        put_f16(block, scale(rng));
        put_f16(block + 2, scale(rng));
        break;
      case TensorType::Q6_K:
        put_f16(block + offsetof(BlockQ6_K, d), scale(rng));
        break;
      default:
        break;
    }
  }
  return out;
}

// A type's rows: quantized from random floats by the CPU quantizer, or random blocks; float
// types get random values converted by quantize_row_reference.
std::vector<uint8_t> make_rows(TensorType type, int64_t rows, int64_t cols, uint64_t seed,
                               bool raw_blocks) {
  if (raw_blocks && type_traits(type).quantized) return random_blocks(type, rows, cols, seed);
  const auto x = random_floats(static_cast<size_t>(rows * cols), seed, -2.0f, 2.0f);
  return quantize_rows(type, x, rows, cols);
}

std::vector<float> cpu_dequantize(TensorType type, const std::vector<uint8_t>& data, int64_t rows,
                                  int64_t cols) {
  const size_t stride = row_bytes(type, cols);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row_reference(type, data.data() + stride * r, out.data() + r * cols, cols);
  return out;
}

// Device copy of bytes placed `offset` bytes into the allocation, to reach the unaligned paths.
struct DeviceBytes {
  cuda::DeviceArray<uint8_t> storage;
  const void* ptr = nullptr;
  DeviceBytes(const std::vector<uint8_t>& bytes, size_t offset) : storage(bytes.size() + offset) {
    cuda::check_cuda(
        cudaMemcpy(storage.data() + offset, bytes.data(), bytes.size(), cudaMemcpyHostToDevice),
        "cudaMemcpy");
    ptr = storage.data() + offset;
  }
};

size_t count_differences(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) n += a[i] != b[i];
  return n + (a.size() > b.size() ? a.size() - b.size() : b.size() - a.size());
}

size_t count_mismatches(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want,
                        const std::string& label) {
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (bad++ == 0) {
      ADD_FAILURE() << label << ": first mismatch at " << i << ": got 0x" << std::hex << got[i]
                    << " want 0x" << want[i] << std::dec;
    }
  }
  return bad;
}

// ---- host-side checks (no GPU needed: they fail before any device call) ----

TEST(InferKernelsArgs, SupportedTypes) {
  for (const TensorType t : kAllTypes) EXPECT_TRUE(cuda::dequantize_supported(t)) << type_name(t);
  EXPECT_FALSE(cuda::dequantize_supported(TensorType::Q8_K));
  EXPECT_FALSE(cuda::dequantize_supported(static_cast<TensorType>(99)));
}

TEST(InferKernelsArgs, DequantizeRejectsBadTypesAndShapes) {
  EXPECT_THROW(cuda::dequantize_to_bf16(nullptr, nullptr, TensorType::Q8_K, 1, 256, nullptr),
               Error);
  EXPECT_THROW(
      cuda::dequantize_to_bf16(nullptr, nullptr, static_cast<TensorType>(99), 1, 32, nullptr),
      Error);
  EXPECT_THROW(cuda::dequantize_to_bf16(nullptr, nullptr, TensorType::Q4_K, 2, 100, nullptr),
               Error);
  EXPECT_THROW(cuda::dequantize_to_bf16(nullptr, nullptr, TensorType::Q8_0, 2, 48, nullptr), Error);
  EXPECT_THROW(cuda::dequantize_to_bf16(nullptr, nullptr, TensorType::F16, -1, 8, nullptr), Error);
  try {
    cuda::dequantize_to_bf16(nullptr, nullptr, TensorType::Q6_K, 3, 300, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("q6_K"), std::string::npos) << what;
    EXPECT_NE(what.find("256"), std::string::npos) << what;
  }
  // Nothing to do is not an error.
  EXPECT_NO_THROW(cuda::dequantize_to_bf16(nullptr, nullptr, TensorType::Q4_K, 0, 256, nullptr));
}

TEST(InferKernelsArgs, EmbedRejectsBadTypesAndShapes) {
  EXPECT_THROW(cuda::embed_rows(nullptr, nullptr, TensorType::Q8_K, nullptr, 1, 256, nullptr),
               Error);
  EXPECT_THROW(cuda::embed_rows(nullptr, nullptr, TensorType::Q4_0, nullptr, 1, 33, nullptr),
               Error);
  EXPECT_THROW(cuda::embed_rows(nullptr, nullptr, TensorType::F32, nullptr, -2, 4, nullptr), Error);
}

// Sizes reach cuBLAS as ints: one that does not fit is an error naming it, not a wrapped value.
TEST(InferKernelsArgs, CublasSizesMustFitAnInt) {
  EXPECT_EQ(cuda::cublas_int(126464, "out"), 126464);
  EXPECT_EQ(cuda::cublas_int(std::numeric_limits<int>::max(), "in"),
            std::numeric_limits<int>::max());
  EXPECT_THROW(cuda::cublas_int(-1, "rows"), Error);
  try {
    cuda::cublas_int(int64_t{1} << 31, "rows");
    ADD_FAILURE() << "no error for 2^31";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rows = 2147483648"), std::string::npos) << e.what();
  }
}

TEST(InferKernelsArgs, ElementwiseRejectBadShapes) {
  const cuda::QkvLayout odd{.seq_len = 1, .n_head = 1, .n_head_kv = 1, .head_dim = 7, .kv_rows = 1};
  const float* no_f32 = nullptr;
  const bf16* no_bf16 = nullptr;
  bf16* out_bf16 = nullptr;
  float* out_f32 = nullptr;
  EXPECT_THROW(cuda::split_qkv_heads(out_bf16, out_bf16, out_bf16, no_f32, nullptr, nullptr,
                                     nullptr, nullptr, odd, nullptr),
               Error);
  EXPECT_THROW(cuda::split_qkv_heads(out_bf16, out_bf16, out_bf16, no_bf16, nullptr, nullptr,
                                     nullptr, nullptr, odd, nullptr),
               Error);
  EXPECT_THROW(cuda::split_qkv_heads(out_f32, out_f32, out_f32, no_f32, nullptr, nullptr, nullptr,
                                     nullptr, odd, nullptr),
               Error);
  const cuda::QkvLayout short_cache{
      .seq_len = 4, .n_head = 1, .n_head_kv = 1, .head_dim = 8, .kv_rows = 5, .kv_row0 = 2};
  EXPECT_THROW(cuda::split_qkv_heads(out_bf16, out_bf16, out_bf16, no_f32, nullptr, nullptr,
                                     nullptr, nullptr, short_cache, nullptr),
               Error);
  EXPECT_THROW(cuda::rmsnorm_rows(out_bf16, nullptr, nullptr, 1, 0, 1e-5f, nullptr), Error);
  EXPECT_THROW(cuda::rmsnorm_rows(out_f32, nullptr, nullptr, 1, 0, 1e-5f, nullptr), Error);
  EXPECT_THROW(cuda::swiglu_rows(out_bf16, no_f32, -1, 4, nullptr), Error);
  EXPECT_THROW(cuda::swiglu_rows(out_bf16, no_bf16, -1, 4, nullptr), Error);
  EXPECT_THROW(cuda::swiglu_rows(out_f32, no_f32, -1, 4, nullptr), Error);
  EXPECT_THROW(
      cuda::residual_rmsnorm_rows(out_bf16, nullptr, nullptr, 2, nullptr, 1, 8, 1e-5f, nullptr),
      Error);  // partials promised, none given
  EXPECT_THROW(cuda::f32_to_bf16(nullptr, nullptr, -1, nullptr), Error);
}

// ---- on the GPU ----

using InferKernels = CudaTest;

struct MatrixShape {
  int64_t rows, blocks_per_row;  // cols = blocks_per_row · block size
};
// Odd row counts, one block, and enough blocks to cross several tiles of every type (32
// K-quant super-blocks or 256 Q4_0/Q8_0 blocks per CTA) with a partial last tile.
constexpr MatrixShape kShapes[] = {{1, 1}, {3, 3}, {7, 2}, {33, 5}, {67, 16}};
// For the float types (block size 1): odd widths, and widths that are not multiples of 8.
constexpr MatrixShape kFloatShapes[] = {{1, 1}, {3, 37}, {7, 64}, {33, 130}, {5, 4099}};

void check_dequantize(TensorType type, int64_t rows, int64_t cols, bool raw_blocks,
                      size_t in_offset, size_t out_offset, uint64_t seed) {
  const std::string label = std::string(type_name(type)) + " " + std::to_string(rows) + "x" +
                            std::to_string(cols) + (raw_blocks ? " random-blocks" : " quantized") +
                            " in+" + std::to_string(in_offset) + " out+" +
                            std::to_string(out_offset);
  const auto data = make_rows(type, rows, cols, seed, raw_blocks);
  const auto want = cpu_bf16(cpu_dequantize(type, data, rows, cols));
  const DeviceBytes weights(data, in_offset);
  const size_t n = want.size();
  auto out = poisoned<uint16_t>(n + out_offset);
  cuda::dequantize_to_bf16(as_bf16(out.data() + out_offset), weights.ptr, type, rows, cols,
                           nullptr);
  cuda::check_cuda(cudaGetLastError(), "dequantize_to_bf16");
  auto got = to_host(out, n + out_offset);
  got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(out_offset));
  EXPECT_EQ(count_mismatches(got, want, label), 0u) << label;
}

TEST_F(InferKernels, DequantizeMatchesCpuBitForBit) {
  uint64_t seed = 100;
  for (const TensorType type : kAllTypes) {
    const bool quantized = type_traits(type).quantized;
    const int64_t block = type_traits(type).block_size;
    for (const MatrixShape sh : quantized ? std::span(kShapes) : std::span(kFloatShapes)) {
      for (const bool raw : {false, true}) {
        if (raw && !quantized) continue;
        check_dequantize(type, sh.rows, sh.blocks_per_row * block, raw, 0, 0, ++seed);
      }
    }
  }
}

// Weights off 16-byte alignment (the tiles are then copied byte by byte) and an output off
// 16-byte alignment (stored value by value); the element size keeps float types aligned to
// themselves.
TEST_F(InferKernels, DequantizeHandlesUnalignedPointers) {
  uint64_t seed = 300;
  for (const TensorType type : kAllTypes) {
    const bool quantized = type_traits(type).quantized;
    const int64_t cols = quantized ? 3 * type_traits(type).block_size : 37;
    const size_t elem = quantized ? 2 : type_traits(type).block_bytes;
    for (const size_t in_offset : {size_t{0}, elem}) {
      for (const size_t out_offset : {size_t{0}, size_t{1}}) {
        if (in_offset == 0 && out_offset == 0) continue;
        check_dequantize(type, 67, cols, true, in_offset, out_offset, ++seed);
        check_dequantize(type, 5, cols, false, in_offset, out_offset, ++seed);
      }
    }
  }
  // Q4_0 with an odd byte offset: only byte loads are safe.
  check_dequantize(TensorType::Q4_0, 9, 64, true, 1, 3, ++seed);
}

TEST_F(InferKernels, EmbedRowsMatchCpuBitForBit) {
  uint64_t seed = 500;
  const int64_t vocab = 11;
  // Repeats, the first and the last row; an odd count.
  const std::vector<int32_t> tokens = {3, 0, 10, 3, 7, 7, 1, 10, 5};
  const auto d_tokens = to_device(tokens);
  for (const TensorType type : kAllTypes) {
    const bool quantized = type_traits(type).quantized;
    for (const int64_t units : {int64_t{1}, int64_t{3}, int64_t{37}}) {
      if (quantized && units == 37) continue;  // 37 super-blocks: a slow CPU quantization
      const int64_t d = quantized ? units * type_traits(type).block_size : units * 13;
      for (const bool raw : {false, true}) {
        const auto table = make_rows(type, vocab, d, ++seed, raw);
        const auto rows = cpu_dequantize(type, table, vocab, d);
        std::vector<float> want(tokens.size() * static_cast<size_t>(d));
        for (size_t i = 0; i < tokens.size(); ++i)
          std::copy_n(rows.begin() + tokens[i] * d, d, want.begin() + static_cast<int64_t>(i) * d);
        const DeviceBytes d_table(table, 0);
        auto out = poisoned<float>(want.size());
        cuda::embed_rows(out.data(), d_table.ptr, type, d_tokens.data(),
                         static_cast<int64_t>(tokens.size()), d, nullptr);
        const auto got = to_host(out, want.size());
        const std::string label = std::string(type_name(type)) + " d=" + std::to_string(d);
        size_t bad = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          if (std::memcmp(&got[i], &want[i], sizeof(float)) == 0) continue;
          if (bad++ == 0)
            ADD_FAILURE() << label << " at " << i << ": " << got[i] << " vs " << want[i];
        }
        EXPECT_EQ(bad, 0u) << label;
      }
    }
  }
}

// got (bf16 bits) against an exact value. The kernel's f32 value is within
// err = rel_f32·|want| + abs_f32 of it, and bf16 rounding moves that by at most 2^-8 of its
// magnitude: |got − want| ≤ err + 2^-8·(|want| + err).
size_t count_outside(const std::vector<uint16_t>& got, const std::vector<double>& want,
                     double rel_f32, const std::vector<double>& abs_f32, const std::string& label) {
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = bf16_to_f32(got[i]);
    const double err = rel_f32 * std::fabs(want[i]) + abs_f32[i];
    const double bound = (err + kBf16HalfUlp * (std::fabs(want[i]) + err)) * (1 + 1e-12);
    if (std::fabs(g - want[i]) <= bound) continue;  // NaN (unwritten) fails here
    if (bad++ == 0) {
      ADD_FAILURE() << label << ": element " << i << " is " << g << ", want " << want[i]
                    << " (bound " << bound << ")";
    }
  }
  return bad;
}

// RMSNorm's f32 sum of squares and scaling stay within 1e-5 relative of the f64 reference for
// these widths (measured around 1e-7); bf16 rounding adds its half ulp.
TEST_F(InferKernels, RmsnormToBf16MatchesCpu) {
  struct Shape {
    int64_t rows, d;
    size_t offset;  // floats: 1 reaches the scalar path
  };
  uint64_t seed = 700;
  for (const Shape sh :
       {Shape{1, 7, 0}, Shape{5, 64, 0}, Shape{3, 130, 0}, Shape{17, 4096, 0}, Shape{9, 64, 1},
        Shape{4, 1000, 0}, Shape{3, 1500, 0}, Shape{2, 6000, 0}, Shape{2, 8196, 0}}) {
    for (const bool with_weight : {true, false}) {
      const float eps = 1e-5f;
      auto x = random_floats(static_cast<size_t>(sh.rows * sh.d) + sh.offset, ++seed, -3.0f, 3.0f);
      auto w = random_floats(static_cast<size_t>(sh.d) + sh.offset, ++seed, 0.5f, 1.5f);
      std::vector<float> ref(static_cast<size_t>(sh.rows * sh.d));
      rmsnorm_reference(x.data() + sh.offset, with_weight ? w.data() + sh.offset : nullptr,
                        ref.data(), sh.rows, sh.d, eps);
      const auto dx = to_device(x), dw = to_device(w);
      auto y = poisoned<uint16_t>(ref.size() + sh.offset);
      cuda::rmsnorm_rows(as_bf16(y.data() + sh.offset), dx.data() + sh.offset,
                         with_weight ? dw.data() + sh.offset : nullptr, sh.rows, sh.d, eps,
                         nullptr);
      auto got = to_host(y, ref.size() + sh.offset);
      got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(sh.offset));
      const std::vector<double> want(ref.begin(), ref.end());
      const std::string label = "rmsnorm " + std::to_string(sh.rows) + "x" + std::to_string(sh.d) +
                                (with_weight ? "" : " no-weight") + " +" +
                                std::to_string(sh.offset);
      EXPECT_EQ(count_outside(got, want, 1e-5, std::vector<double>(want.size(), 0.0), label), 0u);
      // Most values round to the very bf16 of the CPU result; a few sit on a rounding edge.
      const size_t differ = count_differences(got, cpu_bf16(ref));
      std::printf("  %-36s %zu of %zu differ from bf16(cpu) by an ulp\n", label.c_str(), differ,
                  ref.size());
      EXPECT_LE(differ, ref.size() / 50 + 1) << label;
    }
  }
}

// silu for a bf16 result runs on the special-function unit: __expf's error grows with |x| (its
// argument is rounded once, x·log2(e), then ex2.approx adds 2 ulp), about 1e-6 relative at the
// ±12 tested here, and __fdividef adds 2 ulp. The whole stays within 4e-6 relative of the f64
// reference; bf16 rounding adds its half ulp (200× more).
TEST_F(InferKernels, SwigluToBf16MatchesCpu) {
  struct Shape {
    int64_t rows, width;
    size_t offset;  // values: 1 reaches the scalar path, 4 the four-wide one
  };
  uint64_t seed = 900;
  // Widths that are multiples of 8 take the eight-wide path, 1004 the four-wide one.
  for (const Shape sh : {Shape{1, 5, 0}, Shape{3, 64, 0}, Shape{17, 1000, 0}, Shape{2, 11008, 0},
                         Shape{7, 64, 1}, Shape{5, 3, 0}, Shape{3, 1004, 0}, Shape{4, 64, 4}}) {
    for (const bool bf16_input : {false, true}) {
      const size_t n = static_cast<size_t>(sh.rows * sh.width);
      // Gates up to ±12 reach silu's flat negative tail and its linear positive side.
      auto gate_up = random_floats(2 * n + sh.offset, ++seed, -12.0f, 12.0f);
      // A bf16 input (the engine's GEMM output) is the same rounded values as the reference's.
      const std::vector<uint16_t> bits =
          bf16_input ? round_to_bf16(&gate_up) : std::vector<uint16_t>{0};
      std::vector<double> want(n);
      for (int64_t r = 0; r < sh.rows; ++r) {
        const float* row = gate_up.data() + sh.offset + 2 * r * sh.width;
        std::vector<float> out(static_cast<size_t>(sh.width));
        swiglu_reference(row, row + sh.width, out.data(), sh.width);
        std::copy(out.begin(), out.end(), want.begin() + r * sh.width);
      }
      const auto d_in = to_device(gate_up);
      const auto d_bits = to_device(bits);
      auto h = poisoned<uint16_t>(n + sh.offset);
      if (bf16_input) {
        cuda::swiglu_rows(as_bf16(h.data() + sh.offset),
                          reinterpret_cast<const bf16*>(d_bits.data()) + sh.offset, sh.rows,
                          sh.width, nullptr);
      } else {
        cuda::swiglu_rows(as_bf16(h.data() + sh.offset), d_in.data() + sh.offset, sh.rows, sh.width,
                          nullptr);
      }
      auto got = to_host(h, n + sh.offset);
      got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(sh.offset));
      const std::string label = std::string(bf16_input ? "bf16 " : "") + "swiglu " +
                                std::to_string(sh.rows) + "x" + std::to_string(sh.width) + " +" +
                                std::to_string(sh.offset);
      EXPECT_EQ(count_outside(got, want, 4e-6, std::vector<double>(n, 1e-30), label), 0u);
    }
  }
}

// gate|up interleaved in groups of 8 (the engine's layout for weights kept in blocks, which lets
// WgmmaGemm apply SwiGLU to its tiles): the same bits as the halves layout, on every path (eight-
// and four-wide, scalar) and for f32 and bf16 inputs and outputs.
TEST_F(InferKernels, SwigluReadsInterleavedGateUp) {
  struct Shape {
    int64_t rows, width;
    size_t offset;
  };
  uint64_t seed = 950;
  for (const Shape sh : {Shape{3, 64, 0}, Shape{17, 1000, 0}, Shape{2, 11008, 0}, Shape{4, 64, 4},
                         Shape{5, 24, 1}}) {
    const size_t n = static_cast<size_t>(sh.rows * sh.width);
    auto halves = random_floats(2 * n + sh.offset, ++seed, -12.0f, 12.0f);
    const std::vector<uint16_t> halves_bits = round_to_bf16(&halves);
    std::vector<float> interleaved(halves.size());
    std::vector<uint16_t> interleaved_bits(halves.size());
    std::copy_n(halves.begin(), sh.offset, interleaved.begin());
    for (int64_t r = 0; r < sh.rows; ++r) {
      for (int64_t o = 0; o < sh.width; ++o) {
        const size_t row = sh.offset + static_cast<size_t>(2 * r * sh.width);
        const size_t g = row + static_cast<size_t>(cuda::swiglu_gate_column(o));
        interleaved[g] = halves[row + o];
        interleaved[g + cuda::kSwigluGroup] = halves[row + sh.width + o];
        interleaved_bits[g] = halves_bits[row + o];
        interleaved_bits[g + cuda::kSwigluGroup] = halves_bits[row + sh.width + o];
      }
    }
    const std::string label = "swiglu " + std::to_string(sh.rows) + "x" + std::to_string(sh.width) +
                              " +" + std::to_string(sh.offset);
    // Each input and output type: the halves layout's result, then the interleaved one's.
    auto both_layouts = [&](auto* out_type, const auto& in_halves, const auto& in_interleaved) {
      using Out = std::remove_pointer_t<decltype(out_type)>;
      std::vector<std::vector<Out>> results;
      for (const auto* host : {&in_halves, &in_interleaved}) {
        const auto d_in = to_device(*host);
        auto h = poisoned<Out>(n + sh.offset);
        if constexpr (std::is_same_v<Out, float>) {
          cuda::swiglu_rows(h.data() + sh.offset, d_in.data() + sh.offset, sh.rows, sh.width,
                            nullptr, host == &in_interleaved);
        } else if constexpr (std::is_same_v<typename std::decay_t<decltype(*host)>::value_type,
                                            float>) {
          cuda::swiglu_rows(as_bf16(h.data() + sh.offset), d_in.data() + sh.offset, sh.rows,
                            sh.width, nullptr, host == &in_interleaved);
        } else {
          cuda::swiglu_rows(as_bf16(h.data() + sh.offset),
                            reinterpret_cast<const bf16*>(d_in.data()) + sh.offset, sh.rows,
                            sh.width, nullptr, host == &in_interleaved);
        }
        results.push_back(to_host(h, n + sh.offset));
      }
      // Bit for bit (the poison left before the rows is a NaN for f32).
      EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(Out)),
                0)
          << label;
    };
    both_layouts(static_cast<float*>(nullptr), halves, interleaved);
    both_layouts(static_cast<uint16_t*>(nullptr), halves, interleaved);
    both_layouts(static_cast<uint16_t*>(nullptr), halves_bits, interleaved_bits);
  }
  auto h = poisoned<uint16_t>(64);
  const auto in = to_device(std::vector<float>(128, 1.0f));
  EXPECT_THROW(cuda::swiglu_rows(as_bf16(h.data()), in.data(), 1, 12, nullptr, true), Error);
}

TEST_F(InferKernels, F32ToBf16RoundsAsTheHostDoes) {
  uint64_t seed = 1100;
  for (const size_t n : {size_t{1}, size_t{7}, size_t{1000}, size_t{4099}}) {
    for (const size_t offset : {size_t{0}, size_t{1}}) {
      auto x = random_floats(n + offset, ++seed, -1.0f, 1.0f);
      // Magnitudes from 1e-30 to 1e30, and exact ties that round-to-even must settle.
      std::mt19937_64 rng(seed);
      std::uniform_real_distribution<float> exponent(-30.0f, 30.0f);
      for (auto& v : x) v *= std::pow(10.0f, exponent(rng));
      if (n > 4) {
        x[offset] = 1.0f + 1.0f / 256.0f;
        x[offset + 1] = 1.0f + 3.0f / 256.0f;
      }
      const auto dx = to_device(x);
      auto out = poisoned<uint16_t>(n + offset);
      cuda::f32_to_bf16(as_bf16(out.data() + offset), dx.data() + offset, static_cast<int64_t>(n),
                        nullptr);
      auto got = to_host(out, n + offset);
      got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(offset));
      const std::vector<float> in(x.begin() + static_cast<std::ptrdiff_t>(offset), x.end());
      const std::string label =
          "f32_to_bf16 n=" + std::to_string(n) + " +" + std::to_string(offset);
      EXPECT_EQ(count_mismatches(got, cpu_bf16(in), label), 0u) << label;
    }
  }
}

// The GEMM peak's operands (roofline.cpp): every value written, all in [-1, 1] (draws just
// below 1 round up to it in bf16), spread like a uniform draw (mean near 0, variance 1/3), the
// same for the same seed and different for another.
TEST_F(InferKernels, FillUniformBf16SpreadsOverMinusOneToOne) {
  const size_t n = 300001;
  std::vector<std::vector<float>> draws;
  for (const uint32_t seed : {7u, 7u, 8u}) {
    auto out = poisoned<uint16_t>(n);
    cuda::fill_uniform_bf16(as_bf16(out.data()), static_cast<int64_t>(n), seed, nullptr);
    const auto bits = to_host(out, n);
    std::vector<float> values(n);
    for (size_t i = 0; i < n; ++i) values[i] = bf16_to_f32(bits[i]);
    draws.push_back(values);
  }
  const auto& x = draws[0];
  double sum = 0, squares = 0;
  size_t outside = 0;
  for (const float v : x) {
    outside += !(v >= -1.0f && v <= 1.0f);  // a NaN (unwritten) counts as outside
    sum += v;
    squares += static_cast<double>(v) * v;
  }
  EXPECT_EQ(outside, 0u);
  const double mean = sum / n, variance = squares / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(variance, 1.0 / 3.0, 0.01);
  EXPECT_EQ(draws[0], draws[1]);
  size_t same = 0;
  for (size_t i = 0; i < n; ++i) same += draws[0][i] == draws[2][i];
  EXPECT_LT(same, n / 50) << "another seed should give other values";
}

// split_qkv_heads against a plain f64 reference: bias, RMSNorm over head_dim with the q/k
// weights, RoPE with f64 angles (pairs as ruvdllm::rope forms them), head-major layout.
struct QkvCase {
  int64_t n_seq, seq_len, n_head, n_head_kv, head_dim, pos0, kv_rows, kv_row0;
  RopeOrder order;
  bool bias, norm, rope;
};

// bf16_input: the q|k|v rows come as bf16 (the engine's GEMM output); the reference then
// starts from the same rounded values. device_past: part of pos0 and kv_row0 (as much as both
// hold) is passed as a count in device memory (QkvLayout::past), as a replayed pass gets it.
void check_split_qkv(const QkvCase& c, uint64_t seed, bool bf16_input, bool device_past) {
  const int64_t T = c.n_seq * c.seq_len, D = c.head_dim, half = D / 2;
  const int64_t slots = c.n_head + 2 * c.n_head_kv, width = slots * D;
  const float base = 10000.0f, eps = 1e-6f;
  auto qkv = random_floats(static_cast<size_t>(T * width), seed, -2.0f, 2.0f);
  const std::vector<uint16_t> qkv_bits = bf16_input ? round_to_bf16(&qkv) : std::vector<uint16_t>{};
  const auto bias = random_floats(static_cast<size_t>(width), seed + 1, -0.5f, 0.5f);
  const auto q_norm = random_floats(static_cast<size_t>(D), seed + 2, 0.5f, 1.5f);
  const auto k_norm = random_floats(static_cast<size_t>(D), seed + 3, 0.5f, 1.5f);

  const size_t q_size = static_cast<size_t>(c.n_seq * c.n_head * c.seq_len * D);
  const size_t kv_size = static_cast<size_t>(c.n_seq * c.n_head_kv * c.kv_rows * D);
  // NaN marks the K/V rows this pass must leave alone (a cached prefix, rows after it).
  std::vector<double> want_q(q_size), want_k(kv_size, NAN), want_v(kv_size, NAN);
  // The f32 error allowance of each element: 1e-5 of the largest value of its head (RoPE mixes
  // two values, so a small result can carry its partner's rounding).
  std::vector<double> slack_q(q_size), slack_k(kv_size), slack_v(kv_size);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t s = t / c.seq_len, p = t % c.seq_len;
    for (int64_t slot = 0; slot < slots; ++slot) {
      std::vector<double> x(static_cast<size_t>(D));
      for (int64_t i = 0; i < D; ++i) {
        x[i] = qkv[t * width + slot * D + i];
        if (c.bias) x[i] += bias[slot * D + i];
      }
      const bool is_q = slot < c.n_head, is_k = !is_q && slot < c.n_head + c.n_head_kv;
      if (c.norm && (is_q || is_k)) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double inv = 1.0 / std::sqrt(ss / D + eps);
        for (int64_t i = 0; i < D; ++i) x[i] *= inv * (is_q ? q_norm : k_norm)[i];
      }
      if (c.rope && (is_q || is_k)) {
        for (int64_t i = 0; i < half; ++i) {
          const double theta =
              static_cast<double>(c.pos0 + p) *
              std::pow(static_cast<double>(base), -2.0 * i / static_cast<double>(D));
          const int64_t a = c.order == RopeOrder::Normal ? 2 * i : i;
          const int64_t b = c.order == RopeOrder::Normal ? 2 * i + 1 : i + half;
          const double x0 = x[a], x1 = x[b];
          x[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
          x[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
        }
      }
      double largest = 0;
      for (double v : x) largest = std::max(largest, std::fabs(v));
      size_t at;
      std::vector<double>*want, *slack;
      if (is_q) {
        at = static_cast<size_t>(((s * c.n_head + slot) * c.seq_len + p) * D);
        want = &want_q, slack = &slack_q;
      } else {
        const int64_t h = slot - c.n_head - (is_k ? 0 : c.n_head_kv);
        at = static_cast<size_t>(((s * c.n_head_kv + h) * c.kv_rows + c.kv_row0 + p) * D);
        want = is_k ? &want_k : &want_v;
        slack = is_k ? &slack_k : &slack_v;
      }
      for (int64_t i = 0; i < D; ++i) {
        (*want)[at + i] = x[i];
        (*slack)[at + i] = 1e-5 * largest;
      }
    }
  }

  const auto d_qkv = to_device(qkv), d_bias = to_device(bias), d_qn = to_device(q_norm),
             d_kn = to_device(k_norm);
  const auto d_qkv_bits = to_device(bf16_input ? qkv_bits : std::vector<uint16_t>{0});
  const auto table = cuda::rope_table(c.pos0 + c.seq_len, D, base);
  const auto d_table = to_device(table);
  auto q = poisoned<uint16_t>(q_size), k = poisoned<uint16_t>(kv_size),
       v = poisoned<uint16_t>(kv_size);
  const int32_t past = device_past ? static_cast<int32_t>(std::min(c.pos0, c.kv_row0)) : 0;
  const auto d_past = to_device(std::vector<int32_t>{past});
  const cuda::QkvLayout layout{.n_seq = c.n_seq,
                               .seq_len = c.seq_len,
                               .n_head = c.n_head,
                               .n_head_kv = c.n_head_kv,
                               .head_dim = D,
                               .pos0 = c.pos0 - past,
                               .kv_rows = c.kv_rows,
                               .kv_row0 = c.kv_row0 - past,
                               .past = device_past ? d_past.data() : nullptr,
                               .order = c.order,
                               .eps = eps};
  const float* bias_arg = c.bias ? d_bias.data() : nullptr;
  const float* qn_arg = c.norm ? d_qn.data() : nullptr;
  const float* kn_arg = c.norm ? d_kn.data() : nullptr;
  const float2* table_arg = c.rope ? d_table.data() : nullptr;
  if (bf16_input) {
    cuda::split_qkv_heads(as_bf16(q.data()), as_bf16(k.data()), as_bf16(v.data()),
                          reinterpret_cast<const bf16*>(d_qkv_bits.data()), bias_arg, qn_arg,
                          kn_arg, table_arg, layout, nullptr);
  } else {
    cuda::split_qkv_heads(as_bf16(q.data()), as_bf16(k.data()), as_bf16(v.data()), d_qkv.data(),
                          bias_arg, qn_arg, kn_arg, table_arg, layout, nullptr);
  }
  const std::string label =
      std::string(bf16_input ? "bf16 " : "") +
      (device_past ? "past " + std::to_string(past) + " on device " : "") + "split_qkv " +
      std::to_string(c.n_seq) + "x" + std::to_string(c.seq_len) + " heads " +
      std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + "x" + std::to_string(D) +
      (c.order == RopeOrder::NeoX ? " neox" : " normal") + (c.bias ? " bias" : "") +
      (c.norm ? " norm" : "") + (c.rope ? " rope" : " no-rope");
  const auto got_q = to_host(q, q_size), got_k = to_host(k, kv_size), got_v = to_host(v, kv_size);
  EXPECT_EQ(count_outside(got_q, want_q, 0, slack_q, label + " q"), 0u);
  // Rows outside this pass's range must keep their poison bits.
  for (auto [got, want, slack, name] :
       {std::tuple{&got_k, &want_k, &slack_k, " k"}, std::tuple{&got_v, &want_v, &slack_v, " v"}}) {
    std::vector<uint16_t> got_rows;
    std::vector<double> want_rows, slack_rows;
    size_t touched = 0;
    for (size_t i = 0; i < want->size(); ++i) {
      if (std::isnan((*want)[i])) {
        touched += (*got)[i] != 0xFFFFu;
        continue;
      }
      got_rows.push_back((*got)[i]);
      want_rows.push_back((*want)[i]);
      slack_rows.push_back((*slack)[i]);
    }
    EXPECT_EQ(touched, 0u) << label << name
                           << ": rows outside [kv_row0, kv_row0 + seq_len) written";
    EXPECT_EQ(count_outside(got_rows, want_rows, 0, slack_rows, label + name), 0u);
  }
}

TEST_F(InferKernels, SplitQkvHeadsMatchesF64Reference) {
  const QkvCase cases[] = {
      // n_seq, seq_len, heads, kv heads, head_dim, pos0, kv_rows, kv_row0, order, bias, norm, rope
      {2, 5, 4, 2, 64, 0, 5, 0, RopeOrder::Normal, true, false, true},
      {1, 7, 3, 1, 128, 3, 12, 5, RopeOrder::NeoX, false, true, true},
      {3, 1, 2, 2, 6, 2, 4, 1, RopeOrder::NeoX, true, true, true},
      {1, 33, 5, 5, 96, 0, 40, 7, RopeOrder::Normal, true, true, true},
      {2, 3, 4, 4, 64, 9, 3, 0, RopeOrder::NeoX, true, false, true},
      {2, 4, 2, 1, 32, 0, 4, 0, RopeOrder::Normal, true, true, false},
  };
  uint64_t seed = 1300;
  for (const bool bf16_input : {false, true}) {
    for (const bool device_past : {false, true}) {
      for (const QkvCase& c : cases) check_split_qkv(c, seed += 10, bf16_input, device_past);
    }
  }
}

// residual_rmsnorm_rows first adds the split-K partials into the residual (x keeps the sum,
// f32: within 2 ulp of the f64 sum of three terms), then normalizes it as rmsnorm_rows does.
TEST_F(InferKernels, ResidualRmsnormAddsPartialsFirst) {
  uint64_t seed = 1500;
  // Widths whose last round of the loop leaves threads idle (1500, 6000, 8196).
  for (const int64_t d : {7, 64, 1500, 4096, 6000, 8196}) {
    for (const int n_partials : {0, 1, 2}) {
      const int64_t rows = 5;
      const auto n = static_cast<size_t>(rows * d);
      const auto x = random_floats(n, ++seed, -3.0f, 3.0f);
      const auto parts =
          random_floats(n * static_cast<size_t>(std::max(n_partials, 1)), ++seed, -2.0f, 2.0f);
      const auto w = random_floats(static_cast<size_t>(d), ++seed, 0.5f, 1.5f);
      std::vector<double> sum(n);
      std::vector<double> slack(n);
      for (size_t i = 0; i < n; ++i) {
        double magnitude = std::fabs(x[i]);
        sum[i] = x[i];
        for (int s = 0; s < n_partials; ++s) {
          sum[i] += parts[s * n + i];
          magnitude += std::fabs(parts[s * n + i]);
        }
        slack[i] = 2 * 0x1p-24 * magnitude;
      }
      std::vector<float> sum_f(sum.begin(), sum.end());
      std::vector<float> ref(n);
      rmsnorm_reference(sum_f.data(), w.data(), ref.data(), rows, d, 1e-5f);
      auto dx = to_device(x);
      const auto dp = to_device(parts), dw = to_device(w);
      auto y = poisoned<uint16_t>(n);
      cuda::residual_rmsnorm_rows(as_bf16(y.data()), dx.data(), dp.data(), n_partials, dw.data(),
                                  rows, d, 1e-5f, nullptr);
      const std::string label =
          "residual rmsnorm d=" + std::to_string(d) + " partials=" + std::to_string(n_partials);
      const auto new_x = to_host(dx, n);
      size_t bad_x = 0;
      for (size_t i = 0; i < n; ++i) bad_x += !(std::fabs(new_x[i] - sum[i]) <= slack[i]);
      EXPECT_EQ(bad_x, 0u) << label << ": the residual does not hold x + Σ partials";
      // The sum's own rounding (relative to the row's size, a few f32 ulp) stays well inside
      // the 1e-5 allowed for the norm.
      const std::vector<double> want(ref.begin(), ref.end());
      EXPECT_EQ(count_outside(to_host(y, n), want, 1e-5, std::vector<double>(n, 0.0), label), 0u);
    }
  }
}

// The engine pads its normed hidden rows: the norm writes row r at y + r·ldy and the head's
// row gather reads and writes at pitches, with the same bits as packed rows and the gaps
// untouched (0xFFFF as poisoned() left them).
TEST_F(InferKernels, NormAndGatherKeepRowsAtAPitch) {
  uint64_t seed = 1700;
  for (const int64_t d : {int64_t{7}, int64_t{4096}}) {
    const int64_t rows = 6, ld = d + (d % 4 == 0 ? 64 : 3);
    const auto x = random_floats(static_cast<size_t>(rows * d), ++seed, -3.0f, 3.0f);
    const auto w = random_floats(static_cast<size_t>(d), ++seed, 0.5f, 1.5f);
    const auto dw = to_device(w);
    auto norm = [&](int64_t ldy) {
      auto dx = to_device(x);
      auto y = poisoned<uint16_t>(static_cast<size_t>(rows * ldy));
      cuda::residual_rmsnorm_rows(as_bf16(y.data()), dx.data(), nullptr, 0, dw.data(), rows, d,
                                  1e-5f, nullptr, ldy == d ? 0 : ldy);
      return std::pair(to_host(y, static_cast<size_t>(rows * ldy)), std::move(y));
    };
    const auto packed = norm(d).first;
    auto [pitched, pitched_device] = norm(ld);
    size_t differ = 0, touched = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < ld; ++i) {
        const uint16_t got = pitched[static_cast<size_t>(r * ld + i)];
        if (i < d) {
          differ += got != packed[static_cast<size_t>(r * d + i)];
        } else {
          touched += got != 0xFFFF;
        }
      }
    }
    EXPECT_EQ(differ, 0u) << "norm d=" << d;
    EXPECT_EQ(touched, 0u) << "norm d=" << d << " wrote into the gaps";

    const std::vector<int32_t> ids = {4, 0, 4, 2};
    const auto dids = to_device(ids);
    const auto n_ids = static_cast<int64_t>(ids.size());
    auto gathered = poisoned<uint16_t>(static_cast<size_t>(n_ids * ld));
    cuda::gather_rows(as_bf16(gathered.data()), as_bf16(pitched_device.data()), dids.data(), n_ids,
                      d, nullptr, ld, ld);
    const auto got = to_host(gathered, static_cast<size_t>(n_ids * ld));
    size_t wrong = 0;
    for (int64_t r = 0; r < n_ids; ++r) {
      for (int64_t i = 0; i < ld; ++i) {
        const uint16_t want =
            i < d ? packed[static_cast<size_t>(ids[static_cast<size_t>(r)] * d + i)] : 0xFFFF;
        wrong += got[static_cast<size_t>(r * ld + i)] != want;
      }
    }
    EXPECT_EQ(wrong, 0u) << "gather d=" << d;
  }
}

// cuBLAS reads x's rows at a pitch too: the same bits as packed rows, whole and split-K.
TEST_F(InferKernels, InferGemmReadsRowsOfXAtAPitch) {
  cuda::InferGemm gemm(nullptr, cuda::InferGemm::Engines::Cublas);
  const int64_t n = 9, in = 512, out = 64, ldx = in + 64;
  std::vector<uint16_t> x(static_cast<size_t>(n * in)), w(static_cast<size_t>(out * in));
  const auto xf = random_floats(x.size(), 1801, -1.0f, 1.0f);
  const auto wf = random_floats(w.size(), 1802, -1.0f, 1.0f);
  for (size_t i = 0; i < x.size(); ++i) x[i] = f32_to_bf16(xf[i]);
  for (size_t i = 0; i < w.size(); ++i) w[i] = f32_to_bf16(wf[i]);
  auto dw = to_device(w);
  const auto cells = static_cast<size_t>(2 * n * out);
  auto run = [&](const std::vector<uint16_t>& x_bits, int64_t pitch, int splits) {
    auto dx = to_device(x_bits);
    auto y = poisoned<float>(cells);
    if (splits == 1) {
      gemm.linear(y.data(), as_bf16(dx.data()), as_bf16(dw.data()), n, in, out, 0.0f, pitch);
    } else {
      gemm.linear_split(y.data(), as_bf16(dx.data()), as_bf16(dw.data()), n, in, out, splits,
                        pitch);
    }
    return to_host(y, cells);
  };
  for (const int splits : {1, 2}) {
    const auto packed = run(x, 0, splits);
    const auto pitched = run(testing::with_row_pitch(x, n, in, ldx, 1803), ldx, splits);
    EXPECT_EQ(std::memcmp(packed.data(), pitched.data(), cells * sizeof(float)), 0)
        << "splits " << splits;
  }
}

// The measured rule for weights in blocks on an H100/H200 (InferGemm::takes_blocks): the 8B
// model's products go to WgmmaGemm up to 512 rows (Q4_0 up to 256, Q6_K never), the 4096 × 4096
// one not at 256 rows (too few K slices per CTA).
TEST_F(InferKernels, InferGemmTakesBlocksAtTheMeasuredRowCounts) {
  if (!cuda::WgmmaGemm::available()) GTEST_SKIP() << "skipped, the GPU is not an H100/H200";
  cuda::InferGemm gemm(nullptr);
  cuda::DeviceArray<uint8_t> blocks(256);
  const void* w = blocks.data();
  EXPECT_TRUE(gemm.takes_blocks(TensorType::Q4_K, w, 32, 4096, 12288));
  EXPECT_TRUE(gemm.takes_blocks(TensorType::Q4_K, w, 512, 4096, 12288));
  EXPECT_TRUE(gemm.takes_blocks(TensorType::Q5_K, w, 512, 12288, 4096));
  EXPECT_FALSE(gemm.takes_blocks(TensorType::Q4_K, w, 513, 4096, 12288));
  EXPECT_FALSE(gemm.takes_blocks(TensorType::Q4_K, w, 256, 4096, 4096));
  EXPECT_TRUE(gemm.takes_blocks(TensorType::Q4_0, w, 256, 4096, 12288));
  EXPECT_FALSE(gemm.takes_blocks(TensorType::Q4_0, w, 512, 4096, 12288));
  EXPECT_FALSE(gemm.takes_blocks(TensorType::Q6_K, w, 256, 4096, 12288));
}

// The three ways InferGemm runs a product agree with an f64 product of the same bf16 operands:
// f32 output (plus beta · y), bf16 output, and split-K partials summed in order. Each f32 result
// is within K · 2^-24 · Σ|x·w| of it (the worst case of an f32 accumulation of K terms); a
// bf16 output adds its half ulp.
TEST_F(InferKernels, InferGemmWaysAgreeWithF64) {
  cuda::InferGemm gemm(nullptr);
  uint64_t seed = 1700;
  struct Shape {
    int64_t n, in, out;
  };
  for (const Shape sh : {Shape{3, 256, 40}, Shape{256, 512, 384}, Shape{17, 1024, 96}}) {
    auto x = random_floats(static_cast<size_t>(sh.n * sh.in), ++seed, -1.0f, 1.0f);
    auto w = random_floats(static_cast<size_t>(sh.out * sh.in), ++seed, -0.5f, 0.5f);
    auto y0 = random_floats(static_cast<size_t>(sh.n * sh.out), ++seed, -1.0f, 1.0f);
    const auto x_bits = round_to_bf16(&x), w_bits = round_to_bf16(&w);
    const size_t m = y0.size();
    std::vector<double> want(m), slack(m);
    auto reference = [&](const std::vector<float>& xs, const std::vector<float>& ws) {
      for (int64_t r = 0; r < sh.n; ++r) {
        for (int64_t o = 0; o < sh.out; ++o) {
          double acc = 0, magnitude = 0;
          for (int64_t i = 0; i < sh.in; ++i) {
            const double p = static_cast<double>(xs[r * sh.in + i]) * ws[o * sh.in + i];
            acc += p;
            magnitude += std::fabs(p);
          }
          want[r * sh.out + o] = acc;
          slack[r * sh.out + o] = static_cast<double>(sh.in + 2) * 0x1p-24 * magnitude;
        }
      }
    };
    reference(x, w);
    const auto dx = to_device(x_bits), dw = to_device(w_bits);
    const auto* xb = reinterpret_cast<const bf16*>(dx.data());
    const auto* wb = reinterpret_cast<const bf16*>(dw.data());
    const std::string label =
        "gemm " + std::to_string(sh.n) + "x" + std::to_string(sh.in) + "x" + std::to_string(sh.out);
    auto check_f32 = [&](const std::vector<float>& got, const std::vector<double>& base,
                         const std::string& way) {
      size_t bad = 0;
      for (size_t i = 0; i < m; ++i) {
        const double target = want[i] + base[i];
        const double bound = slack[i] + 0x1p-24 * std::fabs(target);
        if (std::fabs(got[i] - target) <= bound) continue;
        if (bad++ == 0) {
          ADD_FAILURE() << label << " " << way << ": element " << i << " is " << got[i] << ", want "
                        << target << " (bound " << bound << ")";
        }
      }
      EXPECT_EQ(bad, 0u) << label << " " << way;
    };
    {
      auto y = to_device(y0);
      gemm.linear(y.data(), xb, wb, sh.n, sh.in, sh.out, 1.0f);
      check_f32(to_host(y, m), std::vector<double>(y0.begin(), y0.end()), "f32 + y");
    }
    {
      auto y = poisoned<uint16_t>(m);
      gemm.linear(as_bf16(y.data()), xb, wb, sh.n, sh.in, sh.out);
      EXPECT_EQ(count_outside(to_host(y, m), want, 0, slack, label + " bf16 out"), 0u);
    }
    {
      const int splits = cuda::InferGemm::kMaxSplits;
      auto partials = poisoned<float>(m * splits);
      gemm.linear_split(partials.data(), xb, wb, sh.n, sh.in, sh.out, splits);
      const auto p = to_host(partials, m * splits);
      std::vector<float> sum(m);
      for (size_t i = 0; i < m; ++i) {
        sum[i] = p[i];
        for (int s = 1; s < splits; ++s) sum[i] += p[s * m + i];
      }
      check_f32(sum, std::vector<double>(m, 0.0), "split-K");
    }
    {
      // f32 operands (the exact precision) with full 24-bit values: f32 arithmetic. TF32 (10-bit
      // operands) would miss these bounds at least at K = 256.
      const auto xf = random_floats(x.size(), ++seed, -1.0f, 1.0f);
      const auto wf = random_floats(w.size(), ++seed, -0.5f, 0.5f);
      reference(xf, wf);
      const auto fx = to_device(xf), fw = to_device(wf);
      auto y = to_device(y0);
      gemm.linear(y.data(), fx.data(), fw.data(), sh.n, sh.in, sh.out, 1.0f);
      check_f32(to_host(y, m), std::vector<double>(y0.begin(), y0.end()), "f32 operands + y");
      auto partials = poisoned<float>(m * 2);
      gemm.linear_split(partials.data(), fx.data(), fw.data(), sh.n, sh.in, sh.out, 2);
      const auto p = to_host(partials, m * 2);
      std::vector<float> sum(m);
      for (size_t i = 0; i < m; ++i) sum[i] = p[i] + p[m + i];
      check_f32(sum, std::vector<double>(m, 0.0), "f32 operands split-K");
    }
  }
  const bf16* none = nullptr;
  EXPECT_THROW(gemm.linear_split(nullptr, none, none, 4, 255, 8, 2), Error);
  // The split rule: an 8B model's 4096-output products split at 256 rows on a GPU with at
  // least 128 SMs, never at 4096 rows.
  EXPECT_EQ(gemm.split_for(4096, 4096, 4096), 1);
  EXPECT_EQ(gemm.split_for(4, 100, 8), 1);  // 100 does not split evenly into 64-aligned slices
}

}  // namespace
}  // namespace ruvdllm
