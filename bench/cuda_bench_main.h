#pragma once
// The main() of the CUDA benchmark programs: names the device in the report's context, or
// says why there is none and exits 0 (CI builds them where there is no GPU); and the timing
// loop they share.
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "cuda/cuda_check.h"
#include "ruvdllm/cuda/device.h"

namespace ruvdllm::cuda {

// Device time of one `launch()` (work queued on the default stream): CUDA events around
// `launches` back-to-back calls per iteration, so host overhead between launches does not
// count. One untimed call first loads the kernel and does any one-time setup.
template <typename Launch>
void time_launches(benchmark::State& state, int launches, Launch launch) {
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  launch();
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  for (auto _ : state) {
    check_cuda(cudaEventRecord(start, nullptr), "cudaEventRecord");
    for (int i = 0; i < launches; ++i) launch();
    check_cuda(cudaEventRecord(stop, nullptr), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms / 1e3 / launches);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

inline int cuda_benchmark_main(int argc, char** argv, void (*register_benchmarks)() = nullptr) {
  std::string why;
  if (!cuda_available(&why)) {
    std::printf("%s: skipped, no usable GPU: %s\n", argv[0], why.c_str());
    return 0;
  }
  benchmark::AddCustomContext("device", device_summary(0));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (register_benchmarks) register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace ruvdllm::cuda
