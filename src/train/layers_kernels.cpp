// Row kernels of the layer passes that are not matrix products: vector versions for the float
// path (compiled once per SIMD target by Highway, chosen at run time) beside scalar versions
// that serve as their references and as the double path.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ruvdllm/core/error.h"
#include "train/layers_internal.h"

// foreach_target.h must come before the other Highway headers: it re-includes this file
// once per SIMD target. Include sorting would break that.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/layers_kernels.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace ruvdllm::train::layers_hwy::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Big enough for one vector of any target. Reductions run their tail through it, padded with
// the neutral value, so every element goes through the same vector arithmetic.
constexpr size_t kMaxFloatLanes = HWY_MAX_BYTES / sizeof(float);

// σ(g) through exp(−|g|), which never overflows, whatever the sign of g.
HWY_INLINE VF Sigmoid(DF d, VF g) {
  const VF one = hn::Set(d, 1.0f);
  const VF e = hn::Exp(d, hn::Neg(hn::Abs(g)));
  const VF sigmoid_abs = hn::Div(one, hn::Add(one, e));
  return hn::IfThenElse(hn::Ge(g, hn::Zero(d)), sigmoid_abs, hn::Mul(e, sigmoid_abs));
}

// ∂(g·σ(g)·u)/∂g = u·(σ + g·σ·(1 − σ)) and ∂/∂u = g·σ, times dh.
HWY_INLINE void SwigluGrad(DF d, VF g, VF u, VF dh, VF& dg, VF& du) {
  const VF sig = Sigmoid(d, g);
  const VF g_sig = hn::Mul(g, sig);
  dg = hn::Mul(hn::Mul(dh, u), hn::MulAdd(g_sig, hn::Sub(hn::Set(d, 1.0f), sig), sig));
  du = hn::Mul(dh, g_sig);
}

void SwigluBackward(float* dg, float* du, const float* dh, const float* g, const float* u,
                    int64_t n) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  VF vdg, vdu;
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    SwigluGrad(d, hn::LoadU(d, g + i), hn::LoadU(d, u + i), hn::LoadU(d, dh + i), vdg, vdu);
    if (dg) hn::StoreU(hn::Add(hn::LoadU(d, dg + i), vdg), d, dg + i);
    if (du) hn::StoreU(hn::Add(hn::LoadU(d, du + i), vdu), d, du + i);
  }
  if (i == n) return;
  HWY_ALIGN float tg[kMaxFloatLanes] = {}, tu[kMaxFloatLanes] = {}, tdh[kMaxFloatLanes] = {};
  const size_t rest = static_cast<size_t>(n - i);
  std::memcpy(tg, g + i, rest * sizeof(float));
  std::memcpy(tu, u + i, rest * sizeof(float));
  std::memcpy(tdh, dh + i, rest * sizeof(float));
  SwigluGrad(d, hn::Load(d, tg), hn::Load(d, tu), hn::Load(d, tdh), vdg, vdu);
  hn::Store(vdg, d, tg);
  hn::Store(vdu, d, tu);
  for (size_t j = 0; j < rest; ++j) {
    if (dg) dg[i + j] += tg[j];
    if (du) du[i + j] += tu[j];
  }
}

void SoftmaxBackwardRow(float* grad, const float* p, int64_t n) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  VF acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    acc0 = hn::MulAdd(hn::LoadU(d, grad + i), hn::LoadU(d, p + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(d, grad + i + N), hn::LoadU(d, p + i + N), acc1);
  }
  for (; i + N <= n; i += N) acc0 = hn::MulAdd(hn::LoadU(d, grad + i), hn::LoadU(d, p + i), acc0);
  if (i < n) {
    HWY_ALIGN float tg[kMaxFloatLanes] = {}, tp[kMaxFloatLanes] = {};
    std::memcpy(tg, grad + i, static_cast<size_t>(n - i) * sizeof(float));
    std::memcpy(tp, p + i, static_cast<size_t>(n - i) * sizeof(float));
    acc1 = hn::MulAdd(hn::Load(d, tg), hn::Load(d, tp), acc1);
  }
  const float dot = hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1)));
  const VF vdot = hn::Set(d, dot);
  for (i = 0; i + N <= n; i += N) {
    hn::StoreU(hn::Mul(hn::LoadU(d, p + i), hn::Sub(hn::LoadU(d, grad + i), vdot)), d, grad + i);
  }
  for (; i < n; ++i) grad[i] = p[i] * (grad[i] - dot);
}

