// Turns a loader's VocabSpec into the lookup tables encoding and decoding use, checking that
// it is self-consistent on the way.
#include <algorithm>
#include <cstring>
#include <utility>

#include "ruvdllm/core/error.h"
#include "text/tokenizer_model.h"

namespace ruvdllm::text_detail {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

// LLaMA-3's and Qwen2's patterns differ only in how many digits stay together. The
// contractions are spelled with ASCII case classes rather than (?i:...), whose Unicode case
// folding would also take "'ſ" (long s) and the Kelvin sign, as llama.cpp's splitter does not.
constexpr const char* kLlama3Pattern =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr size_t kMaxCachedPieceBytes = 64;
constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // "▁", U+2581

std::array<int16_t, 512> make_code_point_to_byte() {
  std::array<int16_t, 512> table;
  table.fill(-1);
  const auto& forward = byte_to_code_point();
  for (int b = 0; b < 256; ++b) table[forward[static_cast<size_t>(b)]] = static_cast<int16_t>(b);
  return table;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

uint32_t decode_utf8(std::string_view s, size_t len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  switch (len) {
    case 1: return p[0];
    case 2: return (p[0] & 0x1Fu) << 6 | (p[1] & 0x3Fu);
    case 3: return (p[0] & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
    default: return (p[0] & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 | (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
  }
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

// "<0x0A>" -> 10.
std::optional<uint8_t> parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else return std::nullopt;
    value = value * 16 + digit;
  }
  return static_cast<uint8_t>(value);
}

std::string printable(std::string_view s) {
  constexpr size_t kMax = 40;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (s.size() > kMax) out += "...";
  return out;
}

std::optional<int32_t> checked_id(const VocabSpec& spec, const char* what, std::optional<int32_t> id) {
  if (!id) return std::nullopt;
  if (*id < 0 || static_cast<size_t>(*id) >= spec.texts.size()) {
    fail("{}: {} token id {} is outside the vocabulary of {} tokens", spec.source, what, *id,
         spec.texts.size());
  }
  return id;
}

}  // namespace

const std::array<uint32_t, 256>& byte_to_code_point() {
  // GPT-2 keeps printable Latin-1 bytes as themselves and moves the rest (controls, space,
  // DEL, NBSP, soft hyphen) to U+0100 upwards, so every byte prints and survives whitespace
  // splitting in the merges file.
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

std::string byte_level_decode(std::string_view text) {
  static const std::array<int16_t, 512> to_byte = make_code_point_to_byte();
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const size_t len = utf8_sequence_length(text.substr(i));
    if (len == 0) {
      out += text[i++];
      continue;
    }
    const uint32_t cp = decode_utf8(text.substr(i), len);
    if (cp < to_byte.size() && to_byte[cp] >= 0) {
      out += static_cast<char>(to_byte[cp]);
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& map = byte_to_code_point();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, map[static_cast<unsigned char>(c)]);
  return out;
}

size_t utf8_sequence_length(std::string_view s) {
  if (s.empty()) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char c = p[0];
  size_t len;
  uint32_t min;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
  else return 0;
  if (s.size() < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
  }
  const uint32_t cp = decode_utf8(s, len);
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

std::optional<PreTokenizerPreset> pre_tokenizer_preset(std::string_view pre_name) {
  // "default" is taken as GPT-2's own split, the pattern byte-level BPE was defined with.
  if (pre_name.empty() || pre_name == "default" || pre_name == "gpt2" || pre_name == "gpt-2") {
    return PreTokenizerPreset{{kGpt2Pattern}, false};
  }
  if (pre_name == "llama-bpe" || pre_name == "llama3" || pre_name == "llama-v3" || pre_name == "dbrx" ||
      pre_name == "smaug-bpe") {
    return PreTokenizerPreset{{kLlama3Pattern}, true};
  }
  if (pre_name == "qwen2" || pre_name == "deepseek-r1-qwen") return PreTokenizerPreset{{kQwen2Pattern}, false};
  return std::nullopt;
}

// Names a diffusion mask token commonly has, most specific first.
static std::optional<int32_t> find_mask_token(const TokenizerModel& model) {
  for (const char* name : {"<|mdm_mask|>", "<|mask|>", "<mask>", "[MASK]", "<|MASK|>"}) {
    auto it = model.ids_by_text.find(name);
    if (it != model.ids_by_text.end()) return it->second;
  }
  return std::nullopt;
}

bool PieceCache::find(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() > kMaxCachedPieceBytes) return false;
  std::lock_guard lock(mutex_);
  auto it = entries_.find(piece);
  if (it == entries_.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void PieceCache::insert(std::string_view piece, const int32_t* ids, size_t n) const {
  if (piece.size() > kMaxCachedPieceBytes) return;
  std::lock_guard lock(mutex_);
  if (entries_.size() >= kMaxEntries) entries_.clear();
  entries_.emplace(std::string(piece), std::vector<int32_t>(ids, ids + n));
}

std::shared_ptr<const TokenizerModel> build_model(VocabSpec spec) {
  const size_t n = spec.texts.size();
  if (n == 0) fail("{}: the vocabulary has no tokens", spec.source);
  if (n > static_cast<size_t>(INT32_MAX)) fail("{}: the vocabulary has {} tokens, too many", spec.source, n);
  if (spec.types.size() != n) {
    fail("{}: {} token types for {} tokens", spec.source, spec.types.size(), n);
  }
  if (!spec.scores.empty() && spec.scores.size() != n) {
    fail("{}: {} token scores for {} tokens", spec.source, spec.scores.size(), n);
  }
  const bool byte_level = spec.kind == TokenizerKind::ByteLevelBpe;

  auto model = std::make_shared<TokenizerModel>();
  model->source = spec.source;
  model->kind = spec.kind;
  model->pre_name = byte_level ? spec.pre_name : "spm";
  model->tokens.resize(n);
  model->byte_ids.fill(-1);
  model->ids_by_text.reserve(n);
  model->ids_by_piece.reserve(n);

  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    TokenEntry& t = model->tokens[i];
    t.text = std::move(spec.texts[i]);
    t.type = spec.types[i];
    t.score = spec.scores.empty() ? 0.0f : spec.scores[i];
    switch (t.type) {
      case TokenType::Normal:
        t.bytes = byte_level ? byte_level_decode(t.text) : replace_all(t.text, kSpaceMarker, " ");
        model->ids_by_piece.emplace(byte_level ? t.bytes : t.text, id);
        break;
      case TokenType::Byte: {
        const auto value = parse_byte_token(t.text);
        if (!value) {
          fail("{}: token {} '{}' is marked as a byte token but is not spelled <0xNN>", spec.source, id,
               printable(t.text));
        }
        t.bytes.assign(1, static_cast<char>(*value));
        if (!byte_level && model->byte_ids[*value] < 0) model->byte_ids[*value] = id;
        break;
      }
      default:
        t.bytes = t.text;
        break;
    }
    model->ids_by_text.emplace(t.text, id);
  }
  if (byte_level) {
    for (int b = 0; b < 256; ++b) {
      auto it = model->ids_by_piece.find(std::string(1, static_cast<char>(b)));
      if (it != model->ids_by_piece.end()) model->byte_ids[static_cast<size_t>(b)] = it->second;
    }
  }

  if (!spec.merges.empty()) {
    model->merges.reserve(spec.merges.size());
    auto piece_id = [&](size_t rank, const std::string& text, const std::string& key) {
      auto it = model->ids_by_piece.find(key);
      if (it == model->ids_by_piece.end()) {
        fail("{}: merge {} names '{}', which is not a token of the vocabulary", spec.source, rank,
             printable(text));
      }
      return it->second;
    };
    for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
      const auto& [a, b] = spec.merges[rank];
      const std::string ka = byte_level ? byte_level_decode(a) : a;
      const std::string kb = byte_level ? byte_level_decode(b) : b;
      const int32_t left = piece_id(rank, a, ka);
      const int32_t right = piece_id(rank, b, kb);
      const int32_t result = piece_id(rank, a + b, ka + kb);
      const uint64_t key = static_cast<uint64_t>(left) << 32 | static_cast<uint32_t>(right);
      model->merges.emplace(key, MergeRule{static_cast<int32_t>(rank), result});  // first rank wins
    }
  } else if (byte_level) {
    // No merges is a plain byte tokenizer (each byte one token), which random test models use;
    // it only works when every byte has a token.
    for (int b = 0; b < 256; ++b) {
      if (model->byte_ids[static_cast<size_t>(b)] < 0) {
        fail("{}: a byte-level BPE vocabulary without merges needs a token for every byte (0x{:02X} "
             "has none)", spec.source, b);
      }
    }
  } else {
    if (spec.scores.empty()) fail("{}: a SentencePiece vocabulary without merges needs token scores", spec.source);
    model->merge_by_score = true;
  }
  model->ignore_merges = spec.ignore_merges;

  for (const auto& pattern : spec.split_patterns) model->splits.emplace_back(pattern, spec.source);
  model->byte_level_prefix_space = spec.byte_level_prefix_space;
  model->space_prefix = byte_level ? SpacePrefix::None : spec.space_prefix;
  model->split_on_space_marker = !byte_level && spec.split_on_space_marker;

  std::unordered_map<int32_t, AddedTokenSpec> strip_flags;
  for (const auto& a : spec.added) strip_flags[a.id] = a;
  for (size_t i = 0; i < n; ++i) {
    const TokenEntry& t = model->tokens[i];
    const bool user = t.type == TokenType::UserDefined;
    if (t.text.empty() || !(user || t.type == TokenType::Control || t.type == TokenType::Unknown)) continue;
    const auto flags = strip_flags.find(static_cast<int32_t>(i));
    const bool lstrip = flags != strip_flags.end() && flags->second.lstrip;
    const bool rstrip = flags != strip_flags.end() && flags->second.rstrip;
    model->specials.push_back({t.text, static_cast<int32_t>(i), user, lstrip, rstrip});
  }
  std::stable_sort(model->specials.begin(), model->specials.end(),
                   [](const SpecialMatcher& a, const SpecialMatcher& b) { return a.content.size() > b.content.size(); });
  for (size_t i = 0; i < model->specials.size(); ++i) {
    const auto first = static_cast<unsigned char>(model->specials[i].content[0]);
    model->specials_by_first_byte[first].push_back(static_cast<uint32_t>(i));
  }

  model->bos = checked_id(spec, "BOS", spec.bos);
  model->eos = checked_id(spec, "EOS", spec.eos);
  model->unk = checked_id(spec, "unknown", spec.unk);
  model->pad = checked_id(spec, "padding", spec.pad);
  model->mask = checked_id(spec, "mask", spec.mask);
  if (!model->mask) model->mask = find_mask_token(*model);
  if (spec.add_bos && !model->bos) fail("{}: the vocabulary asks for a BOS token but names none", spec.source);
  if (spec.add_eos && !model->eos) fail("{}: the vocabulary asks for an EOS token but names none", spec.source);
  model->add_bos = spec.add_bos;
  model->add_eos = spec.add_eos;
  return model;
}

}  // namespace ruvdllm::text_detail
