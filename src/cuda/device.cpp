#include "ruvdllm/cuda/device.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "cuda/cuda_check.h"
#include "ruvdllm/core/error.h"

namespace ruvdllm::cuda {

void check_cuda(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  fail("CUDA: {} failed: {} ({})", call, cudaGetErrorString(status), cudaGetErrorName(status));
}

void check_cublas(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  fail("cuBLAS: {} failed: {}", call, cublasGetStatusString(status));
}

void throw_error(const std::string& message) { throw Error(message); }

int cublas_int(int64_t value, const char* what) {
  if (value < 0 || value > std::numeric_limits<int>::max())
    fail("cuBLAS: {} = {} does not fit an int", what, value);
  return static_cast<int>(value);
}

void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) return;
  fail("CUDA: launch of kernel {} failed: {} ({})", kernel, cudaGetErrorString(status),
       cudaGetErrorName(status));
}

bool cuda_available(std::string* why) {
  int driver = 0;
  const cudaError_t driver_status = cudaDriverGetVersion(&driver);
  if (driver_status != cudaSuccess || driver == 0) {
    if (why) *why = "no CUDA driver is installed";
    return false;
  }
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    // The failed query leaves its error as the last error; clear it so later checks start clean.
    cudaGetLastError();
    if (why) *why = fmt::format("no usable CUDA device: {}", cudaGetErrorString(status));
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device is present";
    return false;
  }
  if (why) why->clear();
  return true;
}

int device_count() {
  int count = 0;
  check_cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  return count;
}

static cudaDeviceProp device_properties(int index) {
  const int count = device_count();
  if (index < 0 || index >= count) {
    fail("CUDA: device index {} is out of range ({} device(s) present)", index, count);
  }
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  return prop;
}

std::string device_name(int index) { return device_properties(index).name; }

std::string device_summary(int index) {
  const cudaDeviceProp prop = device_properties(index);
  int runtime = 0, driver = 0;
  check_cuda(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
  check_cuda(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
  return fmt::format("{} (sm_{}{}, {} SMs, {:.1f} GiB, runtime {}.{}, driver {}.{})", prop.name,
                     prop.major, prop.minor, prop.multiProcessorCount,
                     static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024 * 1024),
                     runtime / 1000, runtime % 1000 / 10, driver / 1000, driver % 1000 / 10);
}

int parse_cuda_device(const std::string& device) {
  if (device == "cuda") return 0;
  int index = -1;
  const char* first = device.data() + std::min<size_t>(device.size(), 5);
  const char* last = device.data() + device.size();
  if (device.rfind("cuda:", 0) != 0 || first == last ||
      std::from_chars(first, last, index).ptr != last || index < 0) {
    fail("unknown device '{}' (cpu, cuda or cuda:N)", device);
  }
  return index;
}

}  // namespace ruvdllm::cuda
