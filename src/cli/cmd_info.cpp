// `ruvdllm info MODEL`: what a model file holds and what running it costs.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/progress.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/kernels/matmul.h"
#include "ruvdllm/model/model.h"

namespace ruvdllm::cli {
namespace {

struct InfoArgs {
  std::string model;
  bool show_metadata = false;
  int64_t positions = 256;
};

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? " x " : "") + std::to_string(shape[i]);
  return s;
}

void run_info(const InfoArgs& args) {
  auto model = Model::load(args.model);
  const ModelConfig& c = model->config();
  std::printf("file          %s (%s)\n", args.model.c_str(), model->format().c_str());
  std::printf("architecture  %s%s\n", arch_name(c.arch),
              c.is_moe() ? fmt::format(" ({} experts, top-{})", c.n_expert, c.n_expert_used).c_str() : "");
  std::printf("layers        %ld\n", static_cast<long>(c.n_layer));
  std::printf("width         %ld (FFN %ld%s)\n", static_cast<long>(c.n_embd),
              static_cast<long>(c.is_moe() ? c.n_ff_expert : c.n_ff), c.is_moe() ? " per expert" : "");
  std::printf("heads         %ld query, %ld key/value, head dim %ld\n", static_cast<long>(c.n_head),
              static_cast<long>(c.n_head_kv), static_cast<long>(c.head_dim));
  std::printf("vocabulary    %ld\n", static_cast<long>(c.vocab_size));
  std::printf("context       %ld\n", static_cast<long>(c.context_length));
  std::printf("rope          base %g, %s order\n", static_cast<double>(c.rope_base),
              c.rope_order == RopeOrder::NeoX ? "neox" : "normal");
  std::printf("rms eps       %g\n", static_cast<double>(c.rms_eps));
  std::printf("attention     %s%s%s\n", c.causal ? "causal" : "bidirectional",
              c.qkv_bias ? ", q/k/v bias" : "", c.qk_norm ? ", QK-norm" : "");
  std::printf("output head   %s%s\n", c.tied_output ? "tied to token embedding" : "separate",
              c.shift_logits ? ", shifted logits" : "");
  const VocabInfo& v = model->vocab();
  std::printf("tokenizer     %s%s, %zu tokens, %zu merges; bos %ld, eos %ld, mask %ld%s\n",
              v.model.empty() ? "(none)" : v.model.c_str(),
              v.pre.empty() ? "" : fmt::format(" (pre {})", v.pre).c_str(), v.tokens.size(),
              v.n_merges, static_cast<long>(c.bos_token_id), static_cast<long>(c.eos_token_id),
              static_cast<long>(c.mask_token_id),
              v.chat_template.empty() ? "" : ", chat template");

  const auto tensors = model->all_tensors();
  std::map<std::string, std::pair<int, size_t>> by_type;
  int64_t params = 0;
  std::printf("\n%-40s %-6s %-24s %12s\n", "tensor", "type", "shape", "bytes");
  for (const auto& t : tensors) {
    std::printf("%-40s %-6s %-24s %12zu\n", t.name.c_str(), type_name(t.type),
                shape_string(t.shape).c_str(), t.nbytes);
    auto& entry = by_type[type_name(t.type)];
    entry.first++;
    entry.second += t.nbytes;
    params += t.elements();
  }
  std::printf("\n%zu tensors, %.1fM parameters, %s of weights:", tensors.size(),
              static_cast<double>(params) / 1e6, human_bytes(static_cast<double>(model->weight_bytes())).c_str());
  for (const auto& [name, entry] : by_type) {
    std::printf(" %s %d (%s)", name.c_str(), entry.first, human_bytes(static_cast<double>(entry.second)).c_str());
  }
  std::printf("\n");
  const size_t act = model->activation_bytes(args.positions);
  std::printf("memory        %s for a %ld-position step (weights mapped %s + activations %s)\n",
              human_bytes(static_cast<double>(model->weight_bytes() + act)).c_str(),
              static_cast<long>(args.positions), human_bytes(static_cast<double>(model->weight_bytes())).c_str(),
              human_bytes(static_cast<double>(act)).c_str());
  std::printf("cpu kernels   %s\n", simd_target_name());

  if (args.show_metadata && model->format() == "gguf") {
    const GgufFile file = GgufFile::open(args.model);
    std::printf("\nmetadata (GGUF v%u, alignment %zu)\n", file.version(), file.alignment());
    for (const auto& [key, value] : file.metadata()) {
      std::printf("  %-44s %s\n", key.c_str(), value.to_display_string().c_str());
    }
  }
}

}  // namespace

void register_info(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* cmd = app.add_subcommand("info", "Show a model's architecture, tokenizer, tensors and memory needs");
  cmd->add_option("model", args->model, "Model: .gguf, .safetensors, index.json or Hugging Face directory")->required();
  cmd->add_flag("--metadata", args->show_metadata, "Also print every GGUF metadata key");
  cmd->add_option("--positions", args->positions, "Positions per step for the memory estimate")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->callback([args] { run_info(*args); });
}

}  // namespace ruvdllm::cli
