// AVX-512 VNNI inner kernels of the quantized matmul, and a direct AVX-512 BF16 kernel for
// BF16 weights. Only the AVX3_DL target has them; other targets return null.
//
// A strip holds 16 weight rows; one 512-bit register holds a quad (4 consecutive levels) of
// each of the 16 rows, and vpdpbusd multiplies it with a broadcast quad of one activation row,
// summing into 16 int32 lanes (one per weight row). Levels are stored unsigned: Q8_0 +128,
// Q4_0 +8, Q6_K +32; the activation side pays for the offset through ActLayout::corr (Q8_0
// layout) or a per-super-block correction (Q6_K). Per strip, one record per weight block:
//   Q8_0 / Q4_0:  levels[8 quads][16 rows][4], float d[16]
//   Q4_K / Q5_K:  levels[64][16][4], float d*scale[8 groups][16], int16 min_pair[4][16][2],
//                 float dmin[16]
//   Q6_K:         levels[64][16][4], float d*scale[16][16], int16 scale_pair[8][16][2],
//                 float -32*d[16]
// Highway 1.0.3's AVX3_DL target string lacks avx512vnni/avx512bf16, so the kernels add them
// with a target attribute and run only after a CPUID check.
#include <cstring>
#include <utility>

#include "kernels/matmul_dot.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_dot_vnni.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#if HWY_TARGET == HWY_AVX3_DL
#include <immintrin.h>
#endif

