// Mixture-of-experts FFN as llama.cpp's build_moe_ffn computes it for LLaDA-MoE: softmax over
// all experts, the top-k probabilities as weights (renormalised to sum 1 only when asked), and
// the weighted sum of the chosen experts' SwiGLU outputs.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "model/model_internal.h"
#include "ruvdllm/kernels/matmul.h"
#include "ruvdllm/kernels/ops.h"

namespace ruvdllm::model_detail {

size_t moe_scratch_floats(const ModelConfig& c, int64_t n_tokens) {
  // Worst case: every token routed to the same expert.
  const int64_t per_token = c.n_expert + 2 * c.n_embd + 2 * c.n_ff_expert;
  return static_cast<size_t>(n_tokens * per_token);
}

void moe_ffn(const ModelConfig& c, const LayerWeights& layer, const ExpertWeights& experts,
             const float* x, int64_t n_tokens, float* out, MoeScratch& s, ThreadPool& pool) {
  const int64_t E = c.n_embd, X = c.n_expert, K = c.n_expert_used, F = c.n_ff_expert;
  float* probs = s.router.get(static_cast<size_t>(n_tokens * X));
  matmul(layer.ffn_gate_inp, x, n_tokens, probs, pool);
  softmax(probs, n_tokens, X);

  s.routed.resize(static_cast<size_t>(X));
  for (auto& r : s.routed) r.clear();
  std::vector<int64_t> order(static_cast<size_t>(X));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* p = probs + t * X;
    std::iota(order.begin(), order.end(), 0);
    // Ties go to the lower expert index so the choice never depends on sort internals.
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [p](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float sum = 0;
    for (int64_t i = 0; i < K; ++i) sum += p[order[static_cast<size_t>(i)]];
    const float scale = c.expert_weights_norm && sum > 0 ? 1.0f / sum : 1.0f;
    for (int64_t i = 0; i < K; ++i) {
      const int64_t e = order[static_cast<size_t>(i)];
      s.routed[static_cast<size_t>(e)].emplace_back(t, p[e] * scale);
    }
  }

  std::fill(out, out + n_tokens * E, 0.0f);
  // Experts run one after another (each matmul uses the whole pool), so every token sums its
  // experts in the same order whatever the thread count.
  for (int64_t e = 0; e < X; ++e) {
    const auto& routed = s.routed[static_cast<size_t>(e)];
    const int64_t m = static_cast<int64_t>(routed.size());
    if (m == 0) continue;
    float* xg = s.gathered.get(static_cast<size_t>(m * E));
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(xg + i * E, x + routed[static_cast<size_t>(i)].first * E, static_cast<size_t>(E) * sizeof(float));
    }
    float* g = s.gate.get(static_cast<size_t>(m * F));
    float* u = s.up.get(static_cast<size_t>(m * F));
    float* y = s.down.get(static_cast<size_t>(m * E));
    matmul(experts.gate[static_cast<size_t>(e)], xg, m, g, pool);
    matmul(experts.up[static_cast<size_t>(e)], xg, m, u, pool);
    swiglu(g, u, g, m * F);
    matmul(experts.down[static_cast<size_t>(e)], g, m, y, pool);
    for (int64_t i = 0; i < m; ++i) {
      const auto [token, weight] = routed[static_cast<size_t>(i)];
      float* o = out + token * E;
      const float* yi = y + i * E;
      for (int64_t j = 0; j < E; ++j) o[j] += weight * yi[j];
    }
  }
}

}  // namespace ruvdllm::model_detail
