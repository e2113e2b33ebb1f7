// Chat templates (see chat_template.h).
#include "ruvdllm/text/chat_template.h"

#include <initializer_list>
#include <utility>

#include "ruvdllm/text/tokenizer.h"

namespace ruvdllm {
namespace {

constexpr std::string_view kHeaderStart = "<|start_header_id|>";
constexpr std::string_view kHeaderEnd = "<|end_header_id|>";
constexpr std::string_view kEotId = "<|eot_id|>";
constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";
// Dream-v0-Instruct-7B's (and Qwen2's) system prompt for chats that bring none.
constexpr std::string_view kChatMLSystem = "You are a helpful assistant.";

// Jinja's `trim` (Python's str.strip() on ASCII whitespace).
std::string_view trim(std::string_view s) {
  constexpr std::string_view space = " \t\n\r\f\v";
  const size_t begin = s.find_first_not_of(space);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(space) + 1 - begin);
}

std::string capitalized(std::string_view role) {
  std::string out(role);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

std::optional<ChatFormat> architecture_default(std::string_view architecture) {
  if (architecture == "llada" || architecture == "llada-moe") return ChatFormat::Llama3;
  if (architecture == "dream" || architecture == "qwen2") return ChatFormat::ChatML;
  return std::nullopt;
}

bool vocabulary_has(const Tokenizer& tokenizer, std::initializer_list<std::string_view> markers) {
  for (std::string_view marker : markers) {
    if (!tokenizer.find_token(marker)) return false;
  }
  return true;
}

}  // namespace

ChatTemplate::ChatTemplate(ChatFormat format, std::string bos_text, std::string default_system)
    : format_(format), bos_text_(std::move(bos_text)), default_system_(std::move(default_system)) {}

std::optional<ChatFormat> ChatTemplate::recognize(std::string_view jinja) {
  if (jinja.find(kHeaderStart) != std::string_view::npos &&
      jinja.find(kEotId) != std::string_view::npos) {
    return ChatFormat::Llama3;
  }
  if (jinja.find(kImStart) != std::string_view::npos &&
      jinja.find(kImEnd) != std::string_view::npos) {
    return ChatFormat::ChatML;
  }
  return std::nullopt;
}

std::string ChatTemplate::chatml_default_system(std::string_view jinja) {
  // In the Jinja source the newline is the two characters '\' 'n' inside a quoted string.
  constexpr std::string_view opener = "<|im_start|>system\\n";
  for (size_t at = jinja.find(opener); at != std::string_view::npos;
       at = jinja.find(opener, at + 1)) {
    const size_t begin = at + opener.size();
    const size_t end = jinja.find(kImEnd, begin);
    if (end == std::string_view::npos) break;
    const std::string_view text = jinja.substr(begin, end - begin);
    // The branch that copies the chat's own system message is an expression, not a literal.
    if (!text.empty() && text.find_first_of("'\"{}+") == std::string_view::npos) {
      return std::string(text);
    }
  }
  return {};
}

ChatTemplate ChatTemplate::for_model(std::string_view jinja, std::string_view architecture,
                                     const Tokenizer& tokenizer) {
  std::optional<ChatFormat> format = recognize(jinja);
  const bool from_jinja = format.has_value();
  if (!format) format = architecture_default(architecture);
  if (format == ChatFormat::Llama3 && vocabulary_has(tokenizer, {kHeaderStart, kHeaderEnd, kEotId})) {
    std::string bos;
    if (const auto id = tokenizer.bos_id()) bos = tokenizer.token_text(*id);
    return ChatTemplate(ChatFormat::Llama3, std::move(bos));
  }
  if (format == ChatFormat::ChatML && vocabulary_has(tokenizer, {kImStart, kImEnd})) {
    std::string system = from_jinja ? chatml_default_system(jinja) : std::string(kChatMLSystem);
    return ChatTemplate(ChatFormat::ChatML, {}, std::move(system));
  }
  return ChatTemplate(ChatFormat::Plain);
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) const {
  std::string out;
  switch (format_) {
    case ChatFormat::Llama3:
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0) out += bos_text_;
        out.append(kHeaderStart).append(messages[i].role).append(kHeaderEnd).append("\n\n");
        out.append(trim(messages[i].content)).append(kEotId);
      }
      if (add_generation_prompt) out.append(kHeaderStart).append("assistant").append(kHeaderEnd).append("\n\n");
      break;
    case ChatFormat::ChatML:
      if (!default_system_.empty() && (messages.empty() || messages.front().role != "system")) {
        out.append(kImStart).append("system\n").append(default_system_).append(kImEnd).append("\n");
      }
      for (const ChatMessage& m : messages) {
        out.append(kImStart).append(m.role).append("\n").append(m.content).append(kImEnd).append("\n");
      }
      if (add_generation_prompt) out.append(kImStart).append("assistant\n");
      break;
    case ChatFormat::Plain:
      for (const ChatMessage& m : messages) {
        out.append(capitalized(m.role)).append(": ").append(m.content).append("\n");
      }
      if (add_generation_prompt) out.append("Assistant: ");
      break;
  }
  return out;
}

const char* ChatTemplate::name() const {
  switch (format_) {
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Plain: return "plain";
  }
  return "plain";
}

std::string_view ChatTemplate::end_of_turn() const {
  switch (format_) {
    case ChatFormat::Llama3: return kEotId;
    case ChatFormat::ChatML: return kImEnd;
    case ChatFormat::Plain: return {};
  }
  return {};
}

}  // namespace ruvdllm
