// `ruvdllm eval`: the held-out NELBO of a model (an upper bound on its negative
// log-likelihood) as bits per token and a perplexity bound, per domain.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/train/eval.h"
#include "ruvdllm/train/token_shards.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::cli {
namespace {

struct EvalArgs {
  std::string model;
  std::vector<std::string> data;
  int64_t samples = 8;
  int64_t windows = 32;
  int64_t seq_len = 0;  // 0: min(512, the model's context)
  int64_t batch = 8;
  uint64_t seed = 0x5eed;
  int threads = 0;
  std::string device = "cpu";
  bool json = false;
};

void run_eval(const EvalArgs& args) {
  std::vector<std::string> names;
  std::vector<train::TokenShards> shards;
  for (const std::string& spec : args.data) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      fail("--data '{}': expected NAME=SHARD_FOLDER, e.g. prose=data/tokens/prose/heldout", spec);
    }
    names.push_back(spec.substr(0, eq));
    shards.push_back(train::TokenShards::open(spec.substr(eq + 1)));
  }
  const std::unique_ptr<Model> model = Model::load(args.model);
  const ModelConfig& config = model->config();
  if (config.mask_token_id < 0) fail("{}: the model has no mask token; its NELBO is undefined", args.model);
  train::EvalOptions options;
  options.samples = args.samples;
  options.windows = args.windows;
  options.seq_len = args.seq_len > 0 ? args.seq_len : std::min<int64_t>(512, config.context_length);
  options.batch = args.batch;
  options.seed = args.seed;
  if (options.seq_len > config.context_length) {
    fail("--seq-len {} exceeds the context length {} of {}", options.seq_len, config.context_length, args.model);
  }
  const std::unique_ptr<train::TrainModel> trainable = train::TrainModel::from_model(*model);
  trainable->set_device(args.device);
  std::vector<train::EvalDomain> domains;
  for (size_t i = 0; i < shards.size(); ++i) domains.push_back({names[i], &shards[i]});
  ThreadPool pool(args.threads);
  const std::vector<train::DomainNelbo> results = train::evaluate_nelbo(*trainable, domains, options, pool);

  if (args.json) {
    nlohmann::json out = {{"model", args.model},
                          {"samples", options.samples},
                          {"seq_len", options.seq_len},
                          {"seed", options.seed},
                          {"domains", nlohmann::json::array()}};
    for (const train::DomainNelbo& d : results) {
      out["domains"].push_back({{"name", d.name},
                                {"windows", d.windows},
                                {"tokens", d.tokens},
                                {"nats_per_token", d.nats_per_token},
                                {"bits_per_token", d.bits_per_token},
                                {"perplexity_bound", d.perplexity_bound},
                                {"std_error_bits", d.std_error_bits}});
    }
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("NELBO of %s: %ld draws of t per window, windows of %ld tokens\n", args.model.c_str(),
              static_cast<long>(options.samples), static_cast<long>(options.seq_len));
  std::printf("%-12s %8s %10s %12s %8s %12s\n", "domain", "windows", "tokens", "bits/token", "+-", "ppl bound");
  for (const train::DomainNelbo& d : results) {
    std::printf("%-12s %8ld %10ld %12.4f %8.4f %12.2f\n", d.name.c_str(), static_cast<long>(d.windows),
                static_cast<long>(d.tokens), d.bits_per_token, d.std_error_bits, d.perplexity_bound);
  }
}

}  // namespace

void register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Held-out NELBO (bits per token, perplexity bound) per domain");
  cmd->add_option("-m,--model", args->model, "Model .gguf, .safetensors or Hugging Face directory")->required();
  cmd->add_option("--data", args->data, "NAME=SHARD_FOLDER, once per domain")->required();
  cmd->add_option("--samples", args->samples, "Monte-Carlo draws of t per window")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--windows", args->windows, "Windows per domain, evenly spaced")->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--seq-len", args->seq_len, "Tokens per window (default: min(512, context))")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--batch", args->batch, "Sequences per forward pass")->check(CLI::Range(1, 4096));
  cmd->add_option("--seed", args->seed, "Seed of the draws of t and the masks");
  cmd->add_option("-t,--threads", args->threads, "Threads (default: physical cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--device", args->device, "Where the passes run: cpu, cuda or cuda:N");
  cmd->add_flag("--json", args->json, "One JSON object on stdout");
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace ruvdllm::cli
