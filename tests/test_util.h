#pragma once
// Helpers shared by every test program: seeded random data, scratch directories, and the
// fixtures of the CLI tests (files, run logs, TOML configs, counting token shards).
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json_fwd.hpp>

#include "ruvdllm/train/token_shards.h"

namespace ruvdllm::testing {

// n values uniform in [lo, hi) from a fixed seed (never all zeros).
std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
// n values from a normal distribution with the given standard deviation.
std::vector<float> random_normal(size_t n, uint64_t seed, float stddev = 1.0f);

// A fresh directory under the system temp folder, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs a shell command, returns its exit status and fills `output` with stdout+stderr.
int run_command(const std::string& command, std::string* output);

// Largest |a-b| / (|b| + floor) over two arrays, and the largest |a-b|.
struct Diff {
  double max_abs = 0;
  double max_rel = 0;
};
Diff compare(const float* a, const float* b, size_t n, double floor = 1e-3);

// Replaces the file's contents with `text`.
void write_file(const std::string& path, const std::string& text);
// One JSON value a line, as in a run's log.jsonl.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

// A user error from the CLI: exit status 1 and exactly one line of output, holding `fragment`.
::testing::AssertionResult fails_with_one_line(const std::string& command, const std::string& fragment);

// A TOML literal: numbers and booleans as written, strings quoted and escaped.
class TomlValue {
 public:
  TomlValue(int value);
  TomlValue(int64_t value);
  TomlValue(double value);  // always with a '.' or exponent, so TOML reads a float back
  TomlValue(bool value);
  TomlValue(const char* value);
  TomlValue(const std::string& value);
  static TomlValue raw(std::string literal);
  static TomlValue strings(std::initializer_list<std::string_view> values);  // ["a", "b"]
  const std::string& literal() const { return literal_; }

 private:
  struct Raw {};
  TomlValue(Raw, std::string literal) : literal_(std::move(literal)) {}
  std::string literal_;
};

// `[{ name = "NAME", path = "PATH" }]`, a data list of one file or shard folder.
TomlValue toml_data_list(const std::string& name, const std::string& path);

// A config file built table by table, so a test starts from a shared base and changes single
// keys instead of editing text. Tables and keys keep their first insertion order.
class TomlConfig {
 public:
  // Sets (or replaces) table.key; table "" holds the keys before any [table].
  TomlConfig& set(const std::string& table, const std::string& key, const TomlValue& value);
  TomlConfig& set(const std::string& table, std::initializer_list<std::pair<std::string, TomlValue>> entries);
  TomlConfig& erase(const std::string& table, const std::string& key);
  TomlConfig& erase_table(const std::string& table);
  std::string text() const;
  // Writes text() to `path` and returns `path`.
  std::string write(const std::string& path) const;

 private:
  struct Table {
    std::string name;
    std::vector<std::pair<std::string, std::string>> entries;
  };
  Table& table(const std::string& name);
  std::vector<Table> tables_;
};

// [model] of the tiny transformers the CLI tests train in seconds: width 32, 2 heads, FFN 64.
TomlConfig tiny_model_config(int n_layer);

// Counting documents: 30 ids counting up modulo kCountingIds from a start that differs per
// document, then EOS. Easy to learn, so a few training steps visibly lower the loss.
inline constexpr int32_t kCountingIds = 40;
inline constexpr int32_t kCountingEos = 40;
inline constexpr int32_t kCountingMask = 41;
inline constexpr int32_t kCountingVocab = 48;
std::vector<std::vector<int32_t>> counting_documents(int n_documents);
// tiny_model_config over the counting vocabulary (no tokenizer: ids only).
TomlConfig counting_model_config(int n_layer);

// 200 counting documents packed into token shards in `folder`. Inline so that test programs
// which never call it do not need the train layer linked in.
inline void write_counting_shards(const std::string& folder) {
  ruvdllm::train::TokenShardWriter writer(folder, kCountingVocab, 2000);
  for (const std::vector<int32_t>& document : counting_documents(200)) writer.append(document);
  writer.finish();
}

}  // namespace ruvdllm::testing
