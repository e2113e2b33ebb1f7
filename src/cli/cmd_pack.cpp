// `ruvdllm pack --tokenizer T -o DIR FILE...`: tokenize text files into token shards.
//
// Documents: a file is split at lines that hold exactly the separator (by default
// "<|endoftext|>", the line scripts/make_corpus.sh puts between documents); a file without such
// lines is one document. Each document is encoded as plain text (special-token spellings in it
// stay text) and followed by the tokenizer's EOS.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/mapped_file.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/token_shards.h"

namespace ruvdllm::cli {
namespace {

struct PackArgs {
  std::vector<std::string> inputs;
  std::string tokenizer;
  std::string output;
  std::string separator = "<|endoftext|>";
  int64_t shard_tokens = int64_t{64} << 20;
};

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos;
}

// Calls on_document for each document of `text`, in order.
template <typename F>
void for_each_document(std::string_view text, std::string_view separator, F&& on_document) {
  size_t doc_start = 0;
  size_t line_start = 0;
  while (!separator.empty() && line_start < text.size()) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view line = text.substr(line_start, line_end - line_start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t next = line_end == text.size() ? line_end : line_end + 1;
    if (line == separator) {
      on_document(text.substr(doc_start, line_start - doc_start));
      doc_start = next;
    }
    line_start = next;
  }
  on_document(text.substr(doc_start));
}

// A short fingerprint of the tokenizer file, recorded in the index so shards made with a
// different vocabulary are noticed.
uint64_t fnv1a64(const uint8_t* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
  return h;
}

void run_pack(const PackArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  const Tokenizer tokenizer = Tokenizer::load(args.tokenizer);
  const auto eos = tokenizer.eos_id();
  if (!eos) fail("{}: the tokenizer has no EOS token to end documents with", args.tokenizer);
  const auto tokenizer_file = MappedFile::open(args.tokenizer);

  std::vector<std::shared_ptr<MappedFile>> files;
  int64_t total_bytes = 0;
  for (const auto& path : args.inputs) {
    files.push_back(MappedFile::open(path));
    total_bytes += static_cast<int64_t>(files.back()->size());
  }

  train::TokenShardWriter writer(args.output, tokenizer.vocab_size(), args.shard_tokens);
  writer.set_tokenizer(fmt::format("{} ({} tokens, fnv1a64 {:016x})", args.tokenizer, tokenizer.vocab_size(),
                                   fnv1a64(tokenizer_file->data(), tokenizer_file->size())));
  ProgressBar bar("pack");
  int64_t done_bytes = 0, text_bytes = 0, n_tokens = 0, n_documents = 0;
  std::vector<int32_t> ids;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string_view text(reinterpret_cast<const char*>(files[f]->data()), files[f]->size());
    int64_t file_documents = 0, file_tokens = 0;
    for_each_document(text, args.separator, [&](std::string_view document) {
      if (is_blank(document)) return;
      ids = tokenizer.encode(document, /*add_special=*/false, /*parse_special=*/false);
      ids.push_back(*eos);
      writer.append(ids);
      ++file_documents;
      file_tokens += static_cast<int64_t>(ids.size());
      text_bytes += static_cast<int64_t>(document.size());
      const int64_t offset = static_cast<int64_t>(document.data() + document.size() - text.data());
      bar.update(done_bytes + offset, total_bytes, fmt::format("{} tokens", n_tokens + file_tokens));
    });
    done_bytes += static_cast<int64_t>(text.size());
    n_documents += file_documents;
    n_tokens += file_tokens;
    writer.add_source(fmt::format("{} ({} bytes, {} documents, {} tokens)", args.inputs[f], text.size(), file_documents,
                                  file_tokens));
  }
  bar.update(total_bytes, total_bytes, fmt::format("{} tokens", n_tokens));
  bar.finish();
  if (n_tokens == 0) fail("{}: no text to pack", args.inputs.front());
  writer.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("packed %ld documents, %s of text, into %ld tokens (%d-byte ids) in %s\n", static_cast<long>(n_documents),
              human_bytes(static_cast<double>(text_bytes)).c_str(), static_cast<long>(n_tokens),
              tokenizer.vocab_size() <= 65536 ? 2 : 4, args.output.c_str());
  std::printf("%.3f bytes/token on the text (%ld EOS not counted), %.1f s (%.1f MiB/s)\n",
              static_cast<double>(text_bytes) / static_cast<double>(std::max<int64_t>(1, n_tokens - n_documents)),
              static_cast<long>(n_documents), seconds,
              seconds > 0 ? static_cast<double>(total_bytes) / (1 << 20) / seconds : 0.0);
}

}  // namespace

void register_pack(CLI::App& app) {
  auto args = std::make_shared<PackArgs>();
  CLI::App* cmd = app.add_subcommand("pack", "Tokenize text files into token shards for training");
  cmd->add_option("files", args->inputs, "Text files; lines holding only the separator end documents")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json, .gguf, or a folder with tokenizer.json")->required();
  cmd->add_option("-o,--output", args->output, "Shard folder to write (index.json + shard-NNNNN.tok)")->required();
  cmd->add_option("--separator", args->separator,
                  "Line that separates documents (default <|endoftext|>; empty: one document per file)");
  cmd->add_option("--shard-tokens", args->shard_tokens, "Tokens per shard file")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->callback([args] { run_pack(*args); });
}

}  // namespace ruvdllm::cli
