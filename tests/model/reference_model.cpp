// The float64 reference transformer (see reference_model.h). Written from the published
// architecture descriptions, not from src/model.
#include "model/reference_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "ruvdllm/io/gguf.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::testing {
namespace {

std::vector<double> dequantized(const TensorView& t) {
  std::vector<double> out(static_cast<size_t>(t.elements()));
  std::vector<float> row(static_cast<size_t>(t.row_len()));
  for (int64_t r = 0; r < t.rows(); ++r) {
    dequantize_row_reference(t.type, t.row(r), row.data(), t.row_len());
    std::copy(row.begin(), row.end(), out.begin() + r * t.row_len());
  }
  return out;
}

const TensorView& tensor(const GgufFile& f, const std::string& name) {
  const TensorView* t = f.find_tensor(name);
  if (!t) throw std::runtime_error("reference: missing tensor " + name);
  return *t;
}

std::vector<double> matvec(const std::vector<double>& w, int64_t in, int64_t out, const std::vector<double>& x) {
  std::vector<double> y(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    double sum = 0;
    for (int64_t i = 0; i < in; ++i) sum += w[static_cast<size_t>(o * in + i)] * x[static_cast<size_t>(i)];
    y[static_cast<size_t>(o)] = sum;
  }
  return y;
}

// y = x / sqrt(mean(x^2) + eps) * weight over `n` values starting at x[offset].
void rms_normalize(std::vector<double>& x, size_t offset, int64_t n, const std::vector<double>& weight, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[offset + i] * x[offset + i];
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) x[offset + i] = x[offset + i] * inv * weight[static_cast<size_t>(i)];
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// The activation type matmul.h documents for each quantized weight type.
int activation_type_for(TensorType weight) {
  switch (weight) {
    case TensorType::Q4_0:
    case TensorType::Q8_0: return static_cast<int>(TensorType::Q8_0);
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K: return static_cast<int>(TensorType::Q8_K);
    default: return 0;
  }
}

}  // namespace

ReferenceModel::ReferenceModel(const std::string& path) {
  const GgufFile f = GgufFile::open(path);
  arch_ = f.get_string("general.architecture");
  auto key = [&](const char* suffix) { return arch_ + "." + suffix; };
  embd_ = f.get_int(key("embedding_length"), 0);
  n_layer_ = f.get_int(key("block_count"), 0);
  n_head_ = f.get_int(key("attention.head_count"), 0);
  n_head_kv_ = f.get_int(key("attention.head_count_kv"), n_head_);
  head_dim_ = embd_ / n_head_;
  eps_ = f.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5);
  rope_base_ = f.get_float(key("rope.freq_base"), 10000);
  n_expert_ = f.get_int(key("expert_count"), 0);
  n_expert_used_ = f.get_int(key("expert_used_count"), 0);
  expert_norm_ = f.get_bool(key("expert_weights_norm"), false);
  neox_ = arch_ == "dream" || arch_ == "qwen2" || arch_ == "llada-moe";
  shift_ = f.get_bool("diffusion.shift_logits", arch_ == "dream");

  auto matrix = [&](const std::string& name) {
    const TensorView& t = tensor(f, name);
    return Matrix{t.row_len(), t.rows(), dequantized(t), activation_type_for(t.type)};
  };
  auto vec = [&](const std::string& name) { return dequantized(tensor(f, name)); };
  embd_matrix_ = matrix("token_embd.weight");
  vocab_ = embd_matrix_.out;
  output_ = f.find_tensor("output.weight") ? matrix("output.weight") : embd_matrix_;
  output_norm_ = vec("output_norm.weight");
  for (int64_t il = 0; il < n_layer_; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    Layer l;
    l.attn_norm = vec(p + "attn_norm.weight");
    l.ffn_norm = vec(p + "ffn_norm.weight");
    l.wq = matrix(p + "attn_q.weight");
    l.wk = matrix(p + "attn_k.weight");
    l.wv = matrix(p + "attn_v.weight");
    l.wo = matrix(p + "attn_output.weight");
    if (f.find_tensor(p + "attn_q.bias")) {
      l.bq = vec(p + "attn_q.bias");
      l.bk = vec(p + "attn_k.bias");
      l.bv = vec(p + "attn_v.bias");
    }
    if (f.find_tensor(p + "attn_q_norm.weight")) {
      l.q_norm = vec(p + "attn_q_norm.weight");
      l.k_norm = vec(p + "attn_k_norm.weight");
    }
    if (n_expert_ > 0) {
      l.router = matrix(p + "ffn_gate_inp.weight");
      // A {in, out, n_expert} stack: expert e is `out` consecutive rows starting at e * out.
      auto split = [&](const std::string& name) {
        const TensorView& t = tensor(f, name);
        const std::vector<double> all = dequantized(t);
        const int64_t in = t.ne(0), out = t.ne(1);
        std::vector<Matrix> experts;
        for (int64_t e = 0; e < t.ne(2); ++e) {
          const auto begin = all.begin() + e * in * out;
          experts.push_back(Matrix{in, out, std::vector<double>(begin, begin + in * out), activation_type_for(t.type)});
        }
        return experts;
      };
      l.exp_gate = split(p + "ffn_gate_exps.weight");
      l.exp_up = split(p + "ffn_up_exps.weight");
      l.exp_down = split(p + "ffn_down_exps.weight");
    } else {
      l.gate = matrix(p + "ffn_gate.weight");
      l.up = matrix(p + "ffn_up.weight");
      l.down = matrix(p + "ffn_down.weight");
    }
    layers_.push_back(std::move(l));
  }
}

