// The forward pass shared by every supported architecture: pre-norm transformer blocks with
// RoPE attention and a SwiGLU (or mixture-of-experts) FFN, f32 activations, weights used in
// place from the mapped file.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>

#include "model/model_internal.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/matmul.h"
#include "ruvdllm/kernels/ops.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm {
namespace model_detail {
namespace {

// Rows per chunk below which splitting element-wise work over threads costs more than it saves.
constexpr int64_t kMinRowsPerChunk = 8;

// A cache grown for this pass's keys and values; shrinks back to what it held unless the pass
// keeps some of them, so an error (or a pass that appends nothing) leaves it as it was.
class CacheGrowth {
 public:
  CacheGrowth(KVCache* cache, size_t keep_floats) : cache_(cache), keep_(keep_floats) {}
  ~CacheGrowth() {
    if (!cache_) return;
    for (auto& k : cache_->k) k.resize(keep_);
    for (auto& v : cache_->v) v.resize(keep_);
  }
  CacheGrowth(const CacheGrowth&) = delete;
  CacheGrowth& operator=(const CacheGrowth&) = delete;
  void keep(size_t floats) { keep_ = floats; }

 private:
  KVCache* cache_;
  size_t keep_;
};

class Transformer final : public Model {
 public:
  explicit Transformer(LoadedModel model) : m_(std::move(model)) {}

  const ModelConfig& config() const override { return m_.config; }
  const ModelWeights& weights() const override { return m_.weights; }
  const VocabInfo& vocab() const override { return m_.vocab; }
  const std::string& format() const override { return m_.format; }
  std::vector<TensorView> all_tensors() const override { return m_.tensors; }
  size_t weight_bytes() const override {
    size_t total = 0;
    for (const TensorView& t : m_.tensors) total += t.nbytes;
    return total;
  }

  // Not re-entrant: the scratch buffers belong to the model, so one forward at a time.
  void forward(std::span<const int32_t> tokens, const ForwardOptions& options, float* logits,
               ThreadPool& pool) override;
  size_t activation_bytes(int64_t n_tokens) const override;

 private:
  struct Scratch {
    ScratchBuffer x, xn, tmp, q, k, v, att, gate, up, head_rows;
    MoeScratch moe;
    std::vector<int32_t> positions;
  };

  void check_request(std::span<const int32_t> tokens, const ForwardOptions& options) const;
  void norm_rows(const float* x, const TensorView& weight, float* y, int64_t rows, int64_t n,
                 ThreadPool& pool) const;
  void rope_rows(float* x, int64_t n_tokens, int64_t n_heads, ThreadPool& pool) const;
  void add_bias(float* y, const TensorView& bias, int64_t rows, int64_t n) const;
  void head_for_rows(const float* head_in, std::span<const int64_t> rows, int64_t n_seq,
                     int64_t seq_len, float* logits, ThreadPool& pool);

