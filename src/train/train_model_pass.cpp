// TrainModel's forward and backward passes: Model::forward's math (model/transformer.cpp) as a
// chain of the per-layer passes of layers.h (norms, RoPE, attention, SwiGLU, cross entropy),
// with the linear layers' GEMMs grouped and cut for two cores here (see dense_forward), and
// every activation the backward pass reads kept in float.
//
// Work is split over the pool in chunks that depend on the shapes only, never on the thread
// count, and every chunk writes its own output (sums over chunks are added in chunk order), so
// losses and gradients are bitwise the same at any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/layers.h"
#include "train/layers_internal.h"
#include "train/train_model_impl.h"

namespace ruvdllm::train {
namespace detail {

float* Buffer::zeroed(size_t n) {
  float* p = get(n);
  std::memset(p, 0, n * sizeof(float));
  return p;
}

}  // namespace detail

namespace {

using detail::Buffer;
using detail::LayerActivations;
using detail::LayerSlots;

// Chunks of at least min_len items, at most kMaxChunks of them: enough to balance a few cores,
// few enough that each chunk's per-call overhead stays small.
constexpr int64_t kMaxChunks = 16;

int64_t chunk_count(int64_t total, int64_t min_len) {
  return std::clamp<int64_t>(total / std::max<int64_t>(min_len, 1), 1, kMaxChunks);
}

void for_chunks(ThreadPool& pool, int64_t total, int64_t min_len,
                const std::function<void(int64_t begin, int64_t end, int64_t chunk)>& fn) {
  if (total <= 0) return;
  const int64_t n = chunk_count(total, min_len);
  if (n == 1) {
    fn(0, total, 0);
    return;
  }
  pool.parallel_for(n, [&](int64_t chunk, int) {
    fn(total * chunk / n, total * (chunk + 1) / n, chunk);
  });
}

constexpr int64_t kRowsPerChunk = 32;

// The linear layers' GEMMs, cut for OpenBLAS's single-threaded SGEMM: it packs whichever
// operand a call does not slice, so narrow slices of W (as layers.h's linear passes cut them
// for one layer at a time) re-pack the whole activation matrix many times. Here every slice
// is at least 256 rows of activations or 256 rows of W, and the GEMMs of layers that share an
// input (q/k/v, gate/up) go to the pool as one task list, so two cores stay busy without
// thin slices. Measured on this machine's Zen 3 core (OpenBLAS 0.3.21): 384→1024 at 2048 rows
// runs at 60 GFLOP/s in 64-wide W slices, 71–83 in 256-row slices.
constexpr int64_t kGemmRows = 256;

struct DenseOut {
  float* y;        // n × out, overwritten
  const float* w;  // out × in
  const float* b;  // out, or null
  int64_t out;
};

// y_j = x·W_jᵀ + b_j for each output j: in row chunks, or, where W_j is the larger operand (the
// output head), in slices of W_j's rows so that it is packed once.
void dense_forward(ThreadPool& pool, const float* x, int64_t n, int64_t in,
                   std::initializer_list<DenseOut> outs) {
  struct Task {
    const DenseOut* o;
    int64_t r0, r1, c0, c1;  // rows of x, rows of W
  };
  std::vector<Task> tasks;
  for (const DenseOut& o : outs) {
    const bool by_rows = n >= o.out;
    const int64_t total = by_rows ? n : o.out;
    const int64_t chunks = chunk_count(total, kGemmRows);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t b = total * c / chunks, e = total * (c + 1) / chunks;
      tasks.push_back(by_rows ? Task{&o, b, e, 0, o.out} : Task{&o, 0, n, b, e});
    }
  }
  pool.parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t i, int) {
    const Task& t = tasks[static_cast<size_t>(i)];
    const DenseOut& o = *t.o;
    const int64_t rows = t.r1 - t.r0, cols = t.c1 - t.c0;
    float* y = o.y + t.r0 * o.out + t.c0;
    if (o.b) {
      for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * o.out, o.b + t.c0, static_cast<size_t>(cols) * sizeof(float));
    }
    detail::gemm<float>(false, true, rows, cols, in, 1.0f, x + t.r0 * in, in, o.w + t.c0 * in, in, o.b ? 1.0f : 0.0f,
                        y, o.out);
  });
}

