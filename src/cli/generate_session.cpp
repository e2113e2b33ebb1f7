#include "cli/generate_session.h"

#include <algorithm>
#include <filesystem>

#include "cli/denoiser_select.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/text/prompt.h"

namespace ruvdllm::cli {
namespace {

// Safetensors weights keep their tokenizer.json in the same directory.
std::string tokenizer_path(const std::string& model_path) {
  for (const std::string_view suffix : {".safetensors", ".safetensors.index.json"}) {
    if (model_path.ends_with(suffix)) {
      const std::string dir = std::filesystem::path(model_path).parent_path().string();
      return dir.empty() ? "." : dir;
    }
  }
  return model_path;
}

}  // namespace

GenerateSession::GenerateSession(const std::string& model_path, int threads,
                                 const std::string& device, const GpuSettings& gpu)
    : model_path_(model_path),
      model_(Model::load(model_path)),
      tokenizer_(Tokenizer::load(tokenizer_path(model_path))),
      chat_template_(ChatTemplate::for_model(model_->vocab().chat_template,
                                             arch_name(model_->config().arch), tokenizer_)),
      pool_(threads) {
  const ModelConfig& c = model_->config();
  if (c.mask_token_id >= 0) {
    mask_id_ = static_cast<int32_t>(c.mask_token_id);
  } else if (const auto id = tokenizer_.mask_id()) {
    mask_id_ = *id;
  } else {
    fail("{}: the model has no mask token, which diffusion generation needs", model_path);
  }
  if (mask_id_ >= tokenizer_.vocab_size()) {
    fail("{}: mask token {} is outside the tokenizer's {} tokens", model_path, mask_id_, tokenizer_.vocab_size());
  }
  if (c.eos_token_id >= 0) stop_ids_.push_back(static_cast<int32_t>(c.eos_token_id));
  if (const auto id = tokenizer_.eos_id()) stop_ids_.push_back(*id);
  // Instruct models end a turn with their template's marker (LLaDA: <|eot_id|>, then EOS fill).
  if (!chat_template_.end_of_turn().empty()) {
    if (const auto id = tokenizer_.find_token(chat_template_.end_of_turn())) stop_ids_.push_back(*id);
  }
  denoiser_ = make_denoiser(*model_, pool_, device, gpu);
  generator_ = std::make_unique<Generator>(*denoiser_);
}

std::vector<int32_t> GenerateSession::encode(std::string_view prompt, bool templated) const {
  if (prompt.empty()) fail("empty prompt: give some text to continue (or <mask:N> spans to fill)");
  if (!templated) return encode_prompt(tokenizer_, prompt, mask_id_, /*add_bos=*/true);
  const ChatMessage turn{"user", std::string(prompt)};
  return encode_chat(std::span<const ChatMessage>(&turn, 1));
}

std::vector<int32_t> GenerateSession::encode_chat(std::span<const ChatMessage> messages) const {
  const std::string text = chat_template_.render(messages, /*add_generation_prompt=*/true);
  return encode_prompt(tokenizer_, text, mask_id_, /*add_bos=*/!chat_template_.writes_bos());
}

void GenerateSession::check_fits(int64_t prompt_tokens, int64_t gen_len, bool has_masks) const {
  if (gen_len == 0 && !has_masks) {
    fail("--gen-len must be at least 1 (0 is only for prompts whose <mask:N> spans are filled)");
  }
  const int64_t context = model_->config().context_length;
  if (context <= 0) return;
  if (prompt_tokens >= context) {
    fail("prompt of {} tokens does not fit the model's context of {} tokens", prompt_tokens, context);
  }
  if (gen_len > context - prompt_tokens) {
    fail("--gen-len {} is too large: the prompt's {} tokens leave room for at most {} in the model's context of {}",
         gen_len, prompt_tokens, context - prompt_tokens, context);
  }
}

size_t GenerateSession::stop_position(std::span<const int32_t> tokens, size_t from) const {
  for (size_t i = from; i < tokens.size(); ++i) {
    if (std::find(stop_ids_.begin(), stop_ids_.end(), tokens[i]) != stop_ids_.end()) return i;
  }
  return tokens.size();
}

Answer GenerateSession::generate(std::string prompt_text, std::span<const int32_t> prompt,
                                 const GenerationOptions& options, const StepCallback& on_step) {
  Answer answer;
  answer.prompt = std::move(prompt_text);
  answer.prompt_tokens = static_cast<int64_t>(prompt.size());
  const auto prompt_masks = std::count(prompt.begin(), prompt.end(), mask_id_);
  answer.infill = prompt_masks > 0;
  answer.filled = prompt_masks + options.gen_len;
  GenerationOptions o = options;
  o.mask_id = mask_id_;
  answer.result = generator_->run(prompt, o, on_step);

  // An infilled prompt prints whole, its spans filled in; otherwise only the answer. Either
  // way the text ends at the first end-of-sequence token of the appended answer.
  const std::vector<int32_t>& canvas = answer.result.tokens;
  const size_t begin = answer.infill ? 0 : prompt.size();
  const size_t end = stop_position(canvas, prompt.size());
  answer.tokens.assign(canvas.begin() + static_cast<std::ptrdiff_t>(begin),
                       canvas.begin() + static_cast<std::ptrdiff_t>(end));
  answer.text = tokenizer_.decode(answer.tokens);
  return answer;
}

}  // namespace ruvdllm::cli
