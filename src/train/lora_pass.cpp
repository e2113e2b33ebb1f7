// The LoRA delta's forward and backward passes: y += s·(x·Aᵀ)·Bᵀ, two thin GEMMs through the
// rank-r bottleneck. Row work goes to the pool in chunks that depend on T only, and the weight
// gradients are single sums over all rows, so results never depend on the thread count.
#include <algorithm>

#include "train/layers_internal.h"
#include "train/train_model_impl.h"

namespace ruvdllm::train::detail {
namespace {

constexpr int64_t kRowsPerTask = 256;

template <typename Fn>
void for_row_chunks(ThreadPool& pool, int64_t T, Fn&& fn) {
  const int64_t chunks = std::max<int64_t>(1, (T + kRowsPerTask - 1) / kRowsPerTask);
  if (chunks == 1) {
    fn(0, T);
    return;
  }
  pool.parallel_for(chunks, [&](int64_t c, int) { fn(T * c / chunks, T * (c + 1) / chunks); });
}

}  // namespace

void lora_forward(LoraAdapter& a, const LoraState& lora, const float* x, int64_t T, float* y,
                  ThreadPool& pool) {
  const int64_t r = lora.options.rank;
  const float* A = lora.values.f32() + a.a_slot;
  const float* B = lora.values.f32() + a.b_slot;
  float* u = a.u.get(static_cast<size_t>(T * r));
  for_row_chunks(pool, T, [&](int64_t begin, int64_t end) {
    const int64_t rows = end - begin;
    gemm<float>(false, true, rows, r, a.in, 1.0f, x + begin * a.in, a.in, A, a.in, 0.0f, u + begin * r, r);
    gemm<float>(false, true, rows, a.out, r, lora.scale, u + begin * r, r, B, r, 1.0f, y + begin * a.out, a.out);
  });
}

void lora_backward(LoraAdapter& a, const LoraState& lora, float* grads, const float* dy,
                   const float* x, int64_t T, float* dx, ThreadPool& pool) {
  const int64_t r = lora.options.rank;
  const float* A = lora.values.f32() + a.a_slot;
  const float* B = lora.values.f32() + a.b_slot;
  float* dA = grads + a.a_slot;
  float* dB = grads + a.b_slot;
  const float* u = a.u.get(static_cast<size_t>(T * r));
  // du = s·dy·B, the gradient at the rank-r bottleneck.
  float* du = a.du.get(static_cast<size_t>(T * r));
  for_row_chunks(pool, T, [&](int64_t begin, int64_t end) {
    const int64_t rows = end - begin;
    gemm<float>(false, false, rows, r, a.out, lora.scale, dy + begin * a.out, a.out, B, r, 0.0f,
                du + begin * r, r);
    gemm<float>(false, false, rows, a.in, r, 1.0f, du + begin * r, r, A, a.in, 1.0f,
                dx + begin * a.in, a.in);
  });
  // dB += s·dyᵀ·u and dA += duᵀ·x: r is small, so each is one GEMM over all rows.
  gemm<float>(true, false, a.out, r, T, lora.scale, dy, a.out, u, r, 1.0f, dB, r);
  gemm<float>(true, false, r, a.in, T, 1.0f, du, r, x, a.in, 1.0f, dA, a.in);
}

}  // namespace ruvdllm::train::detail
