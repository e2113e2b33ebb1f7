#include "ruvdllm/train/sft_data.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numbers>
#include <utility>

#include <nlohmann/json.hpp>

#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/rng.h"

namespace ruvdllm::train {
namespace {

constexpr auto kSftDomainStream = static_cast<RandomStream>(0x7451);
constexpr auto kSftExampleStream = static_cast<RandomStream>(0x7452);

std::string string_field(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) {
    fail("{}: missing \"{}\" (each line is {{\"prompt\": ..., \"response\": ...}} or {{\"messages\": [...]}})",
         where, key);
  }
  if (!it->is_string()) fail("{}: \"{}\" must be a string", where, key);
  return it->get<std::string>();
}

struct ExampleTokens {
  std::vector<int32_t> prompt;
  std::vector<int32_t> response;
};

std::vector<int32_t> encode_text(const Tokenizer& tokenizer, const std::string& text, const std::string& where) {
  try {
    return tokenizer.encode(text, /*add_special=*/false);
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
}

ExampleTokens prompt_response_tokens(const nlohmann::json& line, const Tokenizer& tokenizer,
                                     const std::string& where) {
  const std::string prompt = string_field(line, "prompt", where);
  const std::string response = string_field(line, "response", where);
  return {encode_text(tokenizer, prompt, where), encode_text(tokenizer, response, where)};
}

ChatMessage chat_message(const nlohmann::json& m, size_t index, const std::string& where) {
  if (!m.is_object()) fail("{}: messages[{}] must be an object {{\"role\": ..., \"content\": ...}}", where, index);
  const auto role = m.find("role");
  if (role == m.end()) fail("{}: messages[{}] has no \"role\"", where, index);
  if (!role->is_string()) fail("{}: messages[{}]: \"role\" must be a string", where, index);
  const std::string role_name = role->get<std::string>();
  if (role_name != "system" && role_name != "user" && role_name != "assistant") {
    fail("{}: messages[{}]: unknown role '{}' (expected system, user or assistant)", where, index, role_name);
  }
  const auto content = m.find("content");
  if (content == m.end()) fail("{}: messages[{}] has no \"content\"", where, index);
  if (!content->is_string()) {
    fail("{}: messages[{}]: \"content\" must be a string, not {}", where, index, content->type_name());
  }
  return {role_name, content->get<std::string>()};
}

// The prompt is what `generate --chat` would feed the model for this conversation minus its
// answer, so the fine-tuned model sees at inference exactly the layout it was trained on.
ExampleTokens chat_tokens(const nlohmann::json& messages, const Tokenizer& tokenizer, const ChatTemplate& chat,
                          const std::string& where) {
  if (!messages.is_array()) fail("{}: \"messages\" must be an array of {{\"role\": ..., \"content\": ...}}", where);
  if (messages.empty()) fail("{}: \"messages\" is empty; it needs an assistant message to learn", where);
  std::vector<ChatMessage> turns;
  for (size_t i = 0; i < messages.size(); ++i) turns.push_back(chat_message(messages[i], i, where));
  if (turns.back().role != "assistant") {
    fail("{}: the last message is from the {}, not the assistant (its content is the answer to learn)", where,
         turns.back().role);
  }
  const std::string prompt_text =
      chat.render(std::span<const ChatMessage>(turns.data(), turns.size() - 1), /*add_generation_prompt=*/true);
  ExampleTokens out;
  // A template that writes BOS does so before the first turn, so a chat holding only its answer
  // gets BOS here like the others.
  const bool template_wrote_bos = chat.writes_bos() && turns.size() > 1;
  const bool wants_bos = chat.writes_bos() || tokenizer.adds_bos();
  if (wants_bos && !template_wrote_bos && tokenizer.bos_id()) out.prompt.push_back(*tokenizer.bos_id());
  const std::vector<int32_t> prompt = encode_text(tokenizer, prompt_text, where);
  out.prompt.insert(out.prompt.end(), prompt.begin(), prompt.end());
  out.response = encode_text(tokenizer, turns.back().content, where);
  return out;
}

}  // namespace

ChatTemplate chat_template_from_vocabulary(const Tokenizer& tokenizer) {
  // for_model falls back to Plain when the vocabulary lacks the architecture's markers.
  ChatTemplate llama3 = ChatTemplate::for_model({}, "llada", tokenizer);
  if (llama3.format() != ChatFormat::Plain) return llama3;
  return ChatTemplate::for_model({}, "dream", tokenizer);
}

bool make_sft_example(const std::vector<int32_t>& prompt, const std::vector<int32_t>& response, int32_t eos_id,
                      int64_t seq_len, SftExample& out, bool* truncated) {
  const auto L = static_cast<size_t>(seq_len);
  if (prompt.size() >= L) return false;
  const size_t room = L - prompt.size();
  // The closing EOS is part of the answer, so a response that leaves no room for it counts as
  // truncated even when its own tokens all fit.
  const bool cut = response.size() + 1 > room;
  const size_t keep = std::min(response.size(), room);
  out.tokens.assign(prompt.begin(), prompt.end());
  out.tokens.insert(out.tokens.end(), response.begin(), response.begin() + static_cast<std::ptrdiff_t>(keep));
  out.tokens.resize(L, eos_id);
  out.prompt_len = static_cast<int32_t>(prompt.size());
  if (truncated) *truncated = cut;
  return true;
}

SftDataset load_sft_jsonl(const std::string& path, const std::string& name, const Tokenizer& tokenizer,
                          int32_t eos_id, int64_t seq_len) {
  return load_sft_jsonl(path, name, tokenizer, eos_id, seq_len, chat_template_from_vocabulary(tokenizer));
}

SftDataset load_sft_jsonl(const std::string& path, const std::string& name, const Tokenizer& tokenizer,
                          int32_t eos_id, int64_t seq_len, const ChatTemplate& chat) {
  if (eos_id < 0) fail("{}: SFT data needs an EOS token to end and pad answers; the model has none", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the SFT data", path);
  SftDataset out;
  out.name = name;
  out.path = path;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, line_no);
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) fail("{}: not valid JSON", where);
    if (!j.is_object()) {
      fail("{}: expected a JSON object {{\"prompt\": ..., \"response\": ...}} or {{\"messages\": [...]}}", where);
    }
    const auto messages = j.find("messages");
    const ExampleTokens tokens = messages != j.end() ? chat_tokens(*messages, tokenizer, chat, where)
                                                     : prompt_response_tokens(j, tokenizer, where);
    SftExample example;
    bool truncated = false;
    if (!make_sft_example(tokens.prompt, tokens.response, eos_id, seq_len, example, &truncated)) {
      ++out.skipped;
      continue;
    }
    out.truncated += truncated ? 1 : 0;
    out.examples.push_back(std::move(example));
  }
  if (in.bad()) fail("{}: cannot read the SFT data", path);
  if (out.examples.empty()) {
    fail("{}: no usable example ({} lines, {} skipped because the prompt fills seq_len {})", path, line_no,
         out.skipped, seq_len);
  }
  return out;
}

