// Multi-head attention with grouped-query heads and three mask modes: a scalar reference, and a
// tiled flash-style version with an online softmax. The tiled version works on one
// (head, query tile) at a time, so its memory is a few tiles per thread whatever the length.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/ops.h"

#ifndef RUVDLLM_KERNELS_ATTENTION_SHARED
#define RUVDLLM_KERNELS_ATTENTION_SHARED
namespace ruvdllm::attention_hwy {

// 64 queries × 64 keys keeps a tile's scores, transposed queries and output rows for
// head_dim 64 within L1/L2 and gives enough (head, tile) tasks to balance two threads.
constexpr int64_t kQueryTile = 64;
constexpr int64_t kKeyTile = 64;

// The smallest query position that sees the key at key_pos (visibility only grows with the
// query position under every mask mode).
inline int64_t first_seeing_position(MaskMode mask, int64_t block_len, int64_t key_pos) {
  if (mask == MaskMode::Causal) return key_pos;
  if (mask == MaskMode::BlockCausal) return key_pos / block_len * block_len;
  return std::numeric_limits<int64_t>::min();
}

// One past the last key position that a query at q_pos sees.
inline int64_t visible_key_end(MaskMode mask, int64_t block_len, int64_t q_pos) {
  if (mask == MaskMode::Causal) return q_pos + 1;
  if (mask == MaskMode::BlockCausal) return (q_pos / block_len + 1) * block_len;
  return std::numeric_limits<int64_t>::max();
}

// One (head, query tile) unit of work. Rows of q/out and keys of k/v are `*_stride` floats
// apart; the pointers already point at the tile's head.
struct TileJob {
  const float* q = nullptr;
  int64_t q_stride = 0;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t kv_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
  int64_t n_rows = 0;  // queries in this tile, <= kQueryTile
  int64_t head_dim = 0;
  float scale = 0;
  int64_t kv_end = 0;        // keys from here on are hidden from every row of the tile
  int64_t unmasked_end = 0;  // keys before this are visible to every row of the tile
  MaskMode mask = MaskMode::Full;
  int64_t block_len = 0;
  int64_t pos0 = 0;  // position of the tile's first query
};

}  // namespace ruvdllm::attention_hwy
#endif  // RUVDLLM_KERNELS_ATTENTION_SHARED

// foreach_target.h must come before the other Highway headers: it re-includes this file
// once per SIMD target. Include sorting would break that.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace ruvdllm::attention_hwy::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Register blocking of the two small matrix products: a block keeps ROWS × VECS accumulators
// in registers and reuses each loaded vector ROWS times. AVX-512 has 32 vector registers,
// the other targets 16 (12 accumulators, the loaded vectors and a broadcast fill them).
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr int kScoreKeys = 4, kScoreQueryVecs = 4;
constexpr int kValueRows = 4, kValueDimVecs = 4;
#else
constexpr int kScoreKeys = 4, kScoreQueryVecs = 3;
constexpr int kValueRows = 4, kValueDimVecs = 3;
#endif

// Scores of KR keys against QV vectors of queries: st[r][query] = Σ_d key_r[d] · qt[d][query].
// qt holds the tile's queries transposed (one row per head dimension, pre-scaled), so the
// scores come out with queries along the vector lanes, as the online softmax wants them.
template <int KR, int QV>
HWY_INLINE void ScoreBlock(DF d, const float* HWY_RESTRICT qt, int64_t qp,
                           const float* HWY_RESTRICT key, int64_t key_stride, int64_t head_dim,
                           float* HWY_RESTRICT st) {
  const size_t N = hn::Lanes(d);
  VF acc[KR][QV];
#pragma GCC unroll 16
  for (int r = 0; r < KR; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < QV; ++c) acc[r][c] = hn::Zero(d);
  }
  for (int64_t dim = 0; dim < head_dim; ++dim) {
    VF qv[QV];
#pragma GCC unroll 16
    for (int c = 0; c < QV; ++c) qv[c] = hn::LoadU(d, qt + dim * qp + c * N);
#pragma GCC unroll 16
    for (int r = 0; r < KR; ++r) {
      const VF kb = hn::Set(d, key[r * key_stride + dim]);
#pragma GCC unroll 16
      for (int c = 0; c < QV; ++c) acc[r][c] = hn::MulAdd(kb, qv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < KR; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < QV; ++c) hn::StoreU(acc[r][c], d, st + r * qp + c * N);
  }
}

