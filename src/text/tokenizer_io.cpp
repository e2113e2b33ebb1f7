// Writes a vocabulary out as GGUF tokenizer.ggml.* metadata and as a Hugging Face
// tokenizer.json; the readers (tokenizer_gguf.cpp, tokenizer_json.cpp) take both back.
#include "ruvdllm/text/tokenizer_io.h"

#include <algorithm>
#include <climits>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/text/tokenizer.h"
#include "text/tokenizer_model.h"

namespace ruvdllm {

using text_detail::TokenizerAccess;
using text_detail::TokenizerModel;

namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // "▁"

// The GGUF name (as llama.cpp spells it) of the preset whose patterns are exactly the model's;
// nullopt when none is: a tokenizer.json regex with no GGUF name cannot be written to GGUF
// without changing how text splits.
std::optional<std::string> gguf_pre_name(const TokenizerModel& m) {
  for (const char* name : {"gpt-2", "llama-bpe", "qwen2"}) {
    auto preset = text_detail::pre_tokenizer_preset(name);
    if (preset->patterns.size() != m.splits.size() || preset->ignore_merges != m.ignore_merges) continue;
    bool same = true;
    for (size_t i = 0; i < m.splits.size(); ++i) same = same && m.splits[i].pattern() == preset->patterns[i];
    if (same) return name;
  }
  return std::nullopt;
}

bool has_scores(const TokenizerModel& m) {
  for (const auto& t : m.tokens) {
    if (t.score != 0.0f) return true;
  }
  return false;
}

// Rank-ordered merges as stored token texts. A SentencePiece vocabulary merged by score gets
// the equivalent rank list: every split of a token into two tokens, by the merged token's
// score (highest first), as Hugging Face's converter derives it.
std::vector<std::pair<std::string, std::string>> merge_list(const Tokenizer& tokenizer, const TokenizerModel& m) {
  if (!m.merge_by_score) return tokenizer.merges();
  struct Derived {
    float score;
    int32_t result, left, right;
  };
  std::vector<Derived> derived;
  for (size_t id = 0; id < m.tokens.size(); ++id) {
    const auto& t = m.tokens[id];
    if (t.type != TokenType::Normal) continue;
    const std::string_view piece = t.text;
    size_t split = 0;
    while (split < piece.size()) {
      split += std::max<size_t>(1, text_detail::utf8_sequence_length(piece.substr(split)));
      if (split >= piece.size()) break;
      auto left = m.ids_by_piece.find(piece.substr(0, split));
      auto right = m.ids_by_piece.find(piece.substr(split));
      if (left != m.ids_by_piece.end() && right != m.ids_by_piece.end()) {
        derived.push_back({t.score, static_cast<int32_t>(id), left->second, right->second});
      }
    }
  }
  std::stable_sort(derived.begin(), derived.end(), [](const Derived& a, const Derived& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.result != b.result) return a.result < b.result;
    return std::pair(a.left, a.right) < std::pair(b.left, b.right);
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(derived.size());
  for (const auto& d : derived) {
    out.emplace_back(m.tokens[static_cast<size_t>(d.left)].text, m.tokens[static_cast<size_t>(d.right)].text);
  }
  return out;
}

// GGUF's SentencePiece vocabularies merge by score. A vocabulary merged by rank (from a
// tokenizer.json) gets the scores that order its merges the same way: minus the rank of the
// first merge that makes each token. Tokens no merge makes are never a merge's result, so
// their score does not matter.
std::vector<double> scores_from_ranks(const TokenizerModel& m) {
  std::vector<double> scores(m.tokens.size(), 0.0);
  std::vector<int32_t> first_rank(m.tokens.size(), INT32_MAX);
  for (const auto& [key, rule] : m.merges) {
    auto& r = first_rank[static_cast<size_t>(rule.result)];
    r = std::min(r, rule.rank);
  }
  for (size_t id = 0; id < scores.size(); ++id) {
    if (first_rank[id] != INT32_MAX) scores[id] = -static_cast<double>(first_rank[id]) - 1.0;
  }
  return scores;
}

}  // namespace

void write_tokenizer_metadata(const Tokenizer& tokenizer, GgufWriter& writer) {
  const TokenizerModel& m = TokenizerAccess::model(tokenizer);
  const bool byte_level = m.kind == TokenizerKind::ByteLevelBpe;
  const auto pre_name = gguf_pre_name(m);
  if (byte_level) {
    if (!pre_name) {
      fail("{}: pre-tokenizer '{}' has no GGUF name (tokenizer.ggml.pre takes gpt-2, llama-bpe, qwen2)", m.source,
           m.pre_name);
    }
    if (m.byte_level_prefix_space) {
      fail("{}: a byte-level vocabulary that adds a prefix space cannot be written to GGUF", m.source);
    }
  }
  writer.set("tokenizer.ggml.model", GgufValue::string(byte_level ? "gpt2" : "llama"));
  if (byte_level) writer.set("tokenizer.ggml.pre", GgufValue::string(*pre_name));

  std::vector<std::string> texts;
  std::vector<int64_t> types;
  texts.reserve(m.tokens.size());
  types.reserve(m.tokens.size());
  for (const auto& t : m.tokens) {
    texts.push_back(t.text);
    types.push_back(static_cast<int64_t>(t.type));
  }
  writer.set("tokenizer.ggml.tokens", GgufValue::string_array(std::move(texts)));
  if (!byte_level || has_scores(m)) {
    std::vector<double> scores;
    scores.reserve(m.tokens.size());
    for (const auto& t : m.tokens) scores.push_back(t.score);
    if (!byte_level && !m.merge_by_score && !has_scores(m)) scores = scores_from_ranks(m);
    writer.set("tokenizer.ggml.scores", GgufValue::float_array(GgufType::FLOAT32, std::move(scores)));
  }
  writer.set("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, std::move(types)));
  if (byte_level) {
    std::vector<std::string> merges;
    for (auto& [a, b] : tokenizer.merges()) merges.push_back(a + " " + b);
    writer.set("tokenizer.ggml.merges", GgufValue::string_array(std::move(merges)));
  } else {
    if (m.space_prefix == text_detail::SpacePrefix::FirstSegment || m.split_on_space_marker) {
      fail("{}: this SentencePiece space handling has no GGUF equivalent", m.source);
    }
    writer.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(m.space_prefix == text_detail::SpacePrefix::EverySegment));
  }
  // SentencePiece readers assume BOS 1, EOS 2, unknown 0 when the keys are missing, so an
  // absent id is written as 0xFFFFFFFF, which readers (llama.cpp's too) take as "none".
  const std::pair<const char*, std::optional<int32_t>> ids[] = {
      {"tokenizer.ggml.bos_token_id", m.bos},     {"tokenizer.ggml.eos_token_id", m.eos},
      {"tokenizer.ggml.unknown_token_id", m.unk}, {"tokenizer.ggml.padding_token_id", m.pad},
      {"tokenizer.ggml.mask_token_id", m.mask},
  };
  for (const auto& [key, id] : ids) {
    if (id) writer.set(key, GgufValue::u32(static_cast<uint32_t>(*id)));
    else if (!byte_level) writer.set(key, GgufValue::u32(0xFFFFFFFFu));
  }
  writer.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(m.add_bos));
  writer.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(m.add_eos));
}

