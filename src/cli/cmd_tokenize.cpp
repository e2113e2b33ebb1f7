// `ruvdllm tokenize MODEL TEXT`: how a model's tokenizer splits a text.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/text/tokenizer.h"

namespace ruvdllm::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string text;
  bool ids_only = false;
  bool no_special = false;
};

void run_tokenize(const TokenizeArgs& args) {
  const Tokenizer tokenizer = Tokenizer::load(args.model);
  const auto ids = tokenizer.encode(args.text, !args.no_special, !args.no_special);
  if (args.ids_only) {
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
    std::printf("\n");
    return;
  }
  std::fputs(describe_tokens(tokenizer, ids).c_str(), stdout);
  std::printf("%zu tokens\n", ids.size());
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Show how a model's tokenizer splits a text");
  cmd->add_option("model", args->model, "Model .gguf, tokenizer.json, or Hugging Face directory")->required();
  cmd->add_option("text", args->text, "Text to tokenize")->required();
  cmd->add_flag("--ids", args->ids_only, "Print only comma-separated ids (the format --tokens takes)");
  cmd->add_flag("--no-special", args->no_special, "Add no BOS/EOS and treat special-token text as plain text");
  cmd->callback([args] { run_tokenize(*args); });
}

}  // namespace ruvdllm::cli
