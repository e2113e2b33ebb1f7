// `ruvdllm bench forward MODEL`: end-to-end time of one denoising step (a full forward pass)
// as a user would run it, with median over repetitions and peak resident memory.
// `ruvdllm bench generate [-m MODEL]`: a whole generation, with the per-step split between the
// forward pass and sampling (which must stay a small share of a step).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/denoiser_select.h"
#include "cli/generate_env.h"
#include "cli/progress.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/timing.h"
#include "ruvdllm/diffusion/generate.h"
#include "ruvdllm/kernels/matmul.h"
#include "ruvdllm/model/init.h"
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
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf("model %s | %s | %ld positions | %d threads | %s\n", args.model.c_str(),
              arch_name(c.arch), static_cast<long>(args.positions), pool.size(),
              simd_target_name());
  std::printf("step ms: median %.1f  min %.1f  max %.1f  (%d repetitions)\n", median, ms.front(),
              ms.back(), args.repetitions);
  std::printf("positions/s: %.0f   peak RSS: %s   weights: %s\n",
              1000.0 * static_cast<double>(args.positions) / median,
              human_bytes(peak_rss_bytes()).c_str(),
              human_bytes(static_cast<double>(model->weight_bytes())).c_str());
}

struct BenchGenerateArgs {
  std::string model;
  int64_t gen_len = 256;
  int64_t steps = 64;
  int64_t block_len = 32;
  int64_t prompt_len = 32;
  std::string algorithm = "confidence";
  int threads = 0;
  std::string device = "cpu";
  GpuSettings gpu;
  float temperature = 0;
  float top_p = 1;
  bool cache_blocks = false;
};

// The runtime issue's reference model: random 160m LLaDA weights at Q8_0, written once to the
// temp directory (the same file the bench programs use) and reused.
std::string reference_model() {
  const std::string path =
      (std::filesystem::temp_directory_path() / "ruvdllm-bench-160m-q8_0.gguf").string();
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) return path;
  InitOptions options;
  options.type = TensorType::Q8_0;
  options.seed = 1;
  ProgressBar bar("writing " + path);
  options.progress = [&bar](size_t done, size_t total) {
    bar.update(static_cast<int64_t>(done), static_cast<int64_t>(total));
  };
  write_random_model(shape_config(Arch::LLaDA, "160m"), options, path);
  bar.finish();
  return path;
}

