// `ruvdllm logits MODEL --tokens 1,2,3 -o FILE`: the final logits of one forward pass, for
// cross-checking against other engines (raw little-endian float32, or .npy).
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/mapped_file.h"
#include "ruvdllm/model/model.h"

namespace ruvdllm::cli {
namespace {

struct LogitsArgs {
  std::string model;
  std::string tokens;
  std::string output;
  std::string mask = "model";
  int64_t block_len = 0;
  int threads = 0;
};

std::vector<int32_t> parse_token_list(const std::string& text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    std::string item = text.substr(pos, comma - pos);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || value < 0 ||
        value > INT32_MAX) {
      fail("--tokens: '{}' is not a token id (expected comma-separated non-negative integers)", item);
    }
    ids.push_back(static_cast<int32_t>(value));
    pos = comma + 1;
  }
  return ids;
}

// NPY format 1.0: magic, version, little-endian header length, a Python-dict header padded
// with spaces so the data starts on a 64-byte boundary.
std::string npy_header(size_t rows, size_t cols) {
  std::string dict = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", rows, cols);
  const size_t preamble = 10;
  size_t total = preamble + dict.size() + 1;
  const size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict.push_back('\n');
  std::string header("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(dict.size());
  header.push_back(static_cast<char>(len & 0xff));
  header.push_back(static_cast<char>(len >> 8));
  return header + dict;
}

void run_logits(const LogitsArgs& args) {
  const std::vector<int32_t> tokens = parse_token_list(args.tokens);
  auto model = Model::load(args.model);
  const ModelConfig& c = model->config();
  ForwardOptions options;
  if (args.mask == "model") {
    options.mask = c.causal ? MaskMode::Causal : MaskMode::Full;
  } else if (args.mask == "full") {
    options.mask = MaskMode::Full;
  } else if (args.mask == "causal") {
    options.mask = MaskMode::Causal;
  } else if (args.mask == "block-causal") {
    options.mask = MaskMode::BlockCausal;
    if (args.block_len <= 0) fail("--mask block-causal needs --block-len N (N > 0)");
  } else {
    fail("--mask: unknown mode '{}' (model, full, causal, block-causal)", args.mask);
  }
  options.block_len = args.block_len;
  if (c.context_length > 0 && static_cast<int64_t>(tokens.size()) > c.context_length) {
    fail("{} tokens exceed the model's context of {}", tokens.size(), c.context_length);
  }
  ThreadPool pool(args.threads);
  std::vector<float> logits(tokens.size() * static_cast<size_t>(c.vocab_size));
  model->forward(tokens, options, logits.data(), pool);

  std::string bytes;
  const bool npy = args.output.size() >= 4 && args.output.compare(args.output.size() - 4, 4, ".npy") == 0;
  if (npy) bytes = npy_header(tokens.size(), static_cast<size_t>(c.vocab_size));
  const size_t header = bytes.size();
  bytes.resize(header + logits.size() * sizeof(float));
  std::memcpy(bytes.data() + header, logits.data(), logits.size() * sizeof(float));  // x86/ARM are little-endian
  write_file_atomically(args.output, bytes.data(), bytes.size());
  std::fprintf(stderr, "wrote %zu x %ld logits to %s%s\n", tokens.size(), static_cast<long>(c.vocab_size),
               args.output.c_str(), npy ? " (npy)" : " (raw float32)");
}

}  // namespace

void register_logits(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* cmd = app.add_subcommand("logits", "Write the logits of a token sequence (raw float32 or .npy)");
  cmd->add_option("model", args->model, "Model file or directory")->required();
  cmd->add_option("--tokens", args->tokens, "Comma-separated token ids, e.g. 1,2,3")->required();
  cmd->add_option("-o,--output", args->output, "Output file (.npy for NumPy format)")->required();
  cmd->add_option("--mask", args->mask, "Attention mask: model (default), full, causal, block-causal");
  cmd->add_option("--block-len", args->block_len, "Block length for --mask block-causal");
  cmd->add_option("-t,--threads", args->threads, "Threads (default: physical cores)")->check(CLI::Range(0, 1024));
  cmd->callback([args] { run_logits(*args); });
}

}  // namespace ruvdllm::cli
