// Reads a vocabulary from GGUF metadata, the tokenizer.ggml.* keys llama.cpp's converter writes.
#include <cctype>
#include <cmath>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/text/tokenizer.h"
#include "text/tokenizer_model.h"

namespace ruvdllm {

using text_detail::VocabSpec;

namespace {

const GgufValue& require_key(const GgufFile& gguf, std::string_view key) {
  const GgufValue* v = gguf.find(key);
  if (!v) fail("{}: metadata has no {}", gguf.path(), key);
  return *v;
}

// Runs a typed accessor, naming the key when the value has the wrong type.
template <typename F>
auto read_key(const GgufFile& gguf, std::string_view key, F&& read) {
  try {
    return read(require_key(gguf, key));
  } catch (const Error& e) {
    fail("{}: {}: {}", gguf.path(), key, e.what());
  }
}

std::optional<int32_t> optional_id(const GgufFile& gguf, std::string_view key, std::optional<int32_t> fallback,
                                   size_t vocab_size) {
  if (!gguf.has(key)) {
    // Defaults (llama.cpp's for SentencePiece vocabularies) only where they name a token.
    if (fallback && static_cast<size_t>(*fallback) < vocab_size) return fallback;
    return std::nullopt;
  }
  const int64_t id = read_key(gguf, key, [](const GgufValue& v) { return v.as_int(); });
  // Some converters write -1 (as a signed or wrapped-around unsigned value) for "none".
  if (id < 0 || id == 0xFFFFFFFFll) return std::nullopt;
  if (static_cast<size_t>(id) >= vocab_size) {
    fail("{}: {} = {} is outside the vocabulary of {} tokens", gguf.path(), key, id, vocab_size);
  }
  return static_cast<int32_t>(id);
}

TokenType token_type_from_gguf(const GgufFile& gguf, size_t index, int64_t value) {
  if (value < 1 || value > 6) {
    fail("{}: tokenizer.ggml.token_type[{}] = {} is not a token type (1-6)", gguf.path(), index, value);
  }
  return static_cast<TokenType>(value);
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const GgufFile& gguf) {
  VocabSpec spec;
  spec.source = gguf.path();
  const std::string model = read_key(gguf, "tokenizer.ggml.model", [](const GgufValue& v) { return v.as_string(); });
  if (model == "gpt2") {
    spec.kind = TokenizerKind::ByteLevelBpe;
  } else if (model == "llama") {
    spec.kind = TokenizerKind::SentencePieceBpe;
  } else {
    fail("{}: tokenizer.ggml.model '{}' is not supported (expected gpt2 or llama)", gguf.path(), model);
  }

  spec.texts = read_key(gguf, "tokenizer.ggml.tokens", [](const GgufValue& v) { return v.as_string_array(); });
  const size_t n = spec.texts.size();
  if (n == 0) fail("{}: tokenizer.ggml.tokens is empty", gguf.path());

  if (gguf.has("tokenizer.ggml.token_type")) {
    const auto& types =
        read_key(gguf, "tokenizer.ggml.token_type", [](const GgufValue& v) -> const std::vector<int64_t>& { return v.as_int_array(); });
    if (types.size() != n) {
      fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", gguf.path(), types.size(), n);
    }
    spec.types.reserve(n);
    for (size_t i = 0; i < n; ++i) spec.types.push_back(token_type_from_gguf(gguf, i, types[i]));
  } else {
    spec.types.assign(n, TokenType::Normal);
    // Without types, SentencePiece's byte fallback tokens are known by their spelling.
    if (spec.kind == TokenizerKind::SentencePieceBpe) {
      for (size_t i = 0; i < n; ++i) {
        const std::string& t = spec.texts[i];
        if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
            std::isxdigit(static_cast<unsigned char>(t[4]))) {
          spec.types[i] = TokenType::Byte;
        }
      }
    }
  }

  if (gguf.has("tokenizer.ggml.scores")) {
    const auto& scores =
        read_key(gguf, "tokenizer.ggml.scores", [](const GgufValue& v) -> const std::vector<double>& { return v.as_float_array(); });
    if (scores.size() != n) {
      fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", gguf.path(), scores.size(), n);
    }
    spec.scores.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(scores[i])) {
        fail("{}: tokenizer.ggml.scores[{}] is not a number", gguf.path(), i);
      }
      spec.scores.push_back(static_cast<float>(scores[i]));
    }
  }

  if (spec.kind == TokenizerKind::ByteLevelBpe) {
    if (!gguf.has("tokenizer.ggml.merges")) fail("{}: metadata has no tokenizer.ggml.merges", gguf.path());
    const auto& merges =
        read_key(gguf, "tokenizer.ggml.merges", [](const GgufValue& v) -> const std::vector<std::string>& { return v.as_string_array(); });
    spec.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      // Byte-level token texts never hold a space (GPT-2's alphabet moved it to "Ġ").
      const size_t space = merges[i].find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == merges[i].size() ||
          merges[i].find(' ', space + 1) != std::string::npos) {
        fail("{}: tokenizer.ggml.merges[{}] is not two tokens separated by one space", gguf.path(), i);
      }
      spec.merges.emplace_back(merges[i].substr(0, space), merges[i].substr(space + 1));
    }
    spec.pre_name = gguf.get_string("tokenizer.ggml.pre", "default");
    auto preset = text_detail::pre_tokenizer_preset(spec.pre_name);
    if (!preset) {
      fail("{}: tokenizer.ggml.pre '{}' is not supported (gpt2, llama-bpe, qwen2, default)", gguf.path(), spec.pre_name);
    }
    spec.split_patterns = std::move(preset->patterns);
    spec.ignore_merges = preset->ignore_merges;
  } else {
    spec.space_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix", true) ? text_detail::SpacePrefix::EverySegment
                                                                                : text_detail::SpacePrefix::None;
  }

  const bool spm = spec.kind == TokenizerKind::SentencePieceBpe;
  spec.bos = optional_id(gguf, "tokenizer.ggml.bos_token_id", spm ? std::optional<int32_t>(1) : std::nullopt, n);
  spec.eos = optional_id(gguf, "tokenizer.ggml.eos_token_id", spm ? std::optional<int32_t>(2) : std::nullopt, n);
  spec.unk = optional_id(gguf, "tokenizer.ggml.unknown_token_id", spm ? std::optional<int32_t>(0) : std::nullopt, n);
  spec.pad = optional_id(gguf, "tokenizer.ggml.padding_token_id", std::nullopt, n);
  spec.mask = optional_id(gguf, "tokenizer.ggml.mask_token_id", std::nullopt, n);
  if (!gguf.has("tokenizer.ggml.token_type")) {
    // Untyped special ids must still not decode as text.
    for (const auto& id : {spec.bos, spec.eos, spec.pad, spec.mask}) {
      if (id) spec.types[static_cast<size_t>(*id)] = TokenType::Control;
    }
    if (spec.unk) spec.types[static_cast<size_t>(*spec.unk)] = TokenType::Unknown;
  }
  // An explicit add_bos_token without a BOS id is an error (build_model says so); the default
  // applies only where there is a BOS token.
  spec.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token", spm && spec.bos.has_value());
  spec.add_eos = gguf.get_bool("tokenizer.ggml.add_eos_token", false);
  return Tokenizer(text_detail::build_model(std::move(spec)));
}

Tokenizer Tokenizer::from_gguf_file(const std::string& path) { return from_gguf(GgufFile::open(path)); }

}  // namespace ruvdllm
