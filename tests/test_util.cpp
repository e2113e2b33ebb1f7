#include "test_util.h"

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace ruvdllm::testing {

std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<float> random_normal(size_t n, uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "ruvdllm-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int run_command(const std::string& command, std::string* output) {
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buf{};
  std::string out;
  size_t got;
  while ((got = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), got);
  const int status = pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Diff compare(const float* a, const float* b, size_t n, double floor) {
  Diff d;
  for (size_t i = 0; i < n; ++i) {
    const double diff = std::fabs(static_cast<double>(a[i]) - b[i]);
    d.max_abs = std::max(d.max_abs, diff);
    d.max_rel = std::max(d.max_rel, diff / (std::fabs(static_cast<double>(b[i])) + floor));
  }
  return d;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> values;
  std::string line;
  while (std::getline(in, line)) values.push_back(nlohmann::json::parse(line));
  return values;
}

::testing::AssertionResult fails_with_one_line(const std::string& command, const std::string& fragment) {
  std::string out;
  const int status = run_command(command, &out);
  const auto lines = std::count(out.begin(), out.end(), '\n');
  if (status == 1 && out.find(fragment) != std::string::npos && lines == 1) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << command << "\nexit status " << status << ", " << lines
                                       << " lines, expected 1 and one line holding '" << fragment << "':\n"
                                       << out;
}

namespace {

std::string toml_quoted(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

TomlValue::TomlValue(int value) : literal_(std::to_string(value)) {}
TomlValue::TomlValue(int64_t value) : literal_(std::to_string(value)) {}
TomlValue::TomlValue(double value) : literal_(fmt::format("{}", value)) {
  if (literal_.find_first_of(".eEn") == std::string::npos) literal_ += ".0";
}
TomlValue::TomlValue(bool value) : literal_(value ? "true" : "false") {}
TomlValue::TomlValue(const char* value) : literal_(toml_quoted(value)) {}
TomlValue::TomlValue(const std::string& value) : literal_(toml_quoted(value)) {}

TomlValue TomlValue::raw(std::string literal) { return TomlValue(Raw{}, std::move(literal)); }

TomlValue TomlValue::strings(std::initializer_list<std::string_view> values) {
  std::string literal = "[";
  for (const std::string_view v : values) literal += (literal.size() > 1 ? ", " : "") + toml_quoted(v);
  return raw(literal + "]");
}

TomlValue toml_data_list(const std::string& name, const std::string& path) {
  return TomlValue::raw(fmt::format("[{{ name = {}, path = {} }}]", toml_quoted(name), toml_quoted(path)));
}

TomlConfig::Table& TomlConfig::table(const std::string& name) {
  for (Table& t : tables_) {
    if (t.name == name) return t;
  }
  return tables_.emplace_back(Table{name, {}});
}

TomlConfig& TomlConfig::set(const std::string& table_name, const std::string& key, const TomlValue& value) {
  auto& entries = table(table_name).entries;
  const auto it = std::find_if(entries.begin(), entries.end(), [&](const auto& e) { return e.first == key; });
  if (it != entries.end()) {
    it->second = value.literal();
  } else {
    entries.emplace_back(key, value.literal());
  }
  return *this;
}

TomlConfig& TomlConfig::set(const std::string& table_name,
                            std::initializer_list<std::pair<std::string, TomlValue>> entries) {
  table(table_name);  // an empty list still creates the table
  for (const auto& [key, value] : entries) set(table_name, key, value);
  return *this;
}

TomlConfig& TomlConfig::erase(const std::string& table_name, const std::string& key) {
  auto& entries = table(table_name).entries;
  std::erase_if(entries, [&](const auto& e) { return e.first == key; });
  return *this;
}

TomlConfig& TomlConfig::erase_table(const std::string& table_name) {
  std::erase_if(tables_, [&](const Table& t) { return t.name == table_name; });
  return *this;
}

std::string TomlConfig::text() const {
  std::string out;
  // Root keys must come before the first [table] header.
  for (const bool root : {true, false}) {
    for (const Table& t : tables_) {
      if (t.name.empty() != root) continue;
      if (!root) out += "[" + t.name + "]\n";
      for (const auto& [key, literal] : t.entries) out += key + " = " + literal + "\n";
    }
  }
  return out;
}

std::string TomlConfig::write(const std::string& path) const {
  write_file(path, text());
  return path;
}

TomlConfig tiny_model_config(int n_layer) {
  TomlConfig config;
  config.set("model", {{"n_embd", 32}, {"n_layer", n_layer}, {"n_head", 2}, {"n_ff", 64}});
  return config;
}

std::vector<std::vector<int32_t>> counting_documents(int n_documents) {
  std::vector<std::vector<int32_t>> documents;
  for (int d = 0; d < n_documents; ++d) {
    std::vector<int32_t> document;
    for (int i = 0; i < 30; ++i) document.push_back((d * 7 + i) % kCountingIds);
    document.push_back(kCountingEos);
    documents.push_back(std::move(document));
  }
  return documents;
}

TomlConfig counting_model_config(int n_layer) {
  TomlConfig config = tiny_model_config(n_layer);
  config.set("model", {{"vocab_size", kCountingVocab}, {"mask_token_id", kCountingMask}, {"eos_token_id", kCountingEos}});
  return config;
}

}  // namespace ruvdllm::testing