double LogSoftmaxRow(const float* x, int64_t n, float* probs, float k) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t body = n - n % N;
  VF vmax = hn::Set(d, neg_inf);
  for (int64_t i = 0; i < body; i += N) vmax = hn::Max(vmax, hn::LoadU(d, x + i));
  float max = hn::GetLane(hn::MaxOfLanes(d, vmax));
  for (int64_t i = body; i < n; ++i) max = std::max(max, x[i]);
  const VF vm = hn::Set(d, max);
  VF sum0 = hn::Zero(d), sum1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= body; i += 2 * N) {
    const VF e0 = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), vm));
    const VF e1 = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i + N), vm));
    if (probs) {
      hn::StoreU(e0, d, probs + i);
      hn::StoreU(e1, d, probs + i + N);
    }
    sum0 = hn::Add(sum0, e0);
    sum1 = hn::Add(sum1, e1);
  }
  for (; i < body; i += N) {
    const VF e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), vm));
    if (probs) hn::StoreU(e, d, probs + i);
    sum0 = hn::Add(sum0, e);
  }
  if (body < n) {  // padding lanes hold the lowest float, whose exp adds nothing
    HWY_ALIGN float tail[kMaxFloatLanes];
    std::fill(tail, tail + kMaxFloatLanes, std::numeric_limits<float>::lowest());
    const size_t rest = static_cast<size_t>(n - body);
    std::memcpy(tail, x + body, rest * sizeof(float));
    const VF e = hn::Exp(d, hn::Sub(hn::Load(d, tail), vm));
    hn::Store(e, d, tail);
    if (probs) std::memcpy(probs + body, tail, rest * sizeof(float));
    sum1 = hn::Add(sum1, e);
  }
  const float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(sum0, sum1)));
  if (probs) {
    const float scale = k / sum;
    const VF vs = hn::Set(d, scale);
    for (i = 0; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, probs + i), vs), d, probs + i);
    for (; i < n; ++i) probs[i] *= scale;
  }
  return static_cast<double>(max) + std::log(static_cast<double>(sum));
}

float RmsNormForwardRow(float* y, const float* x, const float* w, int64_t n, float eps) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  VF a0 = hn::Zero(d), a1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const VF v0 = hn::LoadU(d, x + i), v1 = hn::LoadU(d, x + i + N);
    a0 = hn::MulAdd(v0, v0, a0);
    a1 = hn::MulAdd(v1, v1, a1);
  }
  for (; i + N <= n; i += N) {
    const VF v = hn::LoadU(d, x + i);
    a0 = hn::MulAdd(v, v, a0);
  }
  if (i < n) {
    HWY_ALIGN float tail[kMaxFloatLanes] = {};
    std::memcpy(tail, x + i, static_cast<size_t>(n - i) * sizeof(float));
    const VF v = hn::Load(d, tail);
    a1 = hn::MulAdd(v, v, a1);
  }
  const float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1)));
  // As the runtime's RMSNorm: the float sum of squares, the rest in double.
  const float inv =
      static_cast<float>(1.0 / std::sqrt(static_cast<double>(sum) / static_cast<double>(n) + eps));
  const VF vinv = hn::Set(d, inv);
  for (i = 0; i + N <= n; i += N) {
    const VF v = hn::Mul(hn::LoadU(d, x + i), vinv);
    hn::StoreU(w ? hn::Mul(v, hn::LoadU(d, w + i)) : v, d, y + i);
  }
  for (; i < n; ++i) y[i] = w ? x[i] * inv * w[i] : x[i] * inv;
  return inv;
}

void RmsNormBackwardRow(float* dx, float* dw, const float* dy, const float* x, const float* w,
                        float inv, int64_t n) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF vinv = hn::Set(d, inv);
  if (dx) {
    VF a0 = hn::Zero(d), a1 = hn::Zero(d);
    int64_t i = 0;
    for (; i + N <= n; i += N) {
      const VF g = w ? hn::Mul(hn::LoadU(d, dy + i), hn::LoadU(d, w + i)) : hn::LoadU(d, dy + i);
      a0 = hn::MulAdd(g, hn::LoadU(d, x + i), a0);
    }
    if (i < n) {
      HWY_ALIGN float tg[kMaxFloatLanes] = {}, tx[kMaxFloatLanes] = {};
      for (int64_t j = i; j < n; ++j) {
        tg[j - i] = w ? dy[j] * w[j] : dy[j];
        tx[j - i] = x[j];
      }
      a1 = hn::MulAdd(hn::Load(d, tg), hn::Load(d, tx), a1);
    }
    const float dot = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1)));
    const float k = dot * inv * inv * inv / static_cast<float>(n);
    const VF vk = hn::Set(d, k);
    for (i = 0; i + N <= n; i += N) {
      const VF g = w ? hn::Mul(hn::LoadU(d, dy + i), hn::LoadU(d, w + i)) : hn::LoadU(d, dy + i);
      const VF step = hn::NegMulAdd(vk, hn::LoadU(d, x + i), hn::Mul(g, vinv));
      hn::StoreU(hn::Add(hn::LoadU(d, dx + i), step), d, dx + i);
    }
    for (; i < n; ++i) dx[i] += (w ? dy[i] * w[i] : dy[i]) * inv - k * x[i];
  }
  if (dw && w) {
    int64_t i = 0;
    for (; i + N <= n; i += N) {
      const VF g = hn::Mul(hn::Mul(hn::LoadU(d, dy + i), hn::LoadU(d, x + i)), vinv);
      hn::StoreU(hn::Add(hn::LoadU(d, dw + i), g), d, dw + i);
    }
    for (; i < n; ++i) dw[i] += dy[i] * x[i] * inv;
  }
}

}  // namespace ruvdllm::train::layers_hwy::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm::train {
namespace layers_hwy {
HWY_EXPORT(SwigluBackward);
HWY_EXPORT(SoftmaxBackwardRow);
HWY_EXPORT(LogSoftmaxRow);
HWY_EXPORT(RmsNormForwardRow);
HWY_EXPORT(RmsNormBackwardRow);
}  // namespace layers_hwy

