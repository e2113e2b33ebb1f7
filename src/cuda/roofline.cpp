#include "ruvdllm/cuda/roofline.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/infer_gemm.h"
#include "cuda/infer_kernels.h"

namespace ruvdllm::cuda {
namespace {

template <typename Work>
double median_ms(cudaStream_t stream, int repetitions, Work work) {
  cudaEvent_t start = nullptr, stop = nullptr;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  work();  // warm-up
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
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

DevicePeaks measure_peaks(int device) {
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
  DevicePeaks peaks;
  {
    constexpr int64_t n = 8192;
    DeviceArray<float> init(static_cast<size_t>(n * n));
    DeviceArray<bf16> a(static_cast<size_t>(n * n)), b(static_cast<size_t>(n * n));
    DeviceArray<float> c(static_cast<size_t>(n * n));
    // Non-zero operands: tensor cores draw less power on zeros, which would flatter the peak.
    check_cuda(cudaMemset(init.data(), 0x3c, init.bytes()), "cudaMemset");
    f32_to_bf16(a.data(), init.data(), n * n, stream);
    f32_to_bf16(b.data(), init.data(), n * n, stream);
    InferGemm gemm(stream, InferGemm::Engines::Cublas);
    const double ms =
        median_ms(stream, 10, [&] { gemm.linear(c.data(), a.data(), b.data(), n, n, n); });
    peaks.bf16_gemm_tflops = 2.0 * n * n * n / (ms * 1e-3) / 1e12;
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
