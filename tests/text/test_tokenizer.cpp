// Tokenizer behaviour beyond the reference vectors: pre-tokenizer splits, round trips on random
// (and invalid) input, special and added tokens, the mask token, and malformed vocabularies.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/text/tokenizer.h"
#include "test_util.h"
#include "text/regex.h"
#include "text/tokenizer_model.h"

namespace ruvdllm {
namespace {

using nlohmann::json;

#define EXPECT_ERROR_CONTAINS(statement, part)                                       \
  do {                                                                               \
    try {                                                                            \
      statement;                                                                     \
      ADD_FAILURE() << "no Error from " #statement;                                  \
    } catch (const Error& e) {                                                       \
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)                 \
          << "message: " << e.what() << "\nexpected to contain: " << (part);         \
    }                                                                                \
  } while (0)

constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string vocab_path(const std::string& name) {
  const std::string path = std::string(RUVDLLM_SOURCE_DIR) + "/tools/tokenizer-vectors/vocab/" + name;
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error(path + " is missing: run scripts/setup.sh (npm ci + node generate.mjs vocab in tools/tokenizer-vectors)");
  }
  return path;
}

const json& gpt2_json_root() {
  static const json root = json::parse(read_file(vocab_path("gpt2-tokenizer.json")));
  return root;
}

const Tokenizer& gpt2() {
  static const Tokenizer tok = Tokenizer::from_tokenizer_json(vocab_path("gpt2-tokenizer.json"));
  return tok;
}

const Tokenizer& llama() {
  static const Tokenizer tok = Tokenizer::from_tokenizer_json(vocab_path("llama-tokenizer.json"));
  return tok;
}

// GPT-2's vocabulary with extra added tokens, as a diffusion model's tokenizer.json has them.
Tokenizer gpt2_with_added_tokens(const std::vector<json>& added, std::string_view config = {}) {
  json root = gpt2_json_root();
  for (const json& a : added) root["added_tokens"].push_back(a);
  return Tokenizer::from_tokenizer_json_text(root.dump(), "gpt2+added.json", config);
}

json added_token(int id, const std::string& content, bool special, bool lstrip = false, bool rstrip = false) {
  return {{"id", id}, {"content", content}, {"special", special}, {"lstrip", lstrip}, {"rstrip", rstrip},
          {"single_word", false}, {"normalized", false}};
}

std::vector<std::string> split(const std::string& pattern, std::string_view text) {
  text_detail::Regex regex(pattern, "test");
  std::vector<std::string_view> pieces;
  regex.split(text, pieces);
  return {pieces.begin(), pieces.end()};
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Valid UTF-8 from all over the code space, weighted towards ASCII and whitespace so that
// words, numbers and runs form.
std::string random_unicode(std::mt19937_64& rng, size_t max_chars) {
  static const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {0x20, 0x7E}, {0x20, 0x7E}, {0x09, 0x0D}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFD},
      {0x10000, 0x10FFFF}, {0x1F300, 0x1FAFF}, {0x4E00, 0x9FFF}, {0x300, 0x36F}};
  std::string s;
  const size_t n = rng() % (max_chars + 1);
  for (size_t i = 0; i < n; ++i) {
    const auto [lo, hi] = ranges[rng() % ranges.size()];
    append_utf8(s, lo + static_cast<uint32_t>(rng() % (hi - lo + 1)));
  }
  return s;
}

std::string random_bytes(std::mt19937_64& rng, size_t max_bytes) {
  std::string s(rng() % (max_bytes + 1), '\0');
  for (auto& c : s) c = static_cast<char>(rng() % 256);
  return s;
}

bool is_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = text_detail::utf8_sequence_length(s.substr(i));
    if (len == 0) return false;
    i += len;
  }
  return true;
}

void expect_round_trips(const Tokenizer& tok, const std::string& text) {
  const auto ids = tok.encode(text, /*add_special=*/true, /*parse_special=*/false);
  for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size());
  EXPECT_EQ(tok.decode(ids), text) << "ids: " << ids.size() << ", text: " << json(text).dump(-1, ' ', true, json::error_handler_t::replace);
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer splits

TEST(PreTokenizer, Gpt2PatternSplitsWordsNumbersAndSpaces) {
  EXPECT_EQ(split(text_detail::kGpt2Pattern, "Hello world's  12345 foo!!\n"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " 12345", " foo", "!!", "\n"}));
  EXPECT_EQ(split(text_detail::kGpt2Pattern, "Привет мир"), (std::vector<std::string>{"Привет", " мир"}));
}

