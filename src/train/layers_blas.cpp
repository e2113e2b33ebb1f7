// GEMM and task plumbing shared by the layer passes.
#include <cblas.h>

#include <mutex>

#include "ruvdllm/core/error.h"
#include "train/layers_internal.h"

namespace ruvdllm::train::detail {
namespace {

void use_single_threaded_blas() {
  // Tasks of our pool each run their own GEMM; OpenBLAS's threads on top would oversubscribe
  // the cores. The runtime's matmul makes the same setting, so the two never disagree.
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

blasint blas_int(int64_t v) {
  if (v < 0 || v > INT32_MAX) fail("gemm: dimension {} out of BLAS range", v);
  return static_cast<blasint>(v);
}

// An empty sum leaves beta · C (BLAS would reject the zero leading dimensions).
template <typename T>
void scale_only(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
  }
}

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_only(m, n, beta, c, ldc);
  use_single_threaded_blas();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, blas_int(m), blas_int(n), blas_int(k), alpha, a,
              blas_int(lda), b, blas_int(ldb), beta, c, blas_int(ldc));
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                  const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                  double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_only(m, n, beta, c, ldc);
  use_single_threaded_blas();
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, blas_int(m), blas_int(n), blas_int(k), alpha, a,
              blas_int(lda), b, blas_int(ldb), beta, c, blas_int(ldc));
}

int pool_threads(const ThreadPool* pool) { return pool ? pool->size() : 1; }

void run_tasks(ThreadPool* pool, int64_t n_tasks,
               const std::function<void(int64_t task, int thread)>& fn) {
  if (pool) {
    pool->parallel_for(n_tasks, fn);
    return;
  }
  for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
}

}  // namespace ruvdllm::train::detail
