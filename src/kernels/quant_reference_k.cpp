// Scalar reference quantizers and dequantizers of the K-quant weight types (Q4_K, Q5_K,
// Q6_K), byte-compatible with GGUF. The quantizers search scales for least squared error;
// any choice of scales is a valid file, only the dequantization must match GGUF exactly.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ruvdllm/core/half.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::detail {

// Q4_K/Q5_K keep 8 six-bit scales and 8 six-bit mins in 12 bytes. Sub-blocks 0-3 use the low
// 6 bits of bytes 0-3 (scale) and 4-7 (min); sub-blocks 4-7 put their low 4 bits in the
// nibbles of bytes 8-11 (scale low, min high) and their top 2 bits in the spare top bits of
// bytes 0-3 (scale) and 4-7 (min).
void k_scale_min(const uint8_t* packed, int j, int* scale, int* min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
    *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

namespace {

void pack_scale_min(const int* scale, const int* min, uint8_t* packed) {
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>(scale[j] | ((scale[j + 4] >> 4) << 6));
    packed[j + 4] = static_cast<uint8_t>(min[j] | ((min[j + 4] >> 4) << 6));
    packed[j + 8] = static_cast<uint8_t>((scale[j + 4] & 0xF) | ((min[j + 4] & 0xF) << 4));
  }
}

// Nearest integer in [lo, hi] (ties up); NaN maps to lo so corrupt input cannot cause undefined
// casts. Plain compares and truncation: fmin/nearbyint are library calls on baseline x86-64,
// and this runs a few hundred times per weight.
int nearest_in(float v, int lo, int hi) {
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  v = v > flo ? v : flo;
  v = v < fhi ? v : fhi;
  return static_cast<int>(v - flo + 0.5f) + lo;
}

// Σq, Σq², Σq·x over the levels q = nearest_in(to_level(x_i), lo, hi). Four independent
// partial sums per quantity (n is a multiple of 4) break the chains of dependent adds.
struct LevelSums {
  float q, qq, qx;
};

template <class ToLevel>
LevelSums level_sums(const float* x, int n, ToLevel to_level, int lo, int hi) {
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  float sq[4] = {}, sqq[4] = {}, sqx[4] = {};
  for (int i = 0; i < n; i += 4) {
    for (int k = 0; k < 4; ++k) {
      float v = to_level(x[i + k]);
      v = v > flo ? v : flo;
      v = v < fhi ? v : fhi;
      const float q = static_cast<float>(static_cast<int>(v - flo + 0.5f)) + flo;
      sq[k] += q;
      sqq[k] += q * q;
      sqx[k] += q * x[i + k];
    }
  }
  return {(sq[0] + sq[1]) + (sq[2] + sq[3]), (sqq[0] + sqq[1]) + (sqq[2] + sqq[3]),
          (sqx[0] + sqx[1]) + (sqx[2] + sqx[3])};
}

// The f16 nearest to v, or the next one away from zero when the nearest is smaller in
// magnitude: the super-block scale then never falls short of the largest sub-block scale,
// which matters when it lands in the coarse f16 subnormal range.
uint16_t f16_not_below(float v) {
  const uint16_t h = f32_to_f16(v);
  const bool short_of_v = std::fabs(f16_to_f32(h)) < std::fabs(v);
  return short_of_v && (h & 0x7fffu) < 0x7bffu ? static_cast<uint16_t>(h + 1) : h;
}

// x ≈ scale·q − offset with q in [0, nmax] and offset ≥ 0 (the format stores the min
// unsigned, so a sub-block whose values are all positive gets offset 0).
struct Affine {
  float scale;
  float offset;
};

double affine_error(const float* x, int n, int nmax, Affine a) {
  const float inv = a.scale > 0.0f ? 1.0f / a.scale : 0.0f;
  double err = 0;
  for (int i = 0; i < n; ++i) {
    const int q = nearest_in((x[i] + a.offset) * inv, 0, nmax);
    const double diff = static_cast<double>(a.scale * static_cast<float>(q) - a.offset) - x[i];
    err += diff * diff;
  }
  return err;
}

// Tries a grid of scales around (max − min) / nmax; for each, rounds the values and solves the
// two-parameter least-squares problem for scale and offset given those levels. Candidates are
// ranked by the squared error at those levels, from sums alone; re-rounding against the
// fitted scale can only lower it.
Affine fit_affine(const float* x, int n, int nmax) {
  float lo = x[0], hi = x[0];
  double sx = 0, sxx = 0;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sx += x[i];
    sxx += static_cast<double>(x[i]) * x[i];
  }
  lo = std::min(lo, 0.0f);
  if (!(hi > lo)) return {0.0f, -lo};  // constant non-positive block (or NaN): offset only
  Affine best{(hi - lo) / static_cast<float>(nmax), -lo};
  double best_err = std::numeric_limits<double>::infinity();
  for (int step = -5; step <= 5; ++step) {
    const float iscale = (static_cast<float>(nmax) + 0.2f * static_cast<float>(step)) / (hi - lo);
    const LevelSums sums = level_sums(
        x, n, [&](float v) { return (v - lo) * iscale; }, 0, nmax);
    const double sq = sums.q, sqq = sums.qq, sqx = sums.qx;
    const double det = n * sqq - sq * sq;
    if (det <= 0) continue;
    double scale = (n * sqx - sq * sx) / det;
    double bias = (sx - scale * sq) / n;
    if (bias > 0) {  // the offset cannot go negative: refit the scale alone
      bias = 0;
      scale = sqx / sqq;
    }
    if (!(scale > 0)) continue;
    // Σ (scale·q + bias − x)² expanded into the sums.
    const double err = sxx + scale * scale * sqq + n * bias * bias + 2 * scale * bias * sq -
                       2 * scale * sqx - 2 * bias * sx;
    if (err < best_err) {
      best_err = err;
      best = {static_cast<float>(scale), static_cast<float>(-bias)};
    }
  }
  return best;
}

