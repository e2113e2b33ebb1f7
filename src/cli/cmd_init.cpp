// `ruvdllm init`: a model with random weights, for tests and benchmarks.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/progress.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/model/init.h"

namespace ruvdllm::cli {
namespace {

struct InitArgs {
  std::string arch = "llada";
  std::string shape = "test";
  std::string type = "f16";
  uint64_t seed = 1;
  std::string output;
};

void run_init(const InitArgs& args) {
  const auto type = type_from_name(args.type);
  if (!type || *type == TensorType::Q8_K) {
    fail("--type: unknown tensor type '{}' (f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K)", args.type);
  }
  const ModelConfig config = shape_config(arch_from_name(args.arch), args.shape);
  InitOptions options;
  options.type = *type;
  options.seed = args.seed;
  ProgressBar bar("init");
  options.progress = [&bar](size_t done, size_t total) {
    bar.update(static_cast<int64_t>(done), static_cast<int64_t>(total));
  };
  write_random_model(config, options, args.output);
  bar.finish();
  std::fprintf(stderr, "wrote %s (%s, shape %s, %s, seed %lu)\n", args.output.c_str(), args.arch.c_str(),
               args.shape.c_str(), type_name(*type), static_cast<unsigned long>(args.seed));
}

}  // namespace

void register_init(CLI::App& app) {
  auto args = std::make_shared<InitArgs>();
  CLI::App* cmd = app.add_subcommand("init", "Write a model with random weights (tests, benchmarks)");
  cmd->add_option("--arch", args->arch, "llada, dream or llada-moe");
  cmd->add_option("--shape", args->shape, "test, default, 160m, 1b or 8b");
  cmd->add_option("--type", args->type, "Weight type: f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K");
  cmd->add_option("--seed", args->seed, "Random seed");
  cmd->add_option("output", args->output, "Output .gguf file")->required();
  cmd->callback([args] { run_init(*args); });
}

}  // namespace ruvdllm::cli
