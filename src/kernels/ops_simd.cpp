// Vector versions of the element-wise and row-wise ops, compiled once per SIMD target by
// Highway and chosen at run time.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/ops.h"

// foreach_target.h must come before the other Highway headers: it re-includes this file
// once per SIMD target. Include sorting would break that.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/ops_simd.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace ruvdllm::ops_hwy::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Big enough for one vector of any target; partial vectors at row ends go through it so the
// tail gets exactly the vector arithmetic of the body.
constexpr size_t kMaxFloatLanes = HWY_MAX_BYTES / sizeof(float);

void RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t r = 0; r < rows; ++r) {
    const float* HWY_RESTRICT xr = x + r * n;
    float* yr = y + r * n;  // may alias xr
    VF a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    int64_t i = 0;
    for (; i + 4 * N <= n; i += 4 * N) {
      const VF v0 = hn::LoadU(d, xr + i), v1 = hn::LoadU(d, xr + i + N);
      const VF v2 = hn::LoadU(d, xr + i + 2 * N), v3 = hn::LoadU(d, xr + i + 3 * N);
      a0 = hn::MulAdd(v0, v0, a0);
      a1 = hn::MulAdd(v1, v1, a1);
      a2 = hn::MulAdd(v2, v2, a2);
      a3 = hn::MulAdd(v3, v3, a3);
    }
    for (; i + N <= n; i += N) {
      const VF v = hn::LoadU(d, xr + i);
      a0 = hn::MulAdd(v, v, a0);
    }
    float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
    for (; i < n; ++i) sum += xr[i] * xr[i];
    const float inv_rms =
        static_cast<float>(1.0 / std::sqrt(static_cast<double>(sum) / static_cast<double>(n) +
                                           static_cast<double>(eps)));
    const VF vinv = hn::Set(d, inv_rms);
    i = 0;
    if (weight) {
      for (; i + N <= n; i += N) {
        hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(d, xr + i), vinv), hn::LoadU(d, weight + i)), d,
                   yr + i);
      }
      for (; i < n; ++i) yr[i] = xr[i] * inv_rms * weight[i];
    } else {
      for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, xr + i), vinv), d, yr + i);
      for (; i < n; ++i) yr[i] = xr[i] * inv_rms;
    }
  }
}

void Softmax(float* x, int64_t rows, int64_t n) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  HWY_ALIGN float tail[kMaxFloatLanes];
  for (int64_t r = 0; r < rows; ++r) {
    float* HWY_RESTRICT xr = x + r * n;
    const int64_t body = n - n % N;
    VF vmax = hn::Set(d, neg_inf);
    for (int64_t i = 0; i < body; i += N) vmax = hn::Max(vmax, hn::LoadU(d, xr + i));
    float max = hn::GetLane(hn::MaxOfLanes(d, vmax));
    for (int64_t i = body; i < n; ++i) max = xr[i] > max ? xr[i] : max;
    if (max == neg_inf) {  // fully masked row: defined as all zeros
      std::memset(xr, 0, static_cast<size_t>(n) * sizeof(float));
      continue;
    }
    const VF vm = hn::Set(d, max);
    VF sum0 = hn::Zero(d), sum1 = hn::Zero(d);
    int64_t i = 0;
    for (; i + 2 * N <= body; i += 2 * N) {
      const VF e0 = hn::Exp(d, hn::Sub(hn::LoadU(d, xr + i), vm));
      const VF e1 = hn::Exp(d, hn::Sub(hn::LoadU(d, xr + i + N), vm));
      hn::StoreU(e0, d, xr + i);
      hn::StoreU(e1, d, xr + i + N);
      sum0 = hn::Add(sum0, e0);
      sum1 = hn::Add(sum1, e1);
    }
    for (; i < body; i += N) {
      const VF e = hn::Exp(d, hn::Sub(hn::LoadU(d, xr + i), vm));
      hn::StoreU(e, d, xr + i);
      sum0 = hn::Add(sum0, e);
    }
    const size_t rest = static_cast<size_t>(n - body);
    if (rest) {  // padding lanes hold -inf, whose exp adds nothing to the sum
      for (size_t j = 0; j < static_cast<size_t>(N); ++j) tail[j] = neg_inf;
      std::memcpy(tail, xr + body, rest * sizeof(float));
      const VF e = hn::Exp(d, hn::Sub(hn::Load(d, tail), vm));
      hn::Store(e, d, tail);
      std::memcpy(xr + body, tail, rest * sizeof(float));
      sum1 = hn::Add(sum1, e);
    }
    const float total = hn::GetLane(hn::SumOfLanes(d, hn::Add(sum0, sum1)));
    const float inv = 1.0f / total;
    const VF vinv = hn::Set(d, inv);
    for (i = 0; i < body; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, xr + i), vinv), d, xr + i);
    for (; i < n; ++i) xr[i] *= inv;
  }
}