TEST(PreTokenizer, Llama3KeepsDigitTriplesAndQwen2SingleDigits) {
  const auto llama3 = text_detail::pre_tokenizer_preset("llama-bpe");
  const auto qwen2 = text_detail::pre_tokenizer_preset("qwen2");
  ASSERT_TRUE(llama3 && qwen2);
  EXPECT_TRUE(llama3->ignore_merges);
  EXPECT_EQ(split(llama3->patterns[0], "12345 abc\n\n def I'M"),
            (std::vector<std::string>{"123", "45", " abc", "\n\n", " def", " I", "'M"}));
  EXPECT_EQ(split(qwen2->patterns[0], "12345 (x)"), (std::vector<std::string>{"1", "2", "3", "4", "5", " (", "x", ")"}));
  EXPECT_FALSE(text_detail::pre_tokenizer_preset("no-such-pre"));
}

TEST(PreTokenizer, InvalidUtf8AndLongRunsAreCoveredExactly) {
  const std::string bad = "ab\xff\xfe cd\xe2\x82 \xc3(\x80z";
  std::string joined;
  for (const auto& p : split(text_detail::kGpt2Pattern, bad)) joined += p;
  EXPECT_EQ(joined, bad);

  const std::string run = std::string(200000, ' ') + "x" + std::string(50000, '\n');
  const auto pieces = split(text_detail::kGpt2Pattern, run);
  joined.clear();
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined, run);
  EXPECT_EQ(pieces.size(), 3u);  // all but one space, " x", the newlines
}

TEST(PreTokenizer, ByteLevelAlphabetIsGpt2s) {
  const auto& map = text_detail::byte_to_code_point();
  EXPECT_EQ(map[' '], 0x120u);  // "Ġ"
  EXPECT_EQ(map['\n'], 0x10Au);  // "Ċ"
  EXPECT_EQ(map['A'], static_cast<uint32_t>('A'));
  EXPECT_EQ(map[0xAD], 0x143u);
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_EQ(text_detail::byte_level_decode(text_detail::byte_level_encode(all)), all);
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(RoundTrip, RandomUnicodeStrings) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 400; ++i) {
    const std::string text = random_unicode(rng, 48);
    ASSERT_TRUE(is_utf8(text));
    expect_round_trips(gpt2(), text);
    // SentencePiece spells spaces "▁", so a literal "▁" in the input comes back as a space.
    if (text.find("\xE2\x96\x81") == std::string::npos) expect_round_trips(llama(), text);
  }
}

TEST(RoundTrip, RandomInvalidByteStrings) {
  std::mt19937_64 rng(12);
  int invalid = 0;
  for (int i = 0; i < 400; ++i) {
    const std::string text = random_bytes(rng, 64);
    invalid += !is_utf8(text);
    expect_round_trips(gpt2(), text);
    if (text.find("\xE2\x96\x81") == std::string::npos) expect_round_trips(llama(), text);
  }
  EXPECT_GT(invalid, 300);  // the strings really are mostly not UTF-8
}

