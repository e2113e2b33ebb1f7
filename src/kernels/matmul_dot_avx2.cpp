// AVX2 inner kernels of the quantized matmul (also used by AVX-512 CPUs without VNNI).
//
// A strip holds 8 weight rows; one 256-bit register holds 4 consecutive levels ("a quad") of
// each of the 8 rows, so a broadcast quad of one activation row meets all 8 rows in one
// vpmaddubsw (u8 levels × s8 activations -> pairs summed in int16). Per strip, one record
// per weight block:
//   Q8_0 / Q4_0:  levels[8 quads][8 rows][4], float d[8]
//   Q4_K / Q5_K:  levels[64][8][4], int16 scale_pair[8 groups][8][2], int16 min_pair[4][8][2],
//                 float d[8], float dmin[8]
//   Q6_K:         levels[64][8][4], int16 scale_pair[16][8][2], int16 scale_adj[8][8][2],
//                 float d[8]
// Levels are stored unsigned (Q4_0 +8, Q6_K +32) except Q8_0, which keeps them signed and
// moves their sign onto the activation (vpsignb), because (w+128)·x pairs overflow int16.
// int16 partial sums stay exact while they fit (Q4: 8 quads, Q5_K: 4, Q6_K: 2); the K-quant
// sub-block scales are applied by the vpmaddwd that widens them to int32, so the integer sum
// of a whole super-block is exact and meets float arithmetic only once.
#include <cstring>

#include "kernels/matmul_dot.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_dot_avx2.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#include <immintrin.h>
#endif

HWY_BEFORE_NAMESPACE();
namespace ruvdllm::matmul_detail {
namespace HWY_NAMESPACE {

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL

namespace {  // per-file names: the other x86 kernel file has its own Record, WriteScales...

#include "kernels/matmul_dot_x86-inl.h"

constexpr int64_t kStrip = 8;
constexpr int64_t kPanelRows = 64;
constexpr int kGroup = 4;  // activation rows per kernel call (ActLayout::group_rows)

struct Record {
  size_t bytes;
  size_t scale;    // offset of int16 scale pairs (K-quants)
  size_t adjust;   // offset of int16 min pairs (Q4_K/Q5_K) or scale pairs for the Q6_K offset
  size_t d;        // offset of float d[8]
  size_t dmin;     // offset of float dmin[8] (Q4_K/Q5_K)
  int64_t values;  // weight values per record
};

constexpr Record kRecordQ8{256 + 32, 0, 0, 256, 0, 32};
constexpr Record kRecordQ45K{2048 + 256 + 128 + 64, 2048, 2048 + 256, 2048 + 384, 2048 + 416, 256};
constexpr Record kRecordQ6K{2048 + 512 + 256 + 32, 2048, 2048 + 512, 2048 + 768, 0, 256};

Record RecordOf(TensorType t) {
  if (t == TensorType::Q8_0 || t == TensorType::Q4_0) return kRecordQ8;
  return t == TensorType::Q6_K ? kRecordQ6K : kRecordQ45K;
}

int32_t Avx2ActOffset(TensorType t) { return t == TensorType::Q4_0 ? 8 : 0; }

size_t Avx2PanelBytes(TensorType type, int64_t k) {
  const Record rec = RecordOf(type);
  return static_cast<size_t>(kPanelRows / kStrip) * static_cast<size_t>(k / rec.values) * rec.bytes;
}

// ------------------------------ unpacking -----------------------------------------------

void WriteScales(TensorType type, const uint8_t* block, int64_t lane, const Record& rec,
                 uint8_t* r) {
  DecodedBlock dec;
  decode_scales(type, block, &dec);
  auto* d = reinterpret_cast<float*>(r + rec.d);
  d[lane] = dec.d;
  if (type == TensorType::Q8_0 || type == TensorType::Q4_0) return;
  auto* scale = reinterpret_cast<int16_t*>(r + rec.scale);
  auto* adjust = reinterpret_cast<int16_t*>(r + rec.adjust);
  const int groups = type == TensorType::Q6_K ? 16 : 8;
  for (int g = 0; g < groups; ++g) {
    scale[(g * kStrip + lane) * 2] = dec.scale[g];
    scale[(g * kStrip + lane) * 2 + 1] = dec.scale[g];
  }
  const int16_t* pairs = type == TensorType::Q6_K ? dec.scale : dec.min;
  for (int p = 0; p < groups / 2; ++p) {
    adjust[(p * kStrip + lane) * 2] = pairs[2 * p];
    adjust[(p * kStrip + lane) * 2 + 1] = pairs[2 * p + 1];
  }
  if (type != TensorType::Q6_K) reinterpret_cast<float*>(r + rec.dmin)[lane] = dec.dmin;
}

void Avx2Unpack(TensorType type, const uint8_t* w, size_t w_stride, int64_t rows, int64_t k,
                uint8_t* panel) {
  const Record rec = RecordOf(type);
  const int64_t blocks = k / rec.values;
  const size_t wblock = type_traits(type).block_bytes;
  const int chunks = static_cast<int>(rec.values / 32);
  for (int64_t s = 0; s * kStrip < rows; ++s) {
    const int64_t valid = rows - s * kStrip < kStrip ? rows - s * kStrip : kStrip;
    uint8_t* strip = panel + static_cast<size_t>(s * blocks) * rec.bytes;
    if (valid < kStrip) std::memset(strip, 0, static_cast<size_t>(blocks) * rec.bytes);
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* r = strip + static_cast<size_t>(b) * rec.bytes;
      const uint8_t* blk[kStrip];
      const bool small_block = rec.values == 32;  // Q8_0 / Q4_0: one f16 d at offset 0
      alignas(16) uint16_t d16[kStrip] = {};
      for (int64_t i = 0; i < valid; ++i) {
        blk[i] = w + static_cast<size_t>(s * kStrip + i) * w_stride + static_cast<size_t>(b) * wblock;
        if (small_block) {
          std::memcpy(&d16[i], blk[i], 2);
        } else {
          WriteScales(type, blk[i], i, rec, r);
        }
      }
      if (small_block) {
        _mm256_storeu_ps(reinterpret_cast<float*>(r + rec.d), _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d16))));
      }
      for (int c = 0; c < chunks; ++c) {
        __m256i v[kStrip];
        for (int64_t i = 0; i < kStrip; ++i)
          v[i] = i < valid ? ChunkLevels(type, blk[i], c) : _mm256_setzero_si256();
        Transpose8x8(v);
        RUVDLLM_UNROLL
        for (int q = 0; q < 8; ++q) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(r + (c * 8 + q) * 32), v[q]);
        }
      }
    }
  }
}

