// Dequantization to bf16 on the GPU at an FFN weight's shape (4096 × 12288, an 8B model's
// gate/up projection). bytes_per_second counts the bytes read (the blocks) plus the bytes
// written (2 per value): the kernel should run near the device's memory bandwidth. Three
// copies of the weights are cycled so the blocks come from DRAM, not from the 50 MB L2.
// Then the element-wise kernels between an 8B step's GEMMs (BM_Step*/rows), at 256 and 512
// rows: each is tiny, so what matters is how close to its bytes ÷ bandwidth it gets, and how
// much of a step's time the 32 layers' launches of it add up to.
// Device time per launch comes from CUDA events (manual time).
//   bench_cuda_infer_kernels --benchmark_min_time=0.2s
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/infer_kernels.h"
#include "cuda_bench_main.h"
#include "cuda_random_blocks.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/core/tensor_type.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::cuda {
namespace {

constexpr int64_t kRows = 4096, kCols = 12288;
constexpr int kCopies = 3;

// The device copies of a type's weights, made once: the benchmark function runs several times.
struct Weights {
  size_t bytes = 0;
  std::vector<DeviceArray<uint8_t>> copies;
};

const Weights& weights_of(TensorType type) {
  static std::map<TensorType, Weights> cache;
  Weights& w = cache[type];
  if (w.copies.empty()) {
    const std::vector<uint8_t> host = random_blocks(type, kRows, kCols, 42);
    w.bytes = host.size();
    for (int c = 0; c < kCopies; ++c) {
      w.copies.emplace_back(host.size());
      check_cuda(
          cudaMemcpy(w.copies.back().data(), host.data(), host.size(), cudaMemcpyHostToDevice),
          "cudaMemcpy");
    }
  }
  return w;
}

void BM_DequantizeToBf16(benchmark::State& state, TensorType type) {
  const Weights& weights = weights_of(type);
  const auto& copies = weights.copies;
  DeviceArray<bf16> out(static_cast<size_t>(kRows * kCols));
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  // One untimed pass loads the kernel and warms the clocks.
  dequantize_to_bf16(out.data(), copies[0].data(), type, kRows, kCols, nullptr);
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  int copy = 0;
  for (auto _ : state) {
    check_cuda(cudaEventRecord(start, nullptr), "cudaEventRecord");
    dequantize_to_bf16(out.data(), copies[copy].data(), type, kRows, kCols, nullptr);
    check_cuda(cudaEventRecord(stop, nullptr), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms / 1e3);
    copy = (copy + 1) % kCopies;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  const int64_t moved = static_cast<int64_t>(weights.bytes) + kRows * kCols * 2;
  state.SetBytesProcessed(state.iterations() * moved);
  state.counters["Gvalues/s"] = benchmark::Counter(static_cast<double>(kRows * kCols) * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

// An 8B LLaDA layer's activation widths.
constexpr int64_t kWidth = 4096, kHeads = 32, kHeadDim = 128, kFfn = 12288;

template <typename T>
DeviceArray<T> filled_device(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  // bf16 goes up as its bit patterns.
  using Host = std::conditional_t<sizeof(T) == 2, uint16_t, float>;
  std::vector<Host> host(n);
  for (auto& h : host) {
    const float v = dist(rng);
    if constexpr (sizeof(T) == 2) {
      h = ruvdllm::f32_to_bf16(v);
    } else {
      h = v;
    }
  }
  static_assert(sizeof(Host) == sizeof(T));
  DeviceArray<T> d(n);
  check_cuda(cudaMemcpy(d.data(), host.data(), n * sizeof(T), cudaMemcpyHostToDevice),
             "cudaMemcpy");
  return d;
}

constexpr int kLaunchesPerIteration = 20;

// time_launches, plus bytes_per_second from `moved`, the bytes one launch must read plus write.
template <typename Launch>
void time_step_kernel(benchmark::State& state, int64_t moved, Launch launch) {
  time_launches(state, kLaunchesPerIteration, launch);
  state.SetBytesProcessed(state.iterations() * moved);
}

// The residual add of two split-K partials and the RMSNorm that feeds the next product.
void BM_StepResidualRmsnorm(benchmark::State& state) {
  const int64_t rows = state.range(0);
  auto x = filled_device<float>(rows * kWidth, 1.0f, 1);
  auto partials = filled_device<float>(2 * rows * kWidth, 1.0f, 2);
  auto w = filled_device<float>(kWidth, 1.0f, 3);
  DeviceArray<bf16> y(rows * kWidth);
  time_step_kernel(state, rows * kWidth * (4 * 2 + 4 * 2 + 2), [&] {
    residual_rmsnorm_rows(y.data(), x.data(), partials.data(), 2, w.data(), rows, kWidth, 1e-5f,
                          nullptr);
  });
}

void BM_StepSplitQkvRope(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const int64_t qkv_width = 3 * kWidth;
  auto qkv = filled_device<bf16>(rows * qkv_width, 1.0f, 4);
  auto cos_sin = filled_device<float>(rows * kHeadDim, 1.0f, 5);
  DeviceArray<bf16> q(rows * kWidth), k(rows * kWidth), v(rows * kWidth);
  QkvLayout layout;
  layout.seq_len = layout.kv_rows = rows;
  layout.n_head = layout.n_head_kv = kHeads;
  layout.head_dim = kHeadDim;
  time_step_kernel(state, rows * qkv_width * 2 * 2, [&] {
    split_qkv_heads(q.data(), k.data(), v.data(), qkv.data(), nullptr, nullptr, nullptr,
                    reinterpret_cast<const float2*>(cos_sin.data()), layout, nullptr);
  });
}

void BM_StepSwiglu(benchmark::State& state) {
  const int64_t rows = state.range(0);
  auto gate_up = filled_device<bf16>(rows * 2 * kFfn, 2.0f, 6);
  DeviceArray<bf16> h(rows * kFfn);
  time_step_kernel(state, rows * kFfn * (2 * 2 + 2),
                   [&] { swiglu_rows(h.data(), gate_up.data(), rows, kFfn, nullptr); });
}

void register_all() {
  const std::pair<const char*, void (*)(benchmark::State&)> step_kernels[] = {
      {"BM_StepResidualRmsnorm", BM_StepResidualRmsnorm},
      {"BM_StepSplitQkvRope", BM_StepSplitQkvRope},
      {"BM_StepSwiglu", BM_StepSwiglu}};
  for (const auto& [name, bm] : step_kernels) {
    benchmark::RegisterBenchmark(name, bm)->Arg(256)->Arg(512)->UseManualTime()->Unit(
        benchmark::kMicrosecond);
  }
  for (const TensorType type : {TensorType::Q4_K, TensorType::Q8_0, TensorType::Q6_K,
                                TensorType::Q4_0, TensorType::Q5_K, TensorType::F16}) {
    benchmark::RegisterBenchmark(
        (std::string("BM_DequantizeToBf16/") + type_name(type) + "/4096x12288").c_str(),
        [type](benchmark::State& state) { BM_DequantizeToBf16(state, type); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace
}  // namespace ruvdllm::cuda

int main(int argc, char** argv) {
  return ruvdllm::cuda::cuda_benchmark_main(argc, argv, ruvdllm::cuda::register_all);
}