// KR keys against every query vector: full blocks of QV, then narrower ones for the rest.
template <int KR, int QV>
HWY_INLINE void ScoreKeyGroup(DF d, const float* qt, int64_t qp, int64_t query_vecs,
                              const float* key, int64_t key_stride, int64_t head_dim, float* st) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t c = 0;
  for (; c + QV <= query_vecs; c += QV) {
    ScoreBlock<KR, QV>(d, qt + c * N, qp, key, key_stride, head_dim, st + c * N);
  }
  if constexpr (QV > 1) {
    if (c < query_vecs) {
      ScoreKeyGroup<KR, QV - 1>(d, qt + c * N, qp, query_vecs - c, key, key_stride, head_dim,
                                st + c * N);
    }
  }
}

template <int KR>
void ScoreKeys(DF d, const float* qt, int64_t qp, int64_t query_vecs, const float* key,
               int64_t key_stride, int64_t n_keys, int64_t head_dim, float* st) {
  int64_t j = 0;
  for (; j + KR <= n_keys; j += KR) {
    ScoreKeyGroup<KR, kScoreQueryVecs>(d, qt, qp, query_vecs, key + j * key_stride, key_stride,
                                       head_dim, st + j * qp);
  }
  if constexpr (KR > 1) {
    if (j < n_keys) {
      ScoreKeys<KR - 1>(d, qt, qp, query_vecs, key + j * key_stride, key_stride, n_keys - j,
                        head_dim, st + j * qp);
    }
  }
}

// acc[r][:] += Σ_j p[j][r] · value_j[:] for IR query rows and DV vectors of head dimensions.
template <int IR, int DV>
HWY_INLINE void ValueBlock(DF d, const float* HWY_RESTRICT p, int64_t qp, int64_t n_keys,
                           const float* HWY_RESTRICT values, int64_t value_stride,
                           float* HWY_RESTRICT acc, int64_t acc_stride) {
  const size_t N = hn::Lanes(d);
  VF o[IR][DV];
#pragma GCC unroll 16
  for (int r = 0; r < IR; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < DV; ++c) o[r][c] = hn::LoadU(d, acc + r * acc_stride + c * N);
  }
  for (int64_t j = 0; j < n_keys; ++j) {
    VF vv[DV];
#pragma GCC unroll 16
    for (int c = 0; c < DV; ++c) vv[c] = hn::LoadU(d, values + j * value_stride + c * N);
#pragma GCC unroll 16
    for (int r = 0; r < IR; ++r) {
      const VF pb = hn::Set(d, p[j * qp + r]);
#pragma GCC unroll 16
      for (int c = 0; c < DV; ++c) o[r][c] = hn::MulAdd(pb, vv[c], o[r][c]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < IR; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < DV; ++c) hn::StoreU(o[r][c], d, acc + r * acc_stride + c * N);
  }
}

template <int IR, int DV>
HWY_INLINE void ValueRowGroup(DF d, const float* p, int64_t qp, int64_t n_keys, const float* values,
                              int64_t value_stride, int64_t dim_vecs, float* acc,
                              int64_t acc_stride) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t c = 0;
  for (; c + DV <= dim_vecs; c += DV) {
    ValueBlock<IR, DV>(d, p, qp, n_keys, values + c * N, value_stride, acc + c * N, acc_stride);
  }
  if constexpr (DV > 1) {
    if (c < dim_vecs) {
      ValueRowGroup<IR, DV - 1>(d, p, qp, n_keys, values + c * N, value_stride, dim_vecs - c,
                                acc + c * N, acc_stride);
    }
  }
}

template <int IR>
void AccumulateValues(DF d, const float* p, int64_t qp, int64_t n_rows, int64_t n_keys,
                      const float* values, int64_t value_stride, int64_t dim_vecs, float* acc,
                      int64_t acc_stride) {
  int64_t i = 0;
  for (; i + IR <= n_rows; i += IR) {
    ValueRowGroup<IR, kValueDimVecs>(d, p + i, qp, n_keys, values, value_stride, dim_vecs,
                                     acc + i * acc_stride, acc_stride);
  }
  if constexpr (IR > 1) {
    if (i < n_rows) {
      AccumulateValues<IR - 1>(d, p + i, qp, n_rows - i, n_keys, values, value_stride, dim_vecs,
                               acc + i * acc_stride, acc_stride);
    }
  }
}

