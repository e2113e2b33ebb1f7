#pragma once
// The products of an 8B LLaDA denoising step (4096 wide, FFN 12288, vocabulary 126,464) that
// the cuBLAS benchmarks time, and their random bf16 operands.
#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace ruvdllm::cuda {

struct GemmShape {
  const char* name;
  int64_t out, in;
};
inline constexpr GemmShape kEightBShapes[] = {{"qkv", 12288, 4096},
                                              {"wo", 4096, 4096},
                                              {"gate_up", 24576, 4096},
                                              {"down", 4096, 12288},
                                              {"head", 126464, 4096}};
// Weights are cycled through enough copies to fill this, so they come from DRAM rather than
// from the 50 MB L2.
inline constexpr size_t kMinCycledBytes = size_t{200} << 20;

inline std::vector<__nv_bfloat16> random_bf16(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  std::vector<__nv_bfloat16> v(n);
  for (auto& x : v) x = __float2bfloat16(u(rng));
  return v;
}

}  // namespace ruvdllm::cuda