// The dispatch tables (and, where only one target is compiled, as on aarch64 with NEON alone,
// the target namespace HWY_DYNAMIC_DISPATCH names) are found through this directive: a
// qualified name would expand to N_NEON::layers_hwy::F there.
using namespace layers_hwy;

namespace detail {

void swiglu_backward_simd(float* dg, float* du, const float* dh, const float* g, const float* u,
                          int64_t n) {
  if (n < 0) fail("swiglu_backward: bad length {}", n);
  HWY_DYNAMIC_DISPATCH(SwigluBackward)(dg, du, dh, g, u, n);
}

template <typename T>
void swiglu_backward_scalar(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n) {
  if (n < 0) fail("swiglu_backward: bad length {}", n);
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T e = std::exp(-std::abs(gi));
    const T sig = gi >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
    if (dg) dg[i] += dh[i] * u[i] * (sig + gi * sig * (T(1) - sig));
    if (du) du[i] += dh[i] * gi * sig;
  }
}

void softmax_backward_row_simd(float* grad, const float* p, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SoftmaxBackwardRow)(grad, p, n);
}

template <typename T>
void softmax_backward_row_scalar(T* grad, const T* p, int64_t n) {
  T dot = 0;
  for (int64_t i = 0; i < n; ++i) dot += grad[i] * p[i];
  for (int64_t i = 0; i < n; ++i) grad[i] = p[i] * (grad[i] - dot);
}

double log_softmax_row_simd(const float* x, int64_t n, float* probs, float k) {
  return HWY_DYNAMIC_DISPATCH(LogSoftmaxRow)(x, n, probs, k);
}

template <typename T>
double log_softmax_row_scalar(const T* x, int64_t n, T* probs, T k) {
  const T max = *std::max_element(x, x + n);
  T sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T e = std::exp(x[i] - max);
    if (probs) probs[i] = e;
    sum += e;
  }
  if (probs) {
    const T scale = k / sum;
    for (int64_t i = 0; i < n; ++i) probs[i] *= scale;
  }
  return static_cast<double>(max) + std::log(static_cast<double>(sum));
}

float rmsnorm_forward_row_simd(float* y, const float* x, const float* w, int64_t n, float eps) {
  return HWY_DYNAMIC_DISPATCH(RmsNormForwardRow)(y, x, w, n, eps);
}

template <typename T>
T rmsnorm_forward_row_scalar(T* y, const T* x, const T* w, int64_t n, T eps) {
  double sum = 0;  // as the runtime's reference: the mean square in double
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const T inv = static_cast<T>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = w ? x[i] * inv * w[i] : x[i] * inv;
  return inv;
}

void rmsnorm_backward_row_simd(float* dx, float* dw, const float* dy, const float* x,
                               const float* w, float rstd, int64_t n) {
  HWY_DYNAMIC_DISPATCH(RmsNormBackwardRow)(dx, dw, dy, x, w, rstd, n);
}

template <typename T>
void rmsnorm_backward_row_scalar(T* dx, T* dw, const T* dy, const T* x, const T* w, T rstd,
                                 int64_t n) {
  if (dx) {
    T dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += (w ? dy[i] * w[i] : dy[i]) * x[i];
    const T k = dot * rstd * rstd * rstd / static_cast<T>(n);
    for (int64_t i = 0; i < n; ++i) dx[i] += (w ? dy[i] * w[i] : dy[i]) * rstd - k * x[i];
  }
  if (dw && w) {
    for (int64_t i = 0; i < n; ++i) dw[i] += dy[i] * x[i] * rstd;
  }
}

#define RUVDLLM_INSTANTIATE_ROW_KERNELS(T)                                                \
  template void swiglu_backward_scalar<T>(T*, T*, const T*, const T*, const T*, int64_t); \
  template void softmax_backward_row_scalar<T>(T*, const T*, int64_t);                    \
  template double log_softmax_row_scalar<T>(const T*, int64_t, T*, T);                    \
  template T rmsnorm_forward_row_scalar<T>(T*, const T*, const T*, int64_t, T);           \
  template void rmsnorm_backward_row_scalar<T>(T*, T*, const T*, const T*, const T*, T, int64_t);

RUVDLLM_INSTANTIATE_ROW_KERNELS(float)
RUVDLLM_INSTANTIATE_ROW_KERNELS(double)
#undef RUVDLLM_INSTANTIATE_ROW_KERNELS

}  // namespace detail
}  // namespace ruvdllm::train
#endif  // HWY_ONCE