// Folds a tile of scores into the running max m and running sum l of every query, turning the
// scores into unnormalised probabilities in place; alpha receives the factor by which the
// rows' earlier output sums must shrink.
void OnlineSoftmax(DF d, float* st, int64_t qp, int64_t query_vecs, int64_t n_keys, float* m,
                   float* l, float* alpha) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF neg_inf = hn::Set(d, -std::numeric_limits<float>::infinity());
  for (int64_t c = 0; c < query_vecs; ++c) {
    float* col = st + c * N;
    VF tile_max = neg_inf;
    for (int64_t j = 0; j < n_keys; ++j) tile_max = hn::Max(tile_max, hn::LoadU(d, col + j * qp));
    const VF m_old = hn::LoadU(d, m + c * N);
    const VF m_new = hn::Max(m_old, tile_max);
    // A row that has seen only masked keys keeps max -inf; measuring from 0 instead makes
    // its exps exactly 0 rather than NaN.
    const VF m_ref = hn::IfThenElse(hn::Eq(m_new, neg_inf), hn::Zero(d), m_new);
    VF sum = hn::Zero(d);
    for (int64_t j = 0; j < n_keys; ++j) {
      const VF e = hn::Exp(d, hn::Sub(hn::LoadU(d, col + j * qp), m_ref));
      hn::StoreU(e, d, col + j * qp);
      sum = hn::Add(sum, e);
    }
    const VF a = hn::Exp(d, hn::Sub(m_old, m_ref));
    hn::StoreU(hn::MulAdd(hn::LoadU(d, l + c * N), a, sum), d, l + c * N);
    hn::StoreU(m_new, d, m + c * N);
    hn::StoreU(a, d, alpha + c * N);
  }
}

// Per-thread scratch, kept between calls so steady-state attention allocates nothing.
float* ThreadScratch(size_t floats) {
  constexpr size_t kAlignFloats = 64 / sizeof(float);
  thread_local std::vector<float> buffer;
  if (buffer.size() < floats + kAlignFloats) buffer.resize(floats + kAlignFloats);
  float* p = buffer.data();
  while (reinterpret_cast<uintptr_t>(p) % 64 != 0) ++p;
  return p;
}

