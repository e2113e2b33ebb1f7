// Portable inner kernels of the quantized matmul (every Highway target), the SIMD activation
// quantizer shared by all kernels, and the choice of kernel table at run time.
//
// Portable panel layout, one strip of kStrip weight rows after another; each strip holds one
// record per weight block (32 values, or 256 for K-quants):
//   int8  levels[block][kStrip]    signed true levels, element-major so a load covers all rows
//   float scale[groups][kStrip]    d (Q8_0/Q4_0) or d*scale[g] (K-quants)
//   float minc[groups][kStrip]     dmin*min[g]; Q4_K/Q5_K only
#include "kernels/matmul_dot.h"

#include <cmath>
#include <cstring>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_dot.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace ruvdllm::matmul_detail {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace {

// ------------------------------ activation quantization ---------------------------------

// Scales of every block of a row: d = amax / 127 and id = 1 / d (0 for an all-zero block),
// exactly as quantize_row_reference computes them. The divisions of all blocks run as
// vectors, off the per-block critical path.
void BlockScales(const float* x, int64_t k, int bs, float* d, float* id) {
  const hn::CappedTag<float, 16> df;
  const int lanes = static_cast<int>(hn::Lanes(df));
  const int64_t blocks = k / bs;
  for (int64_t b = 0; b < blocks; ++b) {
    auto amax = hn::Abs(hn::LoadU(df, x + b * bs));
    for (int i = lanes; i < bs; i += lanes) amax = hn::Max(amax, hn::Abs(hn::LoadU(df, x + b * bs + i)));
    d[b] = hn::GetLane(hn::MaxOfLanes(df, amax));
  }
  const auto v127 = hn::Set(df, 127.0f), one = hn::Set(df, 1.0f);
  int64_t b = 0;
  for (; b + lanes <= blocks; b += lanes) {
    const auto vd = hn::Div(hn::LoadU(df, d + b), v127);
    hn::StoreU(vd, df, d + b);
    hn::StoreU(hn::IfThenElseZero(hn::Ne(vd, hn::Zero(df)), hn::Div(one, vd)), df, id + b);
  }
  for (; b < blocks; ++b) {
    d[b] = d[b] / 127.0f;
    id[b] = d[b] != 0.0f ? 1.0f / d[b] : 0.0f;
  }
}

// q = round-half-away(x * id) clamped to ±127, for n (a multiple of 16) values; returns Σq.
int32_t QuantizeValues(const float* x, int n, float id, int8_t* q) {
  const hn::CappedTag<float, 16> df;
  const hn::Rebind<int32_t, decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const int lanes = static_cast<int>(hn::Lanes(df));
  const auto vid = hn::Set(df, id);
  const auto half = hn::Set(df, 0.5f), one = hn::Set(df, 1.0f);
  const auto lo = hn::Set(df, -127.0f), hi = hn::Set(df, 127.0f);
  auto sum = hn::Zero(di);
  for (int i = 0; i < n; i += lanes) {
    const auto v = hn::Mul(hn::LoadU(df, x + i), vid);
    // std::round rounds halves away from zero; Highway's Round goes to even.
    const auto t = hn::Trunc(v);
    const auto r = hn::Add(t, hn::IfThenElseZero(hn::Ge(hn::Abs(hn::Sub(v, t)), half), hn::CopySignToAbs(one, v)));
    const auto qi = hn::ConvertTo(di, hn::Min(hn::Max(r, lo), hi));
    sum = hn::Add(sum, qi);
    hn::StoreU(hn::DemoteTo(d8, qi), d8, q + i);
  }
  return hn::GetLane(hn::SumOfLanes(di, sum));
}

