#pragma once
// Chat templates: how an instruct model expects a conversation laid out as text. Models ship
// a Jinja template (GGUF tokenizer.chat_template); rather than run Jinja, the known layouts are
// recognised by their marker strings and rendered here:
//   Llama3  LLaDA-8B-Instruct (llama-3 style): BOS before the first turn, then per message
//           "<|start_header_id|>ROLE<|end_header_id|>\n\n" + trimmed content + "<|eot_id|>"
//   ChatML  Dream-v0-Instruct-7B and Qwen2: "<|im_start|>ROLE\n" + content + "<|im_end|>\n",
//           with the template's default system prompt when the chat does not start with one
//   Plain   vocabularies without chat tokens: "User: ...\nAssistant: ..."
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ruvdllm {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFormat { Llama3, ChatML, Plain };

class ChatTemplate {
 public:
  // bos_text: what Llama3 writes before the first turn (the vocabulary's BOS token text, e.g.
  // "<|startoftext|>"; empty for none). default_system: ChatML's system prompt for chats that
  // do not open with one (empty for none). Both are ignored by the formats that do not use them.
  explicit ChatTemplate(ChatFormat format, std::string bos_text = {},
                        std::string default_system = {});

  // The format a Jinja template writes, by its markers; nullopt for an unknown template.
  static std::optional<ChatFormat> recognize(std::string_view jinja);
  // The literal default system prompt of a ChatML Jinja template ("You are a helpful
  // assistant."), or empty when it has none.
  static std::string chatml_default_system(std::string_view jinja);

  // The template for a model: its Jinja template when recognised, else the architecture's
  // (GGUF general.architecture: llada/llada-moe -> Llama3, dream/qwen2 -> ChatML), else Plain.
  // A format whose marker tokens the vocabulary lacks falls back to Plain, since writing the
  // markers as ordinary text would mean nothing to the model.
  static ChatTemplate for_model(std::string_view jinja, std::string_view architecture,
                                const Tokenizer& tokenizer);

  // The conversation as text; with add_generation_prompt, followed by the opening of an
  // assistant turn for the model to complete.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  ChatFormat format() const { return format_; }
  const char* name() const;  // "llama3", "chatml", "plain"
  // Text that closes an assistant turn ("<|eot_id|>", "<|im_end|>"); empty for Plain.
  std::string_view end_of_turn() const;
  // Whether render() writes BOS itself (then the caller must not add another).
  bool writes_bos() const { return format_ == ChatFormat::Llama3 && !bos_text_.empty(); }

 private:
  ChatFormat format_;
  std::string bos_text_;
  std::string default_system_;
};

}  // namespace ruvdllm