// Quantizes one super-block of 256 values to 8 sub-blocks of 32 levels in [0, nmax]:
// per-sub-block fits, then 6-bit scales and mins against f16 d and dmin, then the levels
// against the scales exactly as they will be dequantized.
void quantize_affine_superblock(const float* x, int nmax, uint16_t* d_out, uint16_t* dmin_out,
                                uint8_t* packed_scales, uint8_t* levels) {
  constexpr int kSub = 32;
  Affine fits[8];
  float max_scale = 0.0f, max_offset = 0.0f;
  for (int j = 0; j < 8; ++j) {
    fits[j] = fit_affine(x + kSub * j, kSub, nmax);
    max_scale = std::max(max_scale, fits[j].scale);
    max_offset = std::max(max_offset, fits[j].offset);
  }
  *d_out = f16_not_below(max_scale / 63.0f);
  *dmin_out = f16_not_below(max_offset / 63.0f);
  const float d = f16_to_f32(*d_out);
  const float dmin = f16_to_f32(*dmin_out);

  int scales[8], mins[8];
  for (int j = 0; j < 8; ++j) {
    const int sc0 = d > 0.0f ? nearest_in(fits[j].scale / d, 0, 63) : 0;
    const int mn0 = dmin > 0.0f ? nearest_in(fits[j].offset / dmin, 0, 63) : 0;
    // Rounding scale and min independently is not always best: try the neighbours.
    double best_err = -1;
    for (int sc = std::max(sc0 - 1, 0); sc <= std::min(sc0 + 1, 63); ++sc) {
      for (int mn = std::max(mn0 - 1, 0); mn <= std::min(mn0 + 1, 63); ++mn) {
        const double err = affine_error(
            x + kSub * j, kSub, nmax, {d * static_cast<float>(sc), dmin * static_cast<float>(mn)});
        if (best_err < 0 || err < best_err) {
          best_err = err;
          scales[j] = sc;
          mins[j] = mn;
        }
      }
    }
    const float scale = d * static_cast<float>(scales[j]);
    const float offset = dmin * static_cast<float>(mins[j]);
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int i = 0; i < kSub; ++i) {
      levels[kSub * j + i] =
          static_cast<uint8_t>(nearest_in((x[kSub * j + i] + offset) * inv, 0, nmax));
    }
  }
  pack_scale_min(scales, mins, packed_scales);
}

