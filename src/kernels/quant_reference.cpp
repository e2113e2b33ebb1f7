// Scalar reference (de)quantization for every TensorType: the definition that the SIMD
// paths in quant_simd.cpp and the integer dot products of the matmul are tested against.
//
// Activation quantization contract (the matmul's integer dot products rely on exactly this):
//   Q8_0 (blocks of 32): amax = max|x|; d = amax / 127 (float); id = d != 0 ? 1.0f / d : 0;
//        q = (int)std::round(x * id), i.e. rounding half away from zero, clamped to
//        [-127, 127]; the block stores f32_to_f16(d). q is computed with the unrounded d, so
//        q·f16(d) is off from x by the f16 rounding of d as well as by the rounding of q.
//   Q8_K (blocks of 256): amax = max|x|; d = amax / 127 kept as f32; q as for Q8_0 with
//        id = d != 0 ? 1.0f / d : 0; bsums[g] = sum of q[16g .. 16g+15].
// Dequantization of both is q·d with d read back as stored.
//
// Dequantization arithmetic order (the SIMD paths reproduce it bit for bit):
//   Q4_0: float(q - 8) * d          Q8_0 / Q8_K: float(q) * d
//   Q4_K / Q5_K: (d * sc) * float(q) - (dmin * m)
//   Q6_K: (d * sc) * float(q - 32)
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm {

// Defined in quant_reference_k.cpp; `blocks` super-blocks of 256 elements each.
namespace detail {
void quantize_q4_K_reference(const float* x, BlockQ4_K* out, int64_t blocks);
void quantize_q5_K_reference(const float* x, BlockQ5_K* out, int64_t blocks);
void quantize_q6_K_reference(const float* x, BlockQ6_K* out, int64_t blocks);
void dequantize_q4_K_reference(const BlockQ4_K* in, float* y, int64_t blocks);
void dequantize_q5_K_reference(const BlockQ5_K* in, float* y, int64_t blocks);
void dequantize_q6_K_reference(const BlockQ6_K* in, float* y, int64_t blocks);
}  // namespace detail

namespace {

// Returns the number of blocks in a row of n elements, or throws naming the operation.
int64_t blocks_in_row(const char* what, TensorType type, int64_t n) {
  const TypeTraits& traits = type_traits(type);
  if (n < 0 || n % traits.block_size != 0) {
    fail("{}: row of {} elements is not a multiple of {}'s block size {}", what, n, traits.name,
         traits.block_size);
  }
  return n / traits.block_size;
}

// Clamping the rounded float before the cast keeps NaN/inf input (→ −127/±127) well defined.
int round_clamp_127(float v) {
  const float r = std::round(v);
  return r >= 127.0f ? 127 : (r > -127.0f ? static_cast<int>(r) : -127);
}

float max_abs(const float* x, int n) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

void quantize_q8_0(const float* x, BlockQ8_0* out, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, x += kQK0) {
    const float d = max_abs(x, kQK0) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < kQK0; ++i) out[b].qs[i] = static_cast<int8_t>(round_clamp_127(x[i] * id));
    out[b].d = f32_to_f16(d);
  }
}

void quantize_q8_K(const float* x, BlockQ8_K* out, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, x += kQKK) {
    const float d = max_abs(x, kQKK) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int g = 0; g < kQKK / 16; ++g) {
      int sum = 0;
      for (int i = 16 * g; i < 16 * g + 16; ++i) {
        const int q = round_clamp_127(x[i] * id);
        out[b].qs[i] = static_cast<int8_t>(q);
        sum += q;
      }
      out[b].bsums[g] = static_cast<int16_t>(sum);
    }
    out[b].d = d;
  }
}

// +8.5 then truncation rounds to nearest (ties up) for the shifted value in [0, 16.5].
int level_q4_0(float scaled) {
  const float v = scaled + 8.5f;
  return v >= 15.0f ? 15 : (v > 0.0f ? static_cast<int>(v) : 0);
}

