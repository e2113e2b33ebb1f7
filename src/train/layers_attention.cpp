// Attention for training: per (sequence, head) the whole seq_len × seq_len probability matrix is
// materialised and saved, so the backward pass is three GEMMs and one element-wise pass.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/layers.h"
#include "train/layers_internal.h"

namespace ruvdllm::train {
namespace {

using detail::gemm;

void check_shape(const TrainAttentionShape& s) {
  if (s.n_seq < 0 || s.seq_len < 0) {
    fail("attention: bad shape ({} sequences of {} tokens)", s.n_seq, s.seq_len);
  }
  if (s.n_head <= 0 || s.n_head_kv <= 0 || s.n_head % s.n_head_kv != 0) {
    fail("attention: n_head {} is not a positive multiple of n_head_kv {}", s.n_head, s.n_head_kv);
  }
  if (s.head_dim <= 0) fail("attention: head_dim {} must be positive", s.head_dim);
  if (s.mask != MaskMode::Full && s.mask != MaskMode::Causal && s.mask != MaskMode::BlockCausal) {
    fail("attention: unknown mask mode {}", static_cast<int>(s.mask));
  }
  if (s.mask == MaskMode::BlockCausal && s.block_len <= 0) {
    fail("attention: block-causal mask needs block_len > 0, got {}", s.block_len);
  }
}

// Keys [0, end) are visible to query i of a sequence (positions restart at 0 per sequence).
int64_t visible_end(const TrainAttentionShape& s, int64_t i) {
  switch (s.mask) {
    case MaskMode::Causal:
      return i + 1;
    case MaskMode::BlockCausal:
      return std::min(s.seq_len, (i / s.block_len + 1) * s.block_len);
    case MaskMode::Full:
      break;
  }
  return s.seq_len;
}

template <typename T>
void softmax_rows(T* x, int64_t rows, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    softmax(x, rows, n);  // the runtime's vector kernel
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      T* xr = x + r * n;
      const T max = *std::max_element(xr, xr + n);
      T sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += xr[i] = std::exp(xr[i] - max);
      for (int64_t i = 0; i < n; ++i) xr[i] /= sum;
    }
  }
}

// Query rows per block. A block's scores (64 × seq_len) stay in L2 between the GEMM that makes
// them, the softmax and the GEMM that uses them, and under a causal mask a block computes only
// the keys its last row can see.
constexpr int64_t kRowBlock = 64;

// Scores → probabilities in place for rows [i0, i1) of one head's seq_len × seq_len matrix;
// masked entries (including the columns no GEMM wrote) become 0.
template <typename T>
void masked_softmax_rows(T* p, int64_t i0, int64_t i1, const TrainAttentionShape& s) {
  const int64_t len = s.seq_len;
  if (s.mask == MaskMode::Full) return softmax_rows(p + i0 * len, i1 - i0, len);
  for (int64_t i = i0; i < i1; ++i) {
    T* row = p + i * len;
    const int64_t end = visible_end(s, i);
    softmax_rows(row, 1, end);
    std::fill(row + end, row + len, T(0));
  }
}

// dP → dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place for `rows` rows starting at query i0; d has
// row stride `keys`, p row stride seq_len. Masked entries become 0.
template <typename T>
void softmax_backward_rows(T* d, const T* p, int64_t i0, int64_t rows, int64_t keys,
                           const TrainAttentionShape& s) {
  for (int64_t r = 0; r < rows; ++r) {
    T* drow = d + r * keys;
    const T* prow = p + r * s.seq_len;
    const int64_t end = visible_end(s, i0 + r);
    if constexpr (std::is_same_v<T, float>) {
      detail::softmax_backward_row_simd(drow, prow, end);
    } else {
      detail::softmax_backward_row_scalar(drow, prow, end);
    }
    std::fill(drow + end, drow + keys, T(0));
  }
}

