// Throughput of the GPU flash attention (src/cuda/flash_attention.h) in TFLOP/s, counting
// 4·n_q·n_kv·head_dim·n_head per sequence (the two products), halved for a causal mask, against
// the H100's dense bf16 peak of about 700–800 TFLOP/s. Shapes: LLaDA-8B's layer (32 heads of
// 128) and the default model's (6 heads of 64), at 256, 512 and 1024 positions.
//   bench_cuda_attention --benchmark_min_time=0.2   (Google Benchmark 1.7: seconds, no unit)
// Arguments: n_seq, n (= n_q = n_kv), n_head, head_dim, mask (MaskMode's value), variant: 1 or
// 2 query row tiles of 16 per warp, 3 one row tile with the keys split between two warp groups,
// 0 flash_attention's own choice.
// Times come from CUDA events around a batch of launches (manual time), so host overhead
// between launches does not count, and the figure is device time only.
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/flash_attention.h"
#include "cuda_bench_main.h"
#include "ruvdllm/core/half.h"

namespace ruvdllm::cuda {
namespace detail {
// Defined in src/cuda/flash_attention.cu: flash_attention with a chosen kernel variant.
void flash_attention_variant(__nv_bfloat16* out, const __nv_bfloat16* q, const __nv_bfloat16* k,
                             const __nv_bfloat16* v, const FlashAttentionDims& dims, int variant,
                             cudaStream_t stream);
}  // namespace detail

namespace {

constexpr int kLaunchesPerIteration = 10;

DeviceArray<uint16_t> random_bf16_device(size_t n, uint32_t seed) {
  std::vector<uint16_t> host(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& h : host) {
    x = x * 1664525u + 1013904223u;  // values in [-1, 1): only the timing matters here
    h = f32_to_bf16(static_cast<float>(x >> 8) / 8388608.0f - 1.0f);
  }
  DeviceArray<uint16_t> d(n);
  check_cuda(cudaMemcpy(d.data(), host.data(), n * sizeof(uint16_t), cudaMemcpyHostToDevice),
             "cudaMemcpy");
  return d;
}

void BM_FlashAttention(benchmark::State& state) {
  std::string why;
  if (!cuda_available(&why)) {
    state.SkipWithError(("no GPU: " + why).c_str());
    return;
  }
  FlashAttentionDims d;
  d.n_seq = state.range(0);
  d.n_q = d.n_kv = state.range(1);
  d.n_head = d.n_head_kv = state.range(2);
  d.head_dim = state.range(3);
  d.mask = static_cast<MaskMode>(state.range(4));
  d.block_len = 32;
  d.scale = 1.0f / std::sqrt(static_cast<float>(d.head_dim));
  const int variant = static_cast<int>(state.range(5));
  const size_t n = static_cast<size_t>(d.n_seq * d.n_head * d.n_q * d.head_dim);
  auto q = random_bf16_device(n, 1), k = random_bf16_device(n, 2), v = random_bf16_device(n, 3);
  DeviceArray<uint16_t> out(n);
  auto bf = [](DeviceArray<uint16_t>& a) { return reinterpret_cast<__nv_bfloat16*>(a.data()); };
  // The untimed first call also raises the kernel's shared-memory limit.
  time_launches(state, kLaunchesPerIteration, [&] {
    detail::flash_attention_variant(bf(out), bf(q), bf(k), bf(v), d, variant, nullptr);
  });
  double flops = 4.0 * static_cast<double>(d.n_seq * d.n_head * d.n_q * d.n_kv * d.head_dim);
  if (d.mask != MaskMode::Full) flops /= 2;
  // Each iteration's time is one call's, so iterations / total time is calls per second.
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

constexpr int kFull = static_cast<int>(MaskMode::Full);
constexpr int kCausal = static_cast<int>(MaskMode::Causal);

// LLaDA-8B: one sequence, 32 heads of 128; both variants, then the automatic choice.
void EightBShapes(benchmark::internal::Benchmark* b) {
  for (int mask : {kFull, kCausal}) {
    for (int n : {256, 512, 1024}) {
      for (int variant : {1, 2, 3, 0}) b->Args({1, n, 32, 128, mask, variant});
    }
  }
}
// The default model: 6 heads of 64, alone and in a batch of 8 sequences.
void DefaultModelShapes(benchmark::internal::Benchmark* b) {
  for (int n : {256, 512, 1024}) b->Args({1, n, 6, 64, kFull, 0});
  for (int variant : {1, 2, 3, 0}) b->Args({8, 512, 6, 64, kFull, variant});
}

BENCHMARK(BM_FlashAttention)
    ->ArgNames({"seqs", "n", "heads", "hd", "mask", "variant"})
    ->Apply(EightBShapes)
    ->Apply(DefaultModelShapes)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ruvdllm::cuda

int main(int argc, char** argv) { return ruvdllm::cuda::cuda_benchmark_main(argc, argv); }
