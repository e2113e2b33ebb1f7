// Vocabulary-row kernels for every Highway target, chosen at run time.
#include "ruvdllm/diffusion/row_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "ruvdllm/diffusion/rng.h"

// clang-format off
// foreach_target re-includes this file per target and must come first.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "diffusion/row_kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace ruvdllm {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// exp(-104) is below the smallest float subnormal, so clamping there changes no e_i and keeps
// e_i·d_i finite (0 rather than 0·−inf) for −inf logits.
constexpr float kExpFloor = -104.0f;
constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

RowTop2 Top2Impl(const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t lanes = hn::Lanes(d);
  const auto neg_inf = hn::Set(d, kNegInf);
  auto best = neg_inf;
  auto second = neg_inf;
  auto best_index = hn::Set(di, 0);
  auto index = hn::Iota(di, 0);
  const auto index_step = hn::Set(di, static_cast<int32_t>(lanes));
  int64_t i = 0;
  for (; i + static_cast<int64_t>(lanes) <= n; i += static_cast<int64_t>(lanes)) {
    auto v = hn::LoadU(d, x + i);
    v = hn::IfThenElse(hn::Eq(v, v), v, neg_inf);  // NaN never wins
    const auto greater = hn::Gt(v, best);
    second = hn::IfThenElse(greater, best, hn::Max(second, v));
    best = hn::IfThenElse(greater, v, best);
    best_index = hn::IfThenElse(hn::RebindMask(di, greater), index, best_index);
    index = hn::Add(index, index_step);
  }
  alignas(64) float lane_best[kMaxLanes];
  alignas(64) float lane_second[kMaxLanes];
  alignas(64) int32_t lane_index[kMaxLanes];
  hn::Store(best, d, lane_best);
  hn::Store(second, d, lane_second);
  hn::Store(best_index, di, lane_index);

  // Each lane's best and second are its two largest elements, so the row's two largest are
  // among them; the first index wins among lanes sharing the maximum.
  RowTop2 r{kNegInf, 0, kNegInf};
  size_t winner = lanes;
  for (size_t l = 0; l < lanes; ++l) {
    if (lane_best[l] > r.max ||
        (lane_best[l] == r.max && winner < lanes && lane_index[l] < r.argmax)) {
      r.max = lane_best[l];
      r.argmax = lane_index[l];
      winner = l;
    }
  }
  for (size_t l = 0; l < lanes; ++l) {
    r.second = std::max(r.second, lane_second[l]);
    if (l != winner) r.second = std::max(r.second, lane_best[l]);
  }
  bool found = winner < lanes;
  for (; i < n; ++i) {
    const float v = x[i];
    if (!(v > kNegInf)) continue;  // NaN and −inf
    if (!found || v > r.max) {
      if (found) r.second = r.max;
      r.max = v;
      r.argmax = i;
      found = true;
    } else {
      r.second = std::max(r.second, v);
    }
  }
  return r;
}

// exp(x) for x <= 0, 0 below kExpUnderflow. Leaner than hwy::Exp, which also serves positive
// and subnormal results: two-part ln 2 reduction (Cody–Waite) to r in [−ln2/2, ln2/2], a
// degree-5 polynomial for e^r with e^0 = 1 exactly (relative error 9.2e-8, fitted for this
// interval), and 2^n written straight into the exponent bits.
constexpr float kExpUnderflow = -87.0f;  // keeps 2^n normal

template <class D, class V>
HWY_INLINE V ExpNonPositive(D d, V x) {
  const hn::RebindToSigned<D> di;
  const auto clamped = hn::Max(x, hn::Set(d, kExpUnderflow));
  const auto n = hn::NearestInt(hn::Mul(clamped, hn::Set(d, 1.44269504088896341f)));
  const auto nf = hn::ConvertTo(d, n);
  auto r = hn::MulAdd(nf, hn::Set(d, -0.693359375f), clamped);
  r = hn::MulAdd(nf, hn::Set(d, 2.12194440e-4f), r);
  auto p = hn::Set(d, 8.2902710284e-03f);
  p = hn::MulAdd(p, r, hn::Set(d, 4.1897922643e-02f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6667636662e-01f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.9999149598e-01f));
  p = hn::MulAdd(p, r, hn::Set(d, 9.9999970712e-01f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.0f));
  const auto scale = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(n, hn::Set(di, 127))));
  return hn::IfThenElseZero(hn::Ge(x, hn::Set(d, kExpUnderflow)), hn::Mul(p, scale));
}