template <typename T>
T attention_scale(const TrainAttentionShape& s) {
  return T(1) / std::sqrt(static_cast<T>(s.head_dim));
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v,
                       const TrainAttentionShape& s, ThreadPool* pool) {
  check_shape(s);
  const int64_t len = s.seq_len, hd = s.head_dim, group = s.n_head / s.n_head_kv;
  const int64_t q_stride = s.n_head * hd, kv_stride = s.n_head_kv * hd;
  const T scale = attention_scale<T>(s);
  // One task per (sequence, head): each writes only its own slice of out and probs.
  detail::run_tasks(pool, s.n_seq * s.n_head, [&](int64_t task, int) {
    const int64_t b = task / s.n_head, h = task % s.n_head, g = h / group;
    const T* qh = q + b * len * q_stride + h * hd;
    const T* kg = k + b * len * kv_stride + g * hd;
    const T* vg = v + b * len * kv_stride + g * hd;
    T* outh = out + b * len * q_stride + h * hd;
    T* p = probs + task * len * len;
    for (int64_t i0 = 0; i0 < len; i0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, len - i0);
      const int64_t keys = visible_end(s, i0 + rows - 1);
      T* pb = p + i0 * len;
      gemm<T>(false, true, rows, keys, hd, scale, qh + i0 * q_stride, q_stride, kg, kv_stride, T(0),
              pb, len);
      masked_softmax_rows(p, i0, i0 + rows, s);
      gemm<T>(false, false, rows, hd, keys, T(1), pb, len, vg, kv_stride, T(0),
              outh + i0 * q_stride, q_stride);
    }
  });
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* probs, const T* q, const T* k,
                        const T* v, const TrainAttentionShape& s, ThreadPool* pool) {
  check_shape(s);
  const int64_t len = s.seq_len, hd = s.head_dim, group = s.n_head / s.n_head_kv;
  const int64_t q_stride = s.n_head * hd, kv_stride = s.n_head_kv * hd;
  const T scale = attention_scale<T>(s);
  const bool need_scores = dq || dk;
  const int64_t block_elems = std::min(kRowBlock, len) * len;
  std::unique_ptr<T[]> scratch;
  if (need_scores && len > 0) {
    scratch.reset(new T[static_cast<size_t>(detail::pool_threads(pool) * block_elems)]);
  }
  // One task per (sequence, K/V head): the query heads of a group all add into the same dK and
  // dV rows, so they run inside one task, in a fixed order, whatever the thread count.
  detail::run_tasks(pool, s.n_seq * s.n_head_kv, [&](int64_t task, int thread) {
    const int64_t b = task / s.n_head_kv, g = task % s.n_head_kv;
    const int64_t kv_offset = b * len * kv_stride + g * hd;
    T* ds = need_scores ? scratch.get() + thread * block_elems : nullptr;
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const T* p = probs + (b * s.n_head + h) * len * len;
      for (int64_t i0 = 0; i0 < len; i0 += kRowBlock) {
        const int64_t rows = std::min(kRowBlock, len - i0);
        const int64_t keys = visible_end(s, i0 + rows - 1);
        const int64_t q_offset = (b * len + i0) * q_stride + h * hd;
        const T* pb = p + i0 * len;
        const T* dout_b = dout + q_offset;
        if (dv) {
          gemm<T>(true, false, keys, hd, rows, T(1), pb, len, dout_b, q_stride, T(1),
                  dv + kv_offset, kv_stride);
        }
        if (!need_scores) continue;
        gemm<T>(false, true, rows, keys, hd, T(1), dout_b, q_stride, v + kv_offset, kv_stride, T(0),
                ds, keys);
        softmax_backward_rows(ds, pb, i0, rows, keys, s);
        if (dq) {
          gemm<T>(false, false, rows, hd, keys, scale, ds, keys, k + kv_offset, kv_stride, T(1),
                  dq + q_offset, q_stride);
        }
        if (dk) {
          gemm<T>(true, false, keys, hd, rows, scale, ds, keys, q + q_offset, q_stride, T(1),
                  dk + kv_offset, kv_stride);
        }
      }
    }
  });
}

#define RUVDLLM_INSTANTIATE_ATTENTION(T)                                                  \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*,                \
                                     const TrainAttentionShape&, ThreadPool*);            \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, \
                                      const T*, const TrainAttentionShape&, ThreadPool*);

RUVDLLM_INSTANTIATE_ATTENTION(float)
RUVDLLM_INSTANTIATE_ATTENTION(double)
#undef RUVDLLM_INSTANTIATE_ATTENTION

}  // namespace ruvdllm::train