  LoadedModel m_;
  Scratch s_;
};

void Transformer::check_request(std::span<const int32_t> tokens, const ForwardOptions& o) const {
  const ModelConfig& c = m_.config;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) fail("{}: forward: no tokens", m_.path);
  if (o.n_seq < 1 || n % o.n_seq != 0) {
    fail("{}: forward: {} tokens do not split into {} sequences of equal length", m_.path, n,
         o.n_seq);
  }
  if (o.mask == MaskMode::BlockCausal && o.block_len <= 0) {
    fail("{}: forward: block-causal attention needs block_len > 0 (is {})", m_.path, o.block_len);
  }
  int64_t past = 0;
  if (o.cache) {
    const KVCache& cache = *o.cache;
    if (o.n_seq != 1) fail("{}: forward: a KV cache needs n_seq == 1 (is {})", m_.path, o.n_seq);
    past = cache.n_tokens;
    const size_t expected = static_cast<size_t>(past * c.n_head_kv * c.head_dim);
    const bool fresh = past == 0 && cache.k.empty() && cache.v.empty();
    if (!fresh) {
      if (past < 0 || cache.k.size() != static_cast<size_t>(c.n_layer) ||
          cache.v.size() != static_cast<size_t>(c.n_layer)) {
        fail("{}: forward: KV cache of {} tokens and {} layers does not fit this {}-layer model",
             m_.path, past, cache.k.size(), c.n_layer);
      }
      for (int64_t il = 0; il < c.n_layer; ++il) {
        if (cache.k[static_cast<size_t>(il)].size() != expected ||
            cache.v[static_cast<size_t>(il)].size() != expected) {
          fail("{}: forward: KV cache layer {} does not hold {} tokens of {} key/value heads of {}",
               m_.path, il, past, c.n_head_kv, c.head_dim);
        }
      }
    }
    if (!cache.last_hidden.empty() && cache.last_hidden.size() != static_cast<size_t>(c.n_embd)) {
      fail("{}: forward: KV cache's last hidden state has {} values, expected {}", m_.path,
           cache.last_hidden.size(), c.n_embd);
    }
  }
  check_extend_rows(o, n, m_.path);
  const int64_t length = n / o.n_seq;
  if (o.logit_rows) {
    int64_t previous = -1;
    for (const int64_t row : *o.logit_rows) {
      if (row <= previous || row >= length) {
        fail(
            "{}: forward: logit rows must ascend within the {} rows of a sequence (got {} after "
            "{})",
            m_.path, length, row, previous);
      }
      previous = row;
    }
  }
  if (past + length > c.context_length) {
    fail("{}: forward: {} positions exceed the model's context of {}", m_.path, past + length,
         c.context_length);
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = tokens[static_cast<size_t>(i)];
    if (id < 0 || id >= c.vocab_size) {
      fail("{}: forward: token id {} at index {} is outside the vocabulary of {}", m_.path, id, i,
           c.vocab_size);
    }
  }
}

void Transformer::norm_rows(const float* x, const TensorView& weight, float* y, int64_t rows,
                            int64_t n, ThreadPool& pool) const {
  const float* w = static_cast<const float*>(weight.data);
  const float eps = m_.config.rms_eps;
  for_row_chunks(pool, rows, kMinRowsPerChunk * 4, [&](int64_t begin, int64_t end) {
    rmsnorm(x + begin * n, w, y + begin * n, end - begin, n, eps);
  });
}

void Transformer::rope_rows(float* x, int64_t n_tokens, int64_t n_heads, ThreadPool& pool) const {
  const ModelConfig& c = m_.config;
  const int64_t row = n_heads * c.head_dim;
  for_row_chunks(pool, n_tokens, kMinRowsPerChunk, [&](int64_t begin, int64_t end) {
    rope(x + begin * row, end - begin, n_heads, c.head_dim, c.head_dim, s_.positions.data() + begin,
         c.rope_base, c.rope_order);
  });
}

void Transformer::add_bias(float* y, const TensorView& bias, int64_t rows, int64_t n) const {
  if (!bias.data) return;
  const float* b = static_cast<const float*>(bias.data);
  for (int64_t r = 0; r < rows; ++r) add_inplace(y + r * n, b, n);
}

// The output head for rows `rows` of each of n_seq sequences only. Their logits are computed
// into the front of `logits`, one after another, then moved to their own rows, last first: a
// row's own place is never before its packed one, so no row is overwritten before it moves.
void Transformer::head_for_rows(const float* head_in, std::span<const int64_t> rows, int64_t n_seq,
                                int64_t seq_len, float* logits, ThreadPool& pool) {
  const int64_t E = m_.config.n_embd, V = m_.config.vocab_size;
  const auto per_seq = static_cast<int64_t>(rows.size());
  const int64_t n = per_seq * n_seq;
  if (n == 0) return;
  float* picked = s_.head_rows.get(static_cast<size_t>(n * E));
  for (int64_t j = 0; j < n; ++j) {
    const int64_t source = (j / per_seq) * seq_len + rows[static_cast<size_t>(j % per_seq)];
    std::memcpy(picked + j * E, head_in + source * E, static_cast<size_t>(E) * sizeof(float));
  }
  matmul(m_.weights.output, picked, n, logits, pool);
  for (int64_t j = n - 1; j >= 0; --j) {
    const int64_t target = (j / per_seq) * seq_len + rows[static_cast<size_t>(j % per_seq)];
    if (target != j) {
      std::memmove(logits + target * V, logits + j * V, static_cast<size_t>(V) * sizeof(float));
    }
  }
}

void Transformer::forward(std::span<const int32_t> tokens, const ForwardOptions& o, float* logits,
                          ThreadPool& pool) {
  if (!logits) fail("{}: forward: no logits buffer", m_.path);
  check_request(tokens, o);
  const ModelConfig& c = m_.config;
  const ModelWeights& w = m_.weights;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t S = o.n_seq, L = T / S;
  const int64_t E = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim;
  const int64_t q_dim = H * D, kv_dim = Hkv * D;
  KVCache* cache = o.cache;
  const int64_t past = cache ? cache->n_tokens : 0;
  if (cache && cache->k.empty()) {
    cache->k.assign(static_cast<size_t>(c.n_layer), {});
    cache->v.assign(static_cast<size_t>(c.n_layer), {});
  }
  CacheGrowth growth(cache, static_cast<size_t>(past * kv_dim));
  const int64_t extend = rows_appended(o, T);

  float* x = s_.x.get(static_cast<size_t>(T * E));
  float* xn = s_.xn.get(static_cast<size_t>(T * E));
  float* tmp = s_.tmp.get(static_cast<size_t>(T * E));
  float* q = s_.q.get(static_cast<size_t>(T * q_dim));
  float* att = s_.att.get(static_cast<size_t>(T * q_dim));
  s_.positions.resize(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i)
    s_.positions[static_cast<size_t>(i)] = static_cast<int32_t>(past + i % L);

  const TensorView& embd = w.token_embd;
  for_row_chunks(pool, T, kMinRowsPerChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      dequantize_row(embd.type, embd.row(tokens[static_cast<size_t>(i)]), x + i * E, E);
  });

