// `ruvdllm train CONFIG.toml`: masked-diffusion training from a TOML config. Ctrl-C finishes
// the running step, writes a checkpoint and exits; `--resume` continues from it.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "cli/commands.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/train/trainer.h"

namespace ruvdllm::cli {
namespace {

struct TrainArgs {
  std::string config;
  int64_t steps = 0;
  std::string out;
  bool resume = false;
  int threads = -1;
  std::string device;
  std::string devices;
  bool devices_given = false;  // an empty --devices "" is an error, not "not given"
  std::string precision;
  bool merge_lora = false;
};

std::atomic<bool> g_stop_requested{false};

// Only the flag: the loop checks it between steps. A second Ctrl-C kills at once (the handler
// is reset), for a step that takes too long.
extern "C" void on_interrupt(int) {
  g_stop_requested.store(true);
  ::signal(SIGINT, SIG_DFL);
}

void run_train(const TrainArgs& args) {
  train::TrainConfig config = train::load_train_config(args.config);
  if (args.steps > 0) config.steps = args.steps;
  if (!args.out.empty()) config.out_dir = args.out;
  if (args.threads >= 0) config.threads = args.threads;
  train::apply_device_options(
      config, args.device,
      args.devices_given ? std::optional<std::string>(args.devices) : std::nullopt);
  if (!args.precision.empty()) config.precision = args.precision;
  if (args.merge_lora) {
    if (!config.lora) fail("{}: --merge-lora needs a [lora] section", args.config);
    config.merge_lora = true;
  }

  struct sigaction action = {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  struct sigaction previous = {};
  sigaction(SIGINT, &action, &previous);

  train::RunOptions options;
  options.resume = args.resume;
  options.stop = &g_stop_requested;
  train::RunResult result;
  try {
    result = train::run_training(config, options);
  } catch (...) {
    sigaction(SIGINT, &previous, nullptr);
    throw;
  }
  sigaction(SIGINT, &previous, nullptr);
  if (result.interrupted) {
    std::fprintf(stderr, "interrupted after step %ld; resume with: ruvdllm train %s --resume%s\n",
                 static_cast<long>(result.steps_done), args.config.c_str(),
                 args.out.empty() ? "" : fmt::format(" --out {}", args.out).c_str());
    std::fflush(stderr);
    std::exit(130);  // the shell's code for "ended by SIGINT", so scripts stop here
  }
}

}  // namespace

void register_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a masked-diffusion model from a TOML config");
  cmd->add_option("config", args->config, "Training config (.toml; see configs/default-model.toml)")->required();
  cmd->add_option("--steps", args->steps, "Total optimizer steps (overrides train.steps)")->check(CLI::PositiveNumber);
  cmd->add_option("--out", args->out, "Run folder (overrides output.dir)");
  cmd->add_flag("--resume", args->resume, "Continue from the run folder's checkpoint");
  cmd->add_option("-t,--threads", args->threads, "Threads (overrides train.threads; 0: physical cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--device", args->device, "Where the passes run: cpu, cuda or cuda:N (overrides train.device)");
  CLI::Option* devices = cmd->add_option("--devices", args->devices,
                  "Data-parallel training on these CUDA devices, e.g. 0,1: one replica each, every "
                  "batch split evenly across them (overrides train.device and train.devices)");
  cmd->add_option("--precision", args->precision,
                  "Device products: bf16 (the CUDA default), tf32 or f32 (overrides train.precision; the CPU "
                  "trains in f32)")
      ->check(CLI::IsMember({"bf16", "tf32", "f32"}));
  cmd->add_flag("--merge-lora", args->merge_lora,
                "With [lora]: also write model.gguf with the adapters merged (output.merge_lora)");
  cmd->callback([args, devices] {
    args->devices_given = devices->count() > 0;
    run_train(*args);
  });
}

}  // namespace ruvdllm::cli