HWY_BEFORE_NAMESPACE();
namespace ruvdllm::matmul_detail {
namespace HWY_NAMESPACE {

#if HWY_TARGET == HWY_AVX3_DL

namespace {  // per-file names: the other x86 kernel file has its own Record, WriteScales...

#include "kernels/matmul_dot_x86-inl.h"

#define RUVDLLM_VNNI __attribute__((target("avx512vnni")))
#define RUVDLLM_BF16 __attribute__((target("avx512bf16")))

constexpr int64_t kStrip = 16;
constexpr int64_t kPanelRows = 64;
// Activation rows per kernel call (ActLayout::group_rows). The Q8_0/Q4_0 kernel covers two
// strips (32 weight rows) at once, which halves the broadcast loads per vpdpbusd (measured
// 10-20% faster); its 2x6 int32 and 2x6 float accumulators leave no room for more rows.
constexpr int kGroupQ8 = 6;
constexpr int kGroupK = 8;

struct Record {
  size_t bytes;
  size_t scale;   // float d*scale per group (K-quants)
  size_t adjust;  // int16 pairs: mins (Q4_K/Q5_K) or scales (Q6_K)
  size_t d;       // float d (Q8_0/Q4_0), dmin (Q4_K/Q5_K) or -32*d (Q6_K)
  int64_t values;
};

constexpr Record kRecordQ8{512 + 64, 0, 0, 512, 32};
constexpr Record kRecordQ45K{4096 + 512 + 256 + 64, 4096, 4096 + 512, 4096 + 768, 256};
constexpr Record kRecordQ6K{4096 + 1024 + 512 + 64, 4096, 4096 + 1024, 4096 + 1536, 256};

Record RecordOf(TensorType t) {
  if (t == TensorType::Q8_0 || t == TensorType::Q4_0) return kRecordQ8;
  return t == TensorType::Q6_K ? kRecordQ6K : kRecordQ45K;
}

int32_t VnniActOffset(TensorType t) { return t == TensorType::Q8_0 ? 128 : (t == TensorType::Q4_0 ? 8 : 0); }

size_t VnniPanelBytes(TensorType type, int64_t k) {
  const Record rec = RecordOf(type);
  return static_cast<size_t>(kPanelRows / kStrip) * static_cast<size_t>(k / rec.values) * rec.bytes;
}

// ------------------------------ unpacking -----------------------------------------------

void WriteScales(TensorType type, const uint8_t* block, int64_t lane, const Record& rec, uint8_t* r) {
  DecodedBlock dec;
  decode_scales(type, block, &dec);
  auto* d = reinterpret_cast<float*>(r + rec.d);
  if (type == TensorType::Q8_0 || type == TensorType::Q4_0) {
    d[lane] = dec.d;
    return;
  }
  auto* scale = reinterpret_cast<float*>(r + rec.scale);
  auto* adjust = reinterpret_cast<int16_t*>(r + rec.adjust);
  const int groups = type == TensorType::Q6_K ? 16 : 8;
  for (int g = 0; g < groups; ++g) scale[g * kStrip + lane] = dec.d * static_cast<float>(dec.scale[g]);
  const int16_t* pairs = type == TensorType::Q6_K ? dec.scale : dec.min;
  for (int p = 0; p < groups / 2; ++p) {
    adjust[(p * kStrip + lane) * 2] = pairs[2 * p];
    adjust[(p * kStrip + lane) * 2 + 1] = pairs[2 * p + 1];
  }
  d[lane] = type == TensorType::Q6_K ? -32.0f * dec.d : dec.dmin;
}

constexpr size_t kUnpackPrefetchBytes = 512;

void VnniUnpack(TensorType type, const uint8_t* w, size_t w_stride, int64_t rows, int64_t k,
                uint8_t* panel) {
  const Record rec = RecordOf(type);
  const int64_t blocks = k / rec.values;
  const size_t wblock = type_traits(type).block_bytes;
  const int chunks = static_cast<int>(rec.values / 32);
  const __m256i flip = _mm256_set1_epi8(type == TensorType::Q8_0 ? static_cast<char>(0x80) : 0);
  // Byte offsets of a strip's 16 rows from its first, for gathering their block scales.
  const __m512i rows_at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(static_cast<int32_t>(w_stride)));
  for (int64_t s = 0; s * kStrip < rows; ++s) {
    const int64_t valid = rows - s * kStrip < kStrip ? rows - s * kStrip : kStrip;
    uint8_t* strip = panel + static_cast<size_t>(s * blocks) * rec.bytes;
    if (valid < kStrip) std::memset(strip, 0, static_cast<size_t>(blocks) * rec.bytes);
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* r = strip + static_cast<size_t>(b) * rec.bytes;
      const uint8_t* blk[kStrip];
      const bool small_block = rec.values == 32;  // Q8_0 / Q4_0: one f16 d at offset 0
      for (int64_t i = 0; i < valid; ++i) {
        blk[i] = w + static_cast<size_t>(s * kStrip + i) * w_stride + static_cast<size_t>(b) * wblock;
        // Sixteen rows advance together, too many streams for the hardware prefetcher.
        _mm_prefetch(reinterpret_cast<const char*>(blk[i] + kUnpackPrefetchBytes), _MM_HINT_T1);
        if (!small_block) WriteScales(type, blk[i], i, rec, r);
      }
      if (small_block) {
        // The 16 rows' f16 scales in one gather: sixteen 2-byte stores read back as one vector
        // stalled on store forwarding (16% of the unpacking, perf).
        const __m512i words = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), static_cast<__mmask16>((1u << valid) - 1),
                                                          rows_at, blk[0], 1);
        _mm512_storeu_ps(r + rec.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words)));
      }
      // Two 8-row halves: quad q of rows 0-7 goes to bytes [64q, 64q+32), rows 8-15 after.
      for (int c = 0; c < chunks; ++c) {
        for (int half = 0; half < 2; ++half) {
          __m256i v[8];
          for (int64_t i = 0; i < 8; ++i) {
            const int64_t row = half * 8 + i;
            // Padding rows stay zero (flipped levels of a zero-scale row contribute nothing).
            v[i] = row < valid ? _mm256_xor_si256(ChunkLevels(type, blk[row], c), flip) : _mm256_setzero_si256();
          }
          Transpose8x8(v);
          RUVDLLM_UNROLL
          for (int q = 0; q < 8; ++q) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(r + (c * 8 + q) * 64 + half * 32), v[q]);
          }
        }
      }
    }
  }
}

// ------------------------------ kernels -------------------------------------------------

// The rows of one activation group (see ActLayout), interleaved by quads.
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

HWY_INLINE __m512i Broadcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

HWY_INLINE __m512i Load512(const uint8_t* p) { return _mm512_loadu_si512(p); }
HWY_INLINE __m512 Load512f(const uint8_t* p) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p)); }