// ------------------------------ kernels -------------------------------------------------

// R activation rows against one strip of 8 weight rows.
// The rows of one activation group (see ActLayout), interleaved kGroup to a quad.
struct Group {
  const int8_t* x;
  const float* d;
  const int32_t* corr;   // Q8_0 activations
  const int16_t* sum16;  // Q8_K activations
  const int16_t* sum32;
};

Group GroupAt(const ActLayout& layout, const uint8_t* group) {
  return {reinterpret_cast<const int8_t*>(group), reinterpret_cast<const float*>(group + layout.d_offset),
          reinterpret_cast<const int32_t*>(group + layout.corr_offset),
          reinterpret_cast<const int16_t*>(group + layout.sum16_offset),
          reinterpret_cast<const int16_t*>(group + layout.sum32_offset)};
}

HWY_INLINE __m256i Broadcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <int R>
HWY_INLINE void Store(const __m256 acc[R], float* y, int64_t ldy, int64_t valid) {
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) {
    if (valid == kStrip) {
      _mm256_storeu_ps(y + r * ldy, acc[r]);
    } else {
      alignas(32) float tmp[kStrip];
      _mm256_store_ps(tmp, acc[r]);
      std::memcpy(y + r * ldy, tmp, static_cast<size_t>(valid) * sizeof(float));
    }
  }
}

template <int R>
void KernelQ8_0(const uint8_t* strip, int64_t blocks, const Group& a, float* y, int64_t ldy,
                int64_t valid) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, strip += kRecordQ8.bytes) {
    __m256i sum[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
    for (int q = 0; q < 8; ++q) {
      const __m256i w = Load256(strip + q * 32);
      const __m256i aw = _mm256_abs_epi8(w);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) {
        const __m256i x = _mm256_sign_epi8(Broadcast32(a.x + ((b * 8 + q) * kGroup + r) * 4), w);
        sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, x), ones));
      }
    }
    const __m256 dw = _mm256_loadu_ps(reinterpret_cast<const float*>(strip + kRecordQ8.d));
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) {
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r]),
                               _mm256_mul_ps(dw, _mm256_set1_ps(a.d[b * kGroup + r])), acc[r]);
    }
  }
  Store<R>(acc, y, ldy, valid);
}

