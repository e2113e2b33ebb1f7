#pragma once
// One loaded model for `ruvdllm generate`: turns prompt text into the canvas (chat template,
// <mask:N> spans), runs the generator, and cuts the answer at its end-of-sequence token.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cli/denoiser_select.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/diffusion/generate.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/text/chat_template.h"
#include "ruvdllm/text/tokenizer.h"

namespace ruvdllm::cli {

// A finished generation, ready to print.
struct Answer {
  std::string prompt;              // as the user wrote it
  std::vector<int32_t> tokens;     // the answer (or, for infilling, the whole canvas) up to EOS
  std::string text;                // `tokens` decoded
  int64_t prompt_tokens = 0;
  int64_t filled = 0;              // masked positions the generation filled
  bool infill = false;             // the prompt held <mask:N> spans
  GenerationResult result;
};

class GenerateSession {
 public:
  // device: "cpu" or "cuda[:N]"; gpu: see GpuSettings.
  GenerateSession(const std::string& model_path, int threads, const std::string& device = "cpu",
                  const GpuSettings& gpu = {});

  const ModelConfig& config() const { return model_->config(); }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const ChatTemplate& chat_template() const { return chat_template_; }
  int32_t mask_id() const { return mask_id_; }
  int threads() const { return pool_.size(); }
  const std::string& model_path() const { return model_path_; }
  std::string device_description() const { return denoiser_->description(); }
  // The model file carries a chat template (an instruct model), so single prompts are wrapped
  // in it unless asked for raw text.
  bool is_instruct() const { return !model_->vocab().chat_template.empty(); }

  // Canvas prefix for one prompt: wrapped as a user turn when `templated`, with its <mask:N>
  // spans expanded. Error for an empty prompt.
  std::vector<int32_t> encode(std::string_view prompt, bool templated) const;
  // Canvas prefix for a conversation (ending in a user turn) with the assistant turn opened.
  std::vector<int32_t> encode_chat(std::span<const ChatMessage> messages) const;

  // Error naming the flag when the prompt plus gen_len does not fit the model's context, or
  // gen_len is 0 without masks to infill.
  void check_fits(int64_t prompt_tokens, int64_t gen_len, bool has_masks) const;

  Answer generate(std::string prompt_text, std::span<const int32_t> prompt,
                  const GenerationOptions& options, const StepCallback& on_step = {});

 private:
  // Index of the first token at or after `from` that ends the text (EOS, end of turn).
  size_t stop_position(std::span<const int32_t> tokens, size_t from) const;

  std::string model_path_;
  std::unique_ptr<Model> model_;
  Tokenizer tokenizer_;
  ChatTemplate chat_template_;
  int32_t mask_id_ = -1;
  std::vector<int32_t> stop_ids_;
  ThreadPool pool_;
  std::unique_ptr<Denoiser> denoiser_;
  std::unique_ptr<Generator> generator_;
};

}  // namespace ruvdllm::cli
