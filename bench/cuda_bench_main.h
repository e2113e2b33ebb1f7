#pragma once
// The main() of the CUDA benchmark programs: names the device in the report's context, or
// says why there is none and exits 0 (CI builds them where there is no GPU).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>

#include "ruvdllm/cuda/device.h"

namespace ruvdllm::cuda {

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
