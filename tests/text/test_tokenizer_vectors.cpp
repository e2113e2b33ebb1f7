// Our tokenizers against ids computed by independent implementations (npm gpt-3-encoder and
// llama-tokenizer-js; tools/tokenizer-vectors/generate.mjs), on the same vocabularies loaded
// from tokenizer.json and from GGUF metadata.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/text/tokenizer.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using nlohmann::json;

struct Vector {
  std::string text;
  std::vector<int32_t> ids;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The exported vocabularies are third-party data, installed by scripts/setup.sh rather than
// committed; a missing one is a failure, not a skip.
std::string vocab_path(const std::string& name) {
  const std::string path = std::string(RUVDLLM_SOURCE_DIR) + "/tools/tokenizer-vectors/vocab/" + name;
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error(path + " is missing: run scripts/setup.sh (npm ci + node generate.mjs vocab in tools/tokenizer-vectors)");
  }
  return path;
}

std::vector<Vector> load_vectors(const std::string& name) {
  const std::string path = std::string(RUVDLLM_SOURCE_DIR) + "/tests/text/data/" + name;
  const json root = json::parse(read_file(path));
  std::vector<Vector> out;
  for (const json& c : root.at("cases")) out.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<int32_t>>()});
  return out;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

// Counts mismatches and prints the first few, so one bug does not bury the report.
void expect_matches(const Tokenizer& tok, const std::vector<Vector>& vectors, bool add_special) {
  ASSERT_GE(vectors.size(), 1000u);
  int encode_errors = 0;
  int decode_errors = 0;
  for (const Vector& v : vectors) {
    const auto ids = tok.encode(v.text, add_special, /*parse_special=*/false);
    if (ids != v.ids && ++encode_errors <= 5) {
      ADD_FAILURE() << "encode(" << json(v.text).dump() << ")\n  got      " << show(ids) << "\n  expected " << show(v.ids);
    }
    const std::string text = tok.decode(v.ids);
    if (text != v.text && ++decode_errors <= 5) {
      ADD_FAILURE() << "decode(" << show(v.ids) << ") = " << json(text).dump() << ", expected " << json(v.text).dump();
    }
  }
  EXPECT_EQ(encode_errors, 0) << "of " << vectors.size();
  EXPECT_EQ(decode_errors, 0) << "of " << vectors.size();
}

const Tokenizer& gpt2_json() {
  static const Tokenizer tok = Tokenizer::from_tokenizer_json(vocab_path("gpt2-tokenizer.json"));
  return tok;
}

const Tokenizer& llama_json() {
  static const Tokenizer tok = Tokenizer::from_tokenizer_json(vocab_path("llama-tokenizer.json"));
  return tok;
}

TEST(Gpt2Reference, TokenizerJsonMatchesEveryVector) {
  const Tokenizer& tok = gpt2_json();
  EXPECT_EQ(tok.kind(), TokenizerKind::ByteLevelBpe);
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_FALSE(tok.adds_bos());
  expect_matches(tok, load_vectors("gpt2_vectors.json"), /*add_special=*/true);
}

TEST(LlamaReference, TokenizerJsonMatchesEveryVector) {
  const Tokenizer& tok = llama_json();
  EXPECT_EQ(tok.kind(), TokenizerKind::SentencePieceBpe);
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_TRUE(tok.adds_bos());
  expect_matches(tok, load_vectors("llama_vectors.json"), /*add_special=*/true);
}

// The same vocabulary written as GGUF metadata, the way llama.cpp's converter lays it out.
std::string write_gpt2_gguf(const testing::TempDir& dir, const std::string& pre = "gpt2") {
  const json root = json::parse(read_file(vocab_path("gpt2-tokenizer.json")));
  const json& vocab = root.at("model").at("vocab");
  std::vector<std::string> tokens(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) tokens.at(it.value().get<size_t>()) = it.key();
  std::vector<int64_t> types(tokens.size(), 1);
  types.at(50256) = 3;  // <|endoftext|> is a control token
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llada"));
  w.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
  w.set("tokenizer.ggml.pre", GgufValue::string(pre));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  w.set("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, types));
  w.set("tokenizer.ggml.merges", GgufValue::string_array(root.at("model").at("merges").get<std::vector<std::string>>()));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(50256));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(50256));
  const std::string path = dir.file(pre + ".gguf");
  w.write(path);
  return path;
}