// x ≈ scale·q with q in [-32, 31]; scale may be negative so the lone level −32 can land on
// whichever end of the sub-block is larger.
double symmetric_error(const float* x, int n, float scale) {
  double err = 0;
  const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int q = nearest_in(x[i] * inv, -32, 31);
    const double diff = static_cast<double>(scale * static_cast<float>(q)) - x[i];
    err += diff * diff;
  }
  return err;
}

float fit_symmetric(const float* x, int n) {
  float extreme = 0.0f;
  double sxx = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
    sxx += static_cast<double>(x[i]) * x[i];
  }
  if (!(extreme != 0.0f)) return 0.0f;
  float best = extreme / -32.0f;
  double best_err = std::numeric_limits<double>::infinity();
  for (int step = -3; step <= 1; ++step) {
    const float delta = 0.4f * static_cast<float>(step);
    for (float iscale : {-(32.0f + delta) / extreme, (31.0f + delta) / extreme}) {
      const LevelSums sums = level_sums(
          x, n, [&](float v) { return v * iscale; }, -32, 31);
      const double sqq = sums.qq, sqx = sums.qx;
      if (sqq <= 0) continue;
      const double err = sxx - sqx * sqx / sqq;  // at the least-squares scale sqx / sqq
      if (err < best_err) {
        best_err = err;
        best = static_cast<float>(sqx / sqq);
      }
    }
  }
  return best;
}

void quantize_q6_K_block(const float* x, BlockQ6_K* out) {
  constexpr int kSub = 16;
  float fits[16];
  float largest = 0.0f;
  for (int j = 0; j < 16; ++j) {
    fits[j] = fit_symmetric(x + kSub * j, kSub);
    if (std::fabs(fits[j]) > std::fabs(largest)) largest = fits[j];
  }
  // The largest scale becomes −128, the one int8 value with no positive twin.
  out->d = f16_not_below(largest / -128.0f);
  const float d = f16_to_f32(out->d);

  uint8_t levels[kQKK];
  for (int j = 0; j < 16; ++j) {
    const int sc0 = d != 0.0f ? nearest_in(fits[j] / d, -128, 127) : 0;
    int best_sc = sc0;
    double best_err = -1;
    for (int sc = std::max(sc0 - 1, -128); sc <= std::min(sc0 + 1, 127); ++sc) {
      const double err = symmetric_error(x + kSub * j, kSub, d * static_cast<float>(sc));
      if (best_err < 0 || err < best_err) {
        best_err = err;
        best_sc = sc;
      }
    }
    out->scales[j] = static_cast<int8_t>(best_sc);
    const float scale = d * static_cast<float>(best_sc);
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (int i = 0; i < kSub; ++i) {
      levels[kSub * j + i] = static_cast<uint8_t>(nearest_in(x[kSub * j + i] * inv, -32, 31) + 32);
    }
  }
  // Each half of 128 values: ql byte l holds values l (low nibble) and l+64 (high), byte l+32
  // holds l+32 and l+96; qh byte l holds the top two bits of l, l+32, l+64, l+96.
  for (int half = 0; half < 2; ++half) {
    const uint8_t* q = levels + 128 * half;
    uint8_t* ql = out->ql + 64 * half;
    uint8_t* qh = out->qh + 32 * half;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((q[l] & 0xF) | ((q[l + 64] & 0xF) << 4));
      ql[l + 32] = static_cast<uint8_t>((q[l + 32] & 0xF) | ((q[l + 96] & 0xF) << 4));
      qh[l] = static_cast<uint8_t>((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                                   ((q[l + 96] >> 4) << 6));
    }
  }
}

}  // namespace

void quantize_q4_K_reference(const float* x, BlockQ4_K* out, int64_t blocks) {
  uint8_t levels[kQKK];
  for (int64_t b = 0; b < blocks; ++b, x += kQKK) {
    quantize_affine_superblock(x, 15, &out[b].d, &out[b].dmin, out[b].scales, levels);
    // Each group of 64 values shares 32 bytes: the first 32 values in the low nibbles.
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) {
        out[b].qs[32 * g + l] =
            static_cast<uint8_t>(levels[64 * g + l] | (levels[64 * g + 32 + l] << 4));
      }
    }
  }
}

