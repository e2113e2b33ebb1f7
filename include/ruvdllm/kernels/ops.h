#pragma once
// Element-wise and row-wise kernels of a transformer step. Each has a scalar reference
// (`*_reference`) that tests compare the dispatched version with.
#include <cstdint>

#include "ruvdllm/core/thread_pool.h"

namespace ruvdllm {

// y[r] = x[r] / rms(x[r]) * weight, for `rows` rows of n. weight may be null (no scale).
// y may alias x.
void rmsnorm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps);
void rmsnorm_reference(const float* x, const float* weight, float* y, int64_t rows, int64_t n,
                       float eps);

// In-place softmax of each of `rows` rows of n.
void softmax(float* x, int64_t rows, int64_t n);
void softmax_reference(float* x, int64_t rows, int64_t n);

// out[i] = silu(gate[i]) * up[i]. out may alias gate.
void swiglu(const float* gate, const float* up, float* out, int64_t n);
void swiglu_reference(const float* gate, const float* up, float* out, int64_t n);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

enum class RopeOrder {
  Normal,  // rotate pairs (2i, 2i+1): LLaMA / LLaDA in llama.cpp's GGUF layout
  NeoX,    // rotate pairs (i, i + d/2): Qwen2 / Dream / LLaDA-MoE
};
// x holds n_tokens × n_heads × head_dim floats; token t is at position positions[t].
// Rotates the first rot_dim (even, <= head_dim) elements of each head, in place.
void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
          const int32_t* positions, float freq_base, RopeOrder order);
void rope_reference(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                    int64_t rot_dim, const int32_t* positions, float freq_base, RopeOrder order);

enum class MaskMode {
  Full,         // bidirectional: every query sees every key (LLaDA, Dream)
  Causal,       // key position <= query position (llama, qwen2; AR→diffusion conversion)
  BlockCausal,  // key block <= query block, blocks of block_len positions (block diffusion)
};

struct AttentionShape {
  int64_t n_q = 0;        // query rows
  int64_t n_kv = 0;       // key/value rows (cached prefix first, then this pass's rows)
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // n_heads % n_kv_heads == 0 (grouped-query attention)
  int64_t head_dim = 0;
  float scale = 0;         // usually 1/sqrt(head_dim)
  MaskMode mask = MaskMode::Full;
  int64_t block_len = 0;   // for BlockCausal
  int64_t q_pos0 = 0;      // position of query 0; key j is at position j
};
// q: n_q × n_heads × head_dim; k, v: n_kv × n_kv_heads × head_dim; out: n_q × n_heads × head_dim.
// Tiled with an online softmax, so no n_q × n_kv matrix is held per head.
void attention(const AttentionShape& s, const float* q, const float* k, const float* v,
               float* out, ThreadPool& pool);
void attention_reference(const AttentionShape& s, const float* q, const float* k,
                         const float* v, float* out);

}  // namespace ruvdllm
