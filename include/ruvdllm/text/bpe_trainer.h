#pragma once
// Trains a byte-level BPE vocabulary (GPT-2's byte alphabet and merge rules) on raw text.
//
// Text is split by a pre-tokenizer regex into words, each distinct word is counted once, and
// merges are then found with incremental pair counts: merging a pair touches only the words
// that hold it, and a max-heap with lazy invalidation yields the next most frequent pair. Ties
// go to the pair of smaller token ids (left, then right), so training is deterministic.
//
// The vocabulary: ids 0-255 are the single bytes (id b is byte b), then one token per merge in
// the order they were learned, then the special tokens: <|endoftext|> (EOS, also BOS),
// <|mdm_mask|> (the diffusion mask), and the chat markers when asked for.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ruvdllm/text/tokenizer.h"

namespace ruvdllm {

struct BpeTrainerOptions {
  int32_t vocab_size = 8192;           // total, special tokens included
  std::string pre_tokenizer = "gpt2";  // a GGUF tokenizer.ggml.pre name: gpt2, llama-bpe, qwen2
  int64_t min_pair_count = 2;          // stop early when no pair occurs this often
  // Adds <|start_header_id|>, <|end_header_id|>, <|eot_id|> (LLaMA-3's chat markers, which
  // LLaDA's instruct template uses) after the mask token.
  bool chat_tokens = false;
};

struct BpeTrainingStats {
  int64_t input_bytes = 0;     // text counted, special-token separators excluded
  int64_t distinct_words = 0;  // pre-tokenizer pieces
  int64_t merges = 0;
  double count_seconds = 0;  // splitting and counting words
  double merge_seconds = 0;
  // The trained vocabulary's tokens over the input, from the training state: what
  // Tokenizer::encode gives on the same text without special tokens (for llama-bpe, whose
  // encoder takes a piece that is a token whole, very nearly).
  int64_t tokens = 0;
  double bytes_per_token() const { return tokens ? static_cast<double>(input_bytes) / tokens : 0.0; }
};

// Progress while merging: (merges done, merges wanted).
using BpeProgress = std::function<void(int64_t done, int64_t total)>;

class BpeTrainer {
 public:
  // Throws Error for a vocabulary too small to hold the bytes and special tokens, or an
  // unknown pre-tokenizer name.
  explicit BpeTrainer(BpeTrainerOptions options);
  ~BpeTrainer();
  BpeTrainer(const BpeTrainer&) = delete;
  BpeTrainer& operator=(const BpeTrainer&) = delete;

  // Counts the words of a text. Occurrences of the special tokens' texts separate words and
  // are not counted themselves. May be called many times before train().
  void add_text(std::string_view text);
  // Reads a file in large blocks, cut at line ends. Error("PATH: cannot open") and the like.
  void add_file(const std::string& path);

  // Learns the merges and returns the tokenizer; the trainer is spent afterwards.
  Tokenizer train(const BpeProgress& progress = nullptr);
  const BpeTrainingStats& stats() const;

  // The special tokens train() appends, in id order.
  static std::vector<std::string> special_tokens(const BpeTrainerOptions& options);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvdllm
