// "<mask:N>" spans in prompts: splitting, malformed spans, and encoding around them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/text/prompt.h"
#include "ruvdllm/text/tokenizer.h"
#include "text/tokenizer_model.h"

namespace ruvdllm {
namespace {

using nlohmann::json;

// GPT-2's byte-to-character spelling of one byte, so every byte has a one-character token.
std::string byte_char(int byte) { return text_detail::byte_level_encode(std::string(1, static_cast<char>(byte))); }

// Bytes, the merge "a b" -> "ab" (id 256), BOS 257 (added at the start), mask 258.
Tokenizer tiny_tokenizer(bool add_bos) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab["ab"] = 256;
  json added = json::array();
  int id = 257;
  for (const char* s : {"<|startoftext|>", "<|mdm_mask|>"}) {
    added.push_back({{"id", id++}, {"content", s}, {"special", true}, {"lstrip", false}, {"rstrip", false},
                     {"single_word", false}, {"normalized", false}});
  }
  json root = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b"})}}},
               {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
               {"decoder", {{"type", "ByteLevel"}}},
               {"added_tokens", added}};
  json config = {{"bos_token", "<|startoftext|>"}, {"mask_token", "<|mdm_mask|>"}, {"add_bos_token", add_bos}};
  return Tokenizer::from_tokenizer_json_text(root.dump(), "tiny.json", config.dump());
}

void expect_error(std::string_view prompt, const std::string& part) {
  try {
    split_mask_spans(prompt);
    ADD_FAILURE() << "no Error for " << prompt;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(Prompt, SplitsAtMaskSpans) {
  auto pieces = split_mask_spans("def f(x):\n    <mask:16>\n    return y<mask:3>");
  ASSERT_EQ(pieces.size(), 4u);
  EXPECT_EQ(pieces[0].text, "def f(x):\n    ");
  EXPECT_EQ(pieces[0].masks, 0);
  EXPECT_EQ(pieces[1].masks, 16);
  EXPECT_TRUE(pieces[1].text.empty());
  EXPECT_EQ(pieces[2].text, "\n    return y");
  EXPECT_EQ(pieces[3].masks, 3);

  pieces = split_mask_spans("<mask:2><mask:5>");
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].masks, 2);
  EXPECT_EQ(pieces[1].masks, 5);

  pieces = split_mask_spans("no spans < here <mask> <mas:3>");
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].text, "no spans < here <mask> <mas:3>");
  EXPECT_TRUE(split_mask_spans("").empty());
  EXPECT_FALSE(has_mask_spans("plain <mask> text"));
  EXPECT_TRUE(has_mask_spans("a<mask:1>"));
}

TEST(Prompt, MalformedSpansNameTheirOffset) {
  expect_error("abc<mask:>", "byte 3");
  expect_error("<mask:x>", "<mask:N>");
  expect_error("<mask:12", "byte 0");
  expect_error("ok <mask:0> no", "<mask:0>");
  expect_error("<mask:99999999999999999999>", "more than");
  expect_error("<mask:-3>", "byte 0");
}

TEST(Prompt, EncodesTextAroundMasks) {
  const Tokenizer tok = tiny_tokenizer(true);
  const int32_t mask = *tok.mask_id(), bos = *tok.bos_id();
  const std::vector<int32_t> ids = encode_prompt(tok, "ab<mask:3>c", mask, true);
  EXPECT_EQ(ids, (std::vector<int32_t>{bos, 256, mask, mask, mask, 'c'}));
  EXPECT_EQ(encode_prompt(tok, "ab<mask:3>c", mask, false), (std::vector<int32_t>{256, mask, mask, mask, 'c'}));
  // Control-token text in the prompt becomes its id; no EOS is ever appended.
  EXPECT_EQ(encode_prompt(tok, "<|mdm_mask|>x", mask, false), (std::vector<int32_t>{mask, 'x'}));
  EXPECT_EQ(encode_prompt(tok, "<mask:2>", mask, false), (std::vector<int32_t>{mask, mask}));
  // Plain prompts encode as the tokenizer does.
  EXPECT_EQ(encode_prompt(tok, "hello ab", mask, false), tok.encode("hello ab", false, true));
  // A vocabulary that adds no BOS gets none.
  const Tokenizer no_bos = tiny_tokenizer(false);
  EXPECT_EQ(encode_prompt(no_bos, "c", mask, true), (std::vector<int32_t>{'c'}));
  EXPECT_THROW(encode_prompt(tok, "c", 100000, true), Error);
}

}  // namespace
}  // namespace ruvdllm
