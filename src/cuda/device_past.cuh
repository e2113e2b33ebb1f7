#pragma once
// The KV cache's length as a replayed pass gets it: a count in device memory, read when the
// kernel runs (a captured graph keeps its parameters, so the length cannot be one of them).
#include <cstdint>

namespace ruvdllm::cuda {

// Adds *past (when given) to the two quantities a kernel offsets by the cache's length: for
// attention the keys read and the first query's position, for the q/k/v split the positions and
// the cache row written.
__device__ inline void add_device_past(const int32_t* past, int64_t& a, int64_t& b) {
  if (past) {
    const int64_t n = *past;
    a += n;
    b += n;
  }
}

}  // namespace ruvdllm::cuda
