#pragma once
// Flash-style attention for inference on bf16 tensor cores: each block of queries streams the
// keys and values through shared memory with an online softmax (f32 statistics and
// accumulators), so no n_q × n_kv score matrix is ever stored. Same semantics as the CPU
// ruvdllm::attention (include/ruvdllm/kernels/ops.h) with AttentionShape's fields.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "ruvdllm/kernels/ops.h"

namespace ruvdllm::cuda {

struct FlashAttentionDims {
  int64_t n_seq = 1;
  int64_t n_q = 0;   // query rows per sequence
  int64_t n_kv = 0;  // key/value rows per sequence (a cached prefix first, then this pass's)
  int64_t n_head = 0;
  int64_t n_head_kv =
      0;  // n_head % n_head_kv == 0; query head h reads kv head h / (n_head / n_head_kv)
  int64_t head_dim = 0;  // a multiple of 16, at most 256
  float scale = 0;       // usually 1/sqrt(head_dim)
  MaskMode mask = MaskMode::Full;
  int64_t block_len = 0;  // for BlockCausal
  int64_t q_pos0 = 0;     // position of query row 0; key row j is at position j
  // Rows k and v hold per (sequence, kv head), at least n_kv (a KV cache sized for the whole
  // context holds more than this pass reads); 0: n_kv.
  int64_t kv_rows = 0;
  // Rows q holds per (sequence, head), at least n_q (queries that are a later part of a pass's
  // rows, q pointing at the first of them); 0: n_q.
  int64_t q_rows = 0;
  // Device memory (null: none) holding a count read when the kernel runs and added to n_kv and
  // q_pos0: the KV cache's length, so that one captured pass replays after any length. The
  // caller sets kv_rows and keeps n_kv + *past within it.
  const int32_t* past = nullptr;
};

// Head-major inputs: q [n_seq][n_head][q_rows][head_dim], of which the first n_q rows are read,
// and k and v [n_seq][n_head_kv][kv_rows][head_dim], of which the first n_kv rows are read.
// Output token-major, ready for the output projection: out [n_seq][n_q][n_head·head_dim] in
// bf16. A query that sees no key (impossible with the masks above when q_pos0 + i < n_kv) gets
// zeros. Error (ruvdllm::Error) for an unsupported head_dim or inconsistent dimensions.
void flash_attention(__nv_bfloat16* out, const __nv_bfloat16* q, const __nv_bfloat16* k,
                     const __nv_bfloat16* v, const FlashAttentionDims& dims, cudaStream_t stream);

// The same attention in f32 throughout (CUDA cores, one warp per query row, keys in order with
// an online softmax): the engine's exact-precision mode, whose results follow the CPU's within
// f32 rounding. Slow by design; no 16-byte alignment needed.
void exact_attention(float* out, const float* q, const float* k, const float* v,
                     const FlashAttentionDims& dims, cudaStream_t stream);

}  // namespace ruvdllm::cuda
