#pragma once
// Helpers for the CUDA tests: a fixture that skips without a GPU, device upload/download, and
// the relative error ‖got − want‖₂ / ‖want‖₂ every comparison uses.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/kernels/quant.h"
#include "test_util.h"

namespace ruvdllm::testing {

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~ScopedEnv() { unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda::cuda_available(&why)) GTEST_SKIP() << "skipped, no usable GPU: " << why;
  }
};

template <typename T>
cuda::DeviceArray<T> to_device(const std::vector<T>& host) {
  cuda::DeviceArray<T> d(host.size());
  cuda::check_cuda(
      cudaMemcpy(d.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
      "cudaMemcpy");
  return d;
}

// A device array of n elements whose every byte is 0xFF (a NaN for floats), so an element the
// kernel under test fails to write shows up in the comparison.
template <typename T>
cuda::DeviceArray<T> poisoned(size_t n) {
  cuda::DeviceArray<T> d(n);
  cuda::check_cuda(cudaMemset(d.data(), 0xFF, n * sizeof(T)), "cudaMemset");
  return d;
}

template <typename T>
std::vector<T> to_host(const cuda::DeviceArray<T>& d, size_t n) {
  cuda::check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  std::vector<T> host(n);
  cuda::check_cuda(cudaMemcpy(host.data(), d.data(), n * sizeof(T), cudaMemcpyDeviceToHost),
                   "cudaMemcpy");
  return host;
}

// The GEMM tests' reference: want = x · wᵀ in f64 (x: n × in, w: out × in, row-major) and, per
// output, magnitude = Σ|x·w|, which bounds what f32 accumulation in any order can be off by.
inline void reference_product(const std::vector<float>& x, const std::vector<float>& w, int64_t n,
                              int64_t in, int64_t out, std::vector<double>* want,
                              std::vector<double>* magnitude) {
  want->assign(static_cast<size_t>(n * out), 0.0);
  magnitude->assign(want->size(), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0, mag = 0;
      for (int64_t i = 0; i < in; ++i) {
        const double prod = static_cast<double>(x[r * in + i]) * w[o * in + i];
        acc += prod;
        mag += std::fabs(prod);
      }
      (*want)[r * out + o] = acc;
      (*magnitude)[r * out + o] = mag;
    }
  }
}

// A product over weights in GGUF blocks: random x (seed) rounded to bf16, random weights
// (seed + 1) quantized to `type` by the CPU reference, and the f64 reference product of x with
// the weights those blocks dequantize to, rounded to bf16 (the values every GPU way decodes).
// bf16 rows of `in` values copied ldx values apart, the gaps filled with large random values,
// so a product that read a row at the wrong pitch would be far off.
inline std::vector<uint16_t> with_row_pitch(const std::vector<uint16_t>& rows, int64_t n,
                                            int64_t in, int64_t ldx, uint64_t seed) {
  const auto filler = random_floats(static_cast<size_t>(n * ldx), seed, 100.0f, 1000.0f);
  std::vector<uint16_t> out(filler.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = f32_to_bf16(filler[i]);
  for (int64_t r = 0; r < n; ++r) {
    std::copy(rows.begin() + r * in, rows.begin() + (r + 1) * in, out.begin() + r * ldx);
  }
  return out;
}

struct BlockProduct {
  std::vector<uint16_t> x_bits;
  std::vector<uint8_t> blocks;
  std::vector<double> want, magnitude;
};

inline BlockProduct make_block_product(TensorType type, int64_t n, int64_t in, int64_t out,
                                       uint64_t seed) {
  BlockProduct p;
  auto x = random_floats(static_cast<size_t>(n * in), seed, -1.0f, 1.0f);
  p.x_bits.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    p.x_bits[i] = f32_to_bf16(x[i]);
    x[i] = bf16_to_f32(p.x_bits[i]);
  }
  const auto w = random_floats(static_cast<size_t>(out * in), seed + 1, -1.0f, 1.0f);
  const size_t stride = row_bytes(type, in);
  p.blocks.resize(stride * static_cast<size_t>(out));
  std::vector<float> wd(w.size());
  for (int64_t o = 0; o < out; ++o) {
    quantize_row_reference(type, w.data() + o * in, p.blocks.data() + stride * o, in);
    dequantize_row_reference(type, p.blocks.data() + stride * o, wd.data() + o * in, in);
  }
  for (float& v : wd) v = bf16_to_f32(f32_to_bf16(v));
  reference_product(x, wd, n, in, out, &p.want, &p.magnitude);
  return p;
}

// Checks a product written into y (n rows of ldy cells, its `out` columns from cell col0 on)
// against reference_product's want: a bf16 output within (in + 2)·2⁻²⁴·Σ|x·w| (f32 accumulation in
// any order) plus half a bf16 ulp; an f32 output y = product + beta·y0 within the same plus one
// f32 rounding; every cell outside the product untouched (bf16 cells start as 0xFFFF). Reports
// the first bad cell of each kind.
struct ProductCheck {
  int64_t n, in, out, ldy, col0;
  const std::vector<double>& want;
  const std::vector<double>& magnitude;
  std::string label;

  // The reference element of a cell, or false outside the product.
  bool element_of(int64_t cell, size_t* element) const {
    const int64_t c = (cell - col0) % ldy, r = (cell - col0) / ldy;
    *element = static_cast<size_t>(r * out + c);
    return cell >= col0 && c < out && r < n;
  }
  double accumulation_bound(size_t i) const {
    return (static_cast<double>(in) + 2) * 0x1p-24 * magnitude[i];
  }
  void bf16(const std::vector<uint16_t>& got) const {
    size_t bad = 0, touched = 0;
    for (size_t cell = 0; cell < got.size(); ++cell) {
      size_t i = 0;
      if (!element_of(static_cast<int64_t>(cell), &i)) {
        touched += got[cell] != 0xFFFF;
        continue;
      }
      const double err = accumulation_bound(i);
      const double bound = err + (std::fabs(want[i]) + err) / 256.0;
      const double g = bf16_to_f32(got[cell]);
      if (std::fabs(g - want[i]) <= bound) continue;  // NaN (unwritten) fails here
      if (bad++ == 0) {
        ADD_FAILURE() << label << " bf16: element " << i << " is " << g << ", want " << want[i]
                      << " (bound " << bound << ")";
      }
    }
    EXPECT_EQ(bad, 0u) << label;
    EXPECT_EQ(touched, 0u) << label << ": wrote outside its columns";
  }
  void f32(const std::vector<float>& got, const std::vector<float>& y0, float beta) const {
    size_t bad = 0, touched = 0;
    for (size_t cell = 0; cell < got.size(); ++cell) {
      size_t i = 0;
      if (!element_of(static_cast<int64_t>(cell), &i)) {
        touched += got[cell] != y0[cell];
        continue;
      }
      const double target = want[i] + beta * y0[cell];
      const double bound = accumulation_bound(i) + 0x1p-23 * std::fabs(target);
      if (std::fabs(got[cell] - target) <= bound) continue;
      if (bad++ == 0) {
        ADD_FAILURE() << label << " f32, beta " << beta << ": element " << i << " is " << got[cell]
                      << ", want " << target << " (bound " << bound << ")";
      }
    }
    EXPECT_EQ(bad, 0u) << label << " beta " << beta;
    EXPECT_EQ(touched, 0u) << label << ": wrote outside its columns";
  }
};

// NaN when either side holds a NaN, so EXPECT_LT on it fails.
inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

}  // namespace ruvdllm::testing