template <int R>
void KernelQ4_0(const uint8_t* strip, int64_t blocks, const Group& a, float* y, int64_t ldy,
                int64_t valid) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, strip += kRecordQ8.bytes) {
    __m256i sum[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
    for (int q = 0; q < 8; ++q) {
      const __m256i w = Load256(strip + q * 32);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) {
        sum[r] =
            _mm256_add_epi16(sum[r], _mm256_maddubs_epi16(w, Broadcast32(a.x + ((b * 8 + q) * kGroup + r) * 4)));
      }
    }
    const __m256 dw = _mm256_loadu_ps(reinterpret_cast<const float*>(strip + kRecordQ8.d));
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m256i s =
          _mm256_add_epi32(_mm256_madd_epi16(sum[r], ones), _mm256_set1_epi32(a.corr[b * kGroup + r]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(a.d[b * kGroup + r])),
                               acc[r]);
    }
  }
  Store<R>(acc, y, ldy, valid);
}

// Q4_K and Q5_K: kQuads quads per int16 partial sum (8 for 4-bit levels, 4 for 5-bit).
template <int R, int kQuads>
void KernelQ45_K(const uint8_t* strip, int64_t blocks, const Group& a, float* y, int64_t ldy,
                 int64_t valid) {
  constexpr Record rec = kRecordQ45K;
  __m256 acc[R];
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, strip += rec.bytes) {
    __m256i sum[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
    for (int g = 0; g < 8; ++g) {
      const __m256i scale = Load256(strip + rec.scale + g * 32);
      for (int part = 0; part < 8; part += kQuads) {
        __m256i s16[R];
        RUVDLLM_UNROLL
        for (int r = 0; r < R; ++r) s16[r] = _mm256_setzero_si256();
        for (int q = part; q < part + kQuads; ++q) {
          const __m256i w = Load256(strip + (g * 8 + q) * 32);
          RUVDLLM_UNROLL
          for (int r = 0; r < R; ++r) {
            s16[r] = _mm256_add_epi16(
                s16[r], _mm256_maddubs_epi16(w, Broadcast32(a.x + ((b * 64 + g * 8 + q) * kGroup + r) * 4)));
          }
        }
        RUVDLLM_UNROLL
        for (int r = 0; r < R; ++r)
          sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(s16[r], scale));
      }
    }
    __m256i mins[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) mins[r] = _mm256_setzero_si256();
    for (int p = 0; p < 4; ++p) {
      const __m256i m = Load256(strip + rec.adjust + p * 32);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) {
        mins[r] = _mm256_add_epi32(mins[r],
                                   _mm256_madd_epi16(m, Broadcast32(a.sum32 + ((b * 4 + p) * kGroup + r) * 2)));
      }
    }
    const __m256 d = _mm256_loadu_ps(reinterpret_cast<const float*>(strip + rec.d));
    const __m256 dmin = _mm256_loadu_ps(reinterpret_cast<const float*>(strip + rec.dmin));
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m256 v = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins[r]), dmin,
                                        _mm256_mul_ps(_mm256_cvtepi32_ps(sum[r]), d));
      acc[r] = _mm256_fmadd_ps(v, _mm256_set1_ps(a.d[b * kGroup + r]), acc[r]);
    }
  }
  Store<R>(acc, y, ldy, valid);
}

