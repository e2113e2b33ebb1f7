// GPU token sampling per diffusion step (CudaRowSampler::sample: job upload, one kernel, the
// proposals back): µs per step for LLaDA-8B's vocabulary (126,464) over a 256-position canvas
// and for a small 8192 vocabulary over 64 rows, greedy and sampled.
//
//   bench_cuda_sampling --benchmark_min_time=0.2
//
// Arguments: rows / vocab / mode (0 greedy, 1 temperature 0.8 + top-p 0.9, 2 temperature 0.8 +
// top-k 50, 3 Gumbel at temperature 1). The reported time is wall time per call (the call
// synchronises); "GB/s" counts one read of the logits. BM_CudaChooseStep adds the choice of
// positions (host choose_top vs the device's sample_top) at 256 and 4096 candidates.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/sampling.h"
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/diffusion/sampler.h"

namespace ruvdllm {
namespace {

const char* const kModeNames[] = {"greedy", "t0.8_topp0.9", "t0.8_topk50", "gumbel_t1"};

// Language-model-like rows without a slow host RNG: a roughly normal background (sum of three
// hashed uniforms, σ ≈ 2) with four favourites per row.
std::vector<float> bench_logits(int64_t rows, int64_t vocab) {
  std::vector<float> l(static_cast<size_t>(rows * vocab));
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto uniform = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return static_cast<float>(state >> 40) * 0x1p-24f;
  };
  for (auto& x : l) x = 4.0f * (uniform() + uniform() + uniform() - 1.5f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int k = 0; k < 4; ++k) {
      const auto id = static_cast<int64_t>(uniform() * static_cast<float>(vocab)) % vocab;
      l[static_cast<size_t>(r * vocab + id)] += 8.0f + 2.0f * static_cast<float>(k);
    }
  }
  return l;
}

