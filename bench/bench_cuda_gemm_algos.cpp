// Does any cuBLASLt algorithm beat what cublasGemmEx picks for the products of an 8B LLaDA
// step at 256 and 512 rows? For each product (bf16 operands and output, f32 accumulation, the
// engine's layout) this times the default cublasGemmEx call, then every algorithm among the
// first 64 that cuBLASLt's heuristic offers (tile shapes, split-K, stages, clusters), and prints
// the default's time, the heuristic's first choice and the best found, with its configuration.
// Times are medians of 31 launches measured by CUDA events, the weights cycled through enough
// copies to come from DRAM rather than the 50 MB L2.
//   bench_cuda_gemm_algos [results=64]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda_gemm_shapes.h"
#include "ruvdllm/cuda/device.h"

namespace ruvdllm::cuda {
namespace {

using bf16 = __nv_bfloat16;

using Shape = GemmShape;
constexpr size_t kWorkspaceBytes = size_t{32} << 20;
constexpr int kTimedLaunches = 31;

void check_lt(cublasStatus_t status, const char* what) { check_cublas(status, what); }

// Median device time (µs) of `launch(weight copy)` over kTimedLaunches, one event pair each.
template <typename Launch>
double median_us(const std::vector<DeviceArray<bf16>>& weights, Launch launch) {
  for (const auto& w : weights) launch(w.data());  // warm-up: kernel loading, clocks
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> times;
  for (int i = 0; i < kTimedLaunches; ++i) {
    check_cuda(cudaEventRecord(start, nullptr), "cudaEventRecord");
    launch(weights[static_cast<size_t>(i) % weights.size()].data());
    check_cuda(cudaEventRecord(stop, nullptr), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms * 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::nth_element(times.begin(), times.begin() + kTimedLaunches / 2, times.end());
  return times[kTimedLaunches / 2];
}

std::string describe(const cublasLtMatmulAlgo_t& algo) {
  auto get = [&](cublasLtMatmulAlgoConfigAttributes_t attr) {
    uint32_t value = 0;
    size_t written = 0;
    cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &value, sizeof(value), &written);
    return value;
  };
  return "id " + std::to_string(get(CUBLASLT_ALGO_CONFIG_ID)) + " tile " +
         std::to_string(get(CUBLASLT_ALGO_CONFIG_TILE_ID)) + " splitK " +
         std::to_string(get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM)) + " stages " +
         std::to_string(get(CUBLASLT_ALGO_CONFIG_STAGES_ID)) + " cluster " +
         std::to_string(get(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID)) + " swizzle " +
         std::to_string(get(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING));
}

void search(const Shape& shape, int64_t rows, int requested, cublasHandle_t handle,
            cublasLtHandle_t lt, DeviceArray<uint8_t>& workspace) {
  const auto w_elems = static_cast<size_t>(shape.out * shape.in);
  const size_t copies = std::max<size_t>(1, kMinCycledBytes / (w_elems * sizeof(bf16)) + 1);
  std::vector<DeviceArray<bf16>> weights;
  const std::vector<bf16> host_w = random_bf16(w_elems, 7);
  for (size_t c = 0; c < copies; ++c) {
    weights.emplace_back(w_elems);
    check_cuda(cudaMemcpy(weights.back().data(), host_w.data(), w_elems * sizeof(bf16),
                          cudaMemcpyHostToDevice),
               "cudaMemcpy");
  }
  const std::vector<bf16> host_x = random_bf16(static_cast<size_t>(rows * shape.in), 11);
  DeviceArray<bf16> x(host_x.size()), y(static_cast<size_t>(rows * shape.out));
  check_cuda(
      cudaMemcpy(x.data(), host_x.data(), host_x.size() * sizeof(bf16), cudaMemcpyHostToDevice),
      "cudaMemcpy");
  const int m = static_cast<int>(shape.out), n = static_cast<int>(rows);
  const int k = static_cast<int>(shape.in);
  const float alpha = 1.0f, beta = 0.0f;

  const double default_us = median_us(weights, [&](const bf16* w) {
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w, CUDA_R_16BF, k,
                              x.data(), CUDA_R_16BF, k, &beta, y.data(), CUDA_R_16BF, m,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  });

  // The same product through cuBLASLt: A = w (k × m, transposed), B = x (k × n), D = y (m × n).
  cublasLtMatmulDesc_t desc = nullptr;
  check_lt(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  check_lt(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)),
      "MatmulDescSetAttribute");
  check_lt(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)),
      "MatmulDescSetAttribute");
  cublasLtMatrixLayout_t a_layout = nullptr, b_layout = nullptr, d_layout = nullptr;
  check_lt(cublasLtMatrixLayoutCreate(&a_layout, CUDA_R_16BF, k, m, k), "MatrixLayoutCreate");
  check_lt(cublasLtMatrixLayoutCreate(&b_layout, CUDA_R_16BF, k, n, k), "MatrixLayoutCreate");
  check_lt(cublasLtMatrixLayoutCreate(&d_layout, CUDA_R_16BF, m, n, m), "MatrixLayoutCreate");
  cublasLtMatmulPreference_t preference = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&preference), "MatmulPreferenceCreate");
  const size_t workspace_bytes = workspace.bytes();
  check_lt(
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof(workspace_bytes)),
      "MatmulPreferenceSetAttribute");
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(requested));
  int found = 0;
  check_lt(cublasLtMatmulAlgoGetHeuristic(lt, desc, a_layout, b_layout, d_layout, d_layout,
                                          preference, requested, results.data(), &found),
           "MatmulAlgoGetHeuristic");
  double first_us = 0, best_us = 1e30;
  int best = -1, tried = 0;
  for (int i = 0; i < found; ++i) {
    if (results[static_cast<size_t>(i)].state != CUBLAS_STATUS_SUCCESS) continue;
    const cublasLtMatmulAlgo_t* algo = &results[static_cast<size_t>(i)].algo;
    bool failed = false;
    const double us = median_us(weights, [&](const bf16* w) {
      const cublasStatus_t status = cublasLtMatmul(
          lt, desc, &alpha, w, a_layout, x.data(), b_layout, &beta, y.data(), d_layout, y.data(),
          d_layout, algo, workspace.data(), workspace_bytes, nullptr);
      failed = failed || status != CUBLAS_STATUS_SUCCESS;
    });
    if (failed) continue;
    ++tried;
    if (i == 0) first_us = us;
    if (us < best_us) best_us = us, best = i;
  }
  const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(w_elems);
  std::printf("%-8s %4ld | %8.1f | %8.1f | %8.1f (#%d of %d: %s) | %5.1f%% | %.0f TFLOP/s\n",
              shape.name, static_cast<long>(rows), default_us, first_us, best_us, best, tried,
              best >= 0 ? describe(results[static_cast<size_t>(best)].algo).c_str() : "-",
              100.0 * (default_us - best_us) / default_us, flops / best_us * 1e-6);
  std::fflush(stdout);
  cublasLtMatmulPreferenceDestroy(preference);
  cublasLtMatrixLayoutDestroy(a_layout);
  cublasLtMatrixLayoutDestroy(b_layout);
  cublasLtMatrixLayoutDestroy(d_layout);
  cublasLtMatmulDescDestroy(desc);
}

}  // namespace
}  // namespace ruvdllm::cuda

