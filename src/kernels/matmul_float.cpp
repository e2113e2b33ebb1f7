// Own f32 GEMM for F32/F16/BF16 weights on x86 targets with FMA (AVX2, AVX-512), used where
// OpenBLAS runs one of its generic cores (it does not recognise some virtual CPUs and then
// multiplies at about a tenth of the FMA peak; matmul.cpp decides).
//
// The activations are the packed side: m rows of x become strips of N rows (N = vector
// lanes), stored [strip][k][N], so one vector load covers one k index of N rows. Weight rows
// stay in their natural layout (f32, converted from F16/BF16 by the driver): each kernel call
// broadcasts one value of kWeightRows weight rows per k index and multiplies it with two
// activation strips, keeping 2 × kWeightRows accumulators whose lanes are output rows. Packing
// x costs m·k once per matmul, shared by all n weight rows; nothing is transposed per panel.
#include <cstring>
#include <vector>

#include "kernels/matmul_dot.h"

// foreach_target.h comes before the other Highway headers: it re-includes this file once per
// SIMD target.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_float.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/aligned_allocator.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace ruvdllm::matmul_detail {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL

namespace {

using DF = hn::ScalableTag<float>;
// 2 × kWeightRows accumulators, two activation vectors and a broadcast: 15 of AVX2's 16
// registers, 19 of AVX-512's 32 (12 rows there measured no faster than 8).
constexpr int kWeightRows = HWY_TARGET == HWY_AVX2 ? 6 : 8;

int64_t Lanes() { return static_cast<int64_t>(hn::Lanes(DF())); }

void PackActivations(const float* x, int64_t m, int64_t k, int64_t strip, float* out) {
  const int64_t n = Lanes();
  float* dst = out + strip * k * n;
  for (int64_t lane = 0; lane < n; ++lane) {
    const int64_t r = strip * n + lane;
    if (r < m) {
      const float* src = x + r * k;
      for (int64_t i = 0; i < k; ++i) dst[i * n + lane] = src[i];
    } else {
      for (int64_t i = 0; i < k; ++i) dst[i * n + lane] = 0.0f;
    }
  }
}

// Values of k per pass: two activation strips' share (2·256·N floats, 32 KB with AVX-512)
// stays in L1 while every weight row of the panel passes by.
constexpr int64_t kChunk = 256;

// acc[(h·kWeightRows + c)·N + lane] += weight row c · row `lane` of activation strip h, over
// kc values of k (acc starts at zero when `first`).
void TileProduct(const float* xs0, const float* xs1, const float* w, int64_t ldw, int64_t kc,
                 bool first, float* acc) {
  const DF d;
  const int64_t n = Lanes();
  hn::Vec<DF> acc0[kWeightRows], acc1[kWeightRows];
  // Every loop over c unrolled, or GCC keeps the accumulator arrays in memory.
  HWY_UNROLL(kWeightRows)
  for (int c = 0; c < kWeightRows; ++c) {
    acc0[c] = first ? hn::Zero(d) : hn::Load(d, acc + c * n);
    acc1[c] = first ? hn::Zero(d) : hn::Load(d, acc + (kWeightRows + c) * n);
  }
  for (int64_t i = 0; i < kc; ++i) {
    const auto x0 = hn::Load(d, xs0 + i * n), x1 = hn::Load(d, xs1 + i * n);
    HWY_UNROLL(kWeightRows)
    for (int c = 0; c < kWeightRows; ++c) {
      const auto wc = hn::Set(d, w[c * ldw + i]);
      acc0[c] = hn::MulAdd(wc, x0, acc0[c]);
      acc1[c] = hn::MulAdd(wc, x1, acc1[c]);
    }
  }
  HWY_UNROLL(kWeightRows)
  for (int c = 0; c < kWeightRows; ++c) {
    hn::Store(acc0[c], d, acc + c * n);
    hn::Store(acc1[c], d, acc + (kWeightRows + c) * n);
  }
}

void Multiply(const float* xpacked, int64_t m, int64_t k, const float* w, int64_t ldw, int64_t cols,
              float* y, int64_t ldy) {
  const int64_t n = Lanes(), strips = (m + n - 1) / n, pairs = (strips + 1) / 2;
  const int64_t groups = (cols + kWeightRows - 1) / kWeightRows,
                full = cols / kWeightRows * kWeightRows;
  const int64_t tile = 2 * kWeightRows * n;
  // The last group's rows padded with zero rows, so every call runs the one unrolled shape.
  thread_local std::vector<float> tail;
  if (full < cols) {
    tail.assign(static_cast<size_t>(kWeightRows * k), 0.0f);
    for (int64_t c = full; c < cols; ++c) {
      std::memcpy(&tail[static_cast<size_t>((c - full) * k)], w + c * ldw,
                  static_cast<size_t>(k) * sizeof(float));
    }
  }
  // Accumulators of every (strip pair, weight group) tile, in the kernel's lane order.
  thread_local hwy::AlignedFreeUniquePtr<float[]> acc;
  thread_local size_t acc_size = 0;
  const auto need = static_cast<size_t>(pairs * groups * tile);
  if (need > acc_size) {
    acc = hwy::AllocateAligned<float>(need);
    acc_size = need;
  }
  for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
    const int64_t kc = k - k0 < kChunk ? k - k0 : kChunk;
    for (int64_t p = 0; p < pairs; ++p) {
      const float* xs0 = xpacked + (2 * p * k + k0) * n;
      // A missing second strip reads the first again; its rows are never stored.
      const float* xs1 = 2 * p + 1 < strips ? xs0 + k * n : xs0;
      for (int64_t g = 0; g < groups; ++g) {
        const bool padded = g * kWeightRows == full;
        const float* wg = padded ? tail.data() + k0 : w + g * kWeightRows * ldw + k0;
        TileProduct(xs0, xs1, wg, padded ? k : ldw, kc, k0 == 0,
                    acc.get() + (p * groups + g) * tile);
      }
    }
  }
  for (int64_t p = 0; p < pairs; ++p) {
    const int64_t rows = m - 2 * p * n < 2 * n ? m - 2 * p * n : 2 * n;
    for (int64_t g = 0; g < groups; ++g) {
      const float* t = acc.get() + (p * groups + g) * tile;
      const int64_t valid =
          cols - g * kWeightRows < kWeightRows ? cols - g * kWeightRows : kWeightRows;
      for (int64_t r = 0; r < rows; ++r) {
        float* out = y + (2 * p * n + r) * ldy + g * kWeightRows;
        for (int64_t c = 0; c < valid; ++c) out[c] = t[((r / n) * kWeightRows + c) * n + r % n];
      }
    }
  }
}

}  // namespace

const FloatKernels* GetFloatKernels() {
  static const FloatKernels kernels = [] {
    FloatKernels f;
    f.name = hwy::TargetName(HWY_TARGET);
    f.lanes = Lanes();
    f.pack_activations = PackActivations;
    f.multiply = Multiply;
    return f;
  }();
  return &kernels;
}

#else

const FloatKernels* GetFloatKernels() { return nullptr; }

#endif

}  // namespace HWY_NAMESPACE
}  // namespace ruvdllm::matmul_detail
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm::matmul_detail {
HWY_EXPORT(GetFloatKernels);
const FloatKernels* float_kernels() { return HWY_DYNAMIC_DISPATCH(GetFloatKernels)(); }
}  // namespace ruvdllm::matmul_detail
#endif