void QuantizeActivationRow(const ActLayout& layout, int32_t offset, const float* x, uint8_t* group,
                           int64_t lane) {
  const int64_t g = layout.group_rows, k = layout.k;
  const bool q8_0 = layout.type == TensorType::Q8_0;
  const int bs = q8_0 ? kQK0 : kQKK;
  const int64_t blocks = k / bs;
  auto* qs = reinterpret_cast<int8_t*>(group);
  auto* d = reinterpret_cast<float*>(group + layout.d_offset);
  constexpr int64_t kMaxBlocks = 1024;  // scales of up to 32768 values per pass
  alignas(64) float scale[kMaxBlocks], inverse[kMaxBlocks];
  alignas(64) int8_t q[kQKK];
  for (int64_t b0 = 0; b0 < blocks; b0 += kMaxBlocks) {
    const int64_t nb = blocks - b0 < kMaxBlocks ? blocks - b0 : kMaxBlocks;
    BlockScales(x + b0 * bs, nb * bs, bs, scale, inverse);
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t b = b0 + j;
      const int32_t sum = QuantizeValues(x + b * bs, bs, inverse[j], q);
      // Quad i of this row goes to lane `lane` of quad slot i.
      for (int i = 0; i < bs / 4; ++i) std::memcpy(qs + ((b * bs / 4 + i) * g + lane) * 4, q + 4 * i, 4);
      if (q8_0) {
        // The dot product uses the scale as stored in a Q8_0 block: rounded to f16.
        d[b * g + lane] = f16_to_f32(f32_to_f16(scale[j]));
        reinterpret_cast<int32_t*>(group + layout.corr_offset)[b * g + lane] = -offset * sum;
        continue;
      }
      d[b * g + lane] = scale[j];
      int16_t s16[16];
      for (int p = 0; p < 16; ++p) {
        int s = 0;
        for (int i = 0; i < 16; ++i) s += q[16 * p + i];
        s16[p] = static_cast<int16_t>(s);
      }
      auto* sum16 = reinterpret_cast<int16_t*>(group + layout.sum16_offset);
      auto* sum32 = reinterpret_cast<int16_t*>(group + layout.sum32_offset);
      for (int p = 0; p < 8; ++p) {
        int16_t* pair = sum16 + ((b * 8 + p) * g + lane) * 2;
        pair[0] = s16[2 * p];
        pair[1] = s16[2 * p + 1];
      }
      for (int p = 0; p < 4; ++p) {
        int16_t* pair = sum32 + ((b * 4 + p) * g + lane) * 2;
        pair[0] = static_cast<int16_t>(s16[4 * p] + s16[4 * p + 1]);
        pair[1] = static_cast<int16_t>(s16[4 * p + 2] + s16[4 * p + 3]);
      }
    }
  }
}

// ------------------------------ portable panel ------------------------------------------

constexpr int64_t kStrip = 8;
constexpr int64_t kPanelRows = 32;

int64_t BlockSize(TensorType t) { return is_k_quant(t) ? kQKK : kQK0; }
int64_t Groups(TensorType t) { return BlockSize(t) / group_size(t); }
bool HasMins(TensorType t) { return t == TensorType::Q4_K || t == TensorType::Q5_K; }

size_t RecordBytes(TensorType t) {
  const size_t groups = static_cast<size_t>(Groups(t));
  return static_cast<size_t>(BlockSize(t) * kStrip) +
         groups * kStrip * sizeof(float) * (HasMins(t) ? 2 : 1);
}

size_t PortablePanelBytes(TensorType type, int64_t k) {
  return static_cast<size_t>(kPanelRows / kStrip) * static_cast<size_t>(k / BlockSize(type)) *
         RecordBytes(type);
}

int32_t PortableActOffset(TensorType) { return 0; }  // levels are stored signed

void PortableUnpack(TensorType type, const uint8_t* w, size_t w_stride, int64_t rows, int64_t k,
                    uint8_t* panel) {
  const int64_t bs = BlockSize(type), blocks = k / bs, groups = Groups(type);
  const size_t wblock = type_traits(type).block_bytes, rec = RecordBytes(type);
  std::memset(panel, 0, PortablePanelBytes(type, k));
  DecodedBlock dec;
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t strip = row / kStrip, lane = row % kStrip;
    for (int64_t b = 0; b < blocks; ++b) {
      decode_block(type, w + static_cast<size_t>(row) * w_stride + static_cast<size_t>(b) * wblock,
                   &dec);
      uint8_t* r = panel + (static_cast<size_t>(strip * blocks + b)) * rec;
      auto* levels = reinterpret_cast<int8_t*>(r);
      for (int64_t i = 0; i < bs; ++i) levels[i * kStrip + lane] = dec.levels[i];
      auto* scale = reinterpret_cast<float*>(r + bs * kStrip);
      auto* minc = scale + groups * kStrip;
      for (int64_t g = 0; g < groups; ++g) {
        if (is_k_quant(type)) {
          scale[g * kStrip + lane] = dec.d * static_cast<float>(dec.scale[g]);
          if (HasMins(type)) minc[g * kStrip + lane] = dec.dmin * static_cast<float>(dec.min[g]);
        } else {
          scale[g * kStrip + lane] = dec.d;
        }
      }
    }
  }
}

