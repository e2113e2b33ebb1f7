#include "ruvdllm/cuda/roofline.h"

#include <cuda_runtime_api.h>

#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/infer_gemm.h"
#include "cuda/infer_kernels.h"
#include "ruvdllm/core/timing.h"

namespace ruvdllm::cuda {
namespace {

// Milliseconds of each of `repetitions` runs of work, timed by events.
template <typename Work>
std::vector<float> run_times(cudaStream_t stream, int repetitions, Work work) {
  cudaEvent_t start = nullptr, stop = nullptr;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<float> ms;
  for (int r = 0; r < repetitions; ++r) {
    check_cuda(cudaEventRecord(start, stream), "cudaEventRecord");
    work();
    check_cuda(cudaEventRecord(stop, stream), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    check_cuda(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms;
}

template <typename Work>
double median_ms(cudaStream_t stream, int repetitions, Work work) {
  work();  // warm-up
  return median(run_times(stream, repetitions, work));
}

}  // namespace

DevicePeaks measure_peaks(int device, double sustain_ms) {
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
  DevicePeaks peaks;
  {
    constexpr int64_t n = 8192;
    DeviceArray<bf16> a(static_cast<size_t>(n * n)), b(static_cast<size_t>(n * n));
    DeviceArray<float> c(static_cast<size_t>(n * n));
    fill_uniform_bf16(a.data(), n * n, 1, stream);
    fill_uniform_bf16(b.data(), n * n, 2, stream);
    InferGemm gemm(stream, InferGemm::Engines::Cublas);
    const auto product = [&] { gemm.linear(c.data(), a.data(), b.data(), n, n, n); };
    const auto tflops = [&](double ms) { return 2.0 * n * n * n / (ms * 1e-3) / 1e12; };
    const auto start = Clock::now();
    peaks.bf16_gemm_first_tflops = tflops(median_ms(stream, 10, product));
    repeat_for(start, sustain_ms, [&] { run_times(stream, 10, product); });
    peaks.bf16_gemm_tflops = sustain_ms > 0 ? tflops(median(run_times(stream, 20, product)))
                                            : peaks.bf16_gemm_first_tflops;
  }
  {
    constexpr size_t bytes = size_t{2} << 30;
    DeviceArray<uint8_t> src(bytes), dst(bytes);
    check_cuda(cudaMemset(src.data(), 1, bytes), "cudaMemset");
    const double ms = median_ms(stream, 10, [&] {
      check_cuda(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, stream),
                 "cudaMemcpyAsync");
    });
    peaks.copy_gbps = 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
  }
  cudaStreamDestroy(stream);
  return peaks;
}

}  // namespace ruvdllm::cuda