template <int R>
HWY_INLINE void Store(const __m512 acc[R], float* y, int64_t ldy, int64_t valid) {
  const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(y + r * ldy, mask, acc[r]);
}

template <int R>
RUVDLLM_VNNI void KernelQ8(const uint8_t* strip0, const uint8_t* strip1, int64_t blocks, const Group& a, float* y,
                           int64_t ldy, int64_t valid0, int64_t valid1) {
  __m512 acc0[R], acc1[R];
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm512_setzero_ps();
    acc1[r] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < blocks; ++b, strip0 += kRecordQ8.bytes, strip1 += kRecordQ8.bytes) {
    __m512i sum0[R], sum1[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) sum1[r] = sum0[r] = _mm512_set1_epi32(a.corr[b * kGroupQ8 + r]);
    RUVDLLM_UNROLL
    for (int q = 0; q < 8; ++q) {
      const __m512i w0 = Load512(strip0 + q * 64), w1 = Load512(strip1 + q * 64);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) {
        const __m512i x = Broadcast32(a.x + ((b * 8 + q) * kGroupQ8 + r) * 4);
        sum0[r] = _mm512_dpbusd_epi32(sum0[r], w0, x);
        sum1[r] = _mm512_dpbusd_epi32(sum1[r], w1, x);
      }
    }
    const __m512 d0 = Load512f(strip0 + kRecordQ8.d), d1 = Load512f(strip1 + kRecordQ8.d);
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m512 dx = _mm512_set1_ps(a.d[b * kGroupQ8 + r]);
      acc0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum0[r]), _mm512_mul_ps(d0, dx), acc0[r]);
      acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum1[r]), _mm512_mul_ps(d1, dx), acc1[r]);
    }
  }
  Store<R>(acc0, y, ldy, valid0);
  if (valid1 > 0) Store<R>(acc1, y + kStrip, ldy, valid1);
}

// Both K-quant kernels: per row, an int32 sum per scale group, a float sum per super-block
// (d·scale applied) and the running float result. These take one strip of 8 rows: a second
// strip's accumulators would not fit in registers next to 8 rows, and 4 rows × 2 strips
// measured no faster.
template <int R>
RUVDLLM_VNNI void KernelQ45K(const uint8_t* strip, int64_t blocks, const Group& a, float* y, int64_t ldy,
                             int64_t valid) {
  constexpr Record rec = kRecordQ45K;
  __m512 acc[R];
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, strip += rec.bytes) {
    __m512 block[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) block[r] = _mm512_setzero_ps();
    for (int g = 0; g < 8; ++g) {
      __m512i sum[R];
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) sum[r] = _mm512_setzero_si512();
      RUVDLLM_UNROLL
      for (int q = 0; q < 8; ++q) {
        const __m512i w = Load512(strip + (g * 8 + q) * 64);
        RUVDLLM_UNROLL
        for (int r = 0; r < R; ++r) {
          sum[r] = _mm512_dpbusd_epi32(sum[r], w, Broadcast32(a.x + ((b * 64 + g * 8 + q) * kGroupK + r) * 4));
        }
      }
      const __m512 scale = Load512f(strip + rec.scale + g * 64);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) block[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r]), scale, block[r]);
    }
    __m512i mins[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) mins[r] = _mm512_setzero_si512();
    for (int p = 0; p < 4; ++p) {
      const __m512i m = Load512(strip + rec.adjust + p * 64);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) mins[r] = _mm512_dpwssd_epi32(mins[r], m, Broadcast32(a.sum32 + ((b * 4 + p) * kGroupK + r) * 2));
    }
    const __m512 dmin = Load512f(strip + rec.d);
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m512 v = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins[r]), dmin, block[r]);
      acc[r] = _mm512_fmadd_ps(v, _mm512_set1_ps(a.d[b * kGroupK + r]), acc[r]);
    }
  }
  Store<R>(acc, y, ldy, valid);
}