struct DenseGrad {
  const float* dy;  // n × out
  const float* w;   // out × in
  float* dw;        // out × in, accumulated; null when frozen
  int64_t out;
};

// dx = Σ_j dy_j·W_j (row chunks; dx may be null) and dW_j += dy_jᵀ·x (slices of W_j's rows),
// all as one task list, the long dW tasks first.
void dense_backward(ThreadPool& pool, float* dx, const float* x, int64_t n, int64_t in,
                    std::initializer_list<DenseGrad> grads) {
  struct Task {
    const DenseGrad* g;  // null: a dx row chunk
    int64_t begin, end;
  };
  std::vector<Task> tasks;
  for (const DenseGrad& g : grads) {
    if (!g.dw) continue;  // frozen
    const int64_t slices = chunk_count(g.out, kGemmRows);
    for (int64_t s = 0; s < slices; ++s) tasks.push_back({&g, g.out * s / slices, g.out * (s + 1) / slices});
  }
  if (dx) {
    const int64_t chunks = chunk_count(n, kGemmRows);
    for (int64_t c = 0; c < chunks; ++c) tasks.push_back({nullptr, n * c / chunks, n * (c + 1) / chunks});
  }
  pool.parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t i, int) {
    const Task& t = tasks[static_cast<size_t>(i)];
    if (t.g) {
      const DenseGrad& g = *t.g;
      detail::gemm<float>(true, false, t.end - t.begin, in, n, 1.0f, g.dy + t.begin, g.out, x, in, 1.0f,
                          g.dw + t.begin * in, in);
      return;
    }
    const int64_t rows = t.end - t.begin;
    float beta = 0.0f;  // the first term overwrites, the others add
    for (const DenseGrad& g : grads) {
      detail::gemm<float>(false, false, rows, in, g.out, 1.0f, g.dy + t.begin * g.out, g.out, g.w, in, beta,
                          dx + t.begin * in, in);
      beta = 1.0f;
    }
  });
}

void add_rows(float* y, const float* x, int64_t n, ThreadPool& pool) {
  for_chunks(pool, n, 1 << 14, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) y[i] += x[i];
  });
}

void norm_forward(float* y, float* rstd, const float* x, const float* w, int64_t rows, int64_t d,
                  float eps, ThreadPool& pool) {
  for_chunks(pool, rows, kRowsPerChunk, [&](int64_t begin, int64_t end, int64_t) {
    rmsnorm_forward<float>(y + begin * d, rstd + begin, x + begin * d, w, end - begin, d, eps);
  });
}

// dx += ∂/∂x and dw += ∂/∂w. Each chunk sums its rows' dw into its own partial row; the
// partials are then added in chunk order.
void norm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                   const float* rstd, int64_t rows, int64_t d, Buffer& partials, ThreadPool& pool) {
  const int64_t n_chunks = chunk_count(rows, kRowsPerChunk);
  float* part = dw ? partials.zeroed(static_cast<size_t>(n_chunks * d)) : nullptr;
  for_chunks(pool, rows, kRowsPerChunk, [&](int64_t begin, int64_t end, int64_t chunk) {
    rmsnorm_backward<float>(dx + begin * d, part ? part + chunk * d : nullptr, dy + begin * d,
                            x + begin * d, w, rstd + begin, end - begin, d);
  });
  if (!dw) return;  // frozen
  for (int64_t c = 0; c < n_chunks; ++c) {
    const float* p = part + c * d;
    for (int64_t i = 0; i < d; ++i) dw[i] += p[i];
  }
}

