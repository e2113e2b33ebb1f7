#pragma once
// Packed token shards: a tokenized corpus as flat streams of token ids (documents joined by the
// tokenizer's EOS), memory-mapped for training. One folder per corpus split, e.g.
// data/prose/train/, holding shard-00000.tok, shard-00001.tok, ... and an index.json that
// records the tokenizer, vocabulary size, token count and source files.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ruvdllm::train {

class TokenShards {
 public:
  // PATH: a shard folder (with index.json) or a single .tok file. Error("PATH: PROBLEM") on a
  // missing, truncated or corrupt shard.
  static TokenShards open(const std::string& path);
  TokenShards(TokenShards&&) noexcept;
  TokenShards& operator=(TokenShards&&) noexcept;
  ~TokenShards();

  int64_t n_tokens() const;     // over all shards
  int32_t vocab_size() const;   // every id is below it
  // Copies out.size() tokens starting at global offset `offset` (must lie within n_tokens()).
  void read(int64_t offset, std::span<int32_t> out) const;

 private:
  struct Impl;
  explicit TokenShards(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Appends token streams to a shard folder, starting a new shard every max_shard_tokens tokens.
// Each shard is written atomically; index.json last, so a folder with an index is complete.
class TokenShardWriter {
 public:
  TokenShardWriter(const std::string& folder, int32_t vocab_size,
                   int64_t max_shard_tokens = 64 << 20);
  ~TokenShardWriter();
  void append(std::span<const int32_t> tokens);
  void add_source(const std::string& description);  // recorded in index.json
  void set_tokenizer(const std::string& description);
  void finish();  // writes the last shard and index.json

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvdllm::train
