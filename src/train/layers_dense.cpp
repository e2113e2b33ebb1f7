// Forward and backward passes of the per-token layers: linear, embedding, RMSNorm, RoPE, SwiGLU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/layers.h"
#include "train/layers_internal.h"

namespace ruvdllm::train {
namespace {

using detail::gemm;
using detail::run_tasks;

void check_linear_shape(const char* what, int64_t n, int64_t in, int64_t out) {
  if (n < 0 || in < 0 || out < 0) fail("{}: bad shape (n {}, in {}, out {})", what, n, in, out);
}

// Work is cut into chunks that depend on the shape only, never on the thread count, so the
// same GEMMs run (and give the same bits) on any pool. OpenBLAS packs whichever operand a call
// does not slice, so chunks are at least 256 rows of activations or of W (on a Zen 3 core,
// 384→1024 at 2048 rows: about 60 GFLOP/s in 64-row slices of W, 71–83 in 256-row chunks),
// and at most 16 of them.
constexpr int64_t kChunkRows = 256, kMaxChunks = 16;

int64_t chunk_count(int64_t total) {
  return std::clamp<int64_t>(total / kChunkRows, 1, kMaxChunks);
}

}  // namespace

template <typename T>
void linear_forward(T* y, const T* x, const T* w, const T* b, int64_t n, int64_t in, int64_t out,
                    ThreadPool* pool) {
  check_linear_shape("linear_forward", n, in, out);
  if (n == 0 || out == 0) return;
  // Chunks of x's rows, or, where W is the larger operand (the output head), slices of W's
  // rows so that W is packed once.
  const bool by_rows = n >= out;
  const int64_t total = by_rows ? n : out, chunks = chunk_count(total);
  run_tasks(pool, chunks, [&](int64_t chunk, int) {
    const int64_t begin = total * chunk / chunks, end = total * (chunk + 1) / chunks;
    const int64_t r0 = by_rows ? begin : 0, rows = by_rows ? end - begin : n;
    const int64_t c0 = by_rows ? 0 : begin, cols = by_rows ? out : end - begin;
    T* yc = y + r0 * out + c0;
    if (b) {
      for (int64_t r = 0; r < rows; ++r) std::memcpy(yc + r * out, b + c0, cols * sizeof(T));
    }
    gemm<T>(false, true, rows, cols, in, T(1), x + r0 * in, in, w + c0 * in, in, b ? T(1) : T(0),
            yc, out);
  });
}

template <typename T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int64_t n,
                     int64_t in, int64_t out, ThreadPool* pool) {
  check_linear_shape("linear_backward", n, in, out);
  if (n == 0 || out == 0) return;
  // One task list: slices of W's rows for dW and db (the longer tasks, first), then chunks of
  // dx's rows, so a layer too narrow to split dW still keeps two cores busy.
  const int64_t w_slices = dw || db ? chunk_count(out) : 0;
  const int64_t x_chunks = dx ? chunk_count(n) : 0;
  run_tasks(pool, w_slices + x_chunks, [&](int64_t task, int) {
    if (task < w_slices) {
      const int64_t o0 = out * task / w_slices, o1 = out * (task + 1) / w_slices;
      if (dw) {
        gemm<T>(true, false, o1 - o0, in, n, T(1), dy + o0, out, x, in, T(1), dw + o0 * in, in);
      }
      if (db) {
        for (int64_t r = 0; r < n; ++r) {
          const T* dyr = dy + r * out;
          for (int64_t o = o0; o < o1; ++o) db[o] += dyr[o];
        }
      }
      return;
    }
    const int64_t chunk = task - w_slices;
    const int64_t r0 = n * chunk / x_chunks, r1 = n * (chunk + 1) / x_chunks;
    gemm<T>(false, false, r1 - r0, in, out, T(1), dy + r0 * out, out, w, in, T(1), dx + r0 * in,
            in);
  });
}

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int64_t n, int64_t d) {
  if (n < 0 || d <= 0) fail("embedding_forward: bad shape (n {}, d {})", n, d);
  for (int64_t i = 0; i < n; ++i) std::memcpy(out + i * d, table + tokens[i] * d, d * sizeof(T));
}

template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* tokens, int64_t n, int64_t d) {
  if (n < 0 || d <= 0) fail("embedding_backward: bad shape (n {}, d {})", n, d);
  // In token order: a token seen twice gets its rows added in the same order every time.
  for (int64_t i = 0; i < n; ++i) {
    T* row = dtable + static_cast<int64_t>(tokens[i]) * d;
    const T* g = dout + i * d;
    for (int64_t j = 0; j < d; ++j) row[j] += g[j];
  }
}

template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t n, int64_t d, T eps) {
  if (n < 0 || d <= 0) fail("rmsnorm_forward: bad shape (n {}, d {})", n, d);
  for (int64_t r = 0; r < n; ++r) {
    if constexpr (std::is_same_v<T, float>) {
      rstd[r] = detail::rmsnorm_forward_row_simd(y + r * d, x + r * d, w, d, eps);
    } else {
      rstd[r] = detail::rmsnorm_forward_row_scalar(y + r * d, x + r * d, w, d, eps);
    }
  }
}

