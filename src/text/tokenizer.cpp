// Encoding (special tokens, pre-tokenization, BPE per piece) and decoding for both vocabulary
// families; the loaders live in tokenizer_gguf.cpp and tokenizer_json.cpp.
#include "ruvdllm/text/tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "ruvdllm/core/error.h"
#include "text/tokenizer_model.h"

namespace ruvdllm {

using text_detail::SpacePrefix;
using text_detail::TokenizerModel;

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // "▁"

// A stretch of text, or a special token found in it (id >= 0).
struct Segment {
  std::string_view text;
  int32_t id = -1;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Leftmost match first, and of the tokens that start there the longest: a text can hold
// "<|im_start|>" and "<|im_start|>user" and gets the longer one.
std::vector<Segment> split_on_special_tokens(const TokenizerModel& model, std::string_view text, bool parse_special) {
  std::vector<Segment> segments;
  size_t segment_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const auto& candidates = model.specials_by_first_byte[static_cast<unsigned char>(text[i])];
    const text_detail::SpecialMatcher* hit = nullptr;
    for (uint32_t index : candidates) {
      const auto& s = model.specials[index];
      if ((s.always || parse_special) && text.compare(i, s.content.size(), s.content) == 0) {
        hit = &s;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t before_end = i;
    if (hit->lstrip) {
      while (before_end > segment_start && is_space(text[before_end - 1])) --before_end;
    }
    if (before_end > segment_start) segments.push_back({text.substr(segment_start, before_end - segment_start)});
    segments.push_back({{}, hit->id});
    i += hit->content.size();
    if (hit->rstrip) {
      while (i < text.size() && is_space(text[i])) ++i;
    }
    segment_start = i;
  }
  if (segment_start < text.size()) segments.push_back({text.substr(segment_start)});
  return segments;
}

void encode_byte_level(const TokenizerModel& model, std::string_view text, std::vector<int32_t>& out) {
  std::string prefixed;
  if (model.byte_level_prefix_space && text.front() != ' ') {
    prefixed = " ";
    prefixed.append(text);
    text = prefixed;
  }
  std::vector<std::string_view> pieces{text};
  std::vector<std::string_view> next;
  for (const auto& regex : model.splits) {
    next.clear();
    for (std::string_view piece : pieces) regex.split(piece, next);
    pieces.swap(next);
  }
  for (std::string_view piece : pieces) text_detail::encode_piece(model, piece, out);
}

void encode_sentencepiece(const TokenizerModel& model, std::string_view text, bool at_text_start,
                          std::vector<int32_t>& out) {
  std::string normalized;
  normalized.reserve(text.size() + 8);
  const bool prefix = model.space_prefix == SpacePrefix::EverySegment ||
                      (model.space_prefix == SpacePrefix::FirstSegment && at_text_start);
  if (prefix) normalized.append(kSpaceMarker);
  for (char c : text) {
    if (c == ' ') normalized.append(kSpaceMarker);
    else normalized += c;
  }
  const std::string_view all = normalized;
  if (!model.split_on_space_marker) {
    text_detail::encode_piece(model, all, out);
    return;
  }
  size_t start = 0;
  while (start < all.size()) {
    size_t next = all.find(kSpaceMarker, start + 1);
    if (next == std::string_view::npos) next = all.size();
    text_detail::encode_piece(model, all.substr(start, next - start), out);
    start = next;
  }
}

bool is_special_type(TokenType type) {
  return type == TokenType::Control || type == TokenType::Unknown || type == TokenType::Unused;
}

void append_escaped(std::string& out, std::string_view piece) {
  size_t i = 0;
  while (i < piece.size()) {
    const unsigned char c = static_cast<unsigned char>(piece[i]);
    const size_t len = text_detail::utf8_sequence_length(piece.substr(i));
    if (len > 1) {
      out.append(piece.substr(i, len));
      i += len;
      continue;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\\': out += "\\\\"; break;
      case '\'': out += "\\'"; break;
      default:
        if (len == 0 || c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
        else out += static_cast<char>(c);
    }
    ++i;
  }
}

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<const TokenizerModel> model) : model_(std::move(model)) {}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string json = (fs::path(path) / "tokenizer.json").string();
    if (!fs::exists(json, ec)) fail("{}: directory has no tokenizer.json", path);
    return from_tokenizer_json(json);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  char magic[4] = {};
  in.read(magic, sizeof(magic));
  if (in.gcount() == 4 && std::string_view(magic, 4) == "GGUF") return from_gguf_file(path);
  return from_tokenizer_json(path);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const TokenizerModel& m = *model_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && m.add_bos) out.push_back(*m.bos);
  for (const Segment& segment : split_on_special_tokens(m, text, parse_special)) {
    if (segment.id >= 0) {
      out.push_back(segment.id);
    } else if (m.kind == TokenizerKind::ByteLevelBpe) {
      encode_byte_level(m, segment.text, out);
    } else {
      encode_sentencepiece(m, segment.text, segment.text.data() == text.data(), out);
    }
  }
  if (add_special && m.add_eos) out.push_back(*m.eos);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  const TokenizerModel& m = *model_;
  // SentencePiece put a "▁" before the text; the first piece's leading space is that one.
  bool strip_leading_space = m.kind == TokenizerKind::SentencePieceBpe && m.space_prefix != SpacePrefix::None;
  std::string out;
  for (int32_t id : ids) {
    check_id(id);
    const auto& t = m.tokens[static_cast<size_t>(id)];
    if (is_special_type(t.type)) {
      if (!render_special) continue;
      out.append(t.text);
    } else if (t.type == TokenType::Normal && strip_leading_space && !t.bytes.empty() && t.bytes[0] == ' ') {
      out.append(t.bytes, 1);
    } else {
      out.append(t.bytes);
    }
    strip_leading_space = false;
  }
  return out;
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= model_->tokens.size()) {
    fail("{}: token id {} is outside the vocabulary of {} tokens", model_->source, id, model_->tokens.size());
  }
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  check_id(id);
  const auto& t = model_->tokens[static_cast<size_t>(id)];
  return is_special_type(t.type) || t.type == TokenType::UserDefined ? t.text : t.bytes;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  check_id(id);
  return model_->tokens[static_cast<size_t>(id)].text;
}