int main(int argc, char** argv) {
  using namespace ruvdllm::cuda;
  std::string why;
  if (!cuda_available(&why)) {
    std::printf("%s: skipped, no usable GPU: %s\n", argv[0], why.c_str());
    return 0;
  }
  const int requested = argc > 1 ? std::atoi(argv[1]) : 64;
  if (requested < 1 || requested > 1000) {
    std::fprintf(stderr, "usage: %s [heuristic results to try, 1-1000]\n", argv[0]);
    return 2;
  }
  try {
    std::printf("%s\n", device_summary(0).c_str());
    DeviceArray<uint8_t> workspace(kWorkspaceBytes);
    cublasHandle_t handle = nullptr;
    cublasLtHandle_t lt = nullptr;
    check_cublas(cublasCreate(&handle), "cublasCreate");
    check_cublas(cublasSetWorkspace(handle, workspace.data(), workspace.bytes()),
                 "cublasSetWorkspace");
    check_cublas(cublasLtCreate(&lt), "cublasLtCreate");
    std::printf(
        "product  rows | default µs | heuristic #0 | best µs (config) | gain | best rate\n");
    for (const Shape& shape : kEightBShapes) {
      for (const int64_t rows : {256, 512}) search(shape, rows, requested, handle, lt, workspace);
    }
    cublasLtDestroy(lt);
    cublasDestroy(handle);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_gemm_algos: %s\n", e.what());
    return 1;
  }
  return 0;
}
