// One full forward pass (one denoising step) of the 160m LLaDA-shaped model over 256
// positions, Q8_0 and F16 weights, 1 and 2 threads. The models are written once into /tmp.
// Counters: peak_rss_MB (getrusage after the steps), hwm_MB (the process's resident high-water
// mark since the model was loaded, when the kernel lets us reset it) and file_MB.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/model/model.h"

namespace {

using namespace ruvdllm;

constexpr int64_t kPositions = 256;

std::string model_path(TensorType type) { return std::string("/tmp/ruvdllm-bench-160m-") + type_name(type) + ".gguf"; }

void ensure_model(TensorType type) {
  const std::string path = model_path(type);
  if (std::filesystem::exists(path)) return;
  std::fprintf(stderr, "writing %s ...\n", path.c_str());
  InitOptions options;
  options.type = type;
  options.seed = 1;
  write_random_model(shape_config(Arch::LLaDA, "160m"), options, path);
}

double status_mb(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(line.find(':') + 1)) / 1024.0;  // kB
  }
  return 0;
}

void reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
}

void BM_Forward160m(benchmark::State& state) {
  const TensorType type = state.range(0) == 0 ? TensorType::Q8_0 : TensorType::F16;
  const int threads = static_cast<int>(state.range(1));
  reset_peak_rss();
  auto model = Model::load(model_path(type));
  ThreadPool pool(threads);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(model->config().vocab_size - 1));
  std::vector<int32_t> tokens(kPositions);
  for (auto& t : tokens) t = dist(rng);
  std::vector<float> logits(static_cast<size_t>(kPositions * model->config().vocab_size));
  model->forward(tokens, ForwardOptions{}, logits.data(), pool);  // page in weights, size scratch
  for (auto _ : state) {
    model->forward(tokens, ForwardOptions{}, logits.data(), pool);
    benchmark::DoNotOptimize(logits.data());
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  state.counters["peak_rss_MB"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
  state.counters["hwm_MB"] = status_mb("VmHWM");
  state.counters["file_MB"] = static_cast<double>(std::filesystem::file_size(model_path(type))) / (1024.0 * 1024.0);
  state.SetLabel(std::string(type_name(type)) + ", " + std::to_string(threads) + " threads, 256 positions");
}

BENCHMARK(BM_Forward160m)
    ->ArgNames({"f16", "threads"})
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()  // the CPU column sums all threads: on a shared machine it shows the work done
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  ensure_model(TensorType::Q8_0);
  ensure_model(TensorType::F16);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
