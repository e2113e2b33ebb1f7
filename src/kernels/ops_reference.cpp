// Scalar references of the element-wise and row-wise ops. They favour clarity and accuracy
// (double accumulation, double angles) over speed: tests measure the dispatched versions
// against them. The attention reference lives beside the tiled version in attention.cpp.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/ops.h"

namespace ruvdllm {

void rmsnorm_reference(const float* x, const float* weight, float* y, int64_t rows, int64_t n,
                       float eps) {
  if (rows < 0 || n <= 0) fail("rmsnorm: bad shape {} rows of {}", rows, n);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const double inv_rms = 1.0 / std::sqrt(sum / static_cast<double>(n) + eps);
    for (int64_t i = 0; i < n; ++i) {
      const double w = weight ? weight[i] : 1.0;
      yr[i] = static_cast<float>(xr[i] * inv_rms * w);
    }
  }
}

void softmax_reference(float* x, int64_t rows, int64_t n) {
  if (rows < 0 || n < 0) fail("softmax: bad shape {} rows of {}", rows, n);
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * n;
    double max = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i) max = std::max(max, static_cast<double>(xr[i]));
    if (max == -std::numeric_limits<double>::infinity()) {
      // Every position is masked: there is no distribution, and zeros keep sums finite.
      for (int64_t i = 0; i < n; ++i) xr[i] = 0;
      continue;
    }
    std::vector<double> e(static_cast<size_t>(n));
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += e[static_cast<size_t>(i)] = std::exp(xr[i] - max);
    for (int64_t i = 0; i < n; ++i) xr[i] = static_cast<float>(e[static_cast<size_t>(i)] / sum);
  }
}

void swiglu_reference(const float* gate, const float* up, float* out, int64_t n) {
  if (n < 0) fail("swiglu: bad length {}", n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void rope_reference(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                    const int32_t* positions, float freq_base, RopeOrder order) {
  if (n_tokens < 0 || n_heads < 0 || head_dim <= 0 || rot_dim < 0 || rot_dim > head_dim ||
      rot_dim % 2 != 0 || !(freq_base > 0)) {
    fail("rope: bad shape (tokens {}, heads {}, head_dim {}, rot_dim {}, base {})", n_tokens,
         n_heads, head_dim, rot_dim, freq_base);
  }
  const int64_t half = rot_dim / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double theta =
            positions[t] * std::pow(static_cast<double>(freq_base),
                                    -2.0 * static_cast<double>(i) / static_cast<double>(rot_dim));
        const double c = std::cos(theta), s = std::sin(theta);
        const int64_t a = order == RopeOrder::Normal ? 2 * i : i;
        const int64_t b = order == RopeOrder::Normal ? 2 * i + 1 : i + half;
        const double x0 = head[a], x1 = head[b];
        head[a] = static_cast<float>(x0 * c - x1 * s);
        head[b] = static_cast<float>(x0 * s + x1 * c);
      }
    }
  }
}

}  // namespace ruvdllm