// Chunks of whole sequences, two or more: each RoPE call tabulates cos/sin for the positions
// it sees (seq_len rows when they are whole sequences), and at ~80 ns per sincos of these
// angles the tables cost more than the rotations unless several sequences share one.
void rope_rows(float* x, const int32_t* pos, int64_t n_seq, int64_t seq_len, int64_t heads,
               const ModelConfig& c, bool inverse, ThreadPool& pool) {
  const int64_t row = heads * c.head_dim;
  for_chunks(pool, n_seq, 2, [&](int64_t begin, int64_t end, int64_t) {
    float* xs = x + begin * seq_len * row;
    const int32_t* ps = pos + begin * seq_len;
    const int64_t n = (end - begin) * seq_len;
    if (inverse) {
      rope_backward<float>(xs, ps, n, heads, c.head_dim, c.rope_base, c.rope_order);
    } else {
      rope_forward<float>(xs, ps, n, heads, c.head_dim, c.rope_base, c.rope_order);
    }
  });
}

// db += Σ_rows dy, split over columns (nothing for a frozen db = null).
void bias_backward(float* db, const float* dy, int64_t rows, int64_t cols, ThreadPool& pool) {
  if (!db) return;
  for_chunks(pool, cols, 64, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* dyr = dy + r * cols;
      for (int64_t j = begin; j < end; ++j) db[j] += dyr[j];
    }
  });
}

// The attention layers' shape for a batch of S sequences of L tokens, in both passes.
TrainAttentionShape attention_shape(const ModelConfig& c, const AttentionMode& attention,
                                    int64_t S, int64_t L) {
  TrainAttentionShape shape;
  shape.n_seq = S;
  shape.seq_len = L;
  shape.n_head = c.n_head;
  shape.n_head_kv = c.n_head_kv;
  shape.head_dim = c.head_dim;
  shape.mask = attention.mask;
  shape.block_len = attention.block_len;
  return shape;
}

}  // namespace

