#pragma once
// Host-side helpers shared by the kernel launchers of the inference kernels.
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

inline bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace ruvdllm::cuda