template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t n,
                      int64_t d) {
  if (n < 0 || d <= 0) fail("rmsnorm_backward: bad shape (n {}, d {})", n, d);
  // y_i = x_i·r·w_i with r = (mean(x²) + eps)^-½, so ∂r/∂x_j = −r³·x_j/d and
  // dx_j = r·w_j·dy_j − (r³/d)·x_j·Σ_i dy_i·w_i·x_i.
  for (int64_t r = 0; r < n; ++r) {
    T* dxr = dx ? dx + r * d : nullptr;
    if constexpr (std::is_same_v<T, float>) {
      detail::rmsnorm_backward_row_simd(dxr, dw, dy + r * d, x + r * d, w, rstd[r], d);
    } else {
      detail::rmsnorm_backward_row_scalar(dxr, dw, dy + r * d, x + r * d, w, rstd[r], d);
    }
  }
}

namespace {

// Rotates each head by the angles position·base^(−2i/head_dim), or by their negatives for the
// inverse. Float runs the runtime's rope kernel itself, so training and inference rotate by
// the same bits; the inverse is the rotation at the negated positions (cos is even, sin odd).
// Double follows the runtime's scalar reference.
template <typename T>
void rope_rotate(T* x, const int32_t* pos, int64_t n, int64_t n_head, int64_t head_dim, float base,
                 RopeOrder order, bool inverse, const char* what) {
  if (n < 0 || n_head <= 0 || head_dim <= 0 || head_dim % 2 != 0 || !(base > 0)) {
    fail("{}: bad shape (n {}, heads {}, head_dim {} must be even, base {})", what, n, n_head,
         head_dim, base);
  }
  for (int64_t t = 0; t < n; ++t) {
    if (pos[t] < 0) fail("{}: token {} has negative position {}", what, t, pos[t]);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (!inverse) return rope(x, n, n_head, head_dim, head_dim, pos, base, order);
    std::vector<int32_t> negated(pos, pos + n);
    for (auto& p : negated) p = -p;
    return rope(x, n, n_head, head_dim, head_dim, negated.data(), base, order);
  } else {
    const int64_t half = head_dim / 2;
    std::vector<T> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const double theta =
            pos[t] * std::pow(static_cast<double>(base),
                              -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
        cos_t[static_cast<size_t>(i)] = static_cast<T>(std::cos(theta));
        const double sine = std::sin(theta);
        sin_t[static_cast<size_t>(i)] = static_cast<T>(inverse ? -sine : sine);
      }
      for (int64_t h = 0; h < n_head; ++h) {
        T* head = x + (t * n_head + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = order == RopeOrder::Normal ? 2 * i : i;
          const int64_t b = order == RopeOrder::Normal ? 2 * i + 1 : i + half;
          const T c = cos_t[static_cast<size_t>(i)], s = sin_t[static_cast<size_t>(i)];
          const T x0 = head[a], x1 = head[b];
          head[a] = x0 * c - x1 * s;
          head[b] = x0 * s + x1 * c;
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void rope_forward(T* x, const int32_t* pos, int64_t n, int64_t n_head, int64_t head_dim, float base,
                  RopeOrder order) {
  rope_rotate<T>(x, pos, n, n_head, head_dim, base, order, false, "rope_forward");
}

template <typename T>
void rope_backward(T* dx, const int32_t* pos, int64_t n, int64_t n_head, int64_t head_dim,
                   float base, RopeOrder order) {
  rope_rotate<T>(dx, pos, n, n_head, head_dim, base, order, true, "rope_backward");
}

template <typename T>
void swiglu_forward(T* h, const T* g, const T* u, int64_t n) {
  if (n < 0) fail("swiglu_forward: bad length {}", n);
  if constexpr (std::is_same_v<T, float>) {
    swiglu(g, u, h, n);  // the runtime's vector kernel: training sees the inference numbers
  } else {
    for (int64_t i = 0; i < n; ++i) h[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
  }
}

template <typename T>
void swiglu_backward(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    detail::swiglu_backward_simd(dg, du, dh, g, u, n);
  } else {
    detail::swiglu_backward_scalar(dg, du, dh, g, u, n);
  }
}

#define RUVDLLM_INSTANTIATE_DENSE(T)                                                               \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,     \
                                  ThreadPool*);                                                    \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,     \
                                   int64_t, ThreadPool*);                                          \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t);              \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t);             \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);               \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t,       \
                                    int64_t);                                                      \
  template void rope_forward<T>(T*, const int32_t*, int64_t, int64_t, int64_t, float, RopeOrder);  \
  template void rope_backward<T>(T*, const int32_t*, int64_t, int64_t, int64_t, float, RopeOrder); \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t);                                \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t);

RUVDLLM_INSTANTIATE_DENSE(float)
RUVDLLM_INSTANTIATE_DENSE(double)
#undef RUVDLLM_INSTANTIATE_DENSE

}  // namespace ruvdllm::train
