// Chat templates: exact renderings of LLaDA-Instruct's and Dream-Instruct's layouts, template
// recognition from the Jinja text GGUF files carry, and the fallbacks by architecture and
// vocabulary.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ruvdllm/text/chat_template.h"
#include "ruvdllm/text/tokenizer.h"
#include "text/tokenizer_model.h"

namespace ruvdllm {
namespace {

using nlohmann::json;

// LLaDA-8B-Instruct's tokenizer.chat_template (the llama-3 one).
constexpr const char* kLLaDAJinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
    "endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

// The ChatML template with Qwen2's default system prompt, as Dream-v0-Instruct-7B ships it
// (its tool-calling branches left out: they render the same for plain chats).
constexpr const char* kDreamJinja =
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
    "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are a "
    "helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if "
    "(message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\") %}{{- '<|im_start|>' + message.role + '\\n' + "
    "message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if "
    "add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

// Plain ChatML without a default system prompt (e.g. OpenHermes).
constexpr const char* kBareChatMLJinja =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

// GPT-2's byte-to-character spelling of one byte, so every byte has a one-character token.
std::string byte_char(int byte) { return text_detail::byte_level_encode(std::string(1, static_cast<char>(byte))); }

// A byte-level vocabulary (every byte, one merge) plus the given special tokens.
Tokenizer tiny_tokenizer(const std::vector<std::string>& specials, const std::string& bos = {}) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab[byte_char(0) + byte_char(1)] = 256;
  json added = json::array();
  int id = 257;
  for (const std::string& s : specials) {
    added.push_back({{"id", id++}, {"content", s}, {"special", true}, {"lstrip", false}, {"rstrip", false},
                     {"single_word", false}, {"normalized", false}});
  }
  json root = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({byte_char(0) + " " + byte_char(1)})}}},
               {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
               {"decoder", {{"type", "ByteLevel"}}},
               {"added_tokens", added}};
  json config = json::object();
  if (!bos.empty()) config["bos_token"] = bos;
  return Tokenizer::from_tokenizer_json_text(root.dump(), "tiny.json", config.dump());
}

const std::vector<ChatMessage> kTwoTurns = {
    {"user", "  What is 2+2?\n"},
    {"assistant", "4"},
    {"user", "And 3+3?"},
};

TEST(ChatTemplate, RecognisesKnownJinjaTemplates) {
  EXPECT_EQ(ChatTemplate::recognize(kLLaDAJinja), ChatFormat::Llama3);
  EXPECT_EQ(ChatTemplate::recognize(kDreamJinja), ChatFormat::ChatML);
  EXPECT_EQ(ChatTemplate::recognize(kBareChatMLJinja), ChatFormat::ChatML);
  EXPECT_FALSE(ChatTemplate::recognize("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}"));
  EXPECT_FALSE(ChatTemplate::recognize(""));
  EXPECT_EQ(ChatTemplate::chatml_default_system(kDreamJinja), "You are a helpful assistant.");
  EXPECT_EQ(ChatTemplate::chatml_default_system(kBareChatMLJinja), "");
}