template <int R>
RUVDLLM_VNNI void KernelQ6K(const uint8_t* strip, int64_t blocks, const Group& a, float* y, int64_t ldy,
                            int64_t valid) {
  constexpr Record rec = kRecordQ6K;
  __m512 acc[R];
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b, strip += rec.bytes) {
    __m512 block[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) block[r] = _mm512_setzero_ps();
    for (int g = 0; g < 16; ++g) {
      __m512i sum[R];
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) sum[r] = _mm512_setzero_si512();
      RUVDLLM_UNROLL
      for (int q = 0; q < 4; ++q) {
        const __m512i w = Load512(strip + (g * 4 + q) * 64);
        RUVDLLM_UNROLL
        for (int r = 0; r < R; ++r) {
          sum[r] = _mm512_dpbusd_epi32(sum[r], w, Broadcast32(a.x + ((b * 64 + g * 4 + q) * kGroupK + r) * 4));
        }
      }
      const __m512 scale = Load512f(strip + rec.scale + g * 64);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) block[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r]), scale, block[r]);
    }
    // Levels were stored +32: take away 32·d·Σ scale[g]·(sum of the group's activations).
    __m512i adj[R];
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) adj[r] = _mm512_setzero_si512();
    for (int p = 0; p < 8; ++p) {
      const __m512i sp = Load512(strip + rec.adjust + p * 64);
      RUVDLLM_UNROLL
      for (int r = 0; r < R; ++r) adj[r] = _mm512_dpwssd_epi32(adj[r], sp, Broadcast32(a.sum16 + ((b * 8 + p) * kGroupK + r) * 2));
    }
    const __m512 minus32d = Load512f(strip + rec.d);
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(adj[r]), minus32d, block[r]);
      acc[r] = _mm512_fmadd_ps(v, _mm512_set1_ps(a.d[b * kGroupK + r]), acc[r]);
    }
  }
  Store<R>(acc, y, ldy, valid);
}

template <int R>
void KernelFor(TensorType type, const uint8_t* const strips[2], int64_t blocks, const Group& a, float* y,
               int64_t ldy, const int64_t valid[2]) {
  switch (type) {
    case TensorType::Q8_0:
    case TensorType::Q4_0:
      if constexpr (R <= kGroupQ8) KernelQ8<R>(strips[0], strips[1], blocks, a, y, ldy, valid[0], valid[1]);
      return;
    case TensorType::Q6_K:
      for (int j = 0; j < 2 && valid[j] > 0; ++j) KernelQ6K<R>(strips[j], blocks, a, y + j * kStrip, ldy, valid[j]);
      return;
    default:
      for (int j = 0; j < 2 && valid[j] > 0; ++j) KernelQ45K<R>(strips[j], blocks, a, y + j * kStrip, ldy, valid[j]);
      return;
  }
}

template <int... Rs>
void KernelRows(int rows, TensorType type, const uint8_t* const strips[2], int64_t blocks, const Group& a,
                float* y, int64_t ldy, const int64_t valid[2], std::integer_sequence<int, Rs...>) {
  ((rows == Rs + 1 ? KernelFor<Rs + 1>(type, strips, blocks, a, y, ldy, valid) : void()), ...);
}

int64_t GroupRows(TensorType t) { return t == TensorType::Q8_0 || t == TensorType::Q4_0 ? kGroupQ8 : kGroupK; }

// Row groups outer, pairs of strips inner: the group's activations stay in L1 while the
// panel (64 weight rows) streams from L2.
void VnniMultiply(TensorType type, const uint8_t* panel, const ActLayout& layout,
                  const uint8_t* act, int64_t m, float* y, int64_t ldy, int64_t cols) {
  const Record rec = RecordOf(type);
  const int64_t blocks = layout.k / rec.values;
  const size_t strip_bytes = static_cast<size_t>(blocks) * rec.bytes;
  const int64_t g = GroupRows(type);
  for (int64_t r0 = 0; r0 < m; r0 += g) {
    const int rows = static_cast<int>(m - r0 < g ? m - r0 : g);
    const Group a = GroupAt(layout, act + static_cast<size_t>(r0 / g) * layout.group_bytes);
    for (int64_t c0 = 0; c0 < cols; c0 += 2 * kStrip) {
      const int64_t left = cols - c0;
      const int64_t valid[2] = {left < kStrip ? left : kStrip,
                                left - kStrip <= 0 ? 0 : (left - kStrip < kStrip ? left - kStrip : kStrip)};
      const uint8_t* strip0 = panel + static_cast<size_t>(c0 / kStrip) * strip_bytes;
      // A missing second strip reads the first again and stores nothing.
      const uint8_t* const strips[2] = {strip0, valid[1] > 0 ? strip0 + strip_bytes : strip0};
      KernelRows(rows, type, strips, blocks, a, y + r0 * ldy + c0, ldy, valid,
                 std::make_integer_sequence<int, kGroupQ8 < kGroupK ? kGroupK : kGroupQ8>());
    }
  }
}

