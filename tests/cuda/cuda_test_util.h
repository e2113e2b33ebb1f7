#pragma once
// Helpers for the CUDA tests: a fixture that skips without a GPU, device upload/download, and
// the relative error ‖got − want‖₂ / ‖want‖₂ every comparison uses.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "ruvdllm/cuda/device.h"

namespace ruvdllm::testing {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda::cuda_available(&why)) GTEST_SKIP() << "skipped, no usable GPU: " << why;
  }
};

template <typename T>
cuda::DeviceArray<T> to_device(const std::vector<T>& host) {
  cuda::DeviceArray<T> d(host.size());
  cuda::check_cuda(
      cudaMemcpy(d.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
      "cudaMemcpy");
  return d;
}

// A device array of n elements whose every byte is 0xFF (a NaN for floats), so an element the
// kernel under test fails to write shows up in the comparison.
template <typename T>
cuda::DeviceArray<T> poisoned(size_t n) {
  cuda::DeviceArray<T> d(n);
  cuda::check_cuda(cudaMemset(d.data(), 0xFF, n * sizeof(T)), "cudaMemset");
  return d;
}

template <typename T>
std::vector<T> to_host(const cuda::DeviceArray<T>& d, size_t n) {
  cuda::check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  std::vector<T> host(n);
  cuda::check_cuda(cudaMemcpy(host.data(), d.data(), n * sizeof(T), cudaMemcpyDeviceToHost),
                   "cudaMemcpy");
  return host;
}

// NaN when either side holds a NaN, so EXPECT_LT on it fails.
inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

}  // namespace ruvdllm::testing