// silu(g)·u through exp(-|g|), which never overflows, whatever the sign of g.
HWY_INLINE VF SiluTimes(DF d, VF g, VF u) {
  const VF one = hn::Set(d, 1.0f);
  const VF e = hn::Exp(d, hn::Neg(hn::Abs(g)));
  const VF sigmoid_abs = hn::Div(one, hn::Add(one, e));
  const VF sigmoid = hn::IfThenElse(hn::Ge(g, hn::Zero(d)), sigmoid_abs, hn::Mul(e, sigmoid_abs));
  return hn::Mul(hn::Mul(g, sigmoid), u);
}

void Swiglu(const float* gate, const float* up, float* out, int64_t n) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    hn::StoreU(SiluTimes(d, hn::LoadU(d, gate + i), hn::LoadU(d, up + i)), d, out + i);
  }
  if (i < n) {
    HWY_ALIGN float g[kMaxFloatLanes] = {};
    HWY_ALIGN float u[kMaxFloatLanes] = {};
    const size_t rest = static_cast<size_t>(n - i);
    std::memcpy(g, gate + i, rest * sizeof(float));
    std::memcpy(u, up + i, rest * sizeof(float));
    hn::Store(SiluTimes(d, hn::Load(d, g), hn::Load(d, u)), d, g);
    std::memcpy(out + i, g, rest * sizeof(float));
  }
}

void AddInplace(float* y, const float* x, int64_t n) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::Add(hn::LoadU(d, y + i), hn::LoadU(d, x + i)), d, y + i);
  for (; i < n; ++i) y[i] += x[i];
}

// cos_t[i], sin_t[i] of the angle position · freq[i] for i < padded_len. The angle and its
// reduction to [-π, π] stay in double so positions of 10^5 and more keep about 1e-7 of
// accuracy; only the final cos/sin are rounded to float.
void AngleTables(double position, const double* freq, int64_t padded_len, float* cos_t,
                 float* sin_t) {
#if HWY_HAVE_FLOAT64
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(dd));
  const auto pos = hn::Set(dd, position);
  const auto inv_two_pi = hn::Set(dd, 0.15915494309189535);
  const auto two_pi_hi = hn::Set(dd, 6.283185307179586);
  const auto two_pi_lo = hn::Set(dd, 2.4492935982947064e-16);
  for (int64_t i = 0; i < padded_len; i += N) {
    const auto angle = hn::Mul(pos, hn::LoadU(dd, freq + i));
    const auto turns = hn::Round(hn::Mul(angle, inv_two_pi));
    const auto reduced = hn::NegMulAdd(turns, two_pi_lo, hn::NegMulAdd(turns, two_pi_hi, angle));
    hn::StoreU(hn::DemoteTo(df, hn::Cos(dd, reduced)), df, cos_t + i);
    hn::StoreU(hn::DemoteTo(df, hn::Sin(dd, reduced)), df, sin_t + i);
  }
#else
  for (int64_t i = 0; i < padded_len; ++i) {
    const double angle = position * freq[i];
    cos_t[i] = static_cast<float>(std::cos(angle));
    sin_t[i] = static_cast<float>(std::sin(angle));
  }
#endif
}

void Rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
          const int32_t* positions, float freq_base, RopeOrder order) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const int64_t half = rot_dim / 2;
#if HWY_HAVE_FLOAT64
  const int64_t double_lanes = static_cast<int64_t>(hn::Lanes(hn::ScalableTag<double>()));
#else
  const int64_t double_lanes = 1;