void quantize_q5_K_reference(const float* x, BlockQ5_K* out, int64_t blocks) {
  uint8_t levels[kQKK];
  for (int64_t b = 0; b < blocks; ++b, x += kQKK) {
    quantize_affine_superblock(x, 31, &out[b].d, &out[b].dmin, out[b].scales, levels);
    // Low nibbles as in Q4_K; the fifth bit of value l of group g is bit 2g of qh[l], the fifth
    // bit of value 32+l is bit 2g+1.
    std::memset(out[b].qh, 0, sizeof(out[b].qh));
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) {
        const int lo = levels[64 * g + l], hi = levels[64 * g + 32 + l];
        out[b].qs[32 * g + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
        out[b].qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1)));
      }
    }
  }
}

void quantize_q6_K_reference(const float* x, BlockQ6_K* out, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b) quantize_q6_K_block(x + kQKK * b, &out[b]);
}

void dequantize_q4_K_reference(const BlockQ4_K* in, float* y, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float d = f16_to_f32(in[b].d);
    const float dmin = f16_to_f32(in[b].dmin);
    for (int g = 0; g < 4; ++g, y += 64) {
      int sc_lo, mn_lo, sc_hi, mn_hi;
      k_scale_min(in[b].scales, 2 * g, &sc_lo, &mn_lo);
      k_scale_min(in[b].scales, 2 * g + 1, &sc_hi, &mn_hi);
      const float scale_lo = d * static_cast<float>(sc_lo),
                  offset_lo = dmin * static_cast<float>(mn_lo);
      const float scale_hi = d * static_cast<float>(sc_hi),
                  offset_hi = dmin * static_cast<float>(mn_hi);
      const uint8_t* qs = in[b].qs + 32 * g;
      for (int l = 0; l < 32; ++l) {
        y[l] = scale_lo * static_cast<float>(qs[l] & 0xF) - offset_lo;
        y[l + 32] = scale_hi * static_cast<float>(qs[l] >> 4) - offset_hi;
      }
    }
  }
}

void dequantize_q5_K_reference(const BlockQ5_K* in, float* y, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float d = f16_to_f32(in[b].d);
    const float dmin = f16_to_f32(in[b].dmin);
    for (int g = 0; g < 4; ++g, y += 64) {
      int sc_lo, mn_lo, sc_hi, mn_hi;
      k_scale_min(in[b].scales, 2 * g, &sc_lo, &mn_lo);
      k_scale_min(in[b].scales, 2 * g + 1, &sc_hi, &mn_hi);
      const float scale_lo = d * static_cast<float>(sc_lo),
                  offset_lo = dmin * static_cast<float>(mn_lo);
      const float scale_hi = d * static_cast<float>(sc_hi),
                  offset_hi = dmin * static_cast<float>(mn_hi);
      const uint8_t* qs = in[b].qs + 32 * g;
      const uint8_t* qh = in[b].qh;
      for (int l = 0; l < 32; ++l) {
        const int lo = (qs[l] & 0xF) | (((qh[l] >> (2 * g)) & 1) << 4);
        const int hi = (qs[l] >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4);
        y[l] = scale_lo * static_cast<float>(lo) - offset_lo;
        y[l + 32] = scale_hi * static_cast<float>(hi) - offset_hi;
      }
    }
  }
}

void dequantize_q6_K_reference(const BlockQ6_K* in, float* y, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float d = f16_to_f32(in[b].d);
    for (int half = 0; half < 2; ++half, y += 128) {
      const uint8_t* ql = in[b].ql + 64 * half;
      const uint8_t* qh = in[b].qh + 32 * half;
      const int8_t* sc = in[b].scales + 8 * half;
      for (int l = 0; l < 32; ++l) {
        const int q0 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q1 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        const int s = l / 16;
        y[l] = (d * static_cast<float>(sc[s])) * static_cast<float>(q0);
        y[l + 32] = (d * static_cast<float>(sc[s + 2])) * static_cast<float>(q1);
        y[l + 64] = (d * static_cast<float>(sc[s + 4])) * static_cast<float>(q2);
        y[l + 96] = (d * static_cast<float>(sc[s + 6])) * static_cast<float>(q3);
      }
    }
  }
}

}  // namespace ruvdllm::detail