void TrainModel::Impl::forward(const int32_t* tokens, int64_t S, int64_t L, ThreadPool& pool) {
  const ModelConfig& c = config;
  const int64_t T = S * L, E = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim;
  const int64_t q_dim = H * D, kv_dim = Hkv * D, F = c.n_ff;
  const size_t nT = static_cast<size_t>(T);
  auto& a = acts;
  a.residual.resize(static_cast<size_t>(2 * c.n_layer + 1));
  a.layers.resize(static_cast<size_t>(c.n_layer));
  a.positions.resize(nT);
  for (int64_t i = 0; i < T; ++i) a.positions[static_cast<size_t>(i)] = static_cast<int32_t>(i % L);
  const int32_t* pos = a.positions.data();

  float* x = a.residual[0].get(nT * E);
  const float* embd = value(slots.token_embd);
  for_chunks(pool, T, kRowsPerChunk, [&](int64_t begin, int64_t end, int64_t) {
    embedding_forward<float>(x + begin * E, tokens + begin, embd, end - begin, E);
  });

  const TrainAttentionShape shape = attention_shape(c, attention, S, L);

  for (int64_t il = 0; il < c.n_layer; ++il) {
    const LayerSlots& s = slots.layers[static_cast<size_t>(il)];
    LayerActivations& la = a.layers[static_cast<size_t>(il)];
    const float* x_in = a.residual[static_cast<size_t>(2 * il)].get(nT * E);

    float* xn = la.attn_in.get(nT * E);
    norm_forward(xn, la.attn_rstd.get(nT), x_in, value(s.attn_norm), T, E, c.rms_eps, pool);
    float* q = la.q.get(nT * q_dim);
    float* k = la.k.get(nT * kv_dim);
    float* v = la.v.get(nT * kv_dim);
    float* q_lin = c.qk_norm ? la.q_raw.get(nT * q_dim) : q;
    float* k_lin = c.qk_norm ? la.k_raw.get(nT * kv_dim) : k;
    dense_forward(pool, xn, T, E,
                  {{q_lin, value(s.wq), value(s.bq), q_dim}, {k_lin, value(s.wk), value(s.bk), kv_dim},
                   {v, value(s.wv), value(s.bv), kv_dim}});
    lora_forward(il, LoraTarget::AttnQ, xn, T, q_lin, pool);
    lora_forward(il, LoraTarget::AttnK, xn, T, k_lin, pool);
    lora_forward(il, LoraTarget::AttnV, xn, T, v, pool);
    if (c.qk_norm) {  // per head over head_dim, after the bias and before RoPE, as Model::forward
      norm_forward(q, la.q_rstd.get(nT * H), q_lin, value(s.q_norm), T * H, D, c.rms_eps, pool);
      norm_forward(k, la.k_rstd.get(nT * Hkv), k_lin, value(s.k_norm), T * Hkv, D, c.rms_eps, pool);
    }
    rope_rows(q, pos, S, L, H, c, false, pool);
    rope_rows(k, pos, S, L, Hkv, c, false, pool);

    float* att = la.att.get(nT * q_dim);
    float* probs = la.probs.get(static_cast<size_t>(S * H * L * L));
    attention_forward<float>(att, probs, q, k, v, shape, &pool);
    float* x_mid = a.residual[static_cast<size_t>(2 * il + 1)].get(nT * E);
    dense_forward(pool, att, T, q_dim, {{x_mid, value(s.wo), nullptr, E}});
    lora_forward(il, LoraTarget::AttnOutput, att, T, x_mid, pool);
    add_rows(x_mid, x_in, T * E, pool);

    float* xf = la.ffn_in.get(nT * E);
    norm_forward(xf, la.ffn_rstd.get(nT), x_mid, value(s.ffn_norm), T, E, c.rms_eps, pool);
    float* gate = la.gate.get(nT * F);
    float* up = la.up.get(nT * F);
    float* hidden = la.hidden.get(nT * F);
    dense_forward(pool, xf, T, E, {{gate, value(s.gate), nullptr, F}, {up, value(s.up), nullptr, F}});
    lora_forward(il, LoraTarget::FfnGate, xf, T, gate, pool);
    lora_forward(il, LoraTarget::FfnUp, xf, T, up, pool);
    for_chunks(pool, T * F, 1 << 14, [&](int64_t begin, int64_t end, int64_t) {
      swiglu_forward<float>(hidden + begin, gate + begin, up + begin, end - begin);
    });
    float* x_out = a.residual[static_cast<size_t>(2 * il + 2)].get(nT * E);
    dense_forward(pool, hidden, T, F, {{x_out, value(s.down), nullptr, E}});
    lora_forward(il, LoraTarget::FfnDown, hidden, T, x_out, pool);
    add_rows(x_out, x_mid, T * E, pool);
  }

  const float* x_last = a.residual[static_cast<size_t>(2 * c.n_layer)].get(nT * E);
  norm_forward(a.final_out.get(nT * E), a.final_rstd.get(nT), x_last, value(slots.output_norm), T,
               E, c.rms_eps, pool);
}

int64_t TrainModel::Impl::select_head_rows(const int32_t* targets, const float* weights,
                                           int64_t S, int64_t L) {
  const int64_t T = S * L, E = config.n_embd;
  auto& a = acts;
  a.rows.clear();
  a.sources.clear();
  a.row_targets.clear();
  a.row_weights.clear();
  for (int64_t i = 0; i < T; ++i) {
    if (weights && !(weights[i] > 0.0f)) continue;
    a.rows.push_back(i);
    // Model::forward's shift: row i is scored from hidden i − 1; a sequence's first row keeps
    // its own hidden state.
    a.sources.push_back(config.shift_logits && i % L != 0 ? i - 1 : i);
    if (weights) {
      a.row_targets.push_back(targets[i]);
      a.row_weights.push_back(weights[i]);
    }
  }
  const int64_t R = static_cast<int64_t>(a.rows.size());
  float* head_in = a.head_in.get(static_cast<size_t>(R * E));
  const float* final_out = a.final_out.get(static_cast<size_t>(T * E));
  for (int64_t r = 0; r < R; ++r) {
    std::memcpy(head_in + r * E, final_out + a.sources[static_cast<size_t>(r)] * E,
                static_cast<size_t>(E) * sizeof(float));
  }
  return R;
}