template <int R>
void KernelQ6_K(const uint8_t* strip, int64_t blocks, const Group& a, float* y, int64_t ldy,
                int64_t valid) {
  constexpr Record rec = kRecordQ6K;
  __m256 acc[R];
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, strip += rec.bytes) {
    __m256i sum[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
    for (int g = 0; g < 16; ++g) {
      const __m256i scale = Load256(strip + rec.scale + g * 32);
      for (int part = 0; part < 4; part += 2) {
        __m256i s16[R];
        RUVDLLM_UNROLL
        for (int r = 0; r < R; ++r) s16[r] = _mm256_setzero_si256();
        for (int q = part; q < part + 2; ++q) {
          const __m256i w = Load256(strip + (g * 4 + q) * 32);
          RUVDLLM_UNROLL
          for (int r = 0; r < R; ++r) {
            s16[r] = _mm256_add_epi16(
                s16[r], _mm256_maddubs_epi16(w, Broadcast32(a.x + ((b * 64 + g * 4 + q) * kGroup + r) * 4)));
          }
        }
        RUVDLLM_UNROLL
        for (int r = 0; r < R; ++r)
          sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(s16[r], scale));
      }
    }
    // Levels were stored +32: subtract 32 · Σ scale[g] · (sum of the group's activations).
    __m256i adj[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) adj[r] = _mm256_setzero_si256();
    for (int p = 0; p < 8; ++p) {
      const __m256i sp = Load256(strip + rec.adjust + p * 32);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) {
        adj[r] = _mm256_add_epi32(adj[r],
                                  _mm256_madd_epi16(sp, Broadcast32(a.sum16 + ((b * 8 + p) * kGroup + r) * 2)));
      }
    }
    const __m256 d = _mm256_loadu_ps(reinterpret_cast<const float*>(strip + rec.d));
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m256i s = _mm256_sub_epi32(sum[r], _mm256_slli_epi32(adj[r], 5));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, _mm256_set1_ps(a.d[b * kGroup + r])),
                               acc[r]);
    }
  }
  Store<R>(acc, y, ldy, valid);
}

template <int R>
void KernelFor(TensorType type, const uint8_t* strip, int64_t blocks, const Group& a, float* y,
               int64_t ldy, int64_t valid) {
  switch (type) {
    case TensorType::Q8_0:
      return KernelQ8_0<R>(strip, blocks, a, y, ldy, valid);
    case TensorType::Q4_0:
      return KernelQ4_0<R>(strip, blocks, a, y, ldy, valid);
    case TensorType::Q4_K:
      return KernelQ45_K<R, 8>(strip, blocks, a, y, ldy, valid);
    case TensorType::Q5_K:
      return KernelQ45_K<R, 4>(strip, blocks, a, y, ldy, valid);
    default:
      return KernelQ6_K<R>(strip, blocks, a, y, ldy, valid);
  }
}

void Avx2Multiply(TensorType type, const uint8_t* panel, const ActLayout& layout,
                  const uint8_t* act, int64_t m, float* y, int64_t ldy, int64_t cols) {
  const Record rec = RecordOf(type);
  const int64_t blocks = layout.k / rec.values;
  const size_t strip_bytes = static_cast<size_t>(blocks) * rec.bytes;
  for (int64_t r0 = 0; r0 < m; r0 += kGroup) {
    const int64_t rows = m - r0 < kGroup ? m - r0 : kGroup;
    const Group a = GroupAt(layout, act + static_cast<size_t>(r0 / kGroup) * layout.group_bytes);
    for (int64_t s = 0; s * kStrip < cols; ++s) {
      const int64_t valid = cols - s * kStrip < kStrip ? cols - s * kStrip : kStrip;
      const uint8_t* strip = panel + static_cast<size_t>(s) * strip_bytes;
      float* out = y + r0 * ldy + s * kStrip;
      switch (rows) {
        case 4: KernelFor<4>(type, strip, blocks, a, out, ldy, valid); break;
        case 3: KernelFor<3>(type, strip, blocks, a, out, ldy, valid); break;
        case 2: KernelFor<2>(type, strip, blocks, a, out, ldy, valid); break;
        default: KernelFor<1>(type, strip, blocks, a, out, ldy, valid); break;
      }
    }
  }
}

const QuantKernels* GetAvx2Kernels() {
  static const QuantKernels kernels = [] {
    QuantKernels k;
    k.name = "AVX2";
    k.panel_rows = kPanelRows;
    k.act_group_rows = [](TensorType) -> int64_t { return kGroup; };
    k.act_offset = Avx2ActOffset;
    k.panel_bytes = Avx2PanelBytes;
    k.unpack = Avx2Unpack;
    k.multiply = Avx2Multiply;
    return k;
  }();
  return &kernels;
}

}  // namespace

#else

const QuantKernels* GetAvx2Kernels() { return nullptr; }

#endif

}  // namespace HWY_NAMESPACE
}  // namespace ruvdllm::matmul_detail
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm::matmul_detail {
HWY_EXPORT(GetAvx2Kernels);
const QuantKernels* avx2_kernels() { return HWY_DYNAMIC_DISPATCH(GetAvx2Kernels)(); }
}  // namespace ruvdllm::matmul_detail
#endif
