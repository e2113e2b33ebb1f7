#pragma once
// GGUF's weight blocks decoded on the device, eight consecutive values at a time: what
// dequantize_to_bf16 and embed_rows (dequant_kernels.cu) and the fused quantized products
// (quant_gemm.cu) share, so that every path forms the same value from a block.
//
// Every product and difference uses the _rn intrinsics, which nvcc never fuses into an FMA, in
// the CPU reference's order (dequantize_row_reference), so each value is bit-identical to the
// CPU's:
//   Q4_0: float(q - 8) * d          Q8_0: float(q) * d
//   Q4_K / Q5_K: (d * sc) * float(q) - (dmin * m)
//   Q6_K: (d * sc) * float(q - 32)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#include "ruvdllm/core/tensor_type.h"

namespace ruvdllm::cuda::quant {

constexpr int kGroup = 8;  // values decoded per call: one 16-byte bf16 store

// Largest power of two up to 16 that divides n: the alignment of block i of a 16-aligned tile.
constexpr int alignment_of(int n) {
  return n % 16 == 0 ? 16 : n % 8 == 0 ? 8 : n % 4 == 0 ? 4 : n % 2 == 0 ? 2 : 1;
}

// Little-endian loads from a pointer known to be aligned to kAlign bytes (1 reads bytes, which
// embed_rows needs: a table row in a GGUF mapping promises nothing).
template <int kAlign>
__device__ inline uint32_t load_u16(const uint8_t* p) {
  if constexpr (kAlign >= 2) {
    return *reinterpret_cast<const uint16_t*>(p);
  } else {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8);
  }
}

template <int kAlign>
__device__ inline uint32_t load_u32(const uint8_t* p) {
  if constexpr (kAlign >= 4) {
    return *reinterpret_cast<const uint32_t*>(p);
  } else {
    return load_u16<kAlign>(p) | (load_u16<kAlign>(p + 2) << 16);
  }
}

// Eight bytes as two words, byte k of the run in byte k % 4 of word k / 4.
template <int kAlign>
__device__ inline uint2 load_8_bytes(const uint8_t* p) {
  if constexpr (kAlign >= 8) {
    return *reinterpret_cast<const uint2*>(p);
  } else {
    return make_uint2(load_u32<kAlign>(p), load_u32<kAlign>(p + 4));
  }
}

template <int kAlign>
__device__ inline float load_f16(const uint8_t* p) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(load_u16<kAlign>(p))));
}

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K super-block (see k_scale_min in
// quant_reference_k.cpp for the packing), from the three of its 12 packed bytes that hold them:
// b0 = packed[j % 4], b1 = packed[4 + j % 4], b2 = packed[8 + j % 4].
__device__ inline void k_scale_min_bytes(uint32_t b0, uint32_t b1, uint32_t b2, int j, int* scale,
                                         int* min) {
  if (j < 4) {  // packed[j] & 63, packed[j + 4] & 63
    *scale = static_cast<int>(b0 & 63);
    *min = static_cast<int>(b1 & 63);
  } else {  // packed[j + 4] (b2) with the top bits of packed[j − 4] (b0) and packed[j] (b1)
    *scale = static_cast<int>((b2 & 0xF) | ((b0 >> 6) << 4));
    *min = static_cast<int>((b2 >> 4) | ((b1 >> 6) << 4));
  }
}

// From the packed bytes in memory (any alignment); sub-blocks 0–3 need only two of them.
__device__ inline void k_scale_min(const uint8_t* packed, int j, int* scale, int* min) {
  if (j < 4) {
    k_scale_min_bytes(packed[j], packed[j + 4], 0, j, scale, min);
  } else {
    k_scale_min_bytes(packed[j - 4], packed[j], packed[j + 4], j, scale, min);
  }
}

// From the 12 packed bytes in three little-endian words (w0: bytes 0–3, ...).
__device__ inline void k_scale_min_words(uint32_t w0, uint32_t w1, uint32_t w2, int j, int* scale,
                                         int* min) {
  const int shift = 8 * (j & 3);
  k_scale_min_bytes((w0 >> shift) & 0xFF, (w1 >> shift) & 0xFF, (w2 >> shift) & 0xFF, j, scale,
                    min);
}

// float(u) − kBias for 0 ≤ u < 2²³, exactly, without the int → float converter (a quarter-rate
// unit, which bounded decoding: ~12 conversions per 8 values): u placed in the mantissa of 2²³,
// then 2²³ + kBias subtracted. Both operands and the difference are integers in float's exact
// range, so the result equals static_cast<float>(int(u) − kBias).
template <int kBias = 0>
__device__ inline float exact_float(uint32_t u) {
  return __fsub_rn(__uint_as_float(0x4B000000u | u), 8388608.0f + kBias);
}

// Eight levels, one per byte of w (byte k of w.x is level k, of w.y level k + 4), as
// float(level) − kBias: one byte permute puts byte k under 2²³'s exponent, then exact_float's
// subtraction. Every format extracts its levels four at a time with word-wide shifts and masks,
// so a value costs a permute, the subtraction and its scaling (about 5 instructions against 10
// when each level was extracted and converted alone).
template <int kBias = 0>
__device__ inline void levels_to_floats(uint2 w, float v[kGroup]) {
#pragma unroll
  for (int k = 0; k < kGroup; ++k) {
    const uint32_t magic = __byte_perm(k < 4 ? w.x : w.y, 0x4B000000u, 0x7440u | (k & 3));
    v[k] = __fsub_rn(__uint_as_float(magic), 8388608.0f + kBias);
  }
}

__device__ inline uint2 shift_mask(uint2 w, int shift, uint32_t mask) {
  return make_uint2((w.x >> shift) & mask, (w.y >> shift) & mask);
}

// Loads from shared-space addresses (through generic pointers each load is also converted).
__device__ inline uint32_t load_shared_u16(uint32_t address) {
  uint16_t v;
  asm volatile("ld.shared.u16 %0, [%1];\n" : "=h"(v) : "r"(address) : "memory");
  return v;
}
__device__ inline uint4 load_shared_16_bytes(uint32_t address) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(address)
               : "memory");
  return v;
}

