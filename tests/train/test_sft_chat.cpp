// SFT from chat "messages" lines (the TRL / Axolotl format): the prompt is the chat template
// applied to every turn before the last assistant message, ending in the assistant header, as
// `generate --chat` builds it; the answer is that message's content, then EOS padding.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ruvdllm/core/error.h"
#include "ruvdllm/text/chat_template.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/objective.h"
#include "ruvdllm/train/sft_data.h"
#include "test_util.h"
#include "text/tokenizer_model.h"

namespace {

using namespace ruvdllm;
using namespace ruvdllm::train;
using nlohmann::json;
using ruvdllm::testing::TempDir;
using ruvdllm::testing::write_file;

const Tokenizer& default_tokenizer() {
  static const Tokenizer tok = Tokenizer::load(std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf");
  return tok;
}

// A byte-level vocabulary (every byte, one merge) plus special tokens; the first is BOS and EOS,
// added before every encoding when add_bos.
Tokenizer tiny_tokenizer(const std::vector<std::string>& specials, bool add_bos) {
  json vocab = json::object();
  auto byte_char = [](int b) { return text_detail::byte_level_encode(std::string(1, static_cast<char>(b))); };
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab[byte_char(0) + byte_char(1)] = 256;
  json added = json::array();
  int id = 257;
  for (const std::string& s : specials) {
    added.push_back({{"id", id++}, {"content", s}, {"special", true}, {"lstrip", false}, {"rstrip", false},
                     {"single_word", false}, {"normalized", false}});
  }
  const json root = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({byte_char(0) + " " + byte_char(1)})}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", added}};
  const json config = {{"bos_token", specials.front()}, {"eos_token", specials.front()}, {"add_bos_token", add_bos}};
  return Tokenizer::from_tokenizer_json_text(root.dump(), "tiny.json", config.dump());
}

const Tokenizer& llama3_tokenizer() {
  static const Tokenizer tok =
      tiny_tokenizer({"<|startoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}, true);
  return tok;
}
const Tokenizer& chatml_tokenizer() {
  static const Tokenizer tok = tiny_tokenizer({"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, true);
  return tok;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

json turn(const std::string& role, const std::string& content) { return {{"role", role}, {"content", content}}; }
std::string chat_line(const json& messages) { return json{{"messages", messages}}.dump() + "\n"; }

const json kConversation = json::array({turn("system", "Be brief."), turn("user", "Two plus two?"),
                                        turn("assistant", "Four."), turn("user", "And three plus three?"),
                                        turn("assistant", "Six.")});

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The default model's vocabulary has no chat markers, so its template is Plain; the exact text
// pins the layout down independently of ChatTemplate.
TEST(SftChat, DefaultVocabularyLaysOutPlainTurns) {
  const Tokenizer& tok = default_tokenizer();
  EXPECT_EQ(chat_template_from_vocabulary(tok).format(), ChatFormat::Plain);
  TempDir dir;
  write_file(dir.file("chat.jsonl"), chat_line(kConversation));
  const int32_t eos = *tok.eos_id();
  const SftDataset data = load_sft_jsonl(dir.file("chat.jsonl"), "chat", tok, eos, 64);
  ASSERT_EQ(data.examples.size(), 1u);
  const std::vector<int32_t> prompt = tok.encode(
      "System: Be brief.\nUser: Two plus two?\nAssistant: Four.\nUser: And three plus three?\nAssistant: ", false);
  std::vector<int32_t> expected = concat(prompt, tok.encode("Six.", false));
  expected.resize(64, eos);
  EXPECT_EQ(data.examples[0].prompt_len, static_cast<int32_t>(prompt.size()));
  EXPECT_EQ(data.examples[0].tokens, expected);
}

// Llama3 writes BOS itself: exactly one BOS although the vocabulary also asks for one, and the
// markers become single tokens.
TEST(SftChat, Llama3PromptEndsInTheAssistantHeader) {
  const Tokenizer& tok = llama3_tokenizer();
  const ChatTemplate chat = chat_template_from_vocabulary(tok);
  ASSERT_EQ(chat.format(), ChatFormat::Llama3);
  TempDir dir;
  write_file(dir.file("chat.jsonl"), chat_line(kConversation));
  const int32_t eos = *tok.eos_id();
  const SftDataset data = load_sft_jsonl(dir.file("chat.jsonl"), "chat", tok, eos, 256);
  ASSERT_EQ(data.examples.size(), 1u);
  const std::string prompt_text =
      "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nTwo plus two?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\nFour.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nAnd three plus three?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  const std::vector<int32_t> prompt = tok.encode(prompt_text, false);
  std::vector<int32_t> expected = concat(prompt, tok.encode("Six.", false));
  expected.resize(256, eos);
  const SftExample& e = data.examples[0];
  EXPECT_EQ(e.prompt_len, static_cast<int32_t>(prompt.size()));
  EXPECT_EQ(e.tokens, expected);
  EXPECT_EQ(e.tokens[0], *tok.bos_id());
  EXPECT_NE(e.tokens[1], *tok.bos_id());
  EXPECT_EQ(e.tokens[static_cast<size_t>(e.prompt_len) - 1], 10);  // the header's last "\n"
}

// ChatML does not write BOS, so the vocabulary's BOS comes first, as in `generate --chat`; the
// template's default system prompt appears when the chat brings none.
TEST(SftChat, ChatMLAddsBosAndDefaultSystemPrompt) {
  const Tokenizer& tok = chatml_tokenizer();
  const ChatTemplate chat = chat_template_from_vocabulary(tok);
  ASSERT_EQ(chat.format(), ChatFormat::ChatML);
  TempDir dir;
  write_file(dir.file("chat.jsonl"), chat_line(json::array({turn("user", "Hi"), turn("assistant", "Hello!")})));
  const int32_t eos = *tok.eos_id();
  const SftDataset data = load_sft_jsonl(dir.file("chat.jsonl"), "chat", tok, eos, 128, chat);
  ASSERT_EQ(data.examples.size(), 1u);
  const std::vector<int32_t> prompt =
      concat({*tok.bos_id()}, tok.encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                         "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                                         false));
  std::vector<int32_t> expected = concat(prompt, tok.encode("Hello!", false));
  expected.resize(128, eos);
  EXPECT_EQ(data.examples[0].prompt_len, static_cast<int32_t>(prompt.size()));
  EXPECT_EQ(data.examples[0].tokens, expected);

  // The caller's template wins over the vocabulary's: Plain text with the same tokenizer.
  const SftDataset plain = load_sft_jsonl(dir.file("chat.jsonl"), "chat", tok, eos, 128, ChatTemplate(ChatFormat::Plain));
  const std::vector<int32_t> plain_prompt = concat({*tok.bos_id()}, tok.encode("User: Hi\nAssistant: ", false));
  EXPECT_EQ(plain.examples[0].prompt_len, static_cast<int32_t>(plain_prompt.size()));
  EXPECT_TRUE(std::equal(plain_prompt.begin(), plain_prompt.end(), plain.examples[0].tokens.begin()));
}

// A chat of only the answer still starts with the BOS the template would write.
TEST(SftChat, AnswerOnlyChatKeepsBos) {
  const Tokenizer& tok = llama3_tokenizer();
  TempDir dir;
  write_file(dir.file("chat.jsonl"), chat_line(json::array({turn("assistant", "Hi.")})));
  const SftDataset data = load_sft_jsonl(dir.file("chat.jsonl"), "chat", tok, *tok.eos_id(), 64);
  const std::vector<int32_t> prompt =
      concat({*tok.bos_id()}, tok.encode("<|start_header_id|>assistant<|end_header_id|>\n\n", false));
  EXPECT_EQ(data.examples[0].prompt_len, static_cast<int32_t>(prompt.size()));
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), data.examples[0].tokens.begin()));
}

// Formats are detected line by line; prompt/response lines keep their old layout (no BOS, no
// template) in a file that also holds chats.
TEST(SftChat, MixesWithPromptResponseLines) {
  const Tokenizer& tok = default_tokenizer();
  const int32_t eos = *tok.eos_id();
  TempDir dir;
  write_file(dir.file("mixed.jsonl"), "{\"prompt\": \"Name a colour.\", \"response\": \"Blue\"}\n" +
                                          chat_line(json::array({turn("user", "Name a colour."), turn("assistant", "Blue")})));
  const SftDataset data = load_sft_jsonl(dir.file("mixed.jsonl"), "mixed", tok, eos, 32);
  ASSERT_EQ(data.examples.size(), 2u);
  std::vector<int32_t> plain = concat(tok.encode("Name a colour.", false), tok.encode("Blue", false));
  plain.resize(32, eos);
  EXPECT_EQ(data.examples[0].tokens, plain);
  const std::vector<int32_t> chat_prompt = tok.encode("User: Name a colour.\nAssistant: ", false);
  EXPECT_EQ(data.examples[1].prompt_len, static_cast<int32_t>(chat_prompt.size()));
  EXPECT_TRUE(std::equal(chat_prompt.begin(), chat_prompt.end(), data.examples[1].tokens.begin()));
}

TEST(SftChat, LongChatsAreTruncatedOrSkippedLikeOtherExamples) {
  const Tokenizer& tok = default_tokenizer();
  TempDir dir;
  const std::string long_text(300, 'x');
  write_file(dir.file("long.jsonl"),
             chat_line(json::array({turn("user", "short"), turn("assistant", long_text + " a b c d e f g h")})) +
                 chat_line(json::array({turn("user", long_text + " a b c d e f g h"), turn("assistant", "r")})) +
                 chat_line(json::array({turn("user", "ok"), turn("assistant", "fine")})));
  const SftDataset data = load_sft_jsonl(dir.file("long.jsonl"), "long", tok, *tok.eos_id(), 16);
  EXPECT_EQ(data.examples.size(), 2u);
  EXPECT_EQ(data.truncated, 1);
  EXPECT_EQ(data.skipped, 1);
}

TEST(SftChat, MalformedChatsNameFileAndLine) {
  TempDir dir;
  const std::string path = dir.file("bad.jsonl");
  const std::string good = chat_line(json::array({turn("user", "q"), turn("assistant", "a")}));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good + "{\"messages\": []}\n", ":2: \"messages\" is empty"},
      {good + good + "{\"messages\": \"hi\"}\n", ":3: \"messages\" must be an array"},
      {chat_line(json::array({turn("user", "q")})), ":1: the last message is from the user, not the assistant"},
      {chat_line(json::array({turn("assistant", "a"), turn("system", "s")})), ":1: the last message is from the system"},
      {chat_line(json::array({turn("tool", "{}"), turn("assistant", "a")})), ":1: messages[0]: unknown role 'tool'"},
      {chat_line(json::array({turn("user", "q"), {{"role", "assistant"}, {"content", nullptr}}})),
       ":1: messages[1]: \"content\" must be a string, not null"},
      {chat_line(json::array({{{"role", "user"}, {"content", json::array({"q"})}}, turn("assistant", "a")})),
       ":1: messages[0]: \"content\" must be a string, not array"},
      {chat_line(json::array({{{"content", "q"}}, turn("assistant", "a")})), ":1: messages[0] has no \"role\""},
      {chat_line(json::array({{{"role", 1}, {"content", "q"}}, turn("assistant", "a")})),
       ":1: messages[0]: \"role\" must be a string"},
      {chat_line(json::array({turn("user", "q"), {{"role", "assistant"}}})), ":1: messages[1] has no \"content\""},
      {chat_line(json::array({"q", turn("assistant", "a")})), ":1: messages[0] must be an object"},
      {"{\"conversation\": []}\n", ":1: missing \"prompt\""},
  };
  for (const auto& [text, message] : cases) {
    write_file(path, text);
    const std::string error =
        error_of([&] { load_sft_jsonl(path, "chat", default_tokenizer(), *default_tokenizer().eos_id(), 32); });
    EXPECT_NE(error.find(path + message), std::string::npos) << "wanted '" << message << "', got: " << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
}

// The trainer's path on chat data: the whole templated prompt (earlier assistant turns
// included) comes through unmasked with zero weight; the answer's own tokens get masked and scored.
TEST(SftChat, PromptIsNeverMaskedAnswerIsScored) {
  const Tokenizer& tok = default_tokenizer();
  const int32_t eos = *tok.eos_id();
  const int64_t L = 48;
  TempDir dir;
  std::string lines;
  for (int i = 0; i < 24; ++i) {
    json messages = json::array();
    if (i % 2 == 0) messages.push_back(turn("system", "Count."));
    messages.push_back(turn("user", "after " + std::to_string(i) + "?"));
    if (i % 3 == 0) {
      messages.push_back(turn("assistant", std::to_string(i)));
      messages.push_back(turn("user", "and next?"));
    }
    messages.push_back(turn("assistant", std::to_string(i + 1) + " then " + std::to_string(i + 2)));
    lines += chat_line(messages);
  }
  write_file(dir.file("count.jsonl"), lines);
  SftDataset data = load_sft_jsonl(dir.file("count.jsonl"), "count", tok, eos, L);
  ASSERT_EQ(data.examples.size(), 24u);
  ASSERT_EQ(data.truncated + data.skipped, 0);
  const SftSampler sampler({{std::move(data), 1.0}}, L, 5);
  ObjectiveOptions objective;
  objective.mask_id = *tok.mask_id();
  objective.seed = 5;
  const int64_t B = 8;
  int64_t answer_text_masked = 0;
  for (int64_t step = 0; step < 16; ++step) {
    CleanBatch clean;
    clean.n_seq = B;
    clean.seq_len = L;
    clean.tokens.resize(static_cast<size_t>(B * L));
    clean.prompt_len.assign(static_cast<size_t>(B), 0);
    for (int64_t s = 0; s < B; ++s) sampler.fill(step, s, clean, s);
    const DiffusionBatch noised = make_diffusion_batch(clean, objective, step, 0, B);
    int64_t answer = 0;
    for (int64_t s = 0; s < B; ++s) {
      const int32_t prompt = clean.prompt_len[static_cast<size_t>(s)];
      ASSERT_GT(prompt, 5);
      answer += L - prompt;
      for (int64_t i = 0; i < L; ++i) {
        const size_t p = static_cast<size_t>(s * L + i);
        if (i < prompt) {
          ASSERT_EQ(noised.batch.inputs[p], clean.tokens[p]) << "step " << step << " seq " << s << " pos " << i;
          ASSERT_EQ(noised.batch.weights[p], 0.0f);
        } else if (noised.batch.inputs[p] == objective.mask_id) {
          EXPECT_GT(noised.batch.weights[p], 0.0f);
          answer_text_masked += clean.tokens[p] != eos;
        }
      }
    }
    EXPECT_EQ(noised.n_scored, answer);
  }
  EXPECT_GT(answer_text_masked, 0);
}

}  // namespace
