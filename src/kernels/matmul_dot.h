#pragma once
// Internal contract between the matmul driver (matmul.cpp), the per-target inner kernels
// (matmul_dot*.cpp) and the references (matmul_reference.cpp).
//
// A quantized matmul runs in three stages:
//   1. every activation row is quantized once (Q8_0 or Q8_K values plus the per-block data
//      the kernels need), in the common ActRow layout below;
//   2. a panel of weight rows is unpacked into a target-specific layout in per-thread scratch
//      (levels interleaved so one vector load covers several weight rows, scales per row);
//   3. the kernel multiplies every activation row with the panel using integer dot products.
// The unpacked panel is read m times, so unpacking costs little once m reaches a few dozen.
#include <cstddef>
#include <cstdint>

#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::matmul_detail {

// ---------------------------------------------------------------------------------------
// Quantized activations. All targets share this layout (so the SIMD quantizer is tested
// once), parameterised by the rows per group G that a kernel processes together: the rows
// of a group are interleaved, so a kernel reaches all G rows from one pointer with constant
// offsets instead of holding G pointers (which spills general registers).
// Per group of G rows, each array below is [index][G lanes]:
//   qs:    int8 quads: [k/4][G][4]
//   d:     float per block [k/bs][G]: f16-rounded for Q8_0 (as the dot product uses it),
//          f32 for Q8_K
//   Q8_0:  corr:  int32 per 32-block [k/32][G] = -offset * (sum of the block's q), offset
//                 chosen by the kernels (they store weight levels + offset as unsigned)
//   Q8_K:  sum16: int16 pairs [k/32][G][2]: sums of the 16-value groups 2p and 2p+1
//          sum32: int16 pairs [k/64][G][2]: sums of the 32-value groups 2p and 2p+1
// ---------------------------------------------------------------------------------------
struct ActLayout {
  TensorType type = TensorType::Q8_0;  // Q8_0 or Q8_K
  int64_t k = 0;
  int64_t group_rows = 1;
  size_t d_offset = 0;
  size_t corr_offset = 0;   // Q8_0 only
  size_t sum16_offset = 0;  // Q8_K only
  size_t sum32_offset = 0;  // Q8_K only
  size_t group_bytes = 0;   // a multiple of 64
};

inline size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

// Q8_K activations for K-quant weights, Q8_0 for the 32-blocks.
inline bool is_k_quant(TensorType t) {
  return t == TensorType::Q4_K || t == TensorType::Q5_K || t == TensorType::Q6_K;
}
inline TensorType activation_type(TensorType weight) {
  return is_k_quant(weight) ? TensorType::Q8_K : TensorType::Q8_0;
}

inline ActLayout act_layout(TensorType weight_type, int64_t k, int64_t group_rows) {
  ActLayout a;
  a.type = activation_type(weight_type);
  a.k = k;
  a.group_rows = group_rows;
  const size_t n = static_cast<size_t>(k), g = static_cast<size_t>(group_rows);
  a.d_offset = round_up(n * g, 64);
  if (a.type == TensorType::Q8_0) {
    a.corr_offset = a.d_offset + n / 32 * g * sizeof(float);
    a.group_bytes = round_up(a.corr_offset + n / 32 * g * sizeof(int32_t), 64);
  } else {
    a.sum16_offset = a.d_offset + n / 256 * g * sizeof(float);
    a.sum32_offset = a.sum16_offset + n / 32 * g * 4;
    a.group_bytes = round_up(a.sum32_offset + n / 64 * g * 4, 64);
  }
  return a;
}

// Quantizes one activation row into lane `lane` of its group (dispatched to the best
// Highway target; matmul_dot.cpp). `offset` is the weight-level offset of the chosen kernels.
void quantize_activation_row(const ActLayout& layout, int32_t offset, const float* x,
                             uint8_t* group, int64_t lane);

// ---------------------------------------------------------------------------------------
// Integer view of one weight block, shared by the unpackers and the quantized reference.
//   Q8_0 / Q4_0 (32 values): value = d * level
//   Q4_K / Q5_K (256): value = d * scale[g] * level - dmin * min[g], g = i / 32
//   Q6_K (256): value = d * scale[g] * level, g = i / 16
// Levels are the signed true levels: Q4_0 in [-8, 7], Q6_K in [-32, 31], Q8_0 as stored,
// Q4_K in [0, 15], Q5_K in [0, 31].
// ---------------------------------------------------------------------------------------
struct DecodedBlock {
  int8_t levels[kQKK];
  int16_t scale[16];
  int16_t min[8];
  float d = 0;
  float dmin = 0;
};
// `block` points at one block of `type`; fills the first block_size levels.
void decode_block(TensorType type, const uint8_t* block, DecodedBlock* out);
// Only d, dmin, scale and min (cheap; for unpackers that extract levels with SIMD).
void decode_scales(TensorType type, const uint8_t* block, DecodedBlock* out);
// Elements per scale group: 32, except 16 for Q6_K.
inline int group_size(TensorType type) { return type == TensorType::Q6_K ? 16 : 32; }