// Two values rounded to bf16 (nearest even), the first in the low half.
__device__ inline uint32_t bf16_pair(float first, float second) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(first, second);
  uint32_t w;
  memcpy(&w, &pair, sizeof(w));
  return w;
}

// Eight decoded values rounded to bf16 (nearest even), as one 16-byte store.
__device__ inline uint4 pack_bf16(const float v[kGroup]) {
  uint32_t w[kGroup / 2];
#pragma unroll
  for (int k = 0; k < kGroup / 2; ++k) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
    memcpy(&w[k], &pair, sizeof(w[k]));
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// Each format decodes group g (values [8g, 8g + 8)) of one block at `block`, which is aligned
// to kAlign bytes. kQuads: the format also decodes groups g0 .. g0 + 3 (g0 a multiple of 4)
// at once, as bf16 (decode_quad), sharing work the four groups have in common.
struct Q4_0Format {
  static constexpr int kBlockValues = 32, kBlockBytes = 18;
  static constexpr bool kQuads = false;
  template <int kAlign>
  __device__ static void decode(const uint8_t* block, int g, float v[kGroup]) {
    const float d = load_f16<kAlign>(block);
    // Value j sits in the low nibble of qs[j], value j + 16 in the high nibble.
    const uint2 q = load_8_bytes<(kAlign < 2 ? kAlign : 2)>(block + 2 + 8 * (g & 1));
    levels_to_floats<8>(shift_mask(q, 4 * (g >> 1), 0x0F0F0F0Fu), v);
#pragma unroll
    for (int k = 0; k < kGroup; ++k) v[k] = __fmul_rn(v[k], d);
  }
};

struct Q8_0Format {
  static constexpr int kBlockValues = 32, kBlockBytes = 34;
  static constexpr bool kQuads = false;
  template <int kAlign>
  __device__ static void decode(const uint8_t* block, int g, float v[kGroup]) {
    const float d = load_f16<kAlign>(block);
    const uint2 q = load_8_bytes<(kAlign < 2 ? kAlign : 2)>(block + 2 + 8 * g);
    // A signed byte plus 128 is its unsigned value with the top bit flipped.
    levels_to_floats<128>(make_uint2(q.x ^ 0x80808080u, q.y ^ 0x80808080u), v);
#pragma unroll
    for (int k = 0; k < kGroup; ++k) v[k] = __fmul_rn(v[k], d);
  }
};

// Q4_K and Q5_K: sub-block j (32 values, groups 4j .. 4j+3) takes the low nibbles of qs bytes
// [32·(j/2), +32) when j is even and their high nibbles when odd; Q5_K's fifth bit of value l
// of sub-block j is bit j of qh[l].
// The scale d·sc and offset dmin·m that sub-block j's levels map through.
template <int kAlign>
__device__ inline void affine_k_scale(const uint8_t* block, int j, float* scale, float* offset) {
  int sc, mn;
  k_scale_min(block + 4, j, &sc, &mn);
  *scale = __fmul_rn(load_f16<kAlign>(block), exact_float(static_cast<uint32_t>(sc)));
  *offset = __fmul_rn(load_f16<kAlign>(block + 2), exact_float(static_cast<uint32_t>(mn)));
}

// Sub-block j's eight levels from its quant bytes (and Q5_K's fifth bits), one per byte.
template <bool kFifthBit>
__device__ inline uint2 affine_k_levels(const uint2 low, uint2 high_bits, int j) {
  const uint2 levels = shift_mask(low, 4 * (j & 1), 0x0F0F0F0Fu);
  if constexpr (kFifthBit) {
    const uint2 fifth = shift_mask(high_bits, j, 0x01010101u);
    return make_uint2(levels.x | (fifth.x << 4), levels.y | (fifth.y << 4));
  } else {
    return levels;
  }
}

template <bool kFifthBit>
__device__ inline void affine_k_values(const uint2 low, uint2 high_bits, int j, float scale,
                                       float offset, float v[kGroup]) {
  levels_to_floats(affine_k_levels<kFifthBit>(low, high_bits, j), v);
#pragma unroll
  for (int k = 0; k < kGroup; ++k) v[k] = __fsub_rn(__fmul_rn(scale, v[k]), offset);
}

// The same values with one instruction fewer each (WgmmaGemm's decoders are bound by their
// instruction count): scale · float(q) as one FMA on the float 2²³ + q that the byte permute
// forms, with −scale · 2²³ added, which is exact (a power-of-two multiple), so the FMA's one
// rounding is fmul_rn(scale, q)'s. Only a zero's sign can differ (+0 for −0 when scale < 0 and
// the offset is 0), which no product sees; dequantize_to_bf16 keeps the two-step form, checked
// bit for bit against the CPU.
__device__ inline float affine_k_bias(float scale) { return -__fmul_rn(scale, 8388608.0f); }
// Level byte k of `levels` as scale · level − offset, bias = affine_k_bias(scale).
__device__ inline float affine_k_value(uint32_t levels, int k, float scale, float bias,
                                       float offset) {
  const uint32_t magic = __byte_perm(levels, 0x4B000000u, 0x7440u | k);
  return __fsub_rn(__fmaf_rn(scale, __uint_as_float(magic), bias), offset);
}

// A Q4_K / Q5_K block's 16-byte header in registers: d, dmin, then the 12 packed scales.
struct AffineKHead {
  float d, dmin;
  uint32_t packed[3];
  __device__ explicit AffineKHead(const uint4& head)
      : d(__half2float(__ushort_as_half(static_cast<unsigned short>(head.x & 0xFFFF)))),
        dmin(__half2float(__ushort_as_half(static_cast<unsigned short>(head.x >> 16)))),
        packed{head.y, head.z, head.w} {}
  // Sub-block j's scale d·sc and offset dmin·m, as affine_k_scale forms them.
  __device__ void scale_offset(int j, float* scale, float* offset) const {
    int sc, mn;
    k_scale_min_words(packed[0], packed[1], packed[2], j, &sc, &mn);
    *scale = __fmul_rn(d, exact_float(static_cast<uint32_t>(sc)));
    *offset = __fmul_rn(dmin, exact_float(static_cast<uint32_t>(mn)));
  }
};

template <bool kFifthBit>
__device__ inline void affine_k_values_fma(const uint2 low, uint2 high_bits, int j, float scale,
                                           float offset, float v[kGroup]) {
  const uint2 levels = affine_k_levels<kFifthBit>(low, high_bits, j);
  const float bias = affine_k_bias(scale);
#pragma unroll
  for (int k = 0; k < kGroup; ++k) {
    v[k] = affine_k_value(k < 4 ? levels.x : levels.y, k & 3, scale, bias, offset);
  }
}

// Q4_K (kFifthBit false) and Q5_K: a sub-block's four groups share its scale and offset, which
// decode_quad works out once.
template <bool kFifthBit>
struct AffineKFormat {
  static constexpr int kBlockValues = 256, kBlockBytes = kFifthBit ? 176 : 144;
  static constexpr int kLevels = kFifthBit ? 48 : 16;  // offset of qs in the block
  static constexpr bool kQuads = true;
  template <int kAlign>
  __device__ static void group(const uint8_t* block, int j, int l0, float scale, float offset,
                               float v[kGroup]) {
    const uint2 q = load_8_bytes<kAlign>(block + kLevels + 32 * (j >> 1) + l0);
    const uint2 qh = kFifthBit ? load_8_bytes<kAlign>(block + 16 + l0) : make_uint2(0, 0);
    affine_k_values<kFifthBit>(q, qh, j, scale, offset, v);
  }
  template <int kAlign>
  __device__ static void decode(const uint8_t* block, int g, float v[kGroup]) {
    float scale, offset;
    affine_k_scale<kAlign>(block, g >> 2, &scale, &offset);
    group<kAlign>(block, g >> 2, 8 * (g & 3), scale, offset, v);
  }
  template <int kAlign>
  __device__ static void decode_quad(const uint8_t* block, int g0, uint4 out[4]) {
    float scale, offset;
    affine_k_scale<kAlign>(block, g0 >> 2, &scale, &offset);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      float v[kGroup];
      group<kAlign>(block, g0 >> 2, 8 * q, scale, offset, v);
      out[q] = pack_bf16(v);
    }
  }
  // Sub-blocks 2p and 2p + 1 (values [64p, +64) of the block, groups 8p .. 8p + 7), the
  // values decode_quad forms (up to a zero's sign: affine_k_values_fma), with each byte read once
  // in 16-byte loads from a 16-byte aligned block: both sub-blocks take their levels from the same
  // 32 quant bytes (low and high nibbles) and their scales from the 16-byte header. WgmmaGemm
  // decodes a K slice this way: ncu showed its decoders stalled on many small, bank-conflicting
  // loads (rows 144 bytes apart).
  __device__ static void decode_pair(const uint8_t* block, int p, uint4 out[8]) {
    const PairBytes b = pair_bytes(block, p);
#pragma unroll
    for (int h = 0; h < 2; ++h) sub_block(b, 2 * p + h, out + 4 * h);
  }
  // Sub-block j alone (values [32j, +32)), the same values: a wide WgmmaGemm tile decodes each
  // slice with two threads per weight row.
  __device__ static void decode_sub_block(const uint8_t* block, int j, uint4 out[4]) {
    sub_block(pair_bytes(block, j >> 1), j, out);
  }
  // Values [64p, +64) of two weight rows' blocks (lo, and hi eight rows further) as one thread's
  // A fragments of wgmma's four k16 steps over them (mma.sync's layout, lane % 4 = q): a[4kk] holds
  // lo's values 16kk + 2q, + 1; a[4kk + 1] hi's; a[4kk + 2] and a[4kk + 3] the same 8 values on.
  // The values decode_pair forms. Step kk takes nibble kk / 2 (sub-block 2p + kk / 2) of quant
  // bytes 16·(kk % 2) + 2q, + 1, + 8, + 9, so a thread reads each of its bytes once, two at a time.
  // lo and hi are shared-space addresses (16-byte aligned).
  __device__ static void fragments(uint32_t lo, uint32_t hi, int p, int q, uint32_t a[16]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t block = h == 0 ? lo : hi;
      const AffineKHead head(load_shared_16_bytes(block));
      auto pairs = [&](uint32_t at, int half) {  // bytes 16·half + (0, 1, 8, 9) at `at`
        return load_shared_u16(at + 16 * half) | (load_shared_u16(at + 16 * half + 8) << 16);
      };
      const uint32_t qs = block + kLevels + 32 * p + 2 * q;
      const uint32_t low[2] = {pairs(qs, 0), pairs(qs, 1)};
      uint32_t fifth[2] = {0, 0};
      if constexpr (kFifthBit) {
        fifth[0] = pairs(block + 16 + 2 * q, 0);
        fifth[1] = pairs(block + 16 + 2 * q, 1);
      }
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const int j = 2 * p + s;
        float scale, offset;
        head.scale_offset(j, &scale, &offset);
        const float bias = affine_k_bias(scale);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          uint32_t levels = (low[half] >> (4 * s)) & 0x0F0F0F0Fu;
          if constexpr (kFifthBit) levels |= ((fifth[half] >> j) & 0x01010101u) << 4;
          float v[4];
#pragma unroll
          for (int k = 0; k < 4; ++k) v[k] = affine_k_value(levels, k, scale, bias, offset);
          const int kk = 2 * s + half;
          a[4 * kk + h] = bf16_pair(v[0], v[1]);
          a[4 * kk + 2 + h] = bf16_pair(v[2], v[3]);
        }
      }
    }
  }

 private:
  // What sub-blocks 2p and 2p + 1 are decoded from: the block's 16-byte header (d, dmin, 12
  // packed scales), their 32 quant bytes and (Q5_K) the 32 bytes of fifth bits.
  struct PairBytes {
    uint4 head, qs[2], qh[2];
  };
  __device__ static PairBytes pair_bytes(const uint8_t* block, int p) {
    PairBytes b{};
    b.head = *reinterpret_cast<const uint4*>(block);
    b.qs[0] = *reinterpret_cast<const uint4*>(block + kLevels + 32 * p);
    b.qs[1] = *reinterpret_cast<const uint4*>(block + kLevels + 32 * p + 16);
    if constexpr (kFifthBit) {
      b.qh[0] = *reinterpret_cast<const uint4*>(block + 16);
      b.qh[1] = *reinterpret_cast<const uint4*>(block + 32);
    }
    return b;
  }
  // Sub-block j's four groups (j / 2 the pair b holds).
  __device__ static void sub_block(const PairBytes& b, int j, uint4 out[4]) {
    float scale, offset;
    AffineKHead(b.head).scale_offset(j, &scale, &offset);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      // Group q's bytes [8q, 8q + 8): words 2q and 2q + 1 of the 32.
      const uint4& ql = b.qs[q / 2];
      const uint4& qhi = b.qh[q / 2];
      const uint2 low = q % 2 == 0 ? make_uint2(ql.x, ql.y) : make_uint2(ql.z, ql.w);
      const uint2 high = q % 2 == 0 ? make_uint2(qhi.x, qhi.y) : make_uint2(qhi.z, qhi.w);
      float v[kGroup];
      affine_k_values_fma<kFifthBit>(low, high, j, scale, offset, v);
      out[q] = pack_bf16(v);
    }
  }
};
using Q4_KFormat = AffineKFormat<false>;
using Q5_KFormat = AffineKFormat<true>;