TEST(RoundTrip, Qwen2AndLlama3SplitsOverGpt2Vocabulary) {
  for (const std::string& pattern : {std::string(kQwen2Regex), text_detail::pre_tokenizer_preset("llama-bpe")->patterns[0]}) {
    json root = gpt2_json_root();
    root["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers",
                              {{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                               {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    const Tokenizer tok = Tokenizer::from_tokenizer_json_text(root.dump(), "split.json");
    EXPECT_EQ(tok.pre_tokenizer(), "custom");
    std::mt19937_64 rng(13);
    for (int i = 0; i < 200; ++i) {
      expect_round_trips(tok, random_unicode(rng, 40));
      expect_round_trips(tok, random_bytes(rng, 40));
    }
    // Digits split as the pattern says: Qwen2 one by one, LLaMA-3 in threes.
    const auto ids = tok.encode("12345", false);
    EXPECT_EQ(ids.size(), pattern == kQwen2Regex ? 5u : 2u);
  }
}

TEST(RoundTrip, EmptyAndHugeInputs) {
  EXPECT_TRUE(gpt2().encode("").empty());
  EXPECT_EQ(llama().encode(""), std::vector<int32_t>{1});  // BOS only, as SentencePiece LLaMA gives
  EXPECT_EQ(llama().encode("", false), std::vector<int32_t>{});
  EXPECT_EQ(gpt2().decode({}), "");
  std::string big;
  std::mt19937_64 rng(14);
  while (big.size() < 200000) big += random_unicode(rng, 64) + std::string(rng() % 300, ' ');
  expect_round_trips(gpt2(), big);
  expect_round_trips(llama(), big.substr(0, 20000));
}

TEST(RoundTrip, ConcurrentEncodesAgree) {
  std::mt19937_64 rng(15);
  std::vector<std::string> texts;
  for (int i = 0; i < 300; ++i) texts.push_back(random_unicode(rng, 30));
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back(gpt2().encode(t));
  const Tokenizer copy = gpt2();  // copies share the vocabulary and its cache
  std::vector<int> mismatches(2, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i) mismatches[t] += (t ? copy : gpt2()).encode(texts[i]) != expected[i];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches[0] + mismatches[1], 0);
}

// ---------------------------------------------------------------------------------------------
// Special and added tokens

TEST(SpecialTokens, ControlTokensSplitTextOnlyWhenParsed) {
  const Tokenizer& tok = gpt2();
  const auto a = tok.encode("Hello", false);
  const auto b = tok.encode(" world", false);
  std::vector<int32_t> expected = a;
  expected.push_back(50256);
  expected.insert(expected.end(), b.begin(), b.end());
  EXPECT_EQ(tok.encode("Hello<|endoftext|> world", false, true), expected);
  const auto literal = tok.encode("Hello<|endoftext|> world", false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 50256), 0);
  EXPECT_GT(literal.size(), expected.size());
  EXPECT_EQ(tok.decode(expected), "Hello world");
  EXPECT_EQ(tok.decode(expected, /*render_special=*/true), "Hello<|endoftext|> world");
  EXPECT_EQ(tok.token_type(50256), TokenType::Control);
  EXPECT_EQ(tok.eos_id(), 50256);
}

TEST(SpecialTokens, SentencePieceControlTokensAndSpacePrefix) {
  const Tokenizer& tok = llama();
  const auto hi = tok.encode("hi", false);  // "▁hi"
  std::vector<int32_t> expected{1, 1};
  expected.insert(expected.end(), hi.begin(), hi.end());
  EXPECT_EQ(tok.encode("<s>hi", true, true), expected);
  EXPECT_EQ(tok.decode(expected, true), "<s><s> hi");
  EXPECT_EQ(tok.decode(expected), "hi");
  EXPECT_EQ(tok.token_to_piece(*tok.find_token("<0x0A>")), "\n");
  EXPECT_EQ(tok.token_type(*tok.find_token("<0x0A>")), TokenType::Byte);
  EXPECT_EQ(tok.token_type(0), TokenType::Unknown);
  EXPECT_EQ(tok.token_to_piece(*tok.find_token("\xE2\x96\x81the")), " the");
}

TEST(SpecialTokens, AddedTokensLongestFirstUserDefinedAlways) {
  const Tokenizer tok = gpt2_with_added_tokens({added_token(50257, "<|mdm_mask|>", true),
                                                added_token(50258, "<|im_start|>", true),
                                                added_token(50259, "<|im_start|>user", true),
                                                added_token(50260, "[[note]]", false)});
  EXPECT_EQ(tok.vocab_size(), 50261);
  EXPECT_EQ(tok.mask_id(), 50257);
  EXPECT_EQ(tok.encode("<|im_start|>user", false), std::vector<int32_t>{50259});
  const auto assistant = tok.encode("<|im_start|>assistant", false);
  ASSERT_GE(assistant.size(), 2u);
  EXPECT_EQ(assistant[0], 50258);
  EXPECT_EQ(tok.decode(assistant, true), "<|im_start|>assistant");
  // A user-defined token is matched even when control tokens are not, and always decodes.
  const auto note = tok.encode("a[[note]]<|mdm_mask|>", false, /*parse_special=*/false);
  EXPECT_EQ(std::count(note.begin(), note.end(), 50260), 1);
  EXPECT_EQ(std::count(note.begin(), note.end(), 50257), 0);
  EXPECT_EQ(tok.decode(note), "a[[note]]<|mdm_mask|>");
  const std::vector<int32_t> masks{50257, 50257};
  EXPECT_EQ(tok.encode("<|mdm_mask|><|mdm_mask|>", false), masks);
  EXPECT_EQ(tok.decode(masks), "");
}

TEST(SpecialTokens, LstripAndRstripSwallowWhitespace) {
  const Tokenizer tok = gpt2_with_added_tokens({added_token(50257, "<mask>", true, /*lstrip=*/true, /*rstrip=*/false),
                                                added_token(50258, "<sep>", true, false, /*rstrip=*/true)});
  std::vector<int32_t> expected = tok.encode("a", false);
  expected.push_back(50257);
  for (int32_t id : tok.encode(" b", false)) expected.push_back(id);
  EXPECT_EQ(tok.encode("a  <mask> b", false), expected);
  expected = tok.encode("a ", false);
  expected.push_back(50258);
  for (int32_t id : tok.encode("b", false)) expected.push_back(id);
  EXPECT_EQ(tok.encode("a <sep> \n b", false), expected);
}

TEST(MaskToken, FoundByGgufKeyConfigOrName) {
  EXPECT_FALSE(gpt2().mask_id().has_value());
  const Tokenizer named = gpt2_with_added_tokens({added_token(50257, "<|mask|>", true)});
  EXPECT_EQ(named.mask_id(), 50257);
  const Tokenizer configured = gpt2_with_added_tokens({added_token(50257, "<|special_mask|>", true)},
                                                      R"({"mask_token": {"content": "<|special_mask|>"}, "add_bos_token": true,
                                                          "bos_token": "<|endoftext|>"})");
  EXPECT_EQ(configured.mask_id(), 50257);
  EXPECT_TRUE(configured.adds_bos());
  EXPECT_EQ(configured.encode("x").front(), 50256);

  testing::TempDir dir;
  GgufWriter w;
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(text_detail::byte_level_encode(std::string(1, static_cast<char>(b))));
  tokens.push_back("hi");
  tokens.push_back("<|mdm_mask|>");
  std::vector<int64_t> types(tokens.size(), 1);
  types.back() = 3;
  w.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  w.set("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, types));
  w.set("tokenizer.ggml.merges", GgufValue::string_array({"h i"}));
  w.set("tokenizer.ggml.mask_token_id", GgufValue::u32(256));  // deliberately not the named one
  w.write(dir.file("t.gguf"));
  const Tokenizer from_key = Tokenizer::load(dir.file("t.gguf"));
  EXPECT_EQ(from_key.mask_id(), 256);
  EXPECT_EQ(from_key.encode("hi hi", false), (std::vector<int32_t>{256, ' ', 256}));
  EXPECT_EQ(from_key.encode("<|mdm_mask|>hi", false), (std::vector<int32_t>{257, 256}));
  EXPECT_EQ(from_key.pre_tokenizer(), "default");
}

// A SentencePiece GGUF as old converters wrote it: no token types, so byte tokens are known by
// their spelling, and no BOS/EOS ids, so llama.cpp's defaults (1, 2) apply.
TEST(SentencePiece, ScoreMergesAndByteFallbackWithoutTokenTypes) {
  std::vector<std::string> tokens{"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) tokens.push_back(fmt::format("<0x{:02X}>", b));
  const int32_t first = static_cast<int32_t>(tokens.size());
  for (const char* t : {"\xE2\x96\x81", "h", "i", "\xE2\x96\x81h", "\xE2\x96\x81hi", "hi"}) tokens.push_back(t);
  // "▁h" outranks "hi", so "▁hi" forms through "▁h" + "i"; "hi" alone never wins.
  std::vector<double> scores(tokens.size(), 0.0);
  scores[first + 3] = -1;
  scores[first + 4] = -3;
  scores[first + 5] = -2;
  testing::TempDir dir;
  GgufWriter w;
  w.set("tokenizer.ggml.model", GgufValue::string("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  w.set("tokenizer.ggml.scores", GgufValue::float_array(GgufType::FLOAT32, scores));
  w.write(dir.file("spm.gguf"));
  const Tokenizer tok = Tokenizer::from_gguf_file(dir.file("spm.gguf"));
  EXPECT_EQ(tok.token_type(3 + 0xFF), TokenType::Byte);
  const std::string text = "hi \xff\xc3\xa9hi";
  const auto ids = tok.encode(text);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, first + 4, first, 3 + 0xFF, 3 + 0xC3, 3 + 0xA9, first + 5}));
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_EQ(tok.encode(" hi", false), (std::vector<int32_t>{first, first + 4}));
  EXPECT_EQ(tok.decode(tok.encode(" hi", false)), " hi");
}

TEST(Describe, ListsIdsAndEscapedPieces) {
  const Tokenizer& tok = gpt2();
  const auto ids = tok.encode("Hi\n\xF0", false);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(describe_tokens(tok, ids), fmt::format("{}\t'Hi'\n{}\t'\\n'\n{}\t'\\xf0'\n", ids[0], ids[1], ids[2]));
  EXPECT_EQ(tok.token_text(ids[1]), "\xC4\x8A");  // "Ċ"
}

TEST(Load, DirectoryWithTokenizerJsonAndConfig) {
  testing::TempDir dir;
  std::filesystem::copy_file(vocab_path("llama-tokenizer.json"), dir.file("tokenizer.json"));
  {
    std::ofstream(dir.file("tokenizer_config.json")) << R"({"add_bos_token": false, "add_eos_token": true})";
  }
  const Tokenizer tok = Tokenizer::load(dir.path());
  EXPECT_FALSE(tok.adds_bos());
  EXPECT_TRUE(tok.adds_eos());
  EXPECT_EQ(tok.encode("hi").back(), 2);
  EXPECT_ERROR_CONTAINS(Tokenizer::load(dir.file("missing.json")), "cannot open");
  testing::TempDir empty;
  EXPECT_ERROR_CONTAINS(Tokenizer::load(empty.path()), "no tokenizer.json");
}

// ---------------------------------------------------------------------------------------------
// Malformed vocabularies and bad arguments

TEST(Errors, DecodeAndLookupsRejectIdsOutOfRange) {
  const Tokenizer& tok = gpt2();
  EXPECT_ERROR_CONTAINS(tok.decode(std::vector<int32_t>{1, 50257}), "token id 50257 is outside");
  EXPECT_ERROR_CONTAINS(tok.decode(std::vector<int32_t>{-1}), "token id -1");
  EXPECT_THROW(tok.token_to_piece(50257), Error);
  EXPECT_THROW(tok.token_text(-5), Error);
  EXPECT_THROW(tok.token_type(1 << 30), Error);
}

// A byte-level vocabulary small enough to copy for every case: the 256 bytes, "hi", one merge.
json tiny_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[text_detail::byte_level_encode(std::string(1, static_cast<char>(b)))] = b;
  vocab["hi"] = 256;
  vocab["<|endoftext|>"] = 257;
  return {{"added_tokens", {added_token(257, "<|endoftext|>", true)}},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h i"}}}}};
}

Tokenizer json_variant(const std::function<void(json&)>& change) {
  json root = tiny_json();
  change(root);
  return Tokenizer::from_tokenizer_json_text(root.dump(), "bad.json");
}

TEST(Errors, MalformedTokenizerJson) {
  const Tokenizer tiny = json_variant([](json&) {});
  EXPECT_EQ(tiny.encode("hi hi"), (std::vector<int32_t>{256, ' ', 256}));
  EXPECT_ERROR_CONTAINS(Tokenizer::from_tokenizer_json_text("{\"model\": ", "bad.json"), "bad.json: not valid JSON");
  EXPECT_ERROR_CONTAINS(Tokenizer::from_tokenizer_json_text("[]", "bad.json"), "expected a JSON object");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r.erase("model"); }), "has no model");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"].erase("vocab"); }), "has no model.vocab");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"]["vocab"] = json::object(); }), "model.vocab is empty");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"]["merges"].push_back("zzzq qqqz"); }),
                        "names 'zzzq', which is not a token");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"]["merges"][0] = "abc"; }), "model.merges[0]");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"]["merges"][0] = 7; }), "model.merges[0]");
  // Without merges a byte-level vocabulary is a plain byte tokenizer, as long as no byte lacks a token.
  EXPECT_EQ(json_variant([](json& r) { r["model"]["merges"] = json::array(); }).encode("hi"),
            (std::vector<int32_t>{'h', 'i'}));
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) {
                          r["model"]["merges"] = json::array();
                          r["model"]["vocab"].erase(text_detail::byte_level_encode("\x07"));
                        }),
                        "without merges needs a token for every byte (0x07 has none)");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"]["type"] = "WordPiece"; }), "'WordPiece' is not supported");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"]["vocab"]["!"] = -3; }), "not a plausible token id");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"]["vocab"]["zzzq"] = 5; }), "gives id 5 to both");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["model"]["vocab"]["!"] = "one"; }), "not an integer token id");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["pre_tokenizer"] = {{"type", "Whitespace"}}; }),
                        "'Whitespace' is not supported");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) {
                          r["pre_tokenizer"] = {{"type", "Sequence"},
                                                {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "(ab"}}}},
                                                                   {{"type", "ByteLevel"}}}}};
                        }),
                        "bad pre-tokenizer regex");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["added_tokens"][0]["id"] = "x"; }), "added_tokens[0].id");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["normalizer"] = {{"type", "Lowercase"}}; }), "'Lowercase' is not supported");
  EXPECT_ERROR_CONTAINS(json_variant([](json& r) { r["pre_tokenizer"] = nullptr; r["decoder"] = nullptr; }),
                        "cannot tell whether");
  EXPECT_ERROR_CONTAINS(gpt2_with_added_tokens({}, R"({"mask_token": "<|nope|>"})"), "mask_token '<|nope|>' is not a token");
  // A byte the vocabulary cannot spell, and no unknown token to stand in: an error, not a gap.
  const Tokenizer no_z = json_variant([](json& r) { r["model"]["vocab"].erase("z"); });
  EXPECT_ERROR_CONTAINS(no_z.encode("oz"), "no token for byte 0x7A");
}

