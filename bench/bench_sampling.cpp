// Sampling time of one diffusion step (everything after the forward pass): softmax
// statistics over the candidate rows, token draws and the choice of positions, for the "160m"
// vocabulary (50,258) and a 256-position canvas.
//
//   bench_sampling --benchmark_filter=BM_SampleStep --benchmark_min_time=0.2
//
// BM_SampleStep arguments: threads / masked positions (256 = all, 64 = a quarter) / rule /
// token sampler. BM_GenerateStep160m runs real generation steps of a random-weight 160m model
// (Q8_0, written once to /tmp) and reports forward and sampling time per step and the share.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/diffusion/generate.h"
#include "ruvdllm/diffusion/row_kernels.h"
#include "ruvdllm/diffusion/sampler.h"
#include "ruvdllm/model/init.h"

namespace ruvdllm {
namespace {

constexpr int64_t kVocab = 50258;
constexpr int64_t kPositions = 256;
constexpr int64_t kCommitsPerStep = 8;  // 256 tokens in 32 steps

enum Mode { kGreedy = 0, kTemperature = 1, kTopKTopP = 2, kGumbel = 3 };
const char* const kModeNames[] = {"greedy", "temp1", "topk50_topp0.95", "gumbel"};

// Language-model-like rows: a broad normal background with a few clear favourites.
const std::vector<float>& step_logits() {
  static const std::vector<float> logits = [] {
    std::vector<float> l(static_cast<size_t>(kVocab * kPositions));
    std::mt19937 rng(42);
    std::normal_distribution<float> background(0.0f, 2.0f);
    std::uniform_int_distribution<int64_t> token(0, kVocab - 1);
    for (auto& x : l) x = background(rng);
    for (int64_t p = 0; p < kPositions; ++p) {
      for (int k = 0; k < 4; ++k)
        l[static_cast<size_t>(p * kVocab + token(rng))] += 8.0f + 2.0f * k;
    }
    return l;
  }();
  return logits;
}

void BM_SampleStep(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t masked = state.range(1);
  const auto rule = static_cast<Unmasking>(state.range(2));
  const auto mode = static_cast<Mode>(state.range(3));
  SamplingOptions o;
  o.rule = rule;
  o.seed = 7;
  if (mode != kGreedy) o.temperature = 1.0f;
  if (mode == kTopKTopP) {
    o.top_k = 50;
    o.top_p = 0.95f;
  }
  o.gumbel = mode == kGumbel;
  ThreadPool pool(threads);
  Sampler sampler(kVocab, o);
  std::vector<float> logits = step_logits();
  // Masked positions spread over the canvas, as after some steps of generation.
  std::vector<int64_t> candidates;
  for (int64_t p = 0; p < kPositions; p += kPositions / masked) candidates.push_back(p);
  Transfer transfer;
  transfer.count = kCommitsPerStep;
  transfer.probability = static_cast<double>(kCommitsPerStep) / static_cast<double>(masked);
  int64_t step = 0;
  for (auto _ : state) {
    const auto& commits = sampler.step(logits.data(), nullptr, candidates, transfer, step++, pool);
    benchmark::DoNotOptimize(commits.data());
  }
  state.SetLabel(std::string(unmasking_name(rule)) + " " + kModeNames[mode] +
                 " masked=" + std::to_string(masked) + " threads=" + std::to_string(threads));
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(state.iterations() * masked),
                                                benchmark::Counter::kIsRate);
}

void SampleArgs(benchmark::internal::Benchmark* b) {
  const int64_t confidence = static_cast<int64_t>(Unmasking::Confidence);
  const int64_t entropy = static_cast<int64_t>(Unmasking::Entropy);
  // The required grid: confidence and entropy, all and a quarter masked, 1 and 2 threads.
  for (int64_t rule : {confidence, entropy}) {
    for (int64_t masked : {kPositions, kPositions / 4}) {
      for (int64_t threads : {1, 2}) b->Args({threads, masked, rule, kGreedy});
    }
  }
  // Token samplers on the worst case (every row masked).
  for (int64_t mode : {kTemperature, kTopKTopP, kGumbel}) {
    for (int64_t threads : {1, 2}) b->Args({threads, kPositions, confidence, mode});
  }
  // Origin and random sample only the rows they commit.
  for (auto rule : {Unmasking::Origin, Unmasking::Random}) {
    b->Args({1, kPositions, static_cast<int64_t>(rule), kTemperature});
  }
}

// The one-row kernels a step is made of, on a row already in cache.
void BM_RowTop2(benchmark::State& state) {
  const float* row = step_logits().data();
  for (auto _ : state) benchmark::DoNotOptimize(row_top2(row, kVocab));
}
void BM_RowExpSums(benchmark::State& state) {
  const float* row = step_logits().data();
  std::vector<float> exps(kVocab);
  const float max = row_top2(row, kVocab).max;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        row_exp_sums(row, kVocab, max, 1.0f, state.range(0) ? exps.data() : nullptr));
  }
}
void BM_RowGumbelMax(benchmark::State& state) {
  const float* row = step_logits().data();
  uint64_t key = 1;
  for (auto _ : state) benchmark::DoNotOptimize(row_gumbel_max(row, kVocab, 1.0f, key++));
}
// One position's full sampling (statistics, token draw, score) per token sampler.
void BM_SamplePosition(benchmark::State& state) {
  const auto mode = static_cast<Mode>(state.range(0));
  SamplingOptions o;
  if (mode != kGreedy) o.temperature = 1.0f;
  if (mode == kTopKTopP) {
    o.top_k = state.range(1);
    o.top_p = 0.95f;
  }
  o.gumbel = mode == kGumbel;
  const float* row = step_logits().data();
  RowScratch scratch;
  int64_t step = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(sample_position(row, kVocab, o, step++, 0, scratch));
  state.SetLabel(kModeNames[mode]);
}
// Top-p on a flat row (a standard normal over the whole vocabulary): the worst case, where
// the nucleus holds most of the vocabulary.
void BM_TopPFlatRow(benchmark::State& state) {
  static const std::vector<float> flat = [] {
    std::vector<float> l(kVocab);
    std::mt19937 rng(3);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (auto& x : l) x = n(rng);
    return l;
  }();
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_p = static_cast<float>(state.range(0)) / 100.0f;
  RowScratch scratch;
  int64_t step = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(sample_position(flat.data(), kVocab, o, step++, 0, scratch));
}
BENCHMARK(BM_TopPFlatRow)->Arg(50)->Arg(95)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SamplePosition)
    ->Args({kGreedy, 0})
    ->Args({kTemperature, 0})
    ->Args({kTopKTopP, 50})
    ->Args({kTopKTopP, 0})
    ->Args({kGumbel, 0})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RowTop2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RowExpSums)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RowGumbelMax)->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_SampleStep)->Apply(SampleArgs)->Unit(benchmark::kMillisecond)->UseRealTime();

