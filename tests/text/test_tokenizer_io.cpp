// Writing vocabularies out and reading them back: GGUF tokenizer.ggml.* metadata and
// tokenizer.json must give a tokenizer that encodes every string to the same ids, for a trained
// vocabulary and for the reference GPT-2 and LLaMA vocabularies.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/text/bpe_trainer.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/text/tokenizer_io.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using nlohmann::json;

// Third-party vocabularies installed by scripts/setup.sh; a missing one is a failure.
std::string vocab_path(const std::string& name) {
  const std::string path = std::string(RUVDLLM_SOURCE_DIR) + "/tools/tokenizer-vectors/vocab/" + name;
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error(path + " is missing: run scripts/setup.sh (npm ci + node generate.mjs vocab in tools/tokenizer-vectors)");
  }
  return path;
}

// Strings that exercise the splits: prose, code, digits, whitespace runs, contractions,
// non-Latin scripts, emoji, special-token spellings, and random bytes.
std::vector<std::string> varied_strings() {
  std::vector<std::string> out = {
      "",
      "Hello, world! It's a test of the tokenizer's merges.",
      "def unmask(canvas, step):\n    return [t for t in canvas if t != MASK]  # 42\n",
      "   leading and trailing spaces   \n\n\n\t\ttabs\r\nwindows line",
      "Numbers 1234567 and 3.14159, dates 2024-06-01, ids x_1y2.",
      "Ünïcödé: naïve café, Größe, Ελληνικά, русский, 中文字符, 日本語のテキスト, 한국어",
      "emoji 🙂👍🏽 and symbols ∑∫√ ≠ ≤ — “quotes” ‘single’ …",
      "I'll we've they're she'd you'm DON'T CAN'T",
      "<|endoftext|> between <|mdm_mask|> special spellings <|endoftext|>",
      std::string(300, ' ') + "x" + std::string(70, '\n'),
  };
  std::mt19937_64 rng(11);
  for (int i = 0; i < 20; ++i) {
    std::string s(rng() % 120, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 256);
    out.push_back(s);
  }
  return out;
}

std::string training_text() {
  std::string text;
  for (const auto& s : varied_strings()) text += s;
  std::mt19937_64 rng(5);
  static const char* words[] = {" the", " model", " token", " mask", " diffusion", " step", "\n", " 12", ",", ".",
                                " over", " canvas", " return", "    if", " café", " Größe"};
  for (int i = 0; i < 30000; ++i) text += words[rng() % std::size(words)];
  return text;
}

Tokenizer trained(const std::string& pre = "gpt2") {
  BpeTrainerOptions options;
  options.vocab_size = 500;
  options.pre_tokenizer = pre;
  options.chat_tokens = true;
  BpeTrainer trainer(options);
  trainer.add_text(training_text());
  return trainer.train();
}

std::string write_gguf(const Tokenizer& tok, const testing::TempDir& dir, const std::string& name) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llada"));
  write_tokenizer_metadata(tok, w);
  const std::string path = dir.file(name);
  w.write(path);
  return path;
}

// Same vocabulary, same special ids, and the same ids for every string, with special tokens
// parsed and not.
void expect_same_tokenizer(const Tokenizer& a, const Tokenizer& b) {
  ASSERT_EQ(a.vocab_size(), b.vocab_size());
  EXPECT_EQ(a.kind(), b.kind());
  EXPECT_EQ(a.bos_id(), b.bos_id());
  EXPECT_EQ(a.eos_id(), b.eos_id());
  EXPECT_EQ(a.unk_id(), b.unk_id());
  EXPECT_EQ(a.pad_id(), b.pad_id());
  EXPECT_EQ(a.mask_id(), b.mask_id());
  EXPECT_EQ(a.adds_bos(), b.adds_bos());
  EXPECT_EQ(a.adds_eos(), b.adds_eos());
  for (int32_t id = 0; id < a.vocab_size(); ++id) {
    ASSERT_EQ(a.token_text(id), b.token_text(id)) << id;
    ASSERT_EQ(a.token_type(id), b.token_type(id)) << id;
  }
  int differ = 0;
  for (const auto& s : varied_strings()) {
    for (bool parse_special : {false, true}) {
      if (a.encode(s, true, parse_special) != b.encode(s, true, parse_special) && ++differ <= 5) {
        ADD_FAILURE() << "ids differ for " << json(s).dump(-1, ' ', false, json::error_handler_t::replace);
      }
    }
    EXPECT_EQ(b.decode(b.encode(s, false, false)), s);
  }
  EXPECT_EQ(differ, 0);
}