const QuantKernels* GetVnniKernels() {
  if (!__builtin_cpu_supports("avx512vnni")) return nullptr;
  static const QuantKernels kernels = [] {
    QuantKernels k;
    k.name = "AVX3_DL VNNI";
    k.panel_rows = kPanelRows;
    k.act_group_rows = GroupRows;
    k.act_offset = VnniActOffset;
    k.panel_bytes = VnniPanelBytes;
    k.unpack = VnniUnpack;
    k.multiply = VnniMultiply;
    return k;
  }();
  return &kernels;
}

// ------------------------------ BF16 weights --------------------------------------------
// The same scheme with pairs instead of quads: a panel strip holds pair p (2 consecutive bf16
// values) of 16 weight rows in one register, vdpbf16ps multiplies it with a broadcast pair of
// one activation row and adds both products into that row's 16 float lanes. No horizontal
// sums, no epilogue: the accumulators are the outputs.

constexpr int64_t kBf16Strip = 16;
constexpr int64_t kBf16PanelRows = 64;
constexpr int kBf16Group = 8;

int64_t Pairs(int64_t k) { return (k + 1) / 2; }

size_t Bf16PanelBytes(int64_t k) { return static_cast<size_t>(kBf16PanelRows * Pairs(k) * 4); }

// Strip s holds [pairs][16 rows][2 bf16]; 8 rows × 8 pairs at a time through the 8x8
// transpose of 32-bit elements.
void Bf16Unpack(const uint8_t* w, size_t w_stride, int64_t rows, int64_t k, uint8_t* panel) {
  const int64_t pairs = Pairs(k), full = k / 16;  // full: blocks of 8 pairs with no tail
  const size_t strip_bytes = static_cast<size_t>(pairs) * kBf16Strip * 4;
  std::memset(panel, 0, Bf16PanelBytes(k));
  for (int64_t s = 0; s * kBf16Strip < rows; ++s) {
    uint8_t* strip = panel + static_cast<size_t>(s) * strip_bytes;
    for (int half = 0; half < 2; ++half) {
      const int64_t row0 = s * kBf16Strip + half * 8;
      if (row0 >= rows) break;
      const int64_t valid = rows - row0 < 8 ? rows - row0 : 8;
      for (int64_t blk = 0; blk < full; ++blk) {
        __m256i v[8];
        for (int64_t i = 0; i < 8; ++i) {
          v[i] = i < valid ? Load256(w + static_cast<size_t>(row0 + i) * w_stride + blk * 32) : _mm256_setzero_si256();
        }
        Transpose8x8(v);
        RUVDLLM_UNROLL
        for (int p = 0; p < 8; ++p) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(strip + ((blk * 8 + p) * kBf16Strip + half * 8) * 4), v[p]);
        }
      }
      for (int64_t i = 0; i < valid; ++i) {  // the last k % 16 values
        const auto* src = reinterpret_cast<const uint16_t*>(w + static_cast<size_t>(row0 + i) * w_stride);
        for (int64_t e = full * 16; e < k; ++e) {
          std::memcpy(strip + (((e / 2) * kBf16Strip + half * 8 + i) * 2 + e % 2) * 2, src + e, 2);
        }
      }
    }
  }
}

