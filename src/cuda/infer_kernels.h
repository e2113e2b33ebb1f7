#pragma once
// Launchers for the inference kernels (infer_kernels.cu): weight dequantization into bf16,
// embedding lookup, and the element-wise work between the GEMMs of a denoising step, fused so
// that each activation is read and written once. The element-wise kernels write the next
// GEMM's operand: bf16, or f32 where the engine runs in its exact (f32) precision; arithmetic
// is f32 either way. All pointers are device pointers, matrices
// row-major, and every launcher runs asynchronously on `stream`. The math of each matches the
// CPU op of the same purpose in include/ruvdllm/kernels/ops.h and quant.h.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/kernels/ops.h"

namespace ruvdllm::cuda {

using bf16 = __nv_bfloat16;

// Types dequantize_to_bf16 and embed_rows accept: F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K.
bool dequantize_supported(TensorType type);

// `rows` rows of `cols` elements in GGUF's block layout for `type` (row stride: cols /
// block_size · block_bytes; cols a multiple of the block size) to a dense rows × cols bf16
// matrix (row stride cols). Error (ruvdllm::Error) for an unsupported type or a cols that is not
// a multiple of the block size.
void dequantize_to_bf16(bf16* out, const void* weights, TensorType type, int64_t rows, int64_t cols,
                        cudaStream_t stream);

// out[i] = row tokens[i] of the table (n_vocab rows of d elements of `type`), as f32.
void embed_rows(float* out, const void* table, TensorType type, const int32_t* tokens, int64_t n,
                int64_t d, cudaStream_t stream);

// y = x / rms(x) · w per row of d (x f32, w f32), written as the next GEMM's operand.
void rmsnorm_rows(bf16* y, const float* x, const float* w, int64_t rows, int64_t d, float eps,
                  cudaStream_t stream);
void rmsnorm_rows(float* y, const float* x, const float* w, int64_t rows, int64_t d, float eps,
                  cudaStream_t stream);

// The same after adding a split-K product into the residual stream: x += Σ_s partials[s]
// (n_partials f32 matrices of rows × d, one after another, summed in order s = 0, 1, …), then
// y = rmsnorm(x) · w. This is where a product computed as InferGemm::linear_split lands. Row r
// of y goes to y + r·ldy (ldy 0: d).
void residual_rmsnorm_rows(bf16* y, float* x, const float* partials, int n_partials, const float* w,
                           int64_t rows, int64_t d, float eps, cudaStream_t stream,
                           int64_t ldy = 0);
void residual_rmsnorm_rows(float* y, float* x, const float* partials, int n_partials,
                           const float* w, int64_t rows, int64_t d, float eps, cudaStream_t stream,
                           int64_t ldy = 0);

// What split_qkv_heads does to each token row.
struct QkvLayout {
  int64_t n_seq = 1;
  int64_t seq_len = 0;  // tokens per sequence; token t is sequence t / seq_len
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  // Position of token t's RoPE angle: pos0 + t % seq_len (pos0 > 0 after a cached prefix).
  int64_t pos0 = 0;
  // Rows of the K/V destination per (sequence, kv head): keys of this pass go at rows
  // [kv_row0, kv_row0 + seq_len) of a [n_seq][n_head_kv][kv_rows][head_dim] array, so a
  // cached prefix can sit before them. kv_rows = seq_len, kv_row0 = 0 without a cache.
  int64_t kv_rows = 0;
  int64_t kv_row0 = 0;
  // Device memory (null: none) holding a count read when the kernel runs and added to pos0 and
  // kv_row0: the KV cache's length, so that one captured pass replays after any length. The
  // caller keeps pos0 + *past and kv_row0 + *past + seq_len within the table and kv_rows.
  const int32_t* past = nullptr;
  RopeOrder order = RopeOrder::Normal;
  float eps = 1e-5f;  // of the per-head q/k RMSNorm
};

// qkv: f32 token rows [n_seq · seq_len][(n_head + 2·n_head_kv)·head_dim], each q | k | v (the
// output of one fused QKV GEMM). Per token and head: add bias (q | k | v, same width as a row;
// null: none), RMSNorm over head_dim with q_norm / k_norm (head_dim floats each; null: none, as
// LLaDA-MoE's QK-norm), rotate q and k by RoPE from cos_sin (rope_table() in train_kernels.h:
// [position][head_dim/2] (cos, sin) pairs), and write (bf16 or f32) head-major
//   q [n_seq][n_head][seq_len][head_dim], k and v [n_seq][n_head_kv][kv_rows][head_dim].
void split_qkv_heads(bf16* q, bf16* k, bf16* v, const float* qkv, const float* bias,
                     const float* q_norm, const float* k_norm, const float2* cos_sin,
                     const QkvLayout& layout, cudaStream_t stream);
// The same from a bf16 GEMM output (the engine's: half the bytes to write and read back).
void split_qkv_heads(bf16* q, bf16* k, bf16* v, const bf16* qkv, const float* bias,
                     const float* q_norm, const float* k_norm, const float2* cos_sin,
                     const QkvLayout& layout, cudaStream_t stream);
void split_qkv_heads(float* q, float* k, float* v, const float* qkv, const float* bias,
                     const float* q_norm, const float* k_norm, const float2* cos_sin,
                     const QkvLayout& layout, cudaStream_t stream);

// gate_up rows hold [gate (width) | up (width)] in f32 or bf16, or with `interleaved` the two
// in groups of 8 (swiglu.cuh; width a multiple of 8): h = silu(gate) ⊙ up, computed in f32 and
// written as the next GEMM's operand.
void swiglu_rows(bf16* h, const float* gate_up, int64_t rows, int64_t width, cudaStream_t stream,
                 bool interleaved = false);
void swiglu_rows(bf16* h, const bf16* gate_up, int64_t rows, int64_t width, cudaStream_t stream,
                 bool interleaved = false);
void swiglu_rows(float* h, const float* gate_up, int64_t rows, int64_t width, cudaStream_t stream,
                 bool interleaved = false);

// dst row i = src row ids[i], rows × width values: the output head's input for the rows a
// step samples, and in training the embedding lookup and the scored rows' head input. Rows
// of src and dst are src_ld and dst_ld values apart (0: width).
void gather_rows(bf16* dst, const bf16* src, const int32_t* ids, int64_t rows, int64_t width,
                 cudaStream_t stream, int64_t src_ld = 0, int64_t dst_ld = 0);
void gather_rows(float* dst, const float* src, const int32_t* ids, int64_t rows, int64_t width,
                 cudaStream_t stream, int64_t src_ld = 0, int64_t dst_ld = 0);

// f32 → bf16, round to nearest even (for tests and for weights already in f32).
void f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t stream);

// n bf16 values spread uniformly over [-1, 1] (draws in [-1, 1), rounded to bf16), a hash of
// (seed, index): operands for measuring the GEMM peak on data whose bits change as a model's
// do (constant or zero operands draw less power, so the card keeps a higher clock on them).
void fill_uniform_bf16(bf16* out, int64_t n, uint32_t seed, cudaStream_t stream);

}  // namespace ruvdllm::cuda