#if HWY_TARGET == HWY_SCALAR

// One row of the strip at a time: this target has no 128-bit vectors.
void StripTimesRow(TensorType type, const uint8_t* strip, int64_t blocks, const int8_t* x,
                   const float* dx, const int16_t* sum32, float* out) {
  const int64_t bs = BlockSize(type), groups = Groups(type), gs = group_size(type);
  const size_t rec = RecordBytes(type);
  for (int64_t lane = 0; lane < kStrip; ++lane) {
    float acc = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* r = strip + static_cast<size_t>(b) * rec;
      const auto* levels = reinterpret_cast<const int8_t*>(r);
      const auto* scale = reinterpret_cast<const float*>(r + bs * kStrip);
      const float* minc = scale + groups * kStrip;
      float block = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t dot = 0;
        for (int64_t i = g * gs; i < (g + 1) * gs; ++i)
          dot += levels[i * kStrip + lane] * x[b * bs + i];
        block += static_cast<float>(dot) * scale[g * kStrip + lane];
        if (HasMins(type))
          block -= minc[g * kStrip + lane] * static_cast<float>(sum32[b * groups + g]);
      }
      acc += block * dx[b];
    }
    out[lane] = acc;
  }
}

#else

// Weight levels times activations for one group of gs values of 8 rows: the sums of two
// int16 products fit int16 (|level| <= 128, |q| <= 127), then widen and accumulate.
template <class D32>
void GroupDot(D32 d32, const int8_t* levels, const int8_t* x, int64_t gs, hn::Vec<D32>& lo,
              hn::Vec<D32>& hi) {
  const hn::FixedTag<int16_t, 8> d16;
  const hn::FixedTag<int8_t, 8> d8;
  const hn::FixedTag<int16_t, 4> d16h;
  lo = hn::Zero(d32);
  hi = hn::Zero(d32);
  for (int64_t i = 0; i < gs; i += 2) {
    const auto w0 = hn::PromoteTo(d16, hn::LoadU(d8, levels + i * kStrip));
    const auto w1 = hn::PromoteTo(d16, hn::LoadU(d8, levels + (i + 1) * kStrip));
    const auto p = hn::Add(hn::Mul(w0, hn::Set(d16, static_cast<int16_t>(x[i]))),
                           hn::Mul(w1, hn::Set(d16, static_cast<int16_t>(x[i + 1]))));
    lo = hn::Add(lo, hn::PromoteTo(d32, hn::LowerHalf(d16h, p)));
    hi = hn::Add(hi, hn::PromoteTo(d32, hn::UpperHalf(d16h, p)));
  }
}