void AttendTile(const TileJob& t) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const int64_t rows = t.n_rows, head_dim = t.head_dim;
  const int64_t query_vecs = (rows + N - 1) / N;
  const int64_t qp = query_vecs * N;  // padded query count: lanes past `rows` are ignored
  const int64_t dim_vecs = (head_dim + N - 1) / N;
  const int64_t hdp = dim_vecs * N;
  // Each key tile's V rows are copied into contiguous, zero-padded rows first: the caller's
  // rows sit n_kv_heads·head_dim floats apart (3 KiB for the 160m model), a stride that maps
  // a tile's rows onto few L1 sets although every query row group re-reads them, and the
  // padding lets every head_dim be read a whole vector at a time. (K rows are read once per
  // query vector group in short bursts and gain nothing from a copy.)
  float* qt = ThreadScratch(
      static_cast<size_t>(head_dim * qp + kKeyTile * qp + qp * hdp + 3 * qp + kKeyTile * hdp));
  float* st = qt + head_dim * qp;
  float* acc = st + kKeyTile * qp;
  float* m = acc + qp * hdp;
  float* l = m + qp;
  float* alpha = l + qp;
  float* vpack = alpha + qp;

  for (int64_t i = 0; i < qp; ++i) {
    for (int64_t dim = 0; dim < head_dim; ++dim) {
      qt[dim * qp + i] = i < rows ? t.q[i * t.q_stride + dim] * t.scale : 0.0f;
    }
  }
  std::fill(m, m + qp, -std::numeric_limits<float>::infinity());
  std::fill(l, l + qp, 0.0f);
  std::fill(acc, acc + qp * hdp, 0.0f);

  for (int64_t j0 = 0; j0 < t.kv_end; j0 += kKeyTile) {
    const int64_t n_keys = std::min(kKeyTile, t.kv_end - j0);
    // The next tile's strided K/V rows come from L3 or memory once K and V outgrow L2
    // (n_kv in the thousands); asking for them a tile ahead hides that latency.
    const int64_t next_end = std::min(t.kv_end, j0 + n_keys + kKeyTile);
    for (int64_t j = j0 + n_keys; j < next_end; ++j) {
      for (int64_t dim = 0; dim < head_dim; dim += 16) {
        __builtin_prefetch(t.k + j * t.kv_stride + dim);
        __builtin_prefetch(t.v + j * t.kv_stride + dim);
      }
    }
    ScoreKeys<kScoreKeys>(d, qt, qp, query_vecs, t.k + j0 * t.kv_stride, t.kv_stride, n_keys,
                          head_dim, st);
    for (int64_t j = std::max(j0, t.unmasked_end); j < j0 + n_keys; ++j) {
      const int64_t hidden_rows =
          std::clamp<int64_t>(first_seeing_position(t.mask, t.block_len, j) - t.pos0, 0, qp);
      std::fill(st + (j - j0) * qp, st + (j - j0) * qp + hidden_rows,
                -std::numeric_limits<float>::infinity());
    }
    OnlineSoftmax(d, st, qp, query_vecs, n_keys, m, l, alpha);
    for (int64_t i = 0; i < rows; ++i) {
      const VF a = hn::Set(d, alpha[i]);
      float* row = acc + i * hdp;
      for (int64_t c = 0; c < hdp; c += N) hn::Store(hn::Mul(hn::Load(d, row + c), a), d, row + c);
    }
    for (int64_t j = 0; j < n_keys; ++j) {
      std::memcpy(vpack + j * hdp, t.v + (j0 + j) * t.kv_stride,
                  static_cast<size_t>(head_dim) * sizeof(float));
      std::fill(vpack + j * hdp + head_dim, vpack + (j + 1) * hdp, 0.0f);
    }
    AccumulateValues<kValueRows>(d, st, qp, rows, n_keys, vpack, hdp, dim_vecs, acc, hdp);
  }

  for (int64_t i = 0; i < rows; ++i) {
    // Every query sees at least key 0, so l > 0; the guard only keeps a broken caller finite.
    const float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
    const float* row = acc + i * hdp;
    float* dst = t.out + i * t.out_stride;
    int64_t dim = 0;
    for (; dim + N <= head_dim; dim += N) {
      hn::StoreU(hn::Mul(hn::Load(d, row + dim), hn::Set(d, inv)), d, dst + dim);
    }
    for (; dim < head_dim; ++dim) dst[dim] = row[dim] * inv;
  }
}

}  // namespace ruvdllm::attention_hwy::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ruvdllm {
namespace attention_hwy {
HWY_EXPORT(AttendTile);

void check_shape(const AttentionShape& s) {
  if (s.n_q < 0 || s.n_kv < 0) fail("attention: negative size (n_q {}, n_kv {})", s.n_q, s.n_kv);
  if (s.n_heads <= 0 || s.n_kv_heads <= 0 || s.n_heads % s.n_kv_heads != 0) {
    fail("attention: n_heads {} is not a positive multiple of n_kv_heads {}", s.n_heads,
         s.n_kv_heads);
  }
  if (s.head_dim <= 0) fail("attention: head_dim {} must be positive", s.head_dim);
  if (!(s.scale > 0) || !std::isfinite(s.scale)) {
    fail("attention: scale {} must be positive and finite", s.scale);
  }
  if (s.q_pos0 < 0) fail("attention: q_pos0 {} is negative", s.q_pos0);
  if (s.n_q > 0 && s.n_kv == 0) fail("attention: {} queries but no keys", s.n_q);
  switch (s.mask) {
    case MaskMode::Full:
      return;
    case MaskMode::BlockCausal:
      if (s.block_len <= 0)
        fail("attention: block-causal mask needs block_len > 0, got {}", s.block_len);
      [[fallthrough]];
    case MaskMode::Causal:
      // A masked query must find its own position among the keys, as with a cached prefix
      // followed by this pass's rows.
      if (s.q_pos0 + s.n_q > s.n_kv) {
        fail("attention: queries reach position {} but there are only {} keys",
             s.q_pos0 + s.n_q - 1, s.n_kv);
      }
      return;
  }
  fail("attention: unknown mask mode {}", static_cast<int>(s.mask));
}

bool key_visible(const AttentionShape& s, int64_t key_pos, int64_t q_pos) {
  return key_pos < visible_key_end(s.mask, s.block_len, q_pos);
}

}  // namespace attention_hwy

