// Weighted cross-entropy over the output head's logits, with its gradient, in one pass per row.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/layers.h"
#include "train/layers_internal.h"

namespace ruvdllm::train {
namespace {

// Rows per task: enough to amortise handing out a task, few enough that rows of weight 0
// (skipped) do not unbalance the threads.
constexpr int64_t kRowsPerTask = 4;

template <typename T>
double log_softmax_row(const T* x, int64_t n, T* probs, T k) {
  if constexpr (std::is_same_v<T, float>) {
    return detail::log_softmax_row_simd(x, n, probs, k);
  } else {
    return detail::log_softmax_row_scalar(x, n, probs, k);
  }
}

}  // namespace

template <typename T>
double cross_entropy_forward_backward(T* dlogits, const T* logits, const int32_t* targets,
                                      const T* weights, int64_t n, int64_t vocab, T grad_scale,
                                      ThreadPool* pool) {
  if (n < 0 || vocab <= 0) fail("cross_entropy: bad shape ({} rows of {} logits)", n, vocab);
  std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
  detail::run_tasks(pool, (n + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
    const int64_t end = std::min(n, (task + 1) * kRowsPerTask);
    for (int64_t r = task * kRowsPerTask; r < end; ++r) {
      T* d = dlogits ? dlogits + r * vocab : nullptr;
      const T weight = weights[r];
      if (weight == T(0)) {
        if (d) std::fill(d, d + vocab, T(0));
        continue;
      }
      const int32_t target = targets[r];
      if (target < 0 || target >= vocab) {
        fail("cross_entropy: row {} has target {} outside the vocabulary of {}", r, target, vocab);
      }
      // d = k·softmax, then the one-hot term: k·(softmax − onehot) with k = grad_scale·weight.
      const T k = grad_scale * weight;
      const T* row = logits + r * vocab;
      const double log_sum_exp = log_softmax_row(row, vocab, d, k);
      row_loss[static_cast<size_t>(r)] =
          static_cast<double>(weight) * (log_sum_exp - static_cast<double>(row[target]));
      if (d) d[target] -= k;
    }
  });
  // Summed in row order after the parallel part, so the total never depends on the threads.
  double total = 0;
  for (double l : row_loss) total += l;
  return total;
}

template double cross_entropy_forward_backward<float>(float*, const float*, const int32_t*,
                                                      const float*, int64_t, int64_t, float,
                                                      ThreadPool*);
template double cross_entropy_forward_backward<double>(double*, const double*, const int32_t*,
                                                       const double*, int64_t, int64_t, double,
                                                       ThreadPool*);

}  // namespace ruvdllm::train
