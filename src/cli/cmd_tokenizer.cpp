// `ruvdllm tokenizer train --vocab-size N -o tokenizer.json FILE...`: learn a byte-level BPE
// vocabulary from text files.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/mapped_file.h"
#include "ruvdllm/text/bpe_trainer.h"
#include "ruvdllm/text/tokenizer_io.h"

namespace ruvdllm::cli {
namespace {

struct TrainTokenizerArgs {
  std::vector<std::string> inputs;
  std::string output;
  int32_t vocab_size = 8192;
  std::string pre = "gpt2";
  int64_t min_count = 2;
  bool chat_tokens = false;
};

int64_t file_size(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) fail("{}: cannot open", path);
  if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", path);
  return static_cast<int64_t>(st.st_size);
}

void run_train(const TrainTokenizerArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  BpeTrainerOptions options;
  options.vocab_size = args.vocab_size;
  options.pre_tokenizer = args.pre;
  options.min_pair_count = args.min_count;
  options.chat_tokens = args.chat_tokens;
  BpeTrainer trainer(options);

  int64_t total_bytes = 0;
  for (const auto& path : args.inputs) total_bytes += file_size(path);
  {
    ProgressBar bar("count words");
    int64_t done = 0;
    for (const auto& path : args.inputs) {
      trainer.add_file(path);
      done += file_size(path);
      bar.update(done, total_bytes, path);
    }
    bar.finish();
  }
  const BpeTrainingStats& counted = trainer.stats();
  std::printf("counted %s in %zu files: %ld distinct words in %.1f s (%.1f MiB/s)\n",
              human_bytes(static_cast<double>(counted.input_bytes)).c_str(), args.inputs.size(),
              static_cast<long>(counted.distinct_words), counted.count_seconds,
              counted.count_seconds > 0 ? static_cast<double>(counted.input_bytes) / (1 << 20) / counted.count_seconds : 0.0);
  std::fflush(stdout);

  Tokenizer tokenizer = [&] {
    ProgressBar bar("merge");
    Tokenizer t = trainer.train([&](int64_t done, int64_t total) { bar.update(done, total); });
    bar.finish();
    return t;
  }();
  const BpeTrainingStats& stats = trainer.stats();
  const std::string json = tokenizer_to_json(tokenizer);
  write_file_atomically(args.output, json.data(), json.size());

  const int64_t n_special = static_cast<int64_t>(BpeTrainer::special_tokens(options).size());
  if (tokenizer.vocab_size() < args.vocab_size) {
    std::fprintf(stderr, "note: stopped at %d tokens: no pair occurs %ld times or more\n", tokenizer.vocab_size(),
                 static_cast<long>(args.min_count));
  }
  std::printf("learned %ld merges in %.1f s (%.0f merges/s)\n", static_cast<long>(stats.merges), stats.merge_seconds,
              stats.merge_seconds > 0 ? static_cast<double>(stats.merges) / stats.merge_seconds : 0.0);
  std::printf("vocabulary: %d tokens (256 bytes, %ld learned, %ld special: eos/bos %d, mask %d)\n",
              tokenizer.vocab_size(), static_cast<long>(tokenizer.vocab_size() - 256 - n_special),
              static_cast<long>(n_special), tokenizer.eos_id().value_or(-1), tokenizer.mask_id().value_or(-1));
  std::printf("compression: %.3f bytes/token on the input (%ld tokens)\n", stats.bytes_per_token(),
              static_cast<long>(stats.tokens));
  const double total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %s (%s) in %.1f s total\n", args.output.c_str(), human_bytes(static_cast<double>(json.size())).c_str(),
              total_seconds);
}

}  // namespace

void register_tokenizer(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("tokenizer", "Build tokenizers");
  cmd->require_subcommand(1);
  auto args = std::make_shared<TrainTokenizerArgs>();
  CLI::App* train = cmd->add_subcommand("train", "Learn a byte-level BPE vocabulary from text files");
  train->add_option("files", args->inputs, "Training text files (<|endoftext|> lines separate documents)")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("-o,--output", args->output, "tokenizer.json to write")->required();
  train->add_option("--vocab-size", args->vocab_size, "Total vocabulary, special tokens included")
      ->check(CLI::Range(258, 1 << 24));
  train->add_option("--pre", args->pre, "Pre-tokenizer split: gpt2, llama-bpe or qwen2");
  train->add_option("--min-count", args->min_count, "Stop when the best pair occurs fewer times")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  train->add_flag("--chat-tokens", args->chat_tokens, "Also add <|start_header_id|>, <|end_header_id|>, <|eot_id|>");
  train->callback([args] { run_train(*args); });
}

}  // namespace ruvdllm::cli
