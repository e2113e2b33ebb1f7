#pragma once
// Programmatic dependent launch (Hopper and later): a kernel launched with
// launch_after_prior may be scheduled while the kernel before it in the stream is still
// finishing, and waits inside (wait_for_prior_grid) until that kernel's writes are visible.
// Why: a denoising step of the 8B model is about 300 short kernels, and every boundary between
// them otherwise costs the launch of the next grid after the last block of the previous one has
// drained. Older GPUs ignore the attribute, and the wait compiles to nothing there.
//
// The rule every kernel launched this way keeps: call wait_for_prior_grid() in every thread
// before its first access to device memory that another kernel writes or reads (its inputs,
// and its outputs, which the previous kernel may still be reading), and before any early
// return. The wait also covers every earlier kernel, since each one waited for its own
// predecessor before it completed. RUVDLLM_CUDA_PDL=0 launches them the ordinary way (for
// measuring the difference).
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "cuda/cuda_check.h"

namespace ruvdllm::cuda {

__device__ __forceinline__ void wait_for_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// No kernel releases the next grid before it exits (griddepcontrol.launch_dependents). Our
// GEMMs did, from their start, so that the next kernel's blocks could take each SM as its CTA
// left; measured on the 8B Q4_K step kept in blocks (H200, 2026-11-30), releasing at exit made
// it 2–4% faster at 128–256 positions (256: 9.60–9.62 against 10.04–10.07 ms with SwiGLU in the
// gate|up tiles, 9.73–9.79 against 9.81–9.87 with the element-wise kernel).

inline bool dependent_launch_on() {
  static const bool on = [] {
    const char* set = std::getenv("RUVDLLM_CUDA_PDL");
    return set == nullptr || std::strcmp(set, "0") != 0;
  }();
  return on;
}

// The launch attribute that groups a grid's CTAs into clusters of cluster_x along x.
inline cudaLaunchAttribute cluster_attribute(unsigned cluster_x) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim = {cluster_x, 1, 1};
  return attribute;
}

// The same in clusters of cluster_x CTAs along x (grid.x a multiple of it); 1: no clusters.
template <typename... Params, typename... Args>
void launch_clusters_after_prior(const char* name, unsigned cluster_x, void (*kernel)(Params...),
                                 dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                                 Args&&... args) {
  cudaLaunchAttribute attributes[2] = {};
  unsigned count = 0;
  if (dependent_launch_on()) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster_x > 1) attributes[count++] = cluster_attribute(cluster_x);
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = attributes;
  config.numAttrs = count;
  const cudaError_t status = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // a launch error is not sticky: clear it for the next check
    check_cuda(status, name);
  }
}

template <typename... Params, typename... Args>
void launch_after_prior(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                        size_t shared_bytes, cudaStream_t stream, Args&&... args) {
  launch_clusters_after_prior(name, 1, kernel, grid, block, shared_bytes, stream,
                              std::forward<Args>(args)...);
}

// How many clusters of cluster_x CTAs of kKernel (block_threads threads, shared_bytes of dynamic
// shared memory each) the device can hold at once. Asked once, of the first device that
// launches it (a host's GPUs are one model).
template <auto kKernel>
int resident_clusters(unsigned cluster_x, unsigned block_threads, size_t shared_bytes) {
  static const int clusters = [&] {
    cudaLaunchAttribute attribute = cluster_attribute(cluster_x);
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(cluster_x);
    config.blockDim = dim3(block_threads);
    config.dynamicSmemBytes = shared_bytes;
    config.attrs = &attribute;
    config.numAttrs = 1;
    int count = 0;
    check_cuda(cudaOccupancyMaxActiveClusters(&count, kKernel, &config),
               "cudaOccupancyMaxActiveClusters");
    if (count < 1) throw_error("CUDA: the GPU cannot hold one cluster of the kernel's CTAs");
    return count;
  }();
  return clusters;
}

}  // namespace ruvdllm::cuda