SftSampler::SftSampler(std::vector<SftDomain> domains, int64_t seq_len, uint64_t seed)
    : domains_(std::move(domains)), seq_len_(seq_len), seed_(seed) {
  if (domains_.empty()) fail("no SFT training data: give at least one file");
  double total = 0;
  for (const SftDomain& d : domains_) {
    if (!(d.weight >= 0)) fail("SFT data '{}': weight {} must not be negative", d.data.name, d.weight);
    if (d.weight > 0 && d.data.examples.empty()) fail("SFT data '{}': no examples", d.data.name);
    for (const SftExample& e : d.data.examples) {
      if (static_cast<int64_t>(e.tokens.size()) != seq_len) {
        fail("SFT data '{}': an example of {} tokens, expected seq_len {}", d.data.name, e.tokens.size(), seq_len);
      }
    }
    total += d.weight;
  }
  if (!(total > 0)) fail("SFT data: the mixture weights sum to 0");
  double running = 0;
  for (const SftDomain& d : domains_) {
    running += d.weight;
    cumulative_.push_back(running / total);
  }
  cumulative_.back() = 1.0;
}

const SftExample& SftSampler::pick(int64_t step, int64_t index) const {
  const double u = random_uniform(random_key(seed_, step, index, kSftDomainStream));
  size_t domain = 0;
  while (domain + 1 < cumulative_.size() && (u >= cumulative_[domain] || domains_[domain].weight <= 0)) ++domain;
  const auto& examples = domains_[domain].data.examples;
  const uint64_t which = mix64(random_key(seed_, step, index, kSftExampleStream)) % examples.size();
  return examples[static_cast<size_t>(which)];
}

void SftSampler::fill(int64_t step, int64_t index, CleanBatch& clean, int64_t slot) const {
  const SftExample& e = pick(step, index);
  std::copy(e.tokens.begin(), e.tokens.end(), clean.tokens.begin() + slot * seq_len_);
  clean.prompt_len[static_cast<size_t>(slot)] = e.prompt_len;
}

std::vector<DomainNelbo> evaluate_sft_nelbo(TrainModel& model, const std::vector<SftDataset>& datasets,
                                            const EvalOptions& options, ThreadPool& pool) {
  std::vector<DomainNelbo> results;
  for (const SftDataset& data : datasets) {
    if (data.examples.empty()) fail("eval SFT data '{}' has no examples", data.name);
    const int64_t size = static_cast<int64_t>(data.examples.size());
    const int64_t n_examples = std::min<int64_t>(options.windows, size);
    const int64_t L = static_cast<int64_t>(data.examples.front().tokens.size());
    results.push_back(score_sequences(
        model, data.name, n_examples, L,
        [&](int64_t w, std::vector<int32_t>& tokens) {
          // Evenly spaced over the file, so a capped evaluation still sees all of it.
          const int64_t pick = n_examples <= 1 ? 0 : w * (size - 1) / (n_examples - 1);
          const SftExample& e = data.examples[static_cast<size_t>(pick)];
          std::copy(e.tokens.begin(), e.tokens.end(), tokens.begin());
          return e.prompt_len;
        },
        options, pool));
  }
  return results;
}

}  // namespace ruvdllm::train