ExpSums ExpSumsImpl(const float* x, int64_t n, float max, float inv_temp, float* exps) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const auto vmax = hn::Set(d, max);
  const auto vinv = hn::Set(d, inv_temp);
  const auto floor = hn::Set(d, kExpFloor);
  auto sum0 = hn::Zero(d), sum1 = hn::Zero(d), w0 = hn::Zero(d), w1 = hn::Zero(d);
  auto body = [&](auto v, auto& sum, auto& w) {
    const auto dev = hn::Max(hn::Mul(hn::Sub(v, vmax), vinv), floor);
    const auto e = ExpNonPositive(d, dev);
    sum = hn::Add(sum, e);
    w = hn::MulAdd(e, dev, w);
    return e;
  };
  const auto L = static_cast<int64_t>(lanes);
  ExpSums r;
  // Float lanes are flushed into doubles every kFlush elements, so rounding error stays that of
  // a short sum even when the target has few lanes.
  constexpr int64_t kFlush = 1024;
  auto flush = [&] {
    r.sum += static_cast<double>(hn::GetLane(hn::SumOfLanes(d, hn::Add(sum0, sum1))));
    r.weighted += static_cast<double>(hn::GetLane(hn::SumOfLanes(d, hn::Add(w0, w1))));
    sum0 = sum1 = w0 = w1 = hn::Zero(d);
  };
  int64_t i = 0;
  while (i + 2 * L <= n) {
    const int64_t stop = std::min(n, i + kFlush);
    for (; i + 2 * L <= stop; i += 2 * L) {
      const auto e0 = body(hn::LoadU(d, x + i), sum0, w0);
      const auto e1 = body(hn::LoadU(d, x + i + L), sum1, w1);
      if (exps) {
        hn::StoreU(e0, d, exps + i);
        hn::StoreU(e1, d, exps + i + L);
      }
    }
    flush();
  }
  for (; i < n; i += L) {
    // The tail is padded with −inf, which contributes e = 0.
    alignas(64) float buf[kMaxLanes];
    const int64_t count = std::min(L, n - i);
    std::fill(buf, buf + lanes, kNegInf);
    std::memcpy(buf, x + i, static_cast<size_t>(count) * sizeof(float));
    const auto e = body(hn::Load(d, buf), sum0, w0);
    if (exps) {
      hn::Store(e, d, buf);
      std::memcpy(exps + i, buf, static_cast<size_t>(count) * sizeof(float));
    }
  }
  flush();
  return r;
}

int64_t FindGreaterImpl(const float* x, int64_t begin, int64_t n, float threshold) {
  const hn::ScalableTag<float> d;
  const auto L = static_cast<int64_t>(hn::Lanes(d));
  const auto thr = hn::Set(d, threshold);
  int64_t i = begin;
  for (; i + L <= n; i += L) {
    const auto m = hn::Gt(hn::LoadU(d, x + i), thr);
    if (!hn::AllFalse(d, m)) return i + hn::FindFirstTrue(d, m);
  }
  for (; i < n; ++i) {
    if (x[i] > threshold) return i;
  }
  return n;
}

// Lanes of `e` (at indices `index`) that the selection holds.
template <class D, class DI, class V, class VI>
HWY_INLINE auto Selected(D d, DI di, V e, VI index, float threshold, int64_t tie_index) {
  const auto thr = hn::Set(d, threshold);
  // index <= tie_index, as index < tie_index + 1 (1.0.3 has no integer <=).
  const auto tie_end = static_cast<int32_t>(std::clamp<int64_t>(tie_index + 1, 0, INT32_MAX));
  const auto tie = hn::RebindMask(d, hn::Lt(index, hn::Set(di, tie_end)));
  return hn::Or(hn::Gt(e, thr), hn::And(hn::Eq(e, thr), tie));
}

