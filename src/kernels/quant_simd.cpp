// Vector (de)quantization, compiled once per SIMD target by Highway and chosen at run time.
// Every path reproduces quant_reference.cpp bit for bit: the same float operations in the same
// order (no fused multiply-add), and Q8 rounding done half away from zero exactly as
// std::round does.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quant_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstring>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/kernels/quant.h"

#ifndef RUVDLLM_QUANT_SIMD_SHARED
#define RUVDLLM_QUANT_SIMD_SHARED
namespace ruvdllm::detail {
void k_scale_min(const uint8_t* packed, int j, int* scale, int* min);  // quant_reference_k.cpp
}  // namespace ruvdllm::detail
#endif

HWY_BEFORE_NAMESPACE();
namespace ruvdllm {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Highway 1.0 emulates f16 conversion below AVX2 by truncating and without inf/NaN handling,
// so only targets with F16C convert in vectors.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define RUVDLLM_VECTOR_F16 1
#else
#define RUVDLLM_VECTOR_F16 0
#endif

void DequantizeF16(const uint16_t* in, float* y, int64_t n) {
  int64_t i = 0;
#if RUVDLLM_VECTOR_F16
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  for (; i + lanes <= n; i += lanes) {
    const auto h = hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(in + i));
    hn::StoreU(hn::PromoteTo(df, h), df, y + i);
  }
#endif
  for (; i < n; ++i) y[i] = f16_to_f32(in[i]);
}

void QuantizeF16(const float* x, uint16_t* out, int64_t n) {
  int64_t i = 0;
#if RUVDLLM_VECTOR_F16
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::DemoteTo(dh, hn::LoadU(df, x + i)), dh,
               reinterpret_cast<hwy::float16_t*>(out + i));
  }
#endif
  for (; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

void DequantizeBF16(const uint16_t* in, float* y, int64_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto bits = hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, in + i)));
    hn::StoreU(hn::BitCast(df, bits), df, y + i);
  }
  for (; i < n; ++i) y[i] = bf16_to_f32(in[i]);
}

// Highway's own bf16 demotion truncates; this rounds to nearest even like f32_to_bf16.
void QuantizeBF16(const float* x, uint16_t* out, int64_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::RebindToSigned<decltype(df)> di32;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const auto abs_mask = hn::Set(du32, 0x7fffffffu);
  const auto inf_bits = hn::Set(du32, 0x7f800000u);
  const auto round_bias = hn::Set(du32, 0x7fffu);
  const auto one = hn::Set(du32, 1u);
  const auto quiet = hn::Set(du32, 0x40u);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto bits = hn::BitCast(du32, hn::LoadU(df, x + i));
    const auto upper = hn::ShiftRight<16>(bits);
    const auto rounded =
        hn::ShiftRight<16>(hn::Add(bits, hn::Add(round_bias, hn::And(upper, one))));
    const auto is_nan = hn::Gt(hn::And(bits, abs_mask), inf_bits);
    const auto result = hn::IfThenElse(is_nan, hn::Or(upper, quiet), rounded);
    hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di32, result)), du16, out + i);
  }
  for (; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

void DequantizeQ8_0(const BlockQ8_0* in, float* y, int64_t blocks) {
  const hn::CappedTag<float, kQK0> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t lanes = hn::Lanes(df);
  for (int64_t b = 0; b < blocks; ++b, y += kQK0) {
    const auto scale = hn::Set(df, f16_to_f32(in[b].d));
    for (size_t i = 0; i < kQK0; i += lanes) {
      const auto q = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, in[b].qs + i)));
      hn::StoreU(hn::Mul(q, scale), df, y + i);
    }
  }
}

void DequantizeQ4_0(const BlockQ4_0* in, float* y, int64_t blocks) {
  const hn::CappedTag<float, kQK0 / 2> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> du8;
  const size_t lanes = hn::Lanes(df);
  const auto low4 = hn::Set(di, 0xF);
  const auto eight = hn::Set(di, 8);
  for (int64_t b = 0; b < blocks; ++b, y += kQK0) {
    const auto scale = hn::Set(df, f16_to_f32(in[b].d));
    for (size_t i = 0; i < kQK0 / 2; i += lanes) {
      const auto bytes = hn::PromoteTo(di, hn::LoadU(du8, in[b].qs + i));
      const auto lo = hn::Sub(hn::And(bytes, low4), eight);
      const auto hi = hn::Sub(hn::ShiftRight<4>(bytes), eight);
      hn::StoreU(hn::Mul(hn::ConvertTo(df, lo), scale), df, y + i);
      hn::StoreU(hn::Mul(hn::ConvertTo(df, hi), scale), df, y + kQK0 / 2 + i);
    }
  }
}