TEST(ChatTemplate, Llama3RendersLikeLLaDAInstruct) {
  const ChatTemplate t(ChatFormat::Llama3, "<|startoftext|>");
  const std::vector<ChatMessage> one = {{"user", "Hello there"}};
  EXPECT_EQ(t.render(one, true),
            "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t.render(one, false), "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>");
  // Content is trimmed, as the Jinja `| trim` does; BOS only before the first turn.
  EXPECT_EQ(t.render(kTwoTurns, true),
            "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const std::vector<ChatMessage> with_system = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(t.render(with_system, true),
            "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t.end_of_turn(), "<|eot_id|>");
  EXPECT_TRUE(t.writes_bos());
  EXPECT_FALSE(ChatTemplate(ChatFormat::Llama3).writes_bos());
}

TEST(ChatTemplate, ChatMLRendersLikeDreamInstruct) {
  const ChatTemplate t(ChatFormat::ChatML, {}, "You are a helpful assistant.");
  const std::vector<ChatMessage> one = {{"user", "Hello there"}};
  EXPECT_EQ(t.render(one, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHello there<|im_end|>\n"
            "<|im_start|>assistant\n");
  // Content is not trimmed; a chat's own system message replaces the default.
  EXPECT_EQ(t.render(kTwoTurns, false),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n"
            "<|im_start|>assistant\n4<|im_end|>\n"
            "<|im_start|>user\nAnd 3+3?<|im_end|>\n");
  const std::vector<ChatMessage> with_system = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(t.render(with_system, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(ChatTemplate(ChatFormat::ChatML).render(one, true),
            "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.end_of_turn(), "<|im_end|>");
  EXPECT_FALSE(t.writes_bos());
}

TEST(ChatTemplate, PlainForVocabulariesWithoutChatTokens) {
  const ChatTemplate t(ChatFormat::Plain);
  EXPECT_EQ(t.render(std::vector<ChatMessage>{{"user", "Hello there"}}, true), "User: Hello there\nAssistant: ");
  EXPECT_EQ(t.render(kTwoTurns, true), "User:   What is 2+2?\n\nAssistant: 4\nUser: And 3+3?\nAssistant: ");
  EXPECT_EQ(t.render({}, true), "Assistant: ");
  EXPECT_EQ(t.end_of_turn(), "");
  EXPECT_STREQ(t.name(), "plain");
}

TEST(ChatTemplate, ChoosesFromJinjaThenArchitectureThenPlain) {
  const Tokenizer llada = tiny_tokenizer(
      {"<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|mdm_mask|>"},
      "<|startoftext|>");
  const Tokenizer dream = tiny_tokenizer({"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"});
  const Tokenizer bare = tiny_tokenizer({"<|endoftext|>"});
  const std::vector<ChatMessage> one = {{"user", "Hi"}};

  // From the Jinja text, whatever the architecture says.
  ChatTemplate t = ChatTemplate::for_model(kLLaDAJinja, "dream", llada);
  EXPECT_EQ(t.format(), ChatFormat::Llama3);
  EXPECT_EQ(t.render(one, true),
            "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  t = ChatTemplate::for_model(kBareChatMLJinja, "llada", dream);
  EXPECT_EQ(t.render(one, true), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // No (or an unknown) template: the architecture's default.
  EXPECT_EQ(ChatTemplate::for_model("", "llada", llada).format(), ChatFormat::Llama3);
  EXPECT_EQ(ChatTemplate::for_model("{{ unknown }}", "llada-moe", llada).format(), ChatFormat::Llama3);
  t = ChatTemplate::for_model("", "dream", dream);
  EXPECT_EQ(t.render(one, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(ChatTemplate::for_model("", "llama", llada).format(), ChatFormat::Plain);
  // Markers the vocabulary lacks: plain text instead.
  EXPECT_EQ(ChatTemplate::for_model(kLLaDAJinja, "llada", bare).format(), ChatFormat::Plain);
  EXPECT_EQ(ChatTemplate::for_model("", "dream", llada).format(), ChatFormat::Plain);
  EXPECT_EQ(ChatTemplate::for_model("", "llada", dream).format(), ChatFormat::Plain);
}

TEST(ChatTemplate, RenderedMarkersEncodeAsSingleTokens) {
  const Tokenizer tok = tiny_tokenizer(
      {"<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}, "<|startoftext|>");
  const ChatTemplate t = ChatTemplate::for_model(kLLaDAJinja, "llada", tok);
  const std::string text = t.render(std::vector<ChatMessage>{{"user", "Hi"}}, true);
  const std::vector<int32_t> ids = tok.encode(text, false, true);
  const int32_t bos = *tok.find_token("<|startoftext|>"), start = *tok.find_token("<|start_header_id|>");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], bos);
  EXPECT_EQ(ids[1], start);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tok.find_token("<|eot_id|>")), 1);
  EXPECT_EQ(tok.decode(ids, true), text);
}

}  // namespace
}  // namespace ruvdllm
