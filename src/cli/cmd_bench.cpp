// `ruvdllm bench forward MODEL`: end-to-end time of one denoising step (a full forward pass)
// as a user would run it, with median over repetitions and peak resident memory.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/matmul.h"
#include "ruvdllm/model/model.h"

namespace ruvdllm::cli {
namespace {

struct BenchForwardArgs {
  std::string model;
  int64_t positions = 256;
  int threads = 0;
  int repetitions = 5;
};

double peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux reports KiB
}

void run_bench_forward(const BenchForwardArgs& args) {
  auto model = Model::load(args.model);
  const ModelConfig& c = model->config();
  if (c.context_length > 0 && args.positions > c.context_length) {
    fail("--positions {} exceeds the model's context of {}", args.positions, c.context_length);
  }
  ThreadPool pool(args.threads);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(args.positions));
  for (auto& t : tokens) t = token(rng);
  std::vector<float> logits(tokens.size() * static_cast<size_t>(c.vocab_size));
  ForwardOptions options;
  options.mask = c.causal ? MaskMode::Causal : MaskMode::Full;
  model->forward(tokens, options, logits.data(), pool);  // warm-up: page in weights, size scratch
  std::vector<double> ms;
  for (int r = 0; r < args.repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    model->forward(tokens, options, logits.data(), pool);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf("model %s | %s | %ld positions | %d threads | %s\n", args.model.c_str(), arch_name(c.arch),
              static_cast<long>(args.positions), pool.size(), simd_target_name());
  std::printf("step ms: median %.1f  min %.1f  max %.1f  (%d repetitions)\n", median, ms.front(), ms.back(),
              args.repetitions);
  std::printf("positions/s: %.0f   peak RSS: %s   weights: %s\n", 1000.0 * static_cast<double>(args.positions) / median,
              human_bytes(peak_rss_bytes()).c_str(), human_bytes(static_cast<double>(model->weight_bytes())).c_str());
}

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "End-to-end benchmarks");
  bench->require_subcommand(1);
  auto args = std::make_shared<BenchForwardArgs>();
  CLI::App* forward = bench->add_subcommand("forward", "Time one denoising step (a full forward pass)");
  forward->add_option("model", args->model, "Model file or directory")->required();
  forward->add_option("--positions", args->positions, "Canvas length (prompt + answer)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  forward->add_option("-t,--threads", args->threads, "Threads (default: physical cores)")->check(CLI::Range(0, 1024));
  forward->add_option("-r,--repetitions", args->repetitions, "Timed repetitions")->check(CLI::Range(1, 1000));
  forward->callback([args] { run_bench_forward(*args); });
}

}  // namespace ruvdllm::cli