// Q4_K and Q5_K share the group structure: 64 values per group, the first 32 from low
// nibbles with sub-block scale 2g, the next 32 from high nibbles with scale 2g+1.
template <bool kFifthBit, class Block>
void DequantizeAffineK(const Block* in, float* y, int64_t blocks) {
  const hn::CappedTag<float, 32> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> du8;
  const size_t lanes = hn::Lanes(df);
  const auto low4 = hn::Set(di, 0xF);
  const auto sixteen = hn::Set(di, 16);
  for (int64_t b = 0; b < blocks; ++b) {
    const float d = f16_to_f32(in[b].d);
    const float dmin = f16_to_f32(in[b].dmin);
    for (int g = 0; g < 4; ++g, y += 64) {
      int sc_lo, mn_lo, sc_hi, mn_hi;
      detail::k_scale_min(in[b].scales, 2 * g, &sc_lo, &mn_lo);
      detail::k_scale_min(in[b].scales, 2 * g + 1, &sc_hi, &mn_hi);
      const auto scale_lo = hn::Set(df, d * static_cast<float>(sc_lo));
      const auto offset_lo = hn::Set(df, dmin * static_cast<float>(mn_lo));
      const auto scale_hi = hn::Set(df, d * static_cast<float>(sc_hi));
      const auto offset_hi = hn::Set(df, dmin * static_cast<float>(mn_hi));
      const uint8_t* qs = in[b].qs + 32 * g;
      for (size_t l = 0; l < 32; l += lanes) {
        const auto bytes = hn::PromoteTo(di, hn::LoadU(du8, qs + l));
        auto lo = hn::And(bytes, low4);
        auto hi = hn::ShiftRight<4>(bytes);
        if constexpr (kFifthBit) {
          const auto high_bits = hn::PromoteTo(di, hn::LoadU(du8, in[b].qh + l));
          lo = hn::Or(
              lo, hn::IfThenElseZero(hn::TestBit(high_bits, hn::Set(di, 1 << (2 * g))), sixteen));
          hi = hn::Or(
              hi, hn::IfThenElseZero(hn::TestBit(high_bits, hn::Set(di, 2 << (2 * g))), sixteen));
        }
        hn::StoreU(hn::Sub(hn::Mul(scale_lo, hn::ConvertTo(df, lo)), offset_lo), df, y + l);
        hn::StoreU(hn::Sub(hn::Mul(scale_hi, hn::ConvertTo(df, hi)), offset_hi), df, y + 32 + l);
      }
    }
  }
}

void DequantizeQ4_K(const BlockQ4_K* in, float* y, int64_t blocks) {
  DequantizeAffineK<false>(in, y, blocks);
}

void DequantizeQ5_K(const BlockQ5_K* in, float* y, int64_t blocks) {
  DequantizeAffineK<true>(in, y, blocks);
}