void BM_CudaSampleStep(benchmark::State& state) {
  std::string why;
  if (!cuda::cuda_available(&why)) {
    state.SkipWithError(("no usable GPU: " + why).c_str());
    return;
  }
  const int64_t rows = state.range(0), vocab = state.range(1);
  const int mode = static_cast<int>(state.range(2));
  const std::vector<float> host = bench_logits(rows, vocab);
  cuda::DeviceArray<float> logits(host.size());
  cuda::check_cuda(cudaMemcpy(logits.data(), host.data(), host.size() * sizeof(float),
                              cudaMemcpyHostToDevice),
                   "cudaMemcpy");
  SamplingOptions o;
  o.rule = Unmasking::Confidence;
  o.seed = 7;
  o.mask_id = vocab - 1;
  if (mode != 0) o.temperature = mode == 3 ? 1.0f : 0.8f;
  if (mode == 1) o.top_p = 0.9f;
  if (mode == 2) o.top_k = 50;
  o.gumbel = mode == 3;
  std::vector<int64_t> ids(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) ids[static_cast<size_t>(i)] = i;
  std::vector<Proposal> out(static_cast<size_t>(rows));
  cuda::CudaRowSampler sampler(vocab, nullptr);
  int64_t step = 0;
  sampler.sample(logits.data(), nullptr, rows, ids, ids, o, step++, out);  // warm-up
  for (auto _ : state) {
    sampler.sample(logits.data(), nullptr, rows, ids, ids, o, step++, out);
    benchmark::DoNotOptimize(out.data());
  }
  const double bytes = static_cast<double>(rows * vocab) * sizeof(float);
  state.counters["GB/s"] = benchmark::Counter(bytes * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
  state.SetLabel(std::string(kModeNames[mode]) + " " + cuda::device_name(0));
}

BENCHMARK(BM_CudaSampleStep)
    ->ArgNames({"rows", "vocab", "mode"})
    ->Args({256, 126464, 0})
    ->Args({256, 126464, 1})
    ->Args({256, 126464, 2})
    ->Args({256, 126464, 3})
    ->Args({64, 8192, 0})
    ->Args({64, 8192, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// A whole step's choice of positions for the confidence rule, committing a quarter of the
// candidates: path 0 is today's (all proposals back, choose_top on the host), path 1 keeps the
// proposals on the device (sample_top) and copies back only the committed ones. Time is wall
// time per step (what the generation loop waits for); "device_us" is the span of the
// stream's work per step between two events around the call (job upload, kernels, copy back).
// The difference between the paths at the same shape is the cost (or saving) of the device
// choice.
void BM_CudaChooseStep(benchmark::State& state) {
  std::string why;
  if (!cuda::cuda_available(&why)) {
    state.SkipWithError(("no usable GPU: " + why).c_str());
    return;
  }
  const int64_t rows = state.range(0), vocab = state.range(1);
  const bool on_device = state.range(2) != 0;
  const float alg_temp = static_cast<float>(state.range(3)) / 10.0f;
  const std::vector<float> host = bench_logits(rows, vocab);
  cuda::DeviceArray<float> logits(host.size());
  cuda::check_cuda(
      cudaMemcpy(logits.data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice),
      "cudaMemcpy");
  SamplingOptions o;
  o.rule = Unmasking::Confidence;
  o.seed = 7;
  o.mask_id = vocab - 1;
  o.alg_temp = alg_temp;
  // Candidates in a scrambled order, as a canvas's masked positions are not.
  std::vector<int64_t> ids(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) ids[static_cast<size_t>(i)] = (i * 7 + 3) % rows;
  const int64_t count = std::max<int64_t>(1, rows / 4);
  std::vector<Proposal> all(static_cast<size_t>(rows)), committed;
  std::vector<size_t> chosen;
  cuda::CudaRowSampler sampler(vocab, nullptr);
  auto one_step = [&](int64_t step) {
    if (on_device) {
      sampler.sample_top(logits.data(), nullptr, rows, ids, ids, o, step, count, &committed);
    } else {
      sampler.sample(logits.data(), nullptr, rows, ids, ids, o, step, all);
      choose_top(all, count, o.alg_temp, o.seed, step, &chosen);
      committed.clear();
      for (size_t i : chosen) committed.push_back(all[i]);
    }
  };
  int64_t step = 0;
  one_step(step++);  // warm-up
  cudaEvent_t begin = nullptr, end = nullptr;
  cuda::check_cuda(cudaEventCreate(&begin), "cudaEventCreate");
  cuda::check_cuda(cudaEventCreate(&end), "cudaEventCreate");
  double device_ms = 0;
  for (auto _ : state) {
    cuda::check_cuda(cudaEventRecord(begin, nullptr), "cudaEventRecord");
    one_step(step++);
    cuda::check_cuda(cudaEventRecord(end, nullptr), "cudaEventRecord");
    cuda::check_cuda(cudaEventSynchronize(end), "cudaEventSynchronize");
    float ms = 0;
    cuda::check_cuda(cudaEventElapsedTime(&ms, begin, end), "cudaEventElapsedTime");
    device_ms += ms;
    benchmark::DoNotOptimize(committed.data());
  }
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  state.counters["device_us"] =
      1000.0 * device_ms /
      static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
  state.SetLabel(std::string(on_device ? "sample_top" : "sample+host choose_top") +
                 (alg_temp > 0 ? " alg_temp " + std::to_string(alg_temp).substr(0, 3) : "") + " " +
                 cuda::device_name(0));
}

BENCHMARK(BM_CudaChooseStep)
    ->ArgNames({"rows", "vocab", "device", "alg_temp10"})
    ->Args({256, 126464, 0, 0})
    ->Args({256, 126464, 1, 0})
    ->Args({256, 126464, 1, 7})
    ->Args({256, 1024, 0, 0})
    ->Args({256, 1024, 1, 0})
    ->Args({4096, 1024, 0, 0})
    ->Args({4096, 1024, 1, 0})
    ->Args({4096, 1024, 0, 7})
    ->Args({4096, 1024, 1, 7})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace ruvdllm

BENCHMARK_MAIN();