void StripTimesRow(TensorType type, const uint8_t* strip, int64_t blocks, const int8_t* x,
                   const float* dx, const int16_t* sum32, float* out) {
  const hn::FixedTag<int32_t, 4> d32;
  const hn::FixedTag<float, 4> df;
  const int64_t bs = BlockSize(type), groups = Groups(type), gs = group_size(type);
  const size_t rec = RecordBytes(type);
  auto acc_lo = hn::Zero(df), acc_hi = hn::Zero(df);
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* r = strip + static_cast<size_t>(b) * rec;
    const auto* levels = reinterpret_cast<const int8_t*>(r);
    const auto* scale = reinterpret_cast<const float*>(r + bs * kStrip);
    const float* minc = scale + groups * kStrip;
    auto blk_lo = hn::Zero(df), blk_hi = hn::Zero(df);
    for (int64_t g = 0; g < groups; ++g) {
      hn::Vec<decltype(d32)> lo, hi;
      GroupDot(d32, levels + g * gs * kStrip, x + b * bs + g * gs, gs, lo, hi);
      const float* s = scale + g * kStrip;
      blk_lo = hn::MulAdd(hn::ConvertTo(df, lo), hn::LoadU(df, s), blk_lo);
      blk_hi = hn::MulAdd(hn::ConvertTo(df, hi), hn::LoadU(df, s + 4), blk_hi);
      if (HasMins(type)) {
        const auto qsum = hn::Set(df, static_cast<float>(sum32[b * groups + g]));
        const float* mc = minc + g * kStrip;
        blk_lo = hn::NegMulAdd(hn::LoadU(df, mc), qsum, blk_lo);
        blk_hi = hn::NegMulAdd(hn::LoadU(df, mc + 4), qsum, blk_hi);
      }
    }
    const auto vdx = hn::Set(df, dx[b]);
    acc_lo = hn::MulAdd(blk_lo, vdx, acc_lo);
    acc_hi = hn::MulAdd(blk_hi, vdx, acc_hi);
  }
  hn::StoreU(acc_lo, df, out);
  hn::StoreU(acc_hi, df, out + 4);
}

#endif  // HWY_TARGET == HWY_SCALAR

void PortableMultiply(TensorType type, const uint8_t* panel, const ActLayout& layout,
                      const uint8_t* act, int64_t m, float* y, int64_t ldy, int64_t cols) {
  // One row per activation group, so every array of the group is a plain row.
  const int64_t blocks = layout.k / BlockSize(type);
  const size_t strip_bytes = static_cast<size_t>(blocks) * RecordBytes(type);
  for (int64_t s = 0; s * kStrip < cols; ++s) {
    const int64_t valid = cols - s * kStrip < kStrip ? cols - s * kStrip : kStrip;
    for (int64_t r = 0; r < m; ++r) {
      const uint8_t* a = act + static_cast<size_t>(r) * layout.group_bytes;
      const auto* sum32 = reinterpret_cast<const int16_t*>(a + layout.sum32_offset);
      float out[kStrip];
      StripTimesRow(type, panel + static_cast<size_t>(s) * strip_bytes, blocks,
                    reinterpret_cast<const int8_t*>(a), reinterpret_cast<const float*>(a + layout.d_offset),
                    sum32, out);
      std::memcpy(y + r * ldy + s * kStrip, out, static_cast<size_t>(valid) * sizeof(float));
    }
  }
}

const QuantKernels* GetPortableKernels() {
  static const QuantKernels kernels = [] {
    QuantKernels k;
    k.name = "portable";
    k.panel_rows = kPanelRows;
    k.act_group_rows = [](TensorType) -> int64_t { return 1; };
    k.act_offset = PortableActOffset;
    k.panel_bytes = PortablePanelBytes;
    k.unpack = PortableUnpack;
    k.multiply = PortableMultiply;
    return k;
  }();
  return &kernels;
}

int64_t ChosenTarget() { return HWY_TARGET; }

}  // namespace

}  // namespace HWY_NAMESPACE
}  // namespace ruvdllm::matmul_detail
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm::matmul_detail {

HWY_EXPORT(QuantizeActivationRow);
HWY_EXPORT(GetPortableKernels);
HWY_EXPORT(ChosenTarget);

void quantize_activation_row(const ActLayout& layout, int32_t offset, const float* x,
                             uint8_t* group, int64_t lane) {
  HWY_DYNAMIC_DISPATCH(QuantizeActivationRow)(layout, offset, x, group, lane);
}

const QuantKernels* portable_kernels() { return HWY_DYNAMIC_DISPATCH(GetPortableKernels)(); }

const QuantKernels& best_quant_kernels() {
  if (const QuantKernels* k = vnni_kernels()) return *k;
  if (const QuantKernels* k = avx2_kernels()) return *k;
  return *portable_kernels();
}

const char* chosen_target_name() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(ChosenTarget)()); }

}  // namespace ruvdllm::matmul_detail
#endif  // HWY_ONCE
