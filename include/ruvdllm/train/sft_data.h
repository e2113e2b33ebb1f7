#pragma once
// Supervised fine-tuning data: JSONL files, one example a line, in either of two formats
// (detected line by line):
//   {"prompt": "...", "response": "..."}      the text as given, no BOS
//   {"messages": [{"role": ..., "content": ...}, ...]}   the chat format TRL and Axolotl use: the
//       prompt is the chat template applied to every message before the last (assistant) one,
//       ending in the assistant header, exactly as `generate --chat` builds it (BOS included);
//       the response is the last assistant message's content
// Each example becomes prompt tokens, response tokens, then EOS, padded to seq_len with
// EOS as LLaDA's SFT does: the padding is part of the answer (the model learns where the answer
// ends), so it can be masked and scored; only the prompt is held clean and carries no loss.
//
// Over-long examples lose tokens from the response end; examples whose prompt alone fills
// seq_len are skipped. Both are counted so the run can report them.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/text/chat_template.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/eval.h"
#include "ruvdllm/train/objective.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::train {

struct SftExample {
  std::vector<int32_t> tokens;  // exactly seq_len: prompt, response, EOS, EOS padding
  int32_t prompt_len = 0;
};

struct SftDataset {
  std::string name;
  std::string path;
  std::vector<SftExample> examples;
  int64_t truncated = 0;  // response cut to fit seq_len
  int64_t skipped = 0;    // prompt alone filled seq_len
};

// Tokenizes prompt and response (without the tokenizer's own BOS/EOS) into one example.
// Returns false (and leaves `out` alone) when the prompt leaves no room for an answer token;
// sets *truncated when the response was cut.
bool make_sft_example(const std::vector<int32_t>& prompt, const std::vector<int32_t>& response, int32_t eos_id,
                      int64_t seq_len, SftExample& out, bool* truncated);

// Reads a JSONL file; `chat` lays out "messages" lines. Blank lines are ignored. Error naming
// FILE:LINE for a line that is not a JSON object with string "prompt" and "response" or a
// "messages" array of {"role": "system"|"user"|"assistant", "content": string} ending with an
// assistant message; Error when the file has no usable example.
SftDataset load_sft_jsonl(const std::string& path, const std::string& name, const Tokenizer& tokenizer,
                          int32_t eos_id, int64_t seq_len, const ChatTemplate& chat);
// As above with chat_template_from_vocabulary(tokenizer), for callers that know no model.
SftDataset load_sft_jsonl(const std::string& path, const std::string& name, const Tokenizer& tokenizer,
                          int32_t eos_id, int64_t seq_len);

// The template `generate --chat` picks for a LLaDA or Dream model without a Jinja template of
// its own: the format whose marker tokens the vocabulary holds (Llama3, then ChatML), else Plain.
ChatTemplate chat_template_from_vocabulary(const Tokenizer& tokenizer);

struct SftDomain {
  SftDataset data;
  double weight = 1.0;
};

// Draws examples for training: domain by mixture weight, then an example uniformly, each a
// pure function of (seed, step, sequence index), as DataSampler does for pre-training.
class SftSampler {
 public:
  SftSampler(std::vector<SftDomain> domains, int64_t seq_len, uint64_t seed);
  const std::vector<SftDomain>& domains() const { return domains_; }
  const SftExample& pick(int64_t step, int64_t index) const;
  // Fills sequence `slot` of `clean` (tokens and prompt_len; prompt_len must be sized n_seq).
  void fill(int64_t step, int64_t index, CleanBatch& clean, int64_t slot) const;

 private:
  std::vector<SftDomain> domains_;
  std::vector<double> cumulative_;
  int64_t seq_len_;
  uint64_t seed_;
};

// Held-out NELBO on the answer part only (response, EOS and padding), per dataset: every
// example (up to options.windows) under options.samples stratified draws of t, normalised by
// the number of answer tokens.
std::vector<DomainNelbo> evaluate_sft_nelbo(TrainModel& model, const std::vector<SftDataset>& datasets,
                                            const EvalOptions& options, ThreadPool& pool);

}  // namespace ruvdllm::train