// Q6_K: each half of 128 values has 64 ql bytes, 32 qh bytes and 8 scales. Quarter k (32
// values, l = 0..31) takes the low (k < 2) or high nibble of ql[l + 32·(k & 1)], bits 2k, 2k+1
// of qh[l], and scale 2k + l / 16.
struct Q6_KFormat {
  static constexpr int kBlockValues = 256, kBlockBytes = 210;
  static constexpr bool kQuads = false;
  template <int kAlign>
  __device__ static void decode(const uint8_t* block, int g, float v[kGroup]) {
    const int half = g >> 4, quarter = (g >> 2) & 3, l0 = 8 * (g & 3);
    const uint2 ql = load_8_bytes<kAlign>(block + 64 * half + 32 * (quarter & 1) + l0);
    const uint2 qh = load_8_bytes<kAlign>(block + 128 + 32 * half + l0);
    const uint32_t sc = block[192 + 8 * half + 2 * quarter + l0 / 16];  // a signed byte
    const float scale = __fmul_rn(load_f16<kAlign>(block + 208), exact_float<128>(sc ^ 0x80u));
    const uint2 low = shift_mask(ql, 4 * (quarter >> 1), 0x0F0F0F0Fu);
    const uint2 high = shift_mask(qh, 2 * quarter, 0x03030303u);
    levels_to_floats<32>(make_uint2(low.x | (high.x << 4), low.y | (high.y << 4)), v);
#pragma unroll
    for (int k = 0; k < kGroup; ++k) v[k] = __fmul_rn(scale, v[k]);
  }
};

// Calls f(Format{}) with the decoder of a GGUF block type and returns true; false (f not called)
// for any other type. Every host function that picks a kernel per block type goes through this
// one switch.
template <class F>
bool visit_format(TensorType type, F&& f) {
  switch (type) {
    case TensorType::Q4_0:
      f(Q4_0Format{});
      return true;
    case TensorType::Q8_0:
      f(Q8_0Format{});
      return true;
    case TensorType::Q4_K:
      f(Q4_KFormat{});
      return true;
    case TensorType::Q5_K:
      f(Q5_KFormat{});
      return true;
    case TensorType::Q6_K:
      f(Q6_KFormat{});
      return true;
    default:
      return false;
  }
}

}  // namespace ruvdllm::cuda::quant