MassAbove MassAboveImpl(const float* e, int64_t n, float threshold) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const auto L = static_cast<int64_t>(hn::Lanes(d));
  const auto thr = hn::Set(d, threshold);
  MassAbove r;
  auto mass = hn::Zero(d);
  auto count = hn::Zero(di);
  int64_t i = 0;
  while (i + L <= n) {
    // Flushed into double every 1024 entries, as in ExpSumsImpl.
    const int64_t stop = std::min(n, i + 1024);
    for (; i + L <= stop; i += L) {
      const auto v = hn::LoadU(d, e + i);
      const auto above = hn::Gt(v, thr);
      mass = hn::Add(mass, hn::IfThenElseZero(above, v));
      count = hn::Sub(count, hn::VecFromMask(di, hn::RebindMask(di, above)));  // true lanes are −1
    }
    r.mass += static_cast<double>(hn::GetLane(hn::SumOfLanes(d, mass)));
    r.count += hn::GetLane(hn::SumOfLanes(di, count));
    mass = hn::Zero(d);
    count = hn::Zero(di);
  }
  for (; i < n; ++i) {
    if (e[i] > threshold) {
      r.mass += e[i];
      ++r.count;
    }
  }
  return r;
}

int64_t CollectRangeImpl(const float* e, int64_t n, float lo, float hi, int32_t* out) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t lanes = hn::Lanes(d);
  const auto L = static_cast<int64_t>(lanes);
  const auto vlo = hn::Set(d, lo), vhi = hn::Set(d, hi);
  auto index = hn::Iota(di, 0);
  const auto index_step = hn::Set(di, static_cast<int32_t>(lanes));
  int64_t count = 0, i = 0;
  for (; i + L <= n; i += L) {
    const auto v = hn::LoadU(d, e + i);
    const auto in = hn::And(hn::Gt(v, vlo), hn::Le(v, vhi));
    if (!hn::AllFalse(d, in)) {
      count +=
          static_cast<int64_t>(hn::CompressStore(index, hn::RebindMask(di, in), di, out + count));
    }
    index = hn::Add(index, index_step);
  }
  for (; i < n; ++i) {
    if (e[i] > lo && e[i] <= hi) out[count++] = static_cast<int32_t>(i);
  }
  return count;
}

int64_t CumulativeSearchImpl(const float* e, int64_t n, double target, Selection sel) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const auto L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t chunk = 4 * L;
  const auto index_step = hn::Set(di, static_cast<int32_t>(L));
  auto index = hn::Iota(di, 0);
  auto masked_load = [&](int64_t at) {
    const auto v = hn::LoadU(d, e + at);
    const auto keep = Selected(d, di, v, index, sel.threshold, sel.tie_index);
    index = hn::Add(index, index_step);
    return hn::IfThenElseZero(keep, v);
  };
  double running = 0;
  int64_t i = 0;
  // Whole chunks are skipped by their vector sum; the chunk that crosses the target is walked
  // one entry at a time (and the walk simply continues should rounding leave it short).
  while (i < n) {
    if (i + chunk <= n) {
      const auto a = masked_load(i), b = masked_load(i + L);
      const auto c = masked_load(i + 2 * L), e3 = masked_load(i + 3 * L);
      const double chunk_sum = static_cast<double>(
          hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a, b), hn::Add(c, e3)))));
      if (running + chunk_sum <= target) {
        running += chunk_sum;
        i += chunk;
        continue;
      }
    }
    const int64_t stop = std::min(n, i + chunk);
    for (; i < stop; ++i) {
      if (!sel.contains(e[i], i)) continue;
      running += e[i];
      if (running > target && e[i] > 0) return i;
    }
    index = hn::Add(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(i)));
  }
  for (int64_t j = n - 1; j >= 0; --j) {
    if (e[j] > 0 && sel.contains(e[j], j)) return j;
  }
  return 0;
}

template <class D, class V>
HWY_INLINE V Hash32(D, V x) {
  x = hn::Xor(x, hn::ShiftRight<16>(x));
  x = hn::Mul(x, hn::Set(D(), 0x7FEB352Du));
  x = hn::Xor(x, hn::ShiftRight<15>(x));
  x = hn::Mul(x, hn::Set(D(), 0x846CA68Bu));
  return hn::Xor(x, hn::ShiftRight<16>(x));
}

