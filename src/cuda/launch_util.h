#pragma once
// Host-side helpers shared by the kernel launchers of the inference kernels.
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>

#include "cuda/cuda_check.h"

namespace ruvdllm::cuda {

// Blocks of `per_block` items needed for `work` items (at least one); Error past the grid limit.
inline unsigned blocks_for(int64_t work, int64_t per_block, const char* what) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  if (blocks > std::numeric_limits<int>::max()) {
    throw_error(std::string("CUDA: ") + what + ": " + std::to_string(work) +
                " work items need too many blocks");
  }
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

// Raises kKernel's dynamic shared-memory limit to `bytes` (past the default 48 KB a kernel must
// opt in, per device) once per device: a host call on every launch would slow eager passes.
template <auto kKernel>
void allow_shared_memory(size_t bytes, const char* what) {
  static std::atomic<uint64_t> devices_done{0};
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (devices_done.load(std::memory_order_acquire) & bit) != 0) return;
  check_cuda(
      cudaFuncSetAttribute(reinterpret_cast<const void*>(kKernel),
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
      what);
  devices_done.fetch_or(bit, std::memory_order_release);
}

inline bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace ruvdllm::cuda