// The extreme value maps to q = 0 exactly (d takes its sign), so the lone level at -8 is not
// wasted; the opposite extreme may clip at +7, which costs less than losing the exact end.
void quantize_q4_0(const float* x, BlockQ4_0* out, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, x += kQK0) {
    float extreme = 0.0f;
    for (int i = 0; i < kQK0; ++i) {
      if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
    }
    const float d = extreme / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = f32_to_f16(d);
    for (int i = 0; i < kQK0 / 2; ++i) {
      out[b].qs[i] =
          static_cast<uint8_t>(level_q4_0(x[i] * id) | (level_q4_0(x[i + kQK0 / 2] * id) << 4));
    }
  }
}

void dequantize_q4_0(const BlockQ4_0* in, float* y, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, y += kQK0) {
    const float d = f16_to_f32(in[b].d);
    for (int i = 0; i < kQK0 / 2; ++i) {
      y[i] = static_cast<float>((in[b].qs[i] & 0xF) - 8) * d;
      y[i + kQK0 / 2] = static_cast<float>((in[b].qs[i] >> 4) - 8) * d;
    }
  }
}

void dequantize_q8_0(const BlockQ8_0* in, float* y, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, y += kQK0) {
    const float d = f16_to_f32(in[b].d);
    for (int i = 0; i < kQK0; ++i) y[i] = static_cast<float>(in[b].qs[i]) * d;
  }
}

void dequantize_q8_K(const BlockQ8_K* in, float* y, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, y += kQKK) {
    for (int i = 0; i < kQKK; ++i) y[i] = static_cast<float>(in[b].qs[i]) * in[b].d;
  }
}

}  // namespace

void quantize_row_reference(TensorType type, const float* x, void* out, int64_t n) {
  const int64_t blocks = blocks_in_row("quantize_row", type, n);
  switch (type) {
    case TensorType::F32:
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::F16: {
      auto* h = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(x[i]);
      return;
    }
    case TensorType::BF16: {
      auto* h = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(x[i]);
      return;
    }
    case TensorType::Q4_0:
      return quantize_q4_0(x, static_cast<BlockQ4_0*>(out), blocks);
    case TensorType::Q8_0:
      return quantize_q8_0(x, static_cast<BlockQ8_0*>(out), blocks);
    case TensorType::Q4_K:
      return detail::quantize_q4_K_reference(x, static_cast<BlockQ4_K*>(out), blocks);
    case TensorType::Q5_K:
      return detail::quantize_q5_K_reference(x, static_cast<BlockQ5_K*>(out), blocks);
    case TensorType::Q6_K:
      return detail::quantize_q6_K_reference(x, static_cast<BlockQ6_K*>(out), blocks);
    case TensorType::Q8_K:
      return quantize_q8_K(x, static_cast<BlockQ8_K*>(out), blocks);
  }
  fail("quantize_row: unsupported tensor type {}", static_cast<uint32_t>(type));
}

void dequantize_row_reference(TensorType type, const void* in, float* y, int64_t n) {
  const int64_t blocks = blocks_in_row("dequantize_row", type, n);
  switch (type) {
    case TensorType::F32:
      std::memcpy(y, in, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::F16: {
      const auto* h = static_cast<const uint16_t*>(in);
      for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(h[i]);
      return;
    }
    case TensorType::BF16: {
      const auto* h = static_cast<const uint16_t*>(in);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(h[i]);
      return;
    }
    case TensorType::Q4_0:
      return dequantize_q4_0(static_cast<const BlockQ4_0*>(in), y, blocks);
    case TensorType::Q8_0:
      return dequantize_q8_0(static_cast<const BlockQ8_0*>(in), y, blocks);
    case TensorType::Q4_K:
      return detail::dequantize_q4_K_reference(static_cast<const BlockQ4_K*>(in), y, blocks);
    case TensorType::Q5_K:
      return detail::dequantize_q5_K_reference(static_cast<const BlockQ5_K*>(in), y, blocks);
    case TensorType::Q6_K:
      return detail::dequantize_q6_K_reference(static_cast<const BlockQ6_K*>(in), y, blocks);
    case TensorType::Q8_K:
      return dequantize_q8_K(static_cast<const BlockQ8_K*>(in), y, blocks);
  }
  fail("dequantize_row: unsupported tensor type {}", static_cast<uint32_t>(type));
}

}  // namespace ruvdllm