GumbelMax GumbelMaxImpl(const float* x, int64_t n, float inv_temp, uint64_t key, const float* e,
                        Selection sel) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const hn::RebindToUnsigned<decltype(d)> du;
  const size_t lanes = hn::Lanes(d);
  const auto L = static_cast<int64_t>(lanes);
  const auto key_lo = hn::Set(du, static_cast<uint32_t>(key));
  const auto key_hi = hn::Set(du, static_cast<uint32_t>(key >> 32));
  const auto vinv = hn::Set(d, inv_temp);
  const auto half = hn::Set(d, 0.5f);
  const auto scale = hn::Set(d, 0x1p-23f);
  const auto neg_inf = hn::Set(d, kNegInf);
  auto best = neg_inf;
  auto best_index = hn::Set(di, 0);
  auto index = hn::Iota(di, 0);
  const auto index_step = hn::Set(di, static_cast<int32_t>(lanes));
  auto body = [&](auto v, const float* weights) {
    const auto counter = hn::BitCast(du, index);
    const auto h = Hash32(du, hn::Add(Hash32(du, hn::Xor(counter, key_lo)), key_hi));
    const auto bits = hn::BitCast(di, hn::ShiftRight<9>(h));
    const auto u = hn::Mul(hn::Add(hn::ConvertTo(d, bits), half), scale);
    const auto g = hn::Neg(hn::Log(d, hn::Neg(hn::Log(d, u))));
    auto score = hn::MulAdd(v, vinv, g);
    score = hn::IfThenElse(hn::Eq(score, score), score, neg_inf);
    if (weights) {
      const auto w = hn::LoadU(d, weights);
      score =
          hn::IfThenElse(Selected(d, di, w, index, sel.threshold, sel.tie_index), score, neg_inf);
    }
    const auto greater = hn::Gt(score, best);
    best = hn::IfThenElse(greater, score, best);
    best_index = hn::IfThenElse(hn::RebindMask(di, greater), index, best_index);
    index = hn::Add(index, index_step);
  };
  int64_t i = 0;
  for (; i + L <= n; i += L) body(hn::LoadU(d, x + i), e ? e + i : nullptr);
  if (i < n) {
    // Padding lanes score −inf (and, when weights are given, weight −1: never selected).
    alignas(64) float buf[kMaxLanes];
    alignas(64) float wbuf[kMaxLanes];
    std::fill(buf, buf + lanes, kNegInf);
    std::fill(wbuf, wbuf + lanes, -2.0f);
    std::memcpy(buf, x + i, static_cast<size_t>(n - i) * sizeof(float));
    if (e) std::memcpy(wbuf, e + i, static_cast<size_t>(n - i) * sizeof(float));
    body(hn::Load(d, buf), e ? wbuf : nullptr);
  }
  alignas(64) float lane_best[kMaxLanes];
  alignas(64) int32_t lane_index[kMaxLanes];
  hn::Store(best, d, lane_best);
  hn::Store(best_index, di, lane_index);
  GumbelMax r{0, kNegInf};
  for (size_t l = 0; l < lanes; ++l) {
    if (lane_best[l] > r.value ||
        (lane_best[l] == r.value && lane_best[l] > kNegInf && lane_index[l] < r.index)) {
      r.value = lane_best[l];
      r.index = lane_index[l];
    }
  }
  return r;
}

