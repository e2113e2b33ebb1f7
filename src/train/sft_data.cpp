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
  if (it == j.end()) fail("{}: missing \"{}\" (each line is {{\"prompt\": ..., \"response\": ...}})", where, key);
  if (!it->is_string()) fail("{}: \"{}\" must be a string", where, key);
  return it->get<std::string>();
}

}  // namespace

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
    if (!j.is_object()) fail("{}: expected a JSON object {{\"prompt\": ..., \"response\": ...}}", where);
    const std::string prompt_text = string_field(j, "prompt", where);
    const std::string response_text = string_field(j, "response", where);
    std::vector<int32_t> prompt;
    std::vector<int32_t> response;
    try {
      prompt = tokenizer.encode(prompt_text, false);
      response = tokenizer.encode(response_text, false);
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }
    SftExample example;
    bool truncated = false;
    if (!make_sft_example(prompt, response, eos_id, seq_len, example, &truncated)) {
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