// Whole generation steps: a 16-token prompt and 240 masks (256 positions), all masked at step
// 0, with the generation loop's own forward/sampling split.
void BM_GenerateStep160m(benchmark::State& state) {
  const std::string path = "/tmp/ruvdllm-bench-160m-q8_0.gguf";
  if (!std::filesystem::exists(path)) {
    std::fprintf(stderr, "writing %s ...\n", path.c_str());
    InitOptions init;
    init.type = TensorType::Q8_0;
    init.seed = 1;
    write_random_model(shape_config(Arch::LLaDA, "160m"), init, path);
  }
  auto model = Model::load(path);
  ThreadPool pool(static_cast<int>(state.range(0)));
  Generator generator(*model, pool);
  const std::vector<int32_t> prompt(16, 100);
  GenerationOptions o;
  o.gen_len = kPositions - 16;
  o.steps = 240 / 8;  // 8 tokens a step
  o.algorithm = static_cast<Unmasking>(state.range(1));
  if (state.range(2)) {  // BD3-LM style: blocks of 32 over the KV cache
    o.cache_blocks = true;
    o.block_len = 32;
  }
  double forward_ms = 0, sampling_ms = 0;
  int64_t steps = 0;
  for (auto _ : state) {
    // Two steps are enough to time (and keep the run to a few seconds).
    const auto result =
        generator.run(prompt, o, [](const StepInfo& info) { return info.step < 1; });
    forward_ms += result.forward_ms;
    sampling_ms += result.sampling_ms;
    steps += result.steps_run;
  }
  state.counters["forward_ms/step"] = forward_ms / static_cast<double>(steps);
  state.counters["sampling_ms/step"] = sampling_ms / static_cast<double>(steps);
  state.counters["sampling_%"] = 100.0 * sampling_ms / (forward_ms + sampling_ms);
  state.SetLabel(std::string(unmasking_name(o.algorithm)) + " threads=" +
                 std::to_string(state.range(0)) + (o.cache_blocks ? " cache_blocks=32" : ""));
}
BENCHMARK(BM_GenerateStep160m)
    ->Args({1, static_cast<int64_t>(Unmasking::Confidence), 0})
    ->Args({2, static_cast<int64_t>(Unmasking::Confidence), 0})
    ->Args({2, static_cast<int64_t>(Unmasking::Entropy), 0})
    ->Args({2, static_cast<int64_t>(Unmasking::Confidence), 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace ruvdllm

BENCHMARK_MAIN();