void TrainModel::Impl::head_logits(float* out, ThreadPool& pool) {
  const int64_t R = static_cast<int64_t>(acts.rows.size());
  dense_forward(pool, acts.head_in.get(static_cast<size_t>(R * config.n_embd)), R, config.n_embd,
                {{out, value(slots.output), nullptr, config.vocab_size}});
}

double TrainModel::Impl::head_loss(const int32_t* tokens, int64_t S, int64_t L, float grad_scale,
                                   bool with_backward, ThreadPool& pool) {
  const int64_t R = static_cast<int64_t>(acts.rows.size());
  if (R == 0) return 0.0;
  const int64_t V = config.vocab_size, E = config.n_embd;
  float* logits = acts.logits.get(static_cast<size_t>(R * V));
  head_logits(logits, pool);
  float* dlogits = with_backward ? acts.dlogits.get(static_cast<size_t>(R * V)) : nullptr;
  const double loss = cross_entropy_forward_backward<float>(
      dlogits, logits, acts.row_targets.data(), acts.row_weights.data(), R, V, grad_scale, &pool);
  if (!with_backward) return loss;

  float* d_head_in = acts.d_head_in.get(static_cast<size_t>(R * E));
  dense_backward(pool, d_head_in, acts.head_in.get(static_cast<size_t>(R * E)), R, E,
                 {{dlogits, value(slots.output), grad(slots.output), V}});
  backward(tokens, S, L, pool);
  return loss;
}