std::string tokenizer_to_json(const Tokenizer& tokenizer) {
  using nlohmann::ordered_json;
  const TokenizerModel& m = TokenizerAccess::model(tokenizer);
  const bool byte_level = m.kind == TokenizerKind::ByteLevelBpe;

  std::unordered_map<int32_t, const text_detail::SpecialMatcher*> specials;
  for (const auto& s : m.specials) specials[s.id] = &s;

  // Which added token is BOS, EOS, ...: tokenizer.json has no place for it (Hugging Face keeps
  // it in tokenizer_config.json), so each such token carries a field of ours that Hugging Face
  // ignores and our reader applies.
  const std::pair<const char*, std::optional<int32_t>> role_ids[] = {
      {"bos", m.bos}, {"eos", m.eos}, {"unk", m.unk}, {"pad", m.pad}, {"mask", m.mask}};

  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  ordered_json added = ordered_json::array();
  for (size_t id = 0; id < m.tokens.size(); ++id) {
    const auto& t = m.tokens[id];
    if (t.type != TokenType::Control && t.type != TokenType::UserDefined && t.type != TokenType::Unknown) continue;
    auto s = specials.find(static_cast<int32_t>(id));
    ordered_json roles = ordered_json::array();
    for (const auto& [role, role_id] : role_ids) {
      if (role_id == static_cast<int32_t>(id)) roles.push_back(role);
    }
    added.push_back({{"id", id},
                     {"content", t.text},
                     {"single_word", false},
                     {"lstrip", s != specials.end() && s->second->lstrip},
                     {"rstrip", s != specials.end() && s->second->rstrip},
                     {"normalized", false},
                     {"special", t.type != TokenType::UserDefined}});
    if (!roles.empty()) added.back()["ruvdllm_roles"] = std::move(roles);
  }
  root["added_tokens"] = std::move(added);

  if (byte_level) {
    root["normalizer"] = nullptr;
    const ordered_json byte_level_step = {{"type", "ByteLevel"},
                                          {"add_prefix_space", m.byte_level_prefix_space},
                                          {"trim_offsets", true},
                                          {"use_regex", false}};
    const bool plain_gpt2 = m.splits.size() == 1 && m.splits[0].pattern() == text_detail::kGpt2Pattern;
    if (plain_gpt2) {
      ordered_json step = byte_level_step;
      step["use_regex"] = true;
      root["pre_tokenizer"] = step;
    } else {
      ordered_json steps = ordered_json::array();
      for (const auto& regex : m.splits) {
        steps.push_back({{"type", "Split"},
                         {"pattern", {{"Regex", regex.pattern()}}},
                         {"behavior", "Isolated"},
                         {"invert", false}});
      }
      steps.push_back(byte_level_step);
      root["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
    }
  } else if (!m.split_on_space_marker && m.space_prefix != text_detail::SpacePrefix::FirstSegment) {
    // The legacy normalizer form: Hugging Face's Metaspace skips its "▁" when the text already
    // starts with a space, where this vocabulary always prepends one.
    ordered_json steps = ordered_json::array();
    if (m.space_prefix == text_detail::SpacePrefix::EverySegment) steps.push_back({{"type", "Prepend"}, {"prepend", kSpaceMarker}});
    steps.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpaceMarker}});
    root["normalizer"] = {{"type", "Sequence"}, {"normalizers", std::move(steps)}};
    root["pre_tokenizer"] = nullptr;
  } else {
    root["normalizer"] = nullptr;
    const char* scheme = m.space_prefix == text_detail::SpacePrefix::EverySegment ? "always"
                         : m.space_prefix == text_detail::SpacePrefix::FirstSegment ? "first"
                                                                                   : "never";
    root["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSpaceMarker},
                             {"prepend_scheme", scheme}, {"split", m.split_on_space_marker}};
  }

  // BOS/EOS added on encode: a template the reader (and Hugging Face) apply.
  if (m.add_bos || m.add_eos) {
    ordered_json single = ordered_json::array();
    ordered_json special_tokens = ordered_json::object();
    auto add_special = [&](int32_t id) {
      const std::string& text = m.tokens[static_cast<size_t>(id)].text;
      single.push_back({{"SpecialToken", {{"id", text}, {"type_id", 0}}}});
      special_tokens[text] = {{"id", text}, {"ids", {id}}, {"tokens", {text}}};
    };
    if (m.add_bos) add_special(*m.bos);
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (m.add_eos) add_special(*m.eos);
    root["post_processor"] = {{"type", "TemplateProcessing"}, {"single", std::move(single)},
                              {"pair", ordered_json::array()}, {"special_tokens", std::move(special_tokens)}};
  } else {
    root["post_processor"] = nullptr;
  }
  if (byte_level) {
    root["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  } else {
    ordered_json steps = ordered_json::array();
    steps.push_back({{"type", "Replace"}, {"pattern", {{"String", kSpaceMarker}}}, {"content", " "}});
    steps.push_back({{"type", "ByteFallback"}});
    steps.push_back({{"type", "Fuse"}});
    if (m.space_prefix != text_detail::SpacePrefix::None) {
      steps.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    }
    root["decoder"] = {{"type", "Sequence"}, {"decoders", std::move(steps)}};
  }

  ordered_json model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = m.unk ? ordered_json(m.tokens[static_cast<size_t>(*m.unk)].text) : ordered_json(nullptr);
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = !byte_level;
  bool byte_fallback = false;
  for (const auto& t : m.tokens) byte_fallback = byte_fallback || t.type == TokenType::Byte;
  model["byte_fallback"] = byte_fallback;
  model["ignore_merges"] = m.ignore_merges;
  // Built as a list and handed over whole: ordered_json's own insert looks each key up in turn,
  // which is quadratic over a 50,000-token vocabulary.
  std::vector<std::pair<const std::string, ordered_json>> entries;
  entries.reserve(m.tokens.size());
  std::unordered_set<std::string_view> seen;
  for (size_t id = 0; id < m.tokens.size(); ++id) {
    const std::string& text = m.tokens[id].text;
    if (!seen.insert(text).second) {
      fail("{}: token {} '{}' repeats an earlier token's text, which tokenizer.json cannot hold", m.source, id, text);
    }
    entries.emplace_back(text, id);
  }
  ordered_json vocab = ordered_json::object_t(entries.begin(), entries.end());
  model["vocab"] = std::move(vocab);
  ordered_json merges = ordered_json::array();
  for (auto& [a, b] : merge_list(tokenizer, m)) {
    if (a.find(' ') == std::string::npos && b.find(' ') == std::string::npos) merges.push_back(a + " " + b);
    else merges.push_back({a, b});
  }
  model["merges"] = std::move(merges);
  root["model"] = std::move(model);

  try {
    return root.dump(1);
  } catch (const nlohmann::json::exception&) {
    fail("{}: a token's text is not valid UTF-8, which tokenizer.json cannot hold", m.source);
  }
}

}  // namespace ruvdllm