void run_bench_generate(const BenchGenerateArgs& args) {
  GenerationOptions o;
  try {
    o.algorithm = parse_unmasking(args.algorithm);
  } catch (const Error& e) {
    fail("--algorithm: {}", e.what());
  }
  const std::string path = args.model.empty() ? reference_model() : args.model;
  auto model = Model::load(path);
  const ModelConfig& c = model->config();
  if (c.context_length > 0 && args.prompt_len + args.gen_len > c.context_length) {
    fail("--prompt-len {} + --gen-len {} exceeds the model's context of {}", args.prompt_len,
         args.gen_len, c.context_length);
  }
  if (c.mask_token_id < 0) fail("{}: the model has no mask token", path);
  ThreadPool pool(args.threads);
  std::unique_ptr<Denoiser> denoiser = make_denoiser(*model, pool, args.device, args.gpu);
  Generator generator(*denoiser);
  // Random prompt tokens other than the mask (which would turn the run into infilling).
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(args.prompt_len));
  for (auto& t : prompt) {
    do t = token(rng);
    while (t == c.mask_token_id);
  }
  o.gen_len = args.gen_len;
  o.steps = args.steps;
  o.block_len = args.block_len;
  o.seed = 1;
  o.temperature = args.temperature;
  o.top_p = args.top_p;
  o.cache_blocks = args.cache_blocks;
  // Random weights may well commit an EOS early; every planned step must still run.
  o.eos_fill = false;
  const GenerationResult r = generator.run(prompt, o);

  std::vector<double> step_ms, forward_ms, sampling_ms;
  for (const StepTiming& t : r.timings) {
    step_ms.push_back(t.forward_ms + t.sampling_ms);
    forward_ms.push_back(t.forward_ms);
    sampling_ms.push_back(t.sampling_ms);
  }
  const double total_ms = r.forward_ms + r.sampling_ms;
  const double share = total_ms > 0 ? 100.0 * r.sampling_ms / total_ms : 0.0;
  std::printf(
      "model %s | %s | %ld positions (%ld prompt + %ld generated) | %ld steps, block %ld, %s | %s "
      "| %s\n",
      path.c_str(), arch_name(c.arch), static_cast<long>(args.prompt_len + args.gen_len),
      static_cast<long>(args.prompt_len), static_cast<long>(args.gen_len),
      static_cast<long>(r.steps_run), static_cast<long>(args.block_len),
      unmasking_name(o.algorithm), denoiser->description().c_str(), simd_target_name());
  // The mean as well: one-off costs (a pass shape's first eager run and its graph capture, each
  // block's longer first pass under --cache-blocks) hide from the median.
  std::printf("step ms: median %.1f (forward %.1f, sampling %.2f)  mean %.1f  min %.1f  max %.1f\n",
              median(step_ms), median(forward_ms), median(sampling_ms),
              step_ms.empty() ? 0.0 : total_ms / static_cast<double>(step_ms.size()),
              *std::min_element(step_ms.begin(), step_ms.end()),
              *std::max_element(step_ms.begin(), step_ms.end()));
  std::printf("sampling: %.2f ms per step (median), %.2f%% of step time (%s the 5%% budget)\n",
              median(sampling_ms), share, share < 5.0 ? "within" : "OVER");
  std::printf("tokens/s: %.2f (%ld tokens in %.2f s)\n",
              total_ms > 0 ? 1000.0 * static_cast<double>(args.gen_len) / total_ms : 0.0,
              static_cast<long>(args.gen_len), total_ms / 1000.0);
}

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "End-to-end benchmarks");
  bench->require_subcommand(1);
  auto args = std::make_shared<BenchForwardArgs>();
  CLI::App* forward =
      bench->add_subcommand("forward", "Time one denoising step (a full forward pass)");
  forward->add_option("model", args->model, "Model file or directory")->required();
  forward->add_option("--positions", args->positions, "Canvas length (prompt + answer)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  forward->add_option("-t,--threads", args->threads, "Threads (default: physical cores)")
      ->check(CLI::Range(0, 1024));
  forward->add_option("-r,--repetitions", args->repetitions, "Timed repetitions")
      ->check(CLI::Range(1, 1000));
  forward->callback([args] { run_bench_forward(*args); });

  auto gen = std::make_shared<BenchGenerateArgs>();
  CLI::App* generate = bench->add_subcommand(
      "generate", "Time a whole generation: ms per step, sampling share, tokens per second");
  generate->add_option("-m,--model", gen->model,
                       "Model (default: a random 160m Q8_0 LLaDA, written once to the temp dir)");
  generate->add_option("-n,--gen-len", gen->gen_len, "Tokens to generate")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  generate->add_option("-s,--steps", gen->steps, "Denoising steps")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  generate->add_option("-b,--block-len", gen->block_len, "Block length (0 = none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  generate->add_option("--prompt-len", gen->prompt_len, "Random prompt tokens")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  generate->add_option("-a,--algorithm", gen->algorithm,
                       "Unmasking order: origin, confidence, margin, entropy, random");
  generate->add_option("-t,--threads", gen->threads, "Threads (default: physical cores)")
      ->check(CLI::Range(0, 1024));
  generate->add_option("--device", gen->device, "cpu, cuda or cuda:N");
  add_gpu_options(generate, &gen->gpu);
  generate->add_option("--temp", gen->temperature, "Sampling temperature")
      ->check(CLI::Range(0.0f, 100.0f));
  generate->add_option("--top-p", gen->top_p, "Nucleus mass")->check(CLI::Range(0.0f, 1.0f));
  generate->add_flag("--cache-blocks", gen->cache_blocks,
                     "Cache keys/values of the prompt and finished blocks");
  generate->callback([gen] { run_bench_generate(*gen); });
  register_bench_gpu(*bench);
}

}  // namespace ruvdllm::cli