void DequantizeQ6_K(const BlockQ6_K* in, float* y, int64_t blocks) {
  // At most 16 lanes so one vector never straddles two 16-value sub-blocks.
  const hn::CappedTag<float, 16> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> du8;
  const size_t lanes = hn::Lanes(df);
  const auto low4 = hn::Set(di, 0xF);
  const auto low2 = hn::Set(di, 3);
  const auto bias = hn::Set(di, 32);
  for (int64_t b = 0; b < blocks; ++b) {
    const float d = f16_to_f32(in[b].d);
    for (int half = 0; half < 2; ++half, y += 128) {
      const uint8_t* ql = in[b].ql + 64 * half;
      const uint8_t* qh = in[b].qh + 32 * half;
      const int8_t* sc = in[b].scales + 8 * half;
      for (size_t l = 0; l < 32; l += lanes) {
        const auto a = hn::PromoteTo(di, hn::LoadU(du8, ql + l));
        const auto c = hn::PromoteTo(di, hn::LoadU(du8, ql + 32 + l));
        const auto h = hn::PromoteTo(di, hn::LoadU(du8, qh + l));
        const auto q0 = hn::Sub(hn::Or(hn::And(a, low4), hn::ShiftLeft<4>(hn::And(h, low2))), bias);
        const auto q1 = hn::Sub(
            hn::Or(hn::And(c, low4), hn::ShiftLeft<4>(hn::And(hn::ShiftRight<2>(h), low2))), bias);
        const auto q2 = hn::Sub(
            hn::Or(hn::ShiftRight<4>(a), hn::ShiftLeft<4>(hn::And(hn::ShiftRight<4>(h), low2))),
            bias);
        const auto q3 =
            hn::Sub(hn::Or(hn::ShiftRight<4>(c), hn::ShiftLeft<4>(hn::ShiftRight<6>(h))), bias);
        const size_t s = l / 16;
        hn::StoreU(hn::Mul(hn::Set(df, d * static_cast<float>(sc[s])), hn::ConvertTo(df, q0)), df,
                   y + l);
        hn::StoreU(hn::Mul(hn::Set(df, d * static_cast<float>(sc[s + 2])), hn::ConvertTo(df, q1)),
                   df, y + 32 + l);
        hn::StoreU(hn::Mul(hn::Set(df, d * static_cast<float>(sc[s + 4])), hn::ConvertTo(df, q2)),
                   df, y + 64 + l);
        hn::StoreU(hn::Mul(hn::Set(df, d * static_cast<float>(sc[s + 6])), hn::ConvertTo(df, q3)),
                   df, y + 96 + l);
      }
    }
  }
}

// std::round semantics: ties go away from zero. v − trunc(v) is exact, so the tie test is too.
template <class D, class V>
V RoundHalfAway(D d, V v) {
  const V whole = hn::Trunc(v);
  const V fraction = hn::Sub(v, whole);
  const V step = hn::CopySignToAbs(hn::Set(d, 1.0f), v);
  return hn::Add(whole, hn::IfThenElseZero(hn::Ge(hn::Abs(fraction), hn::Set(d, 0.5f)), step));
}

template <class D>
float MaxAbs(D df, const float* x, size_t n) {
  auto acc = hn::Zero(df);
  for (size_t i = 0; i < n; i += hn::Lanes(df)) acc = hn::Max(acc, hn::Abs(hn::LoadU(df, x + i)));
  return hn::GetLane(hn::MaxOfLanes(df, acc));
}

// Rounds x·id to int32 in [-127, 127] per the activation contract in quant_reference.cpp.
template <class D, class DI>
hn::Vec<DI> QuantizeLanes(D df, DI di, const float* x, hn::Vec<D> id) {
  const auto q = hn::ConvertTo(di, RoundHalfAway(df, hn::Mul(hn::LoadU(df, x), id)));
  return hn::Min(hn::Max(q, hn::Set(di, -127)), hn::Set(di, 127));
}

void QuantizeQ8_0(const float* x, BlockQ8_0* out, int64_t blocks) {
  const hn::CappedTag<float, kQK0> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t lanes = hn::Lanes(df);
  for (int64_t b = 0; b < blocks; ++b, x += kQK0) {
    const float d = MaxAbs(df, x, kQK0) / 127.0f;
    const auto id = hn::Set(df, d != 0.0f ? 1.0f / d : 0.0f);
    for (size_t i = 0; i < kQK0; i += lanes) {
      hn::StoreU(hn::DemoteTo(d8, QuantizeLanes(df, di, x + i, id)), d8, out[b].qs + i);
    }
    out[b].d = f32_to_f16(d);
  }
}

