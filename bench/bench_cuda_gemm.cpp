// The products of an 8B LLaDA denoising step (4096 wide, FFN 12288, vocabulary 126,464) at 256
// and 512 rows, through cuBLAS the ways the inference engine could call it:
//   f32out  — cublasGemmEx, bf16 operands, f32 output (what InferGemm::linear does)
//   bf16out — the same with a bf16 output (half the bytes written)
//   splitK  — the inner dimension cut in S slices by one strided-batched call, each slice
//             writing its own f32 partial (the partials are summed by the next kernel)
//   f32add  — f32 output added to what y holds (beta = 1: the residual products)
//   wgmma_bf16out, wgmma_f32out, wgmma_f32add — our own Hopper GEMM (src/cuda/wgmma_gemm.h),
//             where the GPU runs it
// At these row counts a step is bound by reading the weights, so `weight_GB/s` (weight bytes
// over time) is the figure to compare with the device's copy bandwidth. Several copies of each
// weight are cycled so they come from DRAM, not from the 50 MB L2.
//   bench_cuda_gemm --benchmark_min_time=0.2
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/wgmma_gemm.h"
#include "cuda_bench_main.h"
#include "cuda_gemm_shapes.h"

namespace ruvdllm::cuda {
namespace {

using bf16 = __nv_bfloat16;

using Shape = GemmShape;
enum class Variant { F32Out, F32Add, Bf16Out, SplitK, WgmmaBf16Out, WgmmaF32Out, WgmmaF32Add };

// Device copies of a shape's weight, made once (every variant and row count reuses them).
const std::vector<DeviceArray<bf16>>& weights_of(const Shape& shape) {
  static std::map<std::string, std::vector<DeviceArray<bf16>>> cache;
  std::vector<DeviceArray<bf16>>& copies = cache[shape.name];
  if (copies.empty()) {
    const auto elems = static_cast<size_t>(shape.out * shape.in);
    const size_t bytes = elems * sizeof(bf16);
    const size_t n = std::max<size_t>(1, (kMinCycledBytes + bytes - 1) / bytes);
    const std::vector<bf16> host = random_bf16(elems, 7);
    for (size_t c = 0; c < n; ++c) {
      copies.emplace_back(elems);
      check_cuda(cudaMemcpy(copies.back().data(), host.data(), bytes, cudaMemcpyHostToDevice),
                 "cudaMemcpy");
    }
  }
  return copies;
}

void BM_Gemm(benchmark::State& state, Shape shape, int64_t rows, Variant variant, int splits) {
  const auto w_elems = static_cast<size_t>(shape.out * shape.in);
  const size_t w_bytes = w_elems * sizeof(bf16);
  const std::vector<DeviceArray<bf16>>& weights = weights_of(shape);
  const int copies = static_cast<int>(weights.size());
  const std::vector<bf16> host_x = random_bf16(static_cast<size_t>(rows * shape.in), 11);
  DeviceArray<bf16> x(host_x.size());
  check_cuda(
      cudaMemcpy(x.data(), host_x.data(), host_x.size() * sizeof(bf16), cudaMemcpyHostToDevice),
      "cudaMemcpy");
  const auto y_elems = static_cast<size_t>(rows * shape.out) * static_cast<size_t>(splits);
  DeviceArray<float> y(y_elems);
  check_cuda(cudaMemset(y.data(), 0, y.bytes()), "cudaMemset");
  DeviceArray<uint8_t> workspace(size_t{32} << 20);
  cublasHandle_t handle = nullptr;
  check_cublas(cublasCreate(&handle), "cublasCreate");
  check_cublas(cublasSetWorkspace(handle, workspace.data(), workspace.bytes()),
               "cublasSetWorkspace");

  const int m = static_cast<int>(shape.out), n = static_cast<int>(rows);
  const int k = static_cast<int>(shape.in);
  const bool adds = variant == Variant::F32Add || variant == Variant::WgmmaF32Add;
  const float alpha = 1.0f, beta = adds ? 1.0f : 0.0f;
  std::unique_ptr<WgmmaGemm> own;
  if (variant == Variant::WgmmaBf16Out || variant == Variant::WgmmaF32Out ||
      variant == Variant::WgmmaF32Add) {
    own = std::make_unique<WgmmaGemm>(nullptr);
  }
  auto run = [&](const bf16* w) {
    switch (variant) {
      case Variant::WgmmaBf16Out:
        own->linear(reinterpret_cast<bf16*>(y.data()), shape.out, x.data(), w, rows, shape.in,
                    shape.out);
        break;
      case Variant::WgmmaF32Out:
      case Variant::WgmmaF32Add:
        own->linear(y.data(), shape.out, x.data(), w, rows, shape.in, shape.out, beta);
        break;
      case Variant::F32Out:
      case Variant::F32Add:
      case Variant::Bf16Out:
        check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w, CUDA_R_16BF,
                                  k, x.data(), CUDA_R_16BF, k, &beta, y.data(),
                                  variant == Variant::Bf16Out ? CUDA_R_16BF : CUDA_R_32F, m,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "cublasGemmEx");
        break;
      case Variant::SplitK: {
        const int slice = k / splits;
        check_cublas(
            cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, slice, &alpha, w,
                                       CUDA_R_16BF, k, slice, x.data(), CUDA_R_16BF, k, slice,
                                       &beta, y.data(), CUDA_R_32F, m, static_cast<int64_t>(m) * n,
                                       splits, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmStridedBatchedEx");
        break;
      }
    }
  };
  for (int c = 0; c < copies; ++c) run(weights[static_cast<size_t>(c)].data());
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");

  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  int copy = 0;
  for (auto _ : state) {
    check_cuda(cudaEventRecord(start, nullptr), "cudaEventRecord");
    run(weights[static_cast<size_t>(copy)].data());
    check_cuda(cudaEventRecord(stop, nullptr), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms / 1e3);
    copy = (copy + 1) % copies;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cublasDestroy(handle);
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(w_bytes) * 1e-9,
                                                     benchmark::Counter::kIsIterationInvariantRate);
  state.counters["TFLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(rows) * static_cast<double>(w_elems) * 1e-12,
                         benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  for (const Shape& shape : kEightBShapes) {
    for (const int64_t rows : {256, 288, 512}) {
      const std::string base =
          std::string("BM_Gemm/") + shape.name + "/rows:" + std::to_string(rows) + "/";
      auto add = [&](const std::string& name, Variant variant, int splits) {
        benchmark::RegisterBenchmark(
            (base + name).c_str(),
            [=](benchmark::State& state) { BM_Gemm(state, shape, rows, variant, splits); })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      };
      add("f32out", Variant::F32Out, 1);
      add("f32add", Variant::F32Add, 1);
      add("bf16out", Variant::Bf16Out, 1);
      if (WgmmaGemm::available()) {
        add("wgmma_bf16out", Variant::WgmmaBf16Out, 1);
        add("wgmma_f32out", Variant::WgmmaF32Out, 1);
        add("wgmma_f32add", Variant::WgmmaF32Add, 1);
      }
      for (const int s : {2, 3, 4}) {
        if (shape.in % (s * 64) == 0 && shape.out <= 24576) {
          add("splitK" + std::to_string(s), Variant::SplitK, s);
        }
      }
    }
  }
}

}  // namespace
}  // namespace ruvdllm::cuda

int main(int argc, char** argv) {
  return ruvdllm::cuda::cuda_benchmark_main(argc, argv, ruvdllm::cuda::register_all);
}