  for (int64_t il = 0; il < c.n_layer; ++il) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(il)];
    norm_rows(x, lw.attn_norm, xn, T, E, pool);

    // With a cache, this pass's keys and values go straight after the cached ones, so the
    // attention kernel reads one contiguous [cached | new] block.
    float* k;
    float* v;
    if (cache) {
      auto& ck = cache->k[static_cast<size_t>(il)];
      auto& cv = cache->v[static_cast<size_t>(il)];
      ck.resize(static_cast<size_t>((past + T) * kv_dim));
      cv.resize(static_cast<size_t>((past + T) * kv_dim));
      k = ck.data() + past * kv_dim;
      v = cv.data() + past * kv_dim;
    } else {
      k = s_.k.get(static_cast<size_t>(T * kv_dim));
      v = s_.v.get(static_cast<size_t>(T * kv_dim));
    }
    {
      const TensorView* qkv_weights[] = {&lw.wq, &lw.wk, &lw.wv};
      float* const qkv_out[] = {q, k, v};
      matmul_shared_input(qkv_weights, xn, T, qkv_out, pool);
    }
    add_bias(q, lw.bq, T, q_dim);
    add_bias(k, lw.bk, T, kv_dim);
    add_bias(v, lw.bv, T, kv_dim);
    if (c.qk_norm) {  // per head, over head_dim (llama.cpp's llada-moe.cpp: q_norm is {head_dim})
      norm_rows(q, lw.q_norm, q, T * H, D, pool);
      norm_rows(k, lw.k_norm, k, T * Hkv, D, pool);
    }
    rope_rows(q, T, H, pool);
    rope_rows(k, T, Hkv, pool);

    AttentionShape shape;
    shape.n_q = L;
    shape.n_kv = past + L;
    shape.n_heads = H;
    shape.n_kv_heads = Hkv;
    shape.head_dim = D;
    shape.scale = 1.0f / std::sqrt(static_cast<float>(D));
    shape.mask = o.mask;
    shape.block_len = o.block_len;
    shape.q_pos0 = past;
    if (extend > 0 && extend < L) {
      // Two spans of queries (n_seq is 1 with a cache): the rows that extend the cache see it
      // and themselves, the rest everything.
      const float* ks = cache->k[static_cast<size_t>(il)].data();
      const float* vs = cache->v[static_cast<size_t>(il)].data();
      AttentionShape head_span = shape;
      head_span.n_q = extend;
      head_span.n_kv = past + extend;
      attention(head_span, q, ks, vs, att, pool);
      AttentionShape rest = shape;
      rest.n_q = L - extend;
      rest.q_pos0 = past + extend;
      attention(rest, q + extend * q_dim, ks, vs, att + extend * q_dim, pool);
    } else {
      for (int64_t s = 0; s < S; ++s) {
        const float* ks = cache ? cache->k[static_cast<size_t>(il)].data() : k + s * L * kv_dim;
        const float* vs = cache ? cache->v[static_cast<size_t>(il)].data() : v + s * L * kv_dim;
        attention(shape, q + s * L * q_dim, ks, vs, att + s * L * q_dim, pool);
      }
    }
    matmul(lw.wo, att, T, tmp, pool);
    add_inplace(x, tmp, T * E);

    norm_rows(x, lw.ffn_norm, xn, T, E, pool);
    if (c.is_moe()) {
      moe_ffn(c, lw, m_.experts[static_cast<size_t>(il)], xn, T, tmp, s_.moe, pool);
    } else {
      const int64_t F = c.n_ff;
      float* gate = s_.gate.get(static_cast<size_t>(T * F));
      float* up = s_.up.get(static_cast<size_t>(T * F));
      const TensorView* gate_up_weights[] = {&lw.ffn_gate, &lw.ffn_up};
      float* const gate_up_out[] = {gate, up};
      matmul_shared_input(gate_up_weights, xn, T, gate_up_out, pool);
      for_row_chunks(pool, T, kMinRowsPerChunk, [&](int64_t begin, int64_t end) {
        swiglu(gate + begin * F, up + begin * F, gate + begin * F, (end - begin) * F);
      });
      matmul(lw.ffn_down, gate, T, tmp, pool);
    }
    add_inplace(x, tmp, T * E);
  }

  norm_rows(x, w.output_norm, xn, T, E, pool);
  const float* head_in = xn;
  if (c.shift_logits) {
    // Row i scores position i with the hidden state of position i-1, as Dream's generation
    // code shifts; a sequence's first row keeps its own (or takes the cached last position's).
    for (int64_t s = 0; s < S; ++s) {
      float* dst = tmp + s * L * E;
      const float* first =
          cache && !cache->last_hidden.empty() ? cache->last_hidden.data() : xn + s * L * E;
      std::memcpy(dst, first, static_cast<size_t>(E) * sizeof(float));
      std::memcpy(dst + E, xn + s * L * E, static_cast<size_t>((L - 1) * E) * sizeof(float));
    }
    head_in = tmp;
  }
  if (o.logit_rows && static_cast<int64_t>(o.logit_rows->size()) < L) {
    head_for_rows(head_in, *o.logit_rows, S, L, logits, pool);
  } else {
    matmul(w.output, head_in, T, logits, pool);
  }

  if (cache && extend > 0) {
    cache->n_tokens = past + extend;
    cache->last_hidden.assign(xn + (extend - 1) * E, xn + extend * E);
    growth.keep(static_cast<size_t>((past + extend) * kv_dim));
  }
}