TEST(Gpt2Reference, GgufAndTokenizerJsonGiveIdenticalIds) {
  testing::TempDir dir;
  const Tokenizer gguf = Tokenizer::from_gguf_file(write_gpt2_gguf(dir));
  const Tokenizer& hf = gpt2_json();
  EXPECT_EQ(gguf.vocab_size(), hf.vocab_size());
  EXPECT_EQ(gguf.pre_tokenizer(), "gpt2");
  const auto vectors = load_vectors("gpt2_vectors.json");
  int differ = 0;
  for (const Vector& v : vectors) {
    for (bool parse_special : {false, true}) {
      const auto a = gguf.encode(v.text, false, parse_special);
      const auto b = hf.encode(v.text, false, parse_special);
      if (a != b && ++differ <= 5) ADD_FAILURE() << json(v.text).dump() << ": GGUF " << show(a) << " vs JSON " << show(b);
    }
    EXPECT_EQ(gguf.decode(v.ids), v.text);
  }
  EXPECT_EQ(differ, 0);
  expect_matches(gguf, vectors, /*add_special=*/false);
}

// LLaMA-3's and Qwen2's splits as GGUF names them, against the regexes their tokenizer.json
// files spell out (with (?i:...) contractions), over GPT-2's vocabulary.
TEST(Gpt2Reference, GgufPreTokenizerNamesMatchTokenizerJsonSplits) {
  const std::vector<std::tuple<std::string, std::string, bool>> cases = {
      {"qwen2", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)", false},
      {"llama-bpe", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)", true},
  };
  const auto vectors = load_vectors("gpt2_vectors.json");
  for (const auto& [pre, pattern, ignore_merges] : cases) {
    SCOPED_TRACE(pre);
    testing::TempDir dir;
    const Tokenizer gguf = Tokenizer::from_gguf_file(write_gpt2_gguf(dir, pre));
    EXPECT_EQ(gguf.pre_tokenizer(), pre);
    json root = json::parse(read_file(vocab_path("gpt2-tokenizer.json")));
    root["model"]["ignore_merges"] = ignore_merges;
    root["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers",
                              {{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                               {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    const Tokenizer hf = Tokenizer::from_tokenizer_json_text(root.dump(), pre + ".json");
    int differ = 0;
    int differ_from_gpt2 = 0;
    for (const Vector& v : vectors) {
      const auto a = gguf.encode(v.text, false, false);
      const auto b = hf.encode(v.text, false, false);
      if (a != b && ++differ <= 5) ADD_FAILURE() << json(v.text).dump() << ": GGUF " << show(a) << " vs JSON " << show(b);
      differ_from_gpt2 += a != v.ids;
      EXPECT_EQ(gguf.decode(a), v.text);
    }
    EXPECT_EQ(differ, 0);
    EXPECT_GT(differ_from_gpt2, 100);  // the splits really are not GPT-2's
  }
}

// LLaMA's vocabulary as a SentencePiece GGUF: no merges, pieces merged by score. The
// tokenizer.json merges were ordered by those scores when they were converted from
// tokenizer.model, so a piece's score is recovered as minus the rank of its first merge.
std::string write_llama_gguf(const testing::TempDir& dir) {
  const json root = json::parse(read_file(vocab_path("llama-tokenizer.json")));
  const json& vocab = root.at("model").at("vocab");
  std::vector<std::string> tokens(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) tokens.at(it.value().get<size_t>()) = it.key();
  std::vector<int64_t> types(tokens.size(), 1);
  std::vector<double> scores(tokens.size(), 0.0);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i == 0) types[i] = 2;
    else if (i <= 2) types[i] = 3;
    else if (tokens[i].size() == 6 && tokens[i].starts_with("<0x")) types[i] = 6;
  }
  const json& merges = root.at("model").at("merges");
  std::vector<bool> scored(tokens.size(), false);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const size_t id = vocab.at(merges[rank][0].get<std::string>() + merges[rank][1].get<std::string>()).get<size_t>();
    if (!scored[id]) scores[id] = -static_cast<double>(rank) - 1, scored[id] = true;
  }
  GgufWriter w;
  w.set("tokenizer.ggml.model", GgufValue::string("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  w.set("tokenizer.ggml.scores", GgufValue::float_array(GgufType::FLOAT32, scores));
  w.set("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, types));
  const std::string path = dir.file("llama.gguf");
  w.write(path);
  return path;
}

TEST(LlamaReference, ScoreMergedGgufMatchesEveryVector) {
  testing::TempDir dir;
  const Tokenizer tok = Tokenizer::from_gguf_file(write_llama_gguf(dir));
  EXPECT_EQ(tok.kind(), TokenizerKind::SentencePieceBpe);
  EXPECT_EQ(tok.bos_id(), 1);  // llama.cpp's defaults when the ids are not written
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_TRUE(tok.adds_bos());
  expect_matches(tok, load_vectors("llama_vectors.json"), /*add_special=*/true);
}

}  // namespace
}  // namespace ruvdllm