// The dispatch table (and, where only one target is compiled, as on aarch64 with NEON alone,
// the target namespace HWY_DYNAMIC_DISPATCH names) are found through this directive: a
// qualified name would expand to N_NEON::attention_hwy::F there.
using namespace attention_hwy;

void attention_reference(const AttentionShape& s, const float* q, const float* k, const float* v,
                         float* out) {
  attention_hwy::check_shape(s);
  const int64_t group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  std::vector<double> weight(static_cast<size_t>(s.n_kv));
  std::vector<double> acc(static_cast<size_t>(hd));
  for (int64_t i = 0; i < s.n_q; ++i) {
    const int64_t q_pos = s.q_pos0 + i;
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const float* qi = q + (i * s.n_heads + h) * hd;
      const int64_t g = h / group;
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < s.n_kv; ++j) {
        double& w = weight[static_cast<size_t>(j)];
        if (!attention_hwy::key_visible(s, j, q_pos)) {
          w = -std::numeric_limits<double>::infinity();
          continue;
        }
        const float* kj = k + (j * s.n_kv_heads + g) * hd;
        double dot = 0;
        for (int64_t e = 0; e < hd; ++e) dot += static_cast<double>(qi[e]) * kj[e];
        w = s.scale * dot;
        max = std::max(max, w);
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double sum = 0;
      for (int64_t j = 0; j < s.n_kv; ++j) {
        const double w = weight[static_cast<size_t>(j)];
        if (w == -std::numeric_limits<double>::infinity()) continue;
        const double p = std::exp(w - max);
        sum += p;
        const float* vj = v + (j * s.n_kv_heads + g) * hd;
        for (int64_t e = 0; e < hd; ++e) acc[static_cast<size_t>(e)] += p * vj[e];
      }
      float* o = out + (i * s.n_heads + h) * hd;
      for (int64_t e = 0; e < hd; ++e) o[e] = static_cast<float>(acc[static_cast<size_t>(e)] / sum);
    }
  }
}

void attention(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
               ThreadPool& pool) {
  using attention_hwy::kQueryTile;
  attention_hwy::check_shape(s);
  if (s.n_q == 0) return;
  const int64_t n_tiles = (s.n_q + kQueryTile - 1) / kQueryTile;
  const int64_t group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  pool.parallel_for(s.n_heads * n_tiles, [&](int64_t task, int) {
    // Last query tiles first: under a causal mask they see the most keys, and starting the
    // longest tasks early balances the threads.
    const int64_t tile = n_tiles - 1 - task / s.n_heads;
    const int64_t h = task % s.n_heads;
    const int64_t i0 = tile * kQueryTile;
    attention_hwy::TileJob job;
    job.n_rows = std::min(kQueryTile, s.n_q - i0);
    job.q = q + (i0 * s.n_heads + h) * hd;
    job.q_stride = s.n_heads * hd;
    job.k = k + (h / group) * hd;
    job.v = v + (h / group) * hd;
    job.kv_stride = s.n_kv_heads * hd;
    job.out = out + (i0 * s.n_heads + h) * hd;
    job.out_stride = s.n_heads * hd;
    job.head_dim = hd;
    job.scale = s.scale;
    job.mask = s.mask;
    job.block_len = s.block_len;
    job.pos0 = s.q_pos0 + i0;
    job.kv_end = std::min(
        s.n_kv, attention_hwy::visible_key_end(s.mask, s.block_len, job.pos0 + job.n_rows - 1));
    job.unmasked_end =
        std::min(job.kv_end, attention_hwy::visible_key_end(s.mask, s.block_len, job.pos0));
    HWY_DYNAMIC_DISPATCH(AttendTile)(job);
  });
}

}  // namespace ruvdllm
#endif  // HWY_ONCE