size_t Transformer::activation_bytes(int64_t n_tokens) const {
  const ModelConfig& c = m_.config;
  const int64_t n = std::max<int64_t>(n_tokens, 0);
  const int64_t q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim;
  size_t floats = static_cast<size_t>(n * (3 * c.n_embd + 2 * q_dim + 2 * kv_dim));
  floats += c.is_moe() ? moe_scratch_floats(c, n) : static_cast<size_t>(2 * n * c.n_ff);
  floats += static_cast<size_t>(n * c.vocab_size);  // the logits the caller provides
  return floats * sizeof(float) + static_cast<size_t>(n) * sizeof(int32_t);
}

}  // namespace

std::unique_ptr<Model> make_transformer(LoadedModel model) {
  return std::make_unique<Transformer>(std::move(model));
}

}  // namespace model_detail

std::unique_ptr<Model> Model::load(const std::string& path) {
  std::error_code ec;
  const bool directory = std::filesystem::is_directory(path, ec);
  auto ends_with = [&path](std::string_view suffix) {
    return path.size() >= suffix.size() &&
           path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (directory || ends_with(".safetensors") || ends_with(".index.json")) {
    return model_detail::make_transformer(model_detail::load_hf(path));
  }
  return model_detail::make_transformer(model_detail::load_gguf(path));
}

void check_extend_rows(const ForwardOptions& o, int64_t n_tokens, const std::string& who) {
  if (o.extend_rows == 0) return;
  if (o.extend_rows < 0 || o.extend_rows > n_tokens) {
    fail("{}: forward: extend_rows {} is outside 0..{} (the pass's tokens)", who, o.extend_rows,
         n_tokens);
  }
  if (!o.cache) fail("{}: forward: extend_rows needs a KV cache", who);
  if (o.append_to_cache) {
    fail("{}: forward: extend_rows and append_to_cache both say what to append; set one", who);
  }
}

void KVCache::clear() {
  n_tokens = 0;
  device_fill = 0;
  k.clear();
  v.clear();
  last_hidden.clear();
}

}  // namespace ruvdllm