void QuantizeQ8_K(const float* x, BlockQ8_K* out, int64_t blocks) {
  const hn::CappedTag<float, 16> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t lanes = hn::Lanes(df);
  for (int64_t b = 0; b < blocks; ++b, x += kQKK) {
    const float d = MaxAbs(df, x, kQKK) / 127.0f;
    const auto id = hn::Set(df, d != 0.0f ? 1.0f / d : 0.0f);
    for (size_t g = 0; g < kQKK / 16; ++g) {
      auto sum = hn::Zero(di);
      for (size_t i = 16 * g; i < 16 * g + 16; i += lanes) {
        const auto q = QuantizeLanes(df, di, x + i, id);
        sum = hn::Add(sum, q);
        hn::StoreU(hn::DemoteTo(d8, q), d8, out[b].qs + i);
      }
      out[b].bsums[g] = static_cast<int16_t>(hn::GetLane(hn::SumOfLanes(di, sum)));
    }
    out[b].d = d;
  }
}

#undef RUVDLLM_VECTOR_F16

}  // namespace HWY_NAMESPACE
}  // namespace ruvdllm
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm {

HWY_EXPORT(DequantizeF16);
HWY_EXPORT(QuantizeF16);
HWY_EXPORT(DequantizeBF16);
HWY_EXPORT(QuantizeBF16);
HWY_EXPORT(DequantizeQ8_0);
HWY_EXPORT(DequantizeQ4_0);
HWY_EXPORT(DequantizeQ4_K);
HWY_EXPORT(DequantizeQ5_K);
HWY_EXPORT(DequantizeQ6_K);
HWY_EXPORT(QuantizeQ8_0);
HWY_EXPORT(QuantizeQ8_K);

namespace {

int64_t blocks_in_row(const char* what, TensorType type, int64_t n) {
  const TypeTraits& traits = type_traits(type);
  if (n < 0 || n % traits.block_size != 0) {
    fail("{}: row of {} elements is not a multiple of {}'s block size {}", what, n, traits.name,
         traits.block_size);
  }
  return n / traits.block_size;
}

}  // namespace

void quantize_row(TensorType type, const float* x, void* out, int64_t n) {
  const int64_t blocks = blocks_in_row("quantize_row", type, n);
  switch (type) {
    case TensorType::F32:
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::F16:
      return HWY_DYNAMIC_DISPATCH(QuantizeF16)(x, static_cast<uint16_t*>(out), n);
    case TensorType::BF16:
      return HWY_DYNAMIC_DISPATCH(QuantizeBF16)(x, static_cast<uint16_t*>(out), n);
    case TensorType::Q8_0:
      return HWY_DYNAMIC_DISPATCH(QuantizeQ8_0)(x, static_cast<BlockQ8_0*>(out), blocks);
    case TensorType::Q8_K:
      return HWY_DYNAMIC_DISPATCH(QuantizeQ8_K)(x, static_cast<BlockQ8_K*>(out), blocks);
    default:
      // Weight quantizers search scales; they run once per model conversion, not per step.
      return quantize_row_reference(type, x, out, n);
  }
}

void dequantize_row(TensorType type, const void* in, float* y, int64_t n) {
  const int64_t blocks = blocks_in_row("dequantize_row", type, n);
  switch (type) {
    case TensorType::F16:
      return HWY_DYNAMIC_DISPATCH(DequantizeF16)(static_cast<const uint16_t*>(in), y, n);
    case TensorType::BF16:
      return HWY_DYNAMIC_DISPATCH(DequantizeBF16)(static_cast<const uint16_t*>(in), y, n);
    case TensorType::Q8_0:
      return HWY_DYNAMIC_DISPATCH(DequantizeQ8_0)(static_cast<const BlockQ8_0*>(in), y, blocks);
    case TensorType::Q4_0:
      return HWY_DYNAMIC_DISPATCH(DequantizeQ4_0)(static_cast<const BlockQ4_0*>(in), y, blocks);
    case TensorType::Q4_K:
      return HWY_DYNAMIC_DISPATCH(DequantizeQ4_K)(static_cast<const BlockQ4_K*>(in), y, blocks);
    case TensorType::Q5_K:
      return HWY_DYNAMIC_DISPATCH(DequantizeQ5_K)(static_cast<const BlockQ5_K*>(in), y, blocks);
    case TensorType::Q6_K:
      return HWY_DYNAMIC_DISPATCH(DequantizeQ6_K)(static_cast<const BlockQ6_K*>(in), y, blocks);
    default:
      return dequantize_row_reference(type, in, y, n);
  }
}

}  // namespace ruvdllm
#endif  // HWY_ONCE
