// Scalar references of the matmul and the integer view of weight blocks that the fast
// kernels unpack from.
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/matmul_dot.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/kernels/matmul.h"

namespace ruvdllm {
namespace matmul_detail {
namespace {

// Q4_K/Q5_K pack 8 six-bit scales and mins in 12 bytes (GGUF's layout): sub-blocks 0-3 keep
// them in the low 6 bits of bytes 0-3 and 4-7; sub-blocks 4-7 keep the low 4 bits in the
// nibbles of bytes 8-11 and the top 2 bits in the spare top bits of bytes 0-7.
void unpack_scales_mins(const uint8_t* packed, int16_t* scale, int16_t* min) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scale[j] = packed[j] & 63;
      min[j] = packed[j + 4] & 63;
    } else {
      scale[j] = static_cast<int16_t>((packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4));
      min[j] = static_cast<int16_t>((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
    }
  }
}

}  // namespace

void decode_scales(TensorType type, const uint8_t* block, DecodedBlock* out) {
  uint16_t d = 0, dmin = 0;
  switch (type) {
    case TensorType::Q8_0:
    case TensorType::Q4_0:
      std::memcpy(&d, block, 2);
      break;
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      std::memcpy(&d, block, 2);
      std::memcpy(&dmin, block + 2, 2);
      unpack_scales_mins(block + 4, out->scale, out->min);
      break;
    case TensorType::Q6_K:
      std::memcpy(&d, block + offsetof(BlockQ6_K, d), 2);
      for (int j = 0; j < 16; ++j)
        out->scale[j] = static_cast<int8_t>(block[offsetof(BlockQ6_K, scales) + j]);
      break;
    default:
      fail("decode_scales: {} is not a quantized weight type", type_name(type));
  }
  out->d = f16_to_f32(d);
  out->dmin = f16_to_f32(dmin);
}

void decode_block(TensorType type, const uint8_t* block, DecodedBlock* out) {
  switch (type) {
    case TensorType::Q8_0: {
      BlockQ8_0 b;
      std::memcpy(&b, block, sizeof b);
      out->d = f16_to_f32(b.d);
      std::memcpy(out->levels, b.qs, kQK0);
      return;
    }
    case TensorType::Q4_0: {
      BlockQ4_0 b;
      std::memcpy(&b, block, sizeof b);
      out->d = f16_to_f32(b.d);
      for (int i = 0; i < kQK0 / 2; ++i) {
        out->levels[i] = static_cast<int8_t>((b.qs[i] & 0xF) - 8);
        out->levels[i + kQK0 / 2] = static_cast<int8_t>((b.qs[i] >> 4) - 8);
      }
      return;
    }
    case TensorType::Q4_K:
    case TensorType::Q5_K: {
      // Both start with d, dmin, scales; Q5_K then has qh before qs.
      const bool five = type == TensorType::Q5_K;
      uint16_t d, dmin;
      std::memcpy(&d, block, 2);
      std::memcpy(&dmin, block + 2, 2);
      out->d = f16_to_f32(d);
      out->dmin = f16_to_f32(dmin);
      unpack_scales_mins(block + 4, out->scale, out->min);
      const uint8_t* qh = block + 4 + kKScaleBytes;
      const uint8_t* qs = five ? qh + kQKK / 8 : qh;
      for (int g = 0; g < 4; ++g) {
        for (int l = 0; l < 32; ++l) {
          int lo = qs[32 * g + l] & 0xF, hi = qs[32 * g + l] >> 4;
          if (five) {
            lo |= ((qh[l] >> (2 * g)) & 1) << 4;
            hi |= ((qh[l] >> (2 * g + 1)) & 1) << 4;
          }
          out->levels[64 * g + l] = static_cast<int8_t>(lo);
          out->levels[64 * g + 32 + l] = static_cast<int8_t>(hi);
        }
      }
      return;
    }
    case TensorType::Q6_K: {
      BlockQ6_K b;
      std::memcpy(&b, block, sizeof b);
      out->d = f16_to_f32(b.d);
      for (int j = 0; j < 16; ++j) out->scale[j] = b.scales[j];
      // Each half of 128: ql byte l holds values l (low nibble) and l+64 (high), byte l+32
      // holds l+32 and l+96; qh byte l holds the top two bits of l, l+32, l+64, l+96.
      for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b.ql + 64 * half;
        const uint8_t* qh = b.qh + 32 * half;
        int8_t* lv = out->levels + 128 * half;
        for (int l = 0; l < 32; ++l) {
          lv[l] = static_cast<int8_t>(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
          lv[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
          lv[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
          lv[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
      }
      return;
    }
    default:
      fail("decode_block: {} is not a quantized weight type", type_name(type));
  }
}

}  // namespace matmul_detail

namespace {

using matmul_detail::DecodedBlock;

void check_reference_args(const TensorView& w, const float* x, int64_t m, const float* y) {
  if (w.dims() < 1 || w.dims() > 2) fail("matmul: weight {} must be 2-D", w.name);
  if (!w.data && w.elements() > 0) fail("matmul: weight {} has no data", w.name);
  if (m < 0) fail("matmul: negative row count {} for weight {}", m, w.name);
  if (m > 0 && w.elements() > 0 && (!x || !y))
    fail("matmul: null input or output for weight {}", w.name);
  const TypeTraits& t = type_traits(w.type);
  if (w.row_len() % t.block_size != 0) {
    fail("matmul: weight {} rows of {} are not a multiple of {}'s block size {}", w.name,
         w.row_len(), t.name, t.block_size);
  }
}

}  // namespace

void matmul_reference(const TensorView& w, const float* x, int64_t m, float* y) {
  check_reference_args(w, x, m, y);
  const int64_t k = w.row_len(), n = w.rows();
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t c = 0; c < n; ++c) {
    dequantize_row_reference(w.type, w.row(c), row.data(), k);
    for (int64_t r = 0; r < m; ++r) {
      const float* xr = x + r * k;
      double sum = 0;
      for (int64_t i = 0; i < k; ++i)
        sum += static_cast<double>(xr[i]) * row[static_cast<size_t>(i)];
      y[r * n + c] = static_cast<float>(sum);
    }
  }
}

void matmul_quantized_reference(const TensorView& w, const float* x, int64_t m, float* y) {
  check_reference_args(w, x, m, y);
  if (!type_traits(w.type).quantized || w.type == TensorType::Q8_K)
    return matmul_reference(w, x, m, y);
  const int64_t k = w.row_len(), n = w.rows();
  const TensorType act_type = matmul_detail::activation_type(w.type);
  const TypeTraits& wt = type_traits(w.type);
  const int64_t blocks = k / wt.block_size;
  std::vector<uint8_t> act(row_bytes(act_type, k));
  DecodedBlock dec;
  for (int64_t r = 0; r < m; ++r) {
    quantize_row_reference(act_type, x + r * k, act.data(), k);
    for (int64_t c = 0; c < n; ++c) {
      const uint8_t* wrow = w.row(c);
      double sum = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        matmul_detail::decode_block(w.type, wrow + b * wt.block_bytes, &dec);
        if (act_type == TensorType::Q8_0) {
          const auto* a = reinterpret_cast<const BlockQ8_0*>(act.data()) + b;
          int64_t dot = 0;
          for (int i = 0; i < kQK0; ++i) dot += dec.levels[i] * a->qs[i];
          sum += static_cast<double>(f16_to_f32(a->d)) * dec.d * static_cast<double>(dot);
        } else {
          const auto* a = reinterpret_cast<const BlockQ8_K*>(act.data()) + b;
          const int gs = matmul_detail::group_size(w.type);
          int64_t scaled = 0, mins = 0;
          for (int g = 0; g < kQKK / gs; ++g) {
            int64_t dot = 0, qsum = 0;
            for (int i = g * gs; i < (g + 1) * gs; ++i) {
              dot += dec.levels[i] * a->qs[i];
              qsum += a->qs[i];
            }
            scaled += dec.scale[g] * dot;
            if (w.type != TensorType::Q6_K) mins += dec.min[g] * qsum;
          }
          sum += static_cast<double>(a->d) *
                 (static_cast<double>(dec.d) * static_cast<double>(scaled) -
                  static_cast<double>(dec.dmin) * static_cast<double>(mins));
        }
      }
      y[r * n + c] = static_cast<float>(sum);
    }
  }
}

}  // namespace ruvdllm