// ---------------------------------------------------------------------------------------
// Per-target kernels. Every target fills this table; the driver never looks inside panels.
// ---------------------------------------------------------------------------------------
struct QuantKernels {
  const char* name = nullptr;
  // Rows per unpacked panel (a multiple of the kernel's strip width).
  int64_t panel_rows = 0;
  // Activation rows per group (ActLayout::group_rows) for a weight type.
  int64_t (*act_group_rows)(TensorType weight_type) = nullptr;
  // The level offset used for Q8_0 activations' corr field (see ActLayout).
  int32_t (*act_offset)(TensorType weight_type) = nullptr;
  size_t (*panel_bytes)(TensorType type, int64_t k) = nullptr;
  // Unpacks rows [0, rows) of w (row stride w_stride bytes) into a panel; rows may be fewer
  // than panel_rows: the rest is filled so it contributes zeros.
  void (*unpack)(TensorType type, const uint8_t* w, size_t w_stride, int64_t rows, int64_t k,
                 uint8_t* panel) = nullptr;
  // y[r][c] = activation row r · weight row c of the panel, for r < m and c < cols (cols <=
  // panel_rows); act holds ceil(m / act_group_rows) groups; y has row stride ldy floats.
  void (*multiply)(TensorType type, const uint8_t* panel, const ActLayout& layout,
                   const uint8_t* act, int64_t m, float* y, int64_t ldy, int64_t cols) = nullptr;
};

// Each returns the table for the target Highway chose at run time, or null if that file has
// no kernels for it. The driver takes the first non-null of vnni, avx2, portable.
const QuantKernels* vnni_kernels();
const QuantKernels* avx2_kernels();
const QuantKernels* portable_kernels();
// Chooses as above.
const QuantKernels& best_quant_kernels();

// Direct AVX-512 BF16 kernels for BF16 weights (matmul_dot_vnni.cpp), used instead of
// converting to f32 for OpenBLAS; null when the CPU or the chosen target lacks them.
// Activations are rounded to bf16 and stored in groups of group_rows rows, interleaved by
// pairs: group g holds [ceil(k/2) pairs][group_rows][2] uint16 (a zero pads an odd k).
struct Bf16Kernels {
  int64_t panel_rows = 0;
  int64_t group_rows = 0;
  size_t (*panel_bytes)(int64_t k) = nullptr;
  // Packs rows [0, rows) of w (rows <= panel_rows) into a panel; missing rows are zeros.
  void (*unpack)(const uint8_t* w, size_t w_stride, int64_t rows, int64_t k, uint8_t* panel) = nullptr;
  // y[r][c] = x[r] · w[c] for r < m, c < cols.
  void (*multiply)(const uint8_t* panel, const uint16_t* x, int64_t m, int64_t k, float* y, int64_t ldy,
                   int64_t cols) = nullptr;
};
const Bf16Kernels* bf16_kernels();

// Own f32 GEMM kernels (matmul_float.cpp) for F32/F16/BF16 weights converted to f32 rows; null
// on targets without them (then OpenBLAS is the only route).
struct FloatKernels {
  const char* name = nullptr;
  // Activation rows per packed strip (the vector lanes).
  int64_t lanes = 0;
  // Packs strip `strip` of x (m rows, row stride k) into out + strip·k·lanes as [k][lanes];
  // rows past m are zeros.
  void (*pack_activations)(const float* x, int64_t m, int64_t k, int64_t strip, float* out) = nullptr;
  // y[r][c] = x[r] · w[c] for r < m, c < cols; w rows have stride ldw floats; x packed as above.
  void (*multiply)(const float* xpacked, int64_t m, int64_t k, const float* w, int64_t ldw, int64_t cols, float* y,
                   int64_t ldy) = nullptr;
};
const FloatKernels* float_kernels();

// Name of the Highway target chosen at run time.
const char* chosen_target_name();

}  // namespace ruvdllm::matmul_detail
