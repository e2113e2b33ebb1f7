#pragma once
// The text layer's internal model: what both loaders (GGUF, tokenizer.json) describe as a
// VocabSpec, and the lookup tables build_model() derives from it for encoding and decoding.
#include <array>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ruvdllm/text/tokenizer.h"
#include "text/regex.h"

namespace ruvdllm::text_detail {

// Where SentencePiece puts its "▁" in front of a text segment.
enum class SpacePrefix : uint8_t {
  None,
  FirstSegment,  // only before the start of the whole text
  EverySegment,  // also after each special token that splits the text
};

struct AddedTokenSpec {
  int32_t id = -1;
  bool lstrip = false;  // swallows the whitespace before it
  bool rstrip = false;  // swallows the whitespace after it
};

// A vocabulary as a loader reads it, before validation. Token texts are as stored: byte-level
// vocabularies in GPT-2's printable byte alphabet ("Ġhello"), except control and user-defined
// tokens, which are plain text.
struct VocabSpec {
  std::string source;  // file name for messages
  TokenizerKind kind = TokenizerKind::ByteLevelBpe;
  std::vector<std::string> texts;
  std::vector<TokenType> types;  // one per token
  std::vector<float> scores;     // one per token, or empty
  // Merge rules by rank, in the stored token alphabet. Empty for a SentencePiece vocabulary,
  // which then merges by score.
  std::vector<std::pair<std::string, std::string>> merges;
  bool ignore_merges = false;  // a piece that is itself a token skips merging (LLaMA-3)

  // Byte-level: regexes applied in turn, each splitting every piece the previous one left.
  std::string pre_name;
  std::vector<std::string> split_patterns;
  bool byte_level_prefix_space = false;  // ByteLevel add_prefix_space

  // SentencePiece-style.
  SpacePrefix space_prefix = SpacePrefix::EverySegment;
  bool split_on_space_marker = false;  // Metaspace split: each "▁" starts a new piece

  std::vector<AddedTokenSpec> added;  // strip flags of added tokens (by id); optional
  std::optional<int32_t> bos, eos, unk, pad, mask;
  bool add_bos = false;
  bool add_eos = false;
};

// Lets string maps be searched with a string_view, without building a std::string per lookup.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct TokenEntry {
  std::string text;   // as stored
  std::string bytes;  // what it decodes to
  float score = 0;
  TokenType type = TokenType::Normal;
};

struct MergeRule {
  int32_t rank;
  int32_t result;
};

struct SpecialMatcher {
  std::string content;
  int32_t id;
  bool always;  // user-defined: matched even without parse_special
  bool lstrip;
  bool rstrip;
};

// Encoded pieces by their bytes, so that frequent words are merged once. Bounded: cleared when
// full, since a bigger cache stops paying off long before memory matters.
class PieceCache {
 public:
  bool find(std::string_view piece, std::vector<int32_t>& out) const;
  void insert(std::string_view piece, const int32_t* ids, size_t n) const;

 private:
  static constexpr size_t kMaxEntries = 1 << 16;
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> entries_;
};

struct TokenizerModel {
  std::string source;
  TokenizerKind kind = TokenizerKind::ByteLevelBpe;
  std::string pre_name;
  std::vector<TokenEntry> tokens;
  StringIdMap ids_by_text;  // every token, by stored text
  // Normal tokens by the bytes BPE symbols spell: raw bytes for byte-level vocabularies, text
  // with "▁" for SentencePiece ones.
  StringIdMap ids_by_piece;
  std::unordered_map<uint64_t, MergeRule> merges;  // key: left id << 32 | right id
  bool merge_by_score = false;
  bool ignore_merges = false;
  std::array<int32_t, 256> byte_ids{};  // single-byte token, or <0xNN> fallback; -1 if none

  std::vector<Regex> splits;
  bool byte_level_prefix_space = false;
  SpacePrefix space_prefix = SpacePrefix::None;
  bool split_on_space_marker = false;

  std::vector<SpecialMatcher> specials;  // longest first
  std::array<std::vector<uint32_t>, 256> specials_by_first_byte;  // indices into specials

  std::optional<int32_t> bos, eos, unk, pad, mask;
  bool add_bos = false;
  bool add_eos = false;

  PieceCache cache;
};

std::shared_ptr<const TokenizerModel> build_model(VocabSpec spec);

// The trainer and the writers build a Tokenizer from a model and read a Tokenizer's model; the
// public header keeps both out of reach of everyone else.
struct TokenizerAccess {
  static Tokenizer make(std::shared_ptr<const TokenizerModel> model) { return Tokenizer(std::move(model)); }
  static const TokenizerModel& model(const Tokenizer& tokenizer) { return *tokenizer.model_; }
};

// BPE of one pre-tokenized piece (raw bytes; SentencePiece pieces already spell "▁").
void encode_piece(const TokenizerModel& model, std::string_view piece, std::vector<int32_t>& out);

// GPT-2's reversible byte <-> printable code point map.
const std::array<uint32_t, 256>& byte_to_code_point();
// Undoes the map for one stored token text; code points outside it keep their UTF-8 bytes.
std::string byte_level_decode(std::string_view text);
std::string byte_level_encode(std::string_view bytes);

// Length of the valid UTF-8 sequence at the start of `s`, or 0 when it is invalid.
size_t utf8_sequence_length(std::string_view s);

// The named GGUF pre-tokenizers (tokenizer.ggml.pre); nullopt when unknown.
struct PreTokenizerPreset {
  std::vector<std::string> patterns;
  bool ignore_merges;  // LLaMA-3 takes a piece that is already a token as it is
};
std::optional<PreTokenizerPreset> pre_tokenizer_preset(std::string_view pre_name);
extern const char* const kGpt2Pattern;

}  // namespace ruvdllm::text_detail