TEST(TokenizerGguf, TrainedVocabularyRoundTrips) {
  testing::TempDir dir;
  for (const char* pre : {"gpt2", "llama-bpe", "qwen2"}) {
    SCOPED_TRACE(pre);
    const Tokenizer tok = trained(pre);
    const std::string path = write_gguf(tok, dir, std::string(pre) + ".gguf");
    const Tokenizer back = Tokenizer::from_gguf_file(path);
    expect_same_tokenizer(tok, back);
    EXPECT_EQ(back.merges(), tok.merges());

    const GgufFile gguf = GgufFile::open(path);
    EXPECT_EQ(gguf.get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(gguf.get_string("tokenizer.ggml.pre"), std::string(pre) == "gpt2" ? "gpt-2" : pre);
    EXPECT_EQ(gguf.get_int("tokenizer.ggml.eos_token_id", -1), *tok.eos_id());
    EXPECT_EQ(gguf.get_int("tokenizer.ggml.mask_token_id", -1), *tok.mask_id());
    EXPECT_EQ(gguf.find("tokenizer.ggml.eos_token_id")->type(), GgufType::UINT32);  // as llama.cpp writes ids
    EXPECT_FALSE(gguf.has("tokenizer.ggml.scores"));
  }
}

TEST(TokenizerGguf, Gpt2ReferenceRoundTrips) {
  const Tokenizer gpt2 = Tokenizer::from_tokenizer_json(vocab_path("gpt2-tokenizer.json"));
  testing::TempDir dir;
  const Tokenizer back = Tokenizer::from_gguf_file(write_gguf(gpt2, dir, "gpt2.gguf"));
  expect_same_tokenizer(gpt2, back);
  EXPECT_EQ(back.merges().size(), 50000u);
}

// LLaMA's tokenizer.json merges by rank; GGUF holds SentencePiece vocabularies as scores, so the
// writer turns ranks into scores that order the merges the same way.
TEST(TokenizerGguf, LlamaReferenceRoundTripsThroughScores) {
  const Tokenizer llama = Tokenizer::from_tokenizer_json(vocab_path("llama-tokenizer.json"));
  testing::TempDir dir;
  const std::string path = write_gguf(llama, dir, "llama.gguf");
  const Tokenizer back = Tokenizer::from_gguf_file(path);
  expect_same_tokenizer(llama, back);
  EXPECT_TRUE(back.merges().empty());  // merged by score now
  EXPECT_EQ(GgufFile::open(path).get_string("tokenizer.ggml.model"), "llama");
}

TEST(TokenizerJson, TrainedVocabularyRoundTrips) {
  for (const char* pre : {"gpt2", "llama-bpe", "qwen2"}) {
    SCOPED_TRACE(pre);
    const Tokenizer tok = trained(pre);
    const std::string text = tokenizer_to_json(tok);
    const Tokenizer back = Tokenizer::from_tokenizer_json_text(text, "trained.json");
    expect_same_tokenizer(tok, back);
    EXPECT_EQ(back.pre_tokenizer(), pre);
    EXPECT_EQ(back.merges(), tok.merges());
    EXPECT_EQ(tokenizer_to_json(back), text);  // a fixed point

    // The layout Hugging Face reads: a BPE model with every token in its vocab, the specials
    // also as added tokens.
    const json root = json::parse(text);
    EXPECT_EQ(root.at("version"), "1.0");
    EXPECT_EQ(root.at("model").at("type"), "BPE");
    EXPECT_EQ(root.at("model").at("vocab").size(), static_cast<size_t>(tok.vocab_size()));
    EXPECT_EQ(root.at("model").at("vocab").at("<|mdm_mask|>"), *tok.mask_id());
    EXPECT_EQ(root.at("model").at("merges").size(), tok.merges().size());
    EXPECT_EQ(root.at("added_tokens").size(), 5u);
    EXPECT_EQ(root.at("added_tokens")[0].at("content"), "<|endoftext|>");
    EXPECT_TRUE(root.at("added_tokens")[0].at("special").get<bool>());
    EXPECT_EQ(root.at("decoder").at("type"), "ByteLevel");
  }
}

TEST(TokenizerJson, ReferenceVocabulariesRoundTrip) {
  for (const char* name : {"gpt2-tokenizer.json", "llama-tokenizer.json"}) {
    SCOPED_TRACE(name);
    const Tokenizer ref = Tokenizer::from_tokenizer_json(vocab_path(name));
    const Tokenizer back = Tokenizer::from_tokenizer_json_text(tokenizer_to_json(ref), name);
    expect_same_tokenizer(ref, back);
    EXPECT_EQ(back.merges(), ref.merges());
  }
}

// A SentencePiece GGUF has scores, no merges: tokenizer.json gets merges derived from them.
TEST(TokenizerJson, ScoreMergedVocabularyGetsEquivalentMerges) {
  const Tokenizer llama = Tokenizer::from_tokenizer_json(vocab_path("llama-tokenizer.json"));
  testing::TempDir dir;
  const Tokenizer by_score = Tokenizer::from_gguf_file(write_gguf(llama, dir, "llama.gguf"));
  const Tokenizer back = Tokenizer::from_tokenizer_json_text(tokenizer_to_json(by_score), "llama-from-gguf.json");
  expect_same_tokenizer(by_score, back);
  EXPECT_FALSE(back.merges().empty());
}

TEST(TokenizerIo, RefusesWhatTheFormatCannotHold) {
  // A tokenizer.json regex that no GGUF pre-tokenizer name stands for.
  json root = json::parse(tokenizer_to_json(trained()));
  root["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers",
                            {{{"type", "Split"}, {"pattern", {{"Regex", "\\s+|\\S+"}}}, {"behavior", "Isolated"}, {"invert", false}},
                             {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  const Tokenizer custom = Tokenizer::from_tokenizer_json_text(root.dump(), "custom.json");
  EXPECT_EQ(custom.pre_tokenizer(), "custom");
  GgufWriter w;
  try {
    write_tokenizer_metadata(custom, w);
    ADD_FAILURE() << "no Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("custom.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("pre-tokenizer"), std::string::npos) << e.what();
  }
  // ...but tokenizer.json keeps the regex.
  expect_same_tokenizer(custom, Tokenizer::from_tokenizer_json_text(tokenizer_to_json(custom), "custom2.json"));
}

}  // namespace
}  // namespace ruvdllm