std::vector<double> ReferenceModel::apply(const Matrix& m, const std::vector<double>& x, const RefOptions& o) {
  if (m.activation_type == 0 || !o.quantize_activations) return matvec(m.w, m.in, m.out, x);
  const auto type = static_cast<TensorType>(m.activation_type);
  std::vector<float> xf(x.begin(), x.end());
  std::vector<uint8_t> blocks(row_bytes(type, m.in));
  quantize_row_reference(type, xf.data(), blocks.data(), m.in);
  dequantize_row_reference(type, blocks.data(), xf.data(), m.in);
  return matvec(m.w, m.in, m.out, std::vector<double>(xf.begin(), xf.end()));
}

std::vector<double> ReferenceModel::forward(const std::vector<int32_t>& tokens, const RefOptions& o) const {
  const int64_t n = static_cast<int64_t>(tokens.size()) / o.n_seq;
  std::vector<double> logits;
  for (int64_t s = 0; s < o.n_seq; ++s) {
    std::vector<double> part = sequence(tokens.data() + s * n, n, o);
    logits.insert(logits.end(), part.begin(), part.end());
  }
  return logits;
}

std::vector<double> ReferenceModel::sequence(const int32_t* tokens, int64_t n, const RefOptions& o) const {
  const int64_t E = embd_, D = head_dim_, H = n_head_, Hkv = n_head_kv_;
  const bool neox = neox_ != o.flip_rope_order;
  std::vector<std::vector<double>> h(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    const auto begin = embd_matrix_.w.begin() + tokens[t] * E;
    h[static_cast<size_t>(t)].assign(begin, begin + E);
  }

  auto rotate = [&](std::vector<double>& x, int64_t heads, int64_t pos) {
    for (int64_t hh = 0; hh < heads; ++hh) {
      for (int64_t i = 0; i < D / 2; ++i) {
        const double theta = static_cast<double>(pos) * std::pow(rope_base_, -2.0 * static_cast<double>(i) / D);
        const size_t a = static_cast<size_t>(hh * D + (neox ? i : 2 * i));
        const size_t b = static_cast<size_t>(hh * D + (neox ? i + D / 2 : 2 * i + 1));
        const double x0 = x[a], x1 = x[b];
        x[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
        x[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
      }
    }
  };
  auto visible = [&](int64_t query, int64_t key) {
    switch (o.mask) {
      case RefMask::Full: return true;
      case RefMask::Causal: return key <= query;
      case RefMask::BlockCausal: return key / o.block_len <= query / o.block_len;
    }
    return true;
  };
  auto add = [](std::vector<double>& y, const std::vector<double>& b) {
    for (size_t i = 0; i < y.size(); ++i) y[i] += b[i];
  };

  for (const Layer& l : layers_) {
    std::vector<std::vector<double>> q(static_cast<size_t>(n)), k(static_cast<size_t>(n)), v(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) {
      std::vector<double> x = h[static_cast<size_t>(t)];
      rms_normalize(x, 0, E, l.attn_norm, eps_);
      auto& qt = q[static_cast<size_t>(t)] = apply(l.wq, x, o);
      auto& kt = k[static_cast<size_t>(t)] = apply(l.wk, x, o);
      auto& vt = v[static_cast<size_t>(t)] = apply(l.wv, x, o);
      if (!l.bq.empty()) {
        add(qt, l.bq);
        add(kt, l.bk);
        add(vt, l.bv);
      }
      if (!l.q_norm.empty() && !o.skip_qk_norm) {
        for (int64_t hh = 0; hh < H; ++hh) rms_normalize(qt, static_cast<size_t>(hh * D), D, l.q_norm, eps_);
        for (int64_t hh = 0; hh < Hkv; ++hh) rms_normalize(kt, static_cast<size_t>(hh * D), D, l.k_norm, eps_);
      }
      rotate(qt, H, t);
      rotate(kt, Hkv, t);
    }
    for (int64_t t = 0; t < n; ++t) {
      std::vector<double> att(static_cast<size_t>(H * D), 0.0);
      for (int64_t hh = 0; hh < H; ++hh) {
        const int64_t kvh = hh / (H / Hkv);
        std::vector<double> score(static_cast<size_t>(n), -INFINITY);
        double best = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          if (!visible(t, j)) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q[static_cast<size_t>(t)][static_cast<size_t>(hh * D + d)] *
                                                 k[static_cast<size_t>(j)][static_cast<size_t>(kvh * D + d)];
          score[static_cast<size_t>(j)] = dot / std::sqrt(static_cast<double>(D));
          best = std::max(best, score[static_cast<size_t>(j)]);
        }
        double total = 0;
        for (auto& sc : score) total += (sc = std::isinf(sc) ? 0.0 : std::exp(sc - best));
        for (int64_t j = 0; j < n; ++j) {
          const double p = score[static_cast<size_t>(j)] / total;
          for (int64_t d = 0; d < D; ++d) att[static_cast<size_t>(hh * D + d)] += p * v[static_cast<size_t>(j)][static_cast<size_t>(kvh * D + d)];
        }
      }
      add(h[static_cast<size_t>(t)], apply(l.wo, att, o));
    }
    for (int64_t t = 0; t < n; ++t) {
      std::vector<double> x = h[static_cast<size_t>(t)];
      rms_normalize(x, 0, E, l.ffn_norm, eps_);
      auto expert = [&](const Matrix& gate, const Matrix& up, const Matrix& down) {
        std::vector<double> g = apply(gate, x, o);
        const std::vector<double> u = apply(up, x, o);
        for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
        return apply(down, g, o);
      };
      if (n_expert_ == 0) {
        add(h[static_cast<size_t>(t)], expert(l.gate, l.up, l.down));
        continue;
      }
      std::vector<double> p = apply(l.router, x, o);
      const double top = *std::max_element(p.begin(), p.end());
      double z = 0;
      for (double& pi : p) z += (pi = std::exp(pi - top));
      for (double& pi : p) pi /= z;
      std::vector<int64_t> order(static_cast<size_t>(n_expert_));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)]; });
      double chosen = 0;
      for (int64_t i = 0; i < n_expert_used_; ++i) chosen += p[static_cast<size_t>(order[static_cast<size_t>(i)])];
      const double scale = expert_norm_ && !o.skip_expert_renorm ? 1.0 / chosen : 1.0;
      for (int64_t i = 0; i < n_expert_used_; ++i) {
        const size_t e = static_cast<size_t>(order[static_cast<size_t>(i)]);
        std::vector<double> y = expert(l.exp_gate[e], l.exp_up[e], l.exp_down[e]);
        for (double& yi : y) yi *= p[e] * scale;
        add(h[static_cast<size_t>(t)], y);
      }
    }
  }

  std::vector<std::vector<double>> rows(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    std::vector<double> x = h[static_cast<size_t>(t)];
    rms_normalize(x, 0, E, output_norm_, eps_);
    rows[static_cast<size_t>(t)] = apply(output_, x, o);
  }
  if (shift_ && !o.skip_shift) {
    // Dream predicts position i from position i-1; the first position keeps its own row.
    for (int64_t t = n - 1; t >= 1; --t) rows[static_cast<size_t>(t)] = rows[static_cast<size_t>(t - 1)];
  }
  std::vector<double> logits;
  for (const auto& r : rows) logits.insert(logits.end(), r.begin(), r.end());
  return logits;
}

}  // namespace ruvdllm::testing