void CfgCombineImpl(float* cond, const float* uncond, int64_t n, float scale) {
  const hn::ScalableTag<float> d;
  const auto L = static_cast<int64_t>(hn::Lanes(d));
  const auto w = hn::Set(d, scale + 1.0f);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const auto u = hn::LoadU(d, uncond + i);
    hn::StoreU(hn::MulAdd(hn::Sub(hn::LoadU(d, cond + i), u), w, u), d, cond + i);
  }
  for (; i < n; ++i) cond[i] = uncond[i] + (scale + 1.0f) * (cond[i] - uncond[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace ruvdllm
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm {

HWY_EXPORT(Top2Impl);
HWY_EXPORT(ExpSumsImpl);
HWY_EXPORT(FindGreaterImpl);
HWY_EXPORT(CumulativeSearchImpl);
HWY_EXPORT(MassAboveImpl);
HWY_EXPORT(CollectRangeImpl);
HWY_EXPORT(GumbelMaxImpl);
HWY_EXPORT(CfgCombineImpl);

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kExpFloor = -104.0f;
}  // namespace

RowTop2 row_top2(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(Top2Impl)(x, n); }

RowTop2 row_top2_reference(const float* x, int64_t n) {
  RowTop2 r{kNegInf, 0, kNegInf};
  bool found = false;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (std::isnan(v) || v == kNegInf) continue;
    if (!found || v > r.max) {
      if (found) r.second = r.max;
      r.max = v;
      r.argmax = i;
      found = true;
    } else if (v > r.second) {
      r.second = v;
    }
  }
  return r;
}

ExpSums row_exp_sums(const float* x, int64_t n, float max, float inv_temp, float* exps) {
  return HWY_DYNAMIC_DISPATCH(ExpSumsImpl)(x, n, max, inv_temp, exps);
}

ExpSums row_exp_sums_reference(const float* x, int64_t n, float max, float inv_temp, float* exps) {
  ExpSums r;
  for (int64_t i = 0; i < n; ++i) {
    const float dev = std::max((x[i] - max) * inv_temp, kExpFloor);
    const float e = std::exp(dev);
    r.sum += e;
    r.weighted += static_cast<double>(e) * dev;
    if (exps) exps[i] = e;
  }
  return r;
}

int64_t find_greater(const float* x, int64_t begin, int64_t n, float threshold) {
  return HWY_DYNAMIC_DISPATCH(FindGreaterImpl)(x, begin, n, threshold);
}

int64_t find_greater_reference(const float* x, int64_t begin, int64_t n, float threshold) {
  for (int64_t i = begin; i < n; ++i) {
    if (x[i] > threshold) return i;
  }
  return n;
}

MassAbove mass_above(const float* e, int64_t n, float threshold) {
  return HWY_DYNAMIC_DISPATCH(MassAboveImpl)(e, n, threshold);
}

MassAbove mass_above_reference(const float* e, int64_t n, float threshold) {
  MassAbove r;
  for (int64_t i = 0; i < n; ++i) {
    if (e[i] > threshold) {
      r.mass += e[i];
      ++r.count;
    }
  }
  return r;
}

int64_t collect_range(const float* e, int64_t n, float lo, float hi, int32_t* out) {
  return HWY_DYNAMIC_DISPATCH(CollectRangeImpl)(e, n, lo, hi, out);
}

int64_t collect_range_reference(const float* e, int64_t n, float lo, float hi, int32_t* out) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (e[i] > lo && e[i] <= hi) out[count++] = static_cast<int32_t>(i);
  }
  return count;
}

int64_t cumulative_search(const float* e, int64_t n, double target, Selection selection) {
  return HWY_DYNAMIC_DISPATCH(CumulativeSearchImpl)(e, n, target, selection);
}

int64_t cumulative_search_reference(const float* e, int64_t n, double target, Selection selection) {
  double running = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!selection.contains(e[i], i)) continue;
    running += e[i];
    if (running > target && e[i] > 0) return i;
  }
  for (int64_t j = n - 1; j >= 0; --j) {
    if (e[j] > 0 && selection.contains(e[j], j)) return j;
  }
  return 0;
}

float gumbel_noise(uint64_t key, uint32_t i) { return -std::log(-std::log(vocab_uniform(key, i))); }

GumbelMax row_gumbel_max(const float* x, int64_t n, float inv_temp, uint64_t key, const float* e,
                         Selection selection) {
  return HWY_DYNAMIC_DISPATCH(GumbelMaxImpl)(x, n, inv_temp, key, e, selection);
}

GumbelMax row_gumbel_max_reference(const float* x, int64_t n, float inv_temp, uint64_t key,
                                   const float* e, Selection selection) {
  GumbelMax r{0, kNegInf};
  for (int64_t i = 0; i < n; ++i) {
    if (e && !selection.contains(e[i], i)) continue;
    const float score = x[i] * inv_temp + gumbel_noise(key, static_cast<uint32_t>(i));
    if (score > r.value) {
      r.value = score;
      r.index = i;
    }
  }
  return r;
}

void cfg_combine(float* cond, const float* uncond, int64_t n, float scale) {
  HWY_DYNAMIC_DISPATCH(CfgCombineImpl)(cond, uncond, n, scale);
}

void cfg_combine_reference(float* cond, const float* uncond, int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) cond[i] = uncond[i] + (scale + 1.0f) * (cond[i] - uncond[i]);
}

}  // namespace ruvdllm
#endif  // HWY_ONCE
