#pragma once
// Text <-> token ids for the two vocabulary families diffusion LMs ship with:
//   - byte-level BPE (GPT-2, LLaMA-3, Qwen2, LLaDA, Dream): a regex pre-tokenizer splits the
//     text, every byte is a symbol, merges are applied by rank;
//   - SentencePiece-style BPE (LLaMA-1/2): spaces become "▁", pieces are merged by score (GGUF)
//     or by merge rank (tokenizer.json), and bytes missing from the vocabulary fall back to
//     <0xNN> tokens.
// Loaded from GGUF metadata (tokenizer.ggml.*) or a Hugging Face tokenizer.json. Encoding then
// decoding returns any input byte string unchanged, invalid UTF-8 included.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ruvdllm {

class GgufFile;

// Same numbering as GGUF's tokenizer.ggml.token_type.
enum class TokenType : uint8_t {
  Normal = 1,
  Unknown = 2,
  Control = 3,      // BOS, EOS, mask, chat markers: matched in text only with parse_special
  UserDefined = 4,  // added tokens that are always matched as a whole in text
  Unused = 5,
  Byte = 6,         // SentencePiece byte fallback <0xNN>
};

enum class TokenizerKind : uint8_t { ByteLevelBpe, SentencePieceBpe };

namespace text_detail {
struct TokenizerModel;
struct TokenizerAccess;  // lets the text layer's trainer and writers build and read the model
}

class Tokenizer {
 public:
  // Throws Error("PATH: PROBLEM") when the vocabulary is missing or malformed: no tokens, a
  // merge naming an unknown token, an unsupported model or pre-tokenizer, ids out of range.
  static Tokenizer from_gguf(const GgufFile& gguf);
  static Tokenizer from_gguf_file(const std::string& path);
  // Also reads tokenizer_config.json beside the file, when there is one, for bos/eos/pad/mask
  // token names and add_bos_token/add_eos_token.
  static Tokenizer from_tokenizer_json(const std::string& path);
  // `name` is used in error messages only.
  static Tokenizer from_tokenizer_json_text(std::string_view json, const std::string& name,
                                            std::string_view config_json = {});
  // A .gguf file, a tokenizer.json file, or a directory that holds tokenizer.json.
  static Tokenizer load(const std::string& path);

  // add_special: prepend BOS / append EOS as the vocabulary asks (adds_bos/adds_eos).
  // parse_special: control tokens written in the text (e.g. "<|endoftext|>") become their ids;
  // user-defined added tokens are always matched.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = true) const;
  // Control and unknown tokens decode to nothing unless render_special; byte tokens to their
  // byte. Throws Error for an id outside [0, vocab_size()).
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  // The bytes one token stands for (a special token's own text), as it would print in a
  // token listing; no leading-space stripping.
  std::string token_to_piece(int32_t id) const;
  // The vocabulary entry as stored ("Ġhello", "▁Hello", "<0x0A>").
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  float token_score(int32_t id) const;  // SentencePiece score; 0 for rank-merged vocabularies
  // Looks a vocabulary entry up by its stored text.
  std::optional<int32_t> find_token(std::string_view text) const;

  int32_t vocab_size() const;
  TokenizerKind kind() const;
  // "gpt2", "llama-bpe", "qwen2", "default" (byte-level, named as in GGUF's tokenizer.ggml.pre),
  // "custom" for a tokenizer.json regex, "spm" for SentencePiece-style vocabularies.
  const std::string& pre_tokenizer() const;

  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> unk_id() const;
  std::optional<int32_t> pad_id() const;
  // The diffusion mask token: tokenizer.ggml.mask_token_id, the config's mask_token, or an
  // added token named like "<|mdm_mask|>" / "<|mask|>" / "<mask>" / "[MASK]".
  std::optional<int32_t> mask_id() const;
  bool adds_bos() const;
  bool adds_eos() const;
  // Merge rules in rank order, as stored token texts ("Ġ", "t" -> "Ġt"); empty for a
  // SentencePiece vocabulary merged by score.
  std::vector<std::pair<std::string, std::string>> merges() const;

 private:
  friend struct text_detail::TokenizerAccess;
  explicit Tokenizer(std::shared_ptr<const text_detail::TokenizerModel> model);
  void check_id(int32_t id) const;
  // Shared and immutable (its piece cache is internally locked), so copies are cheap and one
  // tokenizer serves many threads.
  std::shared_ptr<const text_detail::TokenizerModel> model_;
};

// One line per token, "ID<TAB>'piece'", with control bytes and invalid UTF-8 escaped; for the
// `ruvdllm tokenize` command.
std::string describe_tokens(const Tokenizer& tokenizer, std::span<const int32_t> ids);

}  // namespace ruvdllm