// R activation rows (one group) × two strips (32 weight rows).
template <int R>
RUVDLLM_BF16 void Bf16Kernel(const uint8_t* strip0, const uint8_t* strip1, const uint16_t* x, int64_t pairs,
                             float* y, int64_t ldy, int64_t valid0, int64_t valid1) {
  __m512 acc0[R], acc1[R];
  RUVDLLM_UNROLL
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm512_setzero_ps();
    acc1[r] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh w0 = reinterpret_cast<__m512bh>(Load512(strip0 + p * 64));
    const __m512bh w1 = reinterpret_cast<__m512bh>(Load512(strip1 + p * 64));
    RUVDLLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m512bh xr = reinterpret_cast<__m512bh>(Broadcast32(x + (p * kBf16Group + r) * 2));
      acc0[r] = _mm512_dpbf16_ps(acc0[r], xr, w0);
      acc1[r] = _mm512_dpbf16_ps(acc1[r], xr, w1);
    }
  }
  Store<R>(acc0, y, ldy, valid0);
  if (valid1 > 0) Store<R>(acc1, y + kBf16Strip, ldy, valid1);
}

template <int... Rs>
void Bf16Rows(int rows, const uint8_t* strip0, const uint8_t* strip1, const uint16_t* x, int64_t pairs, float* y,
              int64_t ldy, int64_t valid0, int64_t valid1, std::integer_sequence<int, Rs...>) {
  ((rows == Rs + 1 ? Bf16Kernel<Rs + 1>(strip0, strip1, x, pairs, y, ldy, valid0, valid1) : void()), ...);
}

void Bf16Multiply(const uint8_t* panel, const uint16_t* x, int64_t m, int64_t k, float* y, int64_t ldy,
                  int64_t cols) {
  const int64_t pairs = Pairs(k);
  const size_t strip_bytes = static_cast<size_t>(pairs) * kBf16Strip * 4;
  const int64_t group_values = pairs * kBf16Group * 2;
  for (int64_t r0 = 0; r0 < m; r0 += kBf16Group) {
    const int rows = static_cast<int>(m - r0 < kBf16Group ? m - r0 : kBf16Group);
    const uint16_t* xg = x + (r0 / kBf16Group) * group_values;
    for (int64_t c0 = 0; c0 < cols; c0 += 2 * kBf16Strip) {
      const int64_t left = cols - c0;
      const int64_t valid0 = left < kBf16Strip ? left : kBf16Strip;
      const int64_t valid1 = left - valid0 < kBf16Strip ? left - valid0 : kBf16Strip;
      const uint8_t* strip0 = panel + static_cast<size_t>(c0 / kBf16Strip) * strip_bytes;
      // A missing second strip reads the first again and stores nothing.
      const uint8_t* strip1 = valid1 > 0 ? strip0 + strip_bytes : strip0;
      Bf16Rows(rows, strip0, strip1, xg, pairs, y + r0 * ldy + c0, ldy, valid0, valid1,
               std::make_integer_sequence<int, kBf16Group>());
    }
  }
}

const Bf16Kernels* GetBf16Kernels() {
  if (!__builtin_cpu_supports("avx512bf16")) return nullptr;
  static const Bf16Kernels kernels = [] {
    Bf16Kernels k;
    k.panel_rows = kBf16PanelRows;
    k.group_rows = kBf16Group;
    k.panel_bytes = Bf16PanelBytes;
    k.unpack = Bf16Unpack;
    k.multiply = Bf16Multiply;
    return k;
  }();
  return &kernels;
}

}  // namespace

#else

const QuantKernels* GetVnniKernels() { return nullptr; }
const Bf16Kernels* GetBf16Kernels() { return nullptr; }

#endif  // HWY_TARGET == HWY_AVX3_DL

}  // namespace HWY_NAMESPACE
}  // namespace ruvdllm::matmul_detail
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm::matmul_detail {
HWY_EXPORT(GetVnniKernels);
HWY_EXPORT(GetBf16Kernels);
const QuantKernels* vnni_kernels() { return HWY_DYNAMIC_DISPATCH(GetVnniKernels)(); }
const Bf16Kernels* bf16_kernels() { return HWY_DYNAMIC_DISPATCH(GetBf16Kernels)(); }
}  // namespace ruvdllm::matmul_detail
#endif