struct GgufCase {
  std::string name;
  std::function<void(GgufWriter&)> change;
  std::string message;
};

TEST(Errors, MalformedGgufVocabularies) {
  const std::vector<GgufCase> cases = {
      {"no tokens", [](GgufWriter& w) { w.set("tokenizer.ggml.tokens", GgufValue::string_array({})); }, "tokenizer.ggml.tokens is empty"},
      {"tokens wrong type", [](GgufWriter& w) { w.set("tokenizer.ggml.tokens", GgufValue::u32(3)); }, "tokenizer.ggml.tokens"},
      {"model", [](GgufWriter& w) { w.set("tokenizer.ggml.model", GgufValue::string("bert")); }, "'bert' is not supported"},
      {"types size", [](GgufWriter& w) { w.set("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, {1, 1})); },
       "token_type has 2 entries for 258 tokens"},
      {"type value", [](GgufWriter& w) { w.set("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, std::vector<int64_t>(258, 9))); },
       "token_type[0] = 9"},
      {"merges missing", [](GgufWriter& w) { w.set("tokenizer.ggml.merges", GgufValue::string_array({"x y", "zz"})); },
       "merges[1] is not two tokens"},
      {"merge unknown", [](GgufWriter& w) { w.set("tokenizer.ggml.merges", GgufValue::string_array({"h q"})); },
       "names 'hq', which is not a token"},
      {"pre", [](GgufWriter& w) { w.set("tokenizer.ggml.pre", GgufValue::string("klingon")); }, "'klingon' is not supported"},
      {"bos range", [](GgufWriter& w) { w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(99999)); }, "bos_token_id = 99999 is outside"},
      {"add bos without bos", [](GgufWriter& w) { w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true)); }, "names none"},
      {"spm without scores", [](GgufWriter& w) { w.set("tokenizer.ggml.model", GgufValue::string("llama")); }, "needs token scores"},
      {"byte token spelling", [](GgufWriter& w) {
         std::vector<int64_t> types(258, 1);
         types[5] = 6;
         w.set("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, types));
       }, "marked as a byte token"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    testing::TempDir dir;
    GgufWriter w;
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.push_back(text_detail::byte_level_encode(std::string(1, static_cast<char>(b))));
    tokens.push_back("hi");
    tokens.push_back("<eos>");
    w.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
    w.set("tokenizer.ggml.merges", GgufValue::string_array({"h i"}));
    c.change(w);
    w.write(dir.file("v.gguf"));
    EXPECT_ERROR_CONTAINS(Tokenizer::from_gguf_file(dir.file("v.gguf")), c.message);
  }
  testing::TempDir dir;
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llada"));
  w.write(dir.file("none.gguf"));
  EXPECT_ERROR_CONTAINS(Tokenizer::from_gguf_file(dir.file("none.gguf")), "metadata has no tokenizer.ggml.model");
}

}  // namespace
}  // namespace ruvdllm