void TrainModel::Impl::backward(const int32_t* tokens, int64_t S, int64_t L, ThreadPool& pool) {
  const ModelConfig& c = config;
  const int64_t T = S * L, E = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim;
  const int64_t q_dim = H * D, kv_dim = Hkv * D, F = c.n_ff;
  const size_t nT = static_cast<size_t>(T);
  auto& a = acts;
  const int32_t* pos = a.positions.data();

  // Scatter the head rows' gradients back to the final-norm rows they were read from, in row
  // order (two shifted rows can read the same hidden state).
  float* d_final = a.d_normed.zeroed(nT * E);
  const float* d_head_in = a.d_head_in.get(a.rows.size() * static_cast<size_t>(E));
  for (size_t r = 0; r < a.rows.size(); ++r) {
    float* dst = d_final + a.sources[r] * E;
    const float* src = d_head_in + static_cast<int64_t>(r) * E;
    for (int64_t j = 0; j < E; ++j) dst[j] += src[j];
  }
  float* d_res = a.d_residual.zeroed(nT * E);
  norm_backward(d_res, grad(slots.output_norm), d_final,
                a.residual[static_cast<size_t>(2 * c.n_layer)].get(nT * E), value(slots.output_norm),
                a.final_rstd.get(nT), T, E, a.norm_partials, pool);

  const TrainAttentionShape shape = attention_shape(c, attention, S, L);

  for (int64_t il = c.n_layer - 1; il >= 0; --il) {
    const LayerSlots& s = slots.layers[static_cast<size_t>(il)];
    LayerActivations& la = a.layers[static_cast<size_t>(il)];

    // FFN: x_out = x_mid + down(swiglu(gate(xf), up(xf))), xf = norm(x_mid). d_res holds ∂/∂x_out
    // and becomes ∂/∂x_mid.
    float* d_hidden = a.d_hidden.get(nT * F);
    dense_backward(pool, d_hidden, la.hidden.get(nT * F), T, F, {{d_res, value(s.down), grad(s.down), E}});
    lora_backward(il, LoraTarget::FfnDown, d_res, la.hidden.get(nT * F), T, d_hidden, pool);
    float* d_gate = a.d_gate.zeroed(nT * F);
    float* d_up = a.d_up.zeroed(nT * F);
    const float* gate = la.gate.get(nT * F);
    const float* up = la.up.get(nT * F);
    for_chunks(pool, T * F, 1 << 14, [&](int64_t begin, int64_t end, int64_t) {
      swiglu_backward<float>(d_gate + begin, d_up + begin, d_hidden + begin, gate + begin,
                             up + begin, end - begin);
    });
    float* d_xf = a.d_normed.get(nT * E);
    const float* xf = la.ffn_in.get(nT * E);
    dense_backward(pool, d_xf, xf, T, E,
                   {{d_gate, value(s.gate), grad(s.gate), F}, {d_up, value(s.up), grad(s.up), F}});
    lora_backward(il, LoraTarget::FfnGate, d_gate, xf, T, d_xf, pool);
    lora_backward(il, LoraTarget::FfnUp, d_up, xf, T, d_xf, pool);
    const float* x_mid = a.residual[static_cast<size_t>(2 * il + 1)].get(nT * E);
    norm_backward(d_res, grad(s.ffn_norm), d_xf, x_mid, value(s.ffn_norm), la.ffn_rstd.get(nT), T,
                  E, a.norm_partials, pool);

    // Attention: x_mid = x_in + wo(attention(rope(q), rope(k), v)). d_res becomes ∂/∂x_in.
    float* d_att = a.d_att.get(nT * q_dim);
    dense_backward(pool, d_att, la.att.get(nT * q_dim), T, q_dim, {{d_res, value(s.wo), grad(s.wo), E}});
    lora_backward(il, LoraTarget::AttnOutput, d_res, la.att.get(nT * q_dim), T, d_att, pool);
    float* dq = a.dq.zeroed(nT * q_dim);
    float* dk = a.dk.zeroed(nT * kv_dim);
    float* dv = a.dv.zeroed(nT * kv_dim);
    const float* q = la.q.get(nT * q_dim);
    const float* k = la.k.get(nT * kv_dim);
    const float* v = la.v.get(nT * kv_dim);
    attention_backward<float>(dq, dk, dv, d_att, la.probs.get(static_cast<size_t>(S * H * L * L)),
                              q, k, v, shape, &pool);
    rope_rows(dq, pos, S, L, H, c, true, pool);
    rope_rows(dk, pos, S, L, Hkv, c, true, pool);
    if (c.qk_norm) {
      float* dq_raw = a.dq_raw.zeroed(nT * q_dim);
      float* dk_raw = a.dk_raw.zeroed(nT * kv_dim);
      norm_backward(dq_raw, grad(s.q_norm), dq, la.q_raw.get(nT * q_dim), value(s.q_norm),
                    la.q_rstd.get(nT * H), T * H, D, a.norm_partials, pool);
      norm_backward(dk_raw, grad(s.k_norm), dk, la.k_raw.get(nT * kv_dim), value(s.k_norm),
                    la.k_rstd.get(nT * Hkv), T * Hkv, D, a.norm_partials, pool);
      dq = dq_raw;
      dk = dk_raw;
    }
    if (c.qkv_bias) {
      bias_backward(grad(s.bq), dq, T, q_dim, pool);
      bias_backward(grad(s.bk), dk, T, kv_dim, pool);
      bias_backward(grad(s.bv), dv, T, kv_dim, pool);
    }
    float* d_xn = a.d_normed.get(nT * E);
    const float* xn = la.attn_in.get(nT * E);
    dense_backward(pool, d_xn, xn, T, E,
                   {{dq, value(s.wq), grad(s.wq), q_dim}, {dk, value(s.wk), grad(s.wk), kv_dim},
                    {dv, value(s.wv), grad(s.wv), kv_dim}});
    lora_backward(il, LoraTarget::AttnQ, dq, xn, T, d_xn, pool);
    lora_backward(il, LoraTarget::AttnK, dk, xn, T, d_xn, pool);
    lora_backward(il, LoraTarget::AttnV, dv, xn, T, d_xn, pool);
    const float* x_in = a.residual[static_cast<size_t>(2 * il)].get(nT * E);
    norm_backward(d_res, grad(s.attn_norm), d_xn, x_in, value(s.attn_norm), la.attn_rstd.get(nT),
                  T, E, a.norm_partials, pool);
  }

  if (float* d_embd = grad(slots.token_embd)) embedding_backward<float>(d_embd, d_res, tokens, T, E);
}

}  // namespace ruvdllm::train