TokenType Tokenizer::token_type(int32_t id) const {
  check_id(id);
  return model_->tokens[static_cast<size_t>(id)].type;
}

float Tokenizer::token_score(int32_t id) const {
  check_id(id);
  return model_->tokens[static_cast<size_t>(id)].score;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  auto it = model_->ids_by_text.find(text);
  if (it == model_->ids_by_text.end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(model_->tokens.size()); }
TokenizerKind Tokenizer::kind() const { return model_->kind; }
const std::string& Tokenizer::pre_tokenizer() const { return model_->pre_name; }
std::optional<int32_t> Tokenizer::bos_id() const { return model_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return model_->eos; }
std::optional<int32_t> Tokenizer::unk_id() const { return model_->unk; }
std::optional<int32_t> Tokenizer::pad_id() const { return model_->pad; }
std::optional<int32_t> Tokenizer::mask_id() const { return model_->mask; }
bool Tokenizer::adds_bos() const { return model_->add_bos; }
bool Tokenizer::adds_eos() const { return model_->add_eos; }

std::vector<std::pair<std::string, std::string>> Tokenizer::merges() const {
  const TokenizerModel& m = *model_;
  std::vector<std::pair<int32_t, uint64_t>> by_rank;
  by_rank.reserve(m.merges.size());
  for (const auto& [key, rule] : m.merges) by_rank.emplace_back(rule.rank, key);
  std::sort(by_rank.begin(), by_rank.end());
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(by_rank.size());
  for (const auto& [rank, key] : by_rank) {
    out.emplace_back(m.tokens[static_cast<size_t>(key >> 32)].text, m.tokens[static_cast<size_t>(key & 0xFFFFFFFFu)].text);
  }
  return out;
}

std::string describe_tokens(const Tokenizer& tokenizer, std::span<const int32_t> ids) {
  std::string out;
  for (int32_t id : ids) {
    out += fmt::format("{}\t'", id);
    append_escaped(out, tokenizer.token_to_piece(id));
    out += "'\n";
  }
  return out;
}

}  // namespace ruvdllm