#endif
  const int64_t padded_half = (half + double_lanes - 1) / double_lanes * double_lanes;
  std::vector<double> freq(static_cast<size_t>(padded_half), 0.0);
  for (int64_t i = 0; i < half; ++i) {
    freq[static_cast<size_t>(i)] =
        std::pow(static_cast<double>(freq_base),
                 -2.0 * static_cast<double>(i) / static_cast<double>(rot_dim));
  }
  std::vector<float> tables(static_cast<size_t>(2 * padded_half + 2 * rot_dim));
  float* cos_half = tables.data();
  float* sin_half = cos_half + padded_half;
  // Normal order rotates as x·cos + swap_pairs(x)·(∓sin), with one entry per element.
  float* cos_pairs = sin_half + padded_half;
  float* sin_pairs = cos_pairs + rot_dim;
  for (int64_t t = 0; t < n_tokens; ++t) {
    AngleTables(static_cast<double>(positions[t]), freq.data(), padded_half, cos_half, sin_half);
    if (order == RopeOrder::Normal) {
      for (int64_t i = 0; i < half; ++i) {
        cos_pairs[2 * i] = cos_pairs[2 * i + 1] = cos_half[i];
        sin_pairs[2 * i] = -sin_half[i];
        sin_pairs[2 * i + 1] = sin_half[i];
      }
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* HWY_RESTRICT xh = x + (t * n_heads + h) * head_dim;
      int64_t i = 0;
      if (order == RopeOrder::Normal) {
        const float* HWY_RESTRICT c = cos_pairs;
        const float* HWY_RESTRICT s = sin_pairs;
#if HWY_TARGET != HWY_SCALAR
        // N is even, so a vector never splits a pair.
        for (; i + N <= rot_dim; i += N) {
          const VF v = hn::LoadU(d, xh + i);
          hn::StoreU(
              hn::MulAdd(v, hn::LoadU(d, c + i), hn::Mul(hn::Shuffle2301(v), hn::LoadU(d, s + i))),
              d, xh + i);
        }
#endif
        for (; i < rot_dim; i += 2) {
          const float x0 = xh[i], x1 = xh[i + 1];
          xh[i] = x0 * c[i] + x1 * s[i];
          xh[i + 1] = x1 * c[i + 1] + x0 * s[i + 1];
        }
      } else {
        const float* HWY_RESTRICT c = cos_half;
        const float* HWY_RESTRICT s = sin_half;
        for (; i + N <= half; i += N) {
          const VF a = hn::LoadU(d, xh + i), b = hn::LoadU(d, xh + half + i);
          const VF ci = hn::LoadU(d, c + i), si = hn::LoadU(d, s + i);
          hn::StoreU(hn::MulSub(a, ci, hn::Mul(b, si)), d, xh + i);
          hn::StoreU(hn::MulAdd(a, si, hn::Mul(b, ci)), d, xh + half + i);
        }
        for (; i < half; ++i) {
          const float a = xh[i], b = xh[half + i];
          xh[i] = a * c[i] - b * s[i];
          xh[half + i] = a * s[i] + b * c[i];
        }
      }
    }
  }
}

}  // namespace ruvdllm::ops_hwy::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm {
namespace ops_hwy {
HWY_EXPORT(RmsNorm);
HWY_EXPORT(Softmax);
HWY_EXPORT(Swiglu);
HWY_EXPORT(AddInplace);
HWY_EXPORT(Rope);
}  // namespace ops_hwy

// The dispatch tables (and, where only one target is compiled, as on aarch64 with NEON alone,
// the target namespace HWY_DYNAMIC_DISPATCH names) are found through this directive: a
// qualified name would expand to N_NEON::ops_hwy::F there.
using namespace ops_hwy;

void rmsnorm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) {
  if (rows < 0 || n <= 0) fail("rmsnorm: bad shape {} rows of {}", rows, n);
  HWY_DYNAMIC_DISPATCH(RmsNorm)(x, weight, y, rows, n, eps);
}

void softmax(float* x, int64_t rows, int64_t n) {
  if (rows < 0 || n < 0) fail("softmax: bad shape {} rows of {}", rows, n);
  HWY_DYNAMIC_DISPATCH(Softmax)(x, rows, n);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  if (n < 0) fail("swiglu: bad length {}", n);
  HWY_DYNAMIC_DISPATCH(Swiglu)(gate, up, out, n);
}

void add_inplace(float* y, const float* x, int64_t n) {
  if (n < 0) fail("add_inplace: bad length {}", n);
  HWY_DYNAMIC_DISPATCH(AddInplace)(y, x, n);
}

void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
          const int32_t* positions, float freq_base, RopeOrder order) {
  if (n_tokens < 0 || n_heads < 0 || head_dim <= 0 || rot_dim < 0 || rot_dim > head_dim ||
      rot_dim % 2 != 0 || !(freq_base > 0)) {
    fail("rope: bad shape (tokens {}, heads {}, head_dim {}, rot_dim {}, base {})", n_tokens,
         n_heads, head_dim, rot_dim, freq_base);
  }
  if (rot_dim == 0) return;
  HWY_DYNAMIC_DISPATCH(Rope)
  (x, n_tokens, n_heads, head_dim, rot_dim, positions, freq_base, order);
}

}  // namespace ruvdllm
#endif  // HWY_ONCE
