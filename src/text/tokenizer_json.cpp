// Reads a Hugging Face tokenizer.json (model.type BPE): byte-level vocabularies with their
// ByteLevel/Split pre-tokenizers, and SentencePiece-style ones (Metaspace or the legacy
// Prepend+Replace normalizer) with byte fallback. Anything else it names is refused rather
// than silently tokenized differently.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ruvdllm/core/error.h"
#include "ruvdllm/text/tokenizer.h"
#include "text/tokenizer_model.h"

namespace ruvdllm {

using nlohmann::json;
using text_detail::SpacePrefix;
using text_detail::VocabSpec;

namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // "▁"
// Guards the vocabulary table against a corrupt id asking for gigabytes.
constexpr int64_t kMaxTokenId = (1 << 24) - 1;

json parse_json(std::string_view text, const std::string& name) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", name, e.what());
  }
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A Split pattern given as a literal string matches that string.
std::string quote_regex(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}/-").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

class JsonReader {
 public:
  JsonReader(const json& root, VocabSpec& spec) : root_(root), spec_(spec) {}

  void read() {
    const json& model = object_at(root_, "model", "model");
    const std::string type = model.contains("type") && !model["type"].is_null() ? string_of(model["type"], "model.type") : "BPE";
    if (type != "BPE") fail("{}: model.type '{}' is not supported (only BPE)", spec_.source, type);
    for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(affix) && model[affix].is_string() && !model[affix].get<std::string>().empty()) {
        fail("{}: model.{} is not supported", spec_.source, affix);
      }
    }
    byte_fallback_ = model.value("byte_fallback", false);
    spec_.ignore_merges = model.value("ignore_merges", false);
    read_kind(model);
    read_vocab(model);
    read_added_tokens();
    read_merges(model);
    if (spec_.kind == TokenizerKind::ByteLevelBpe) {
      read_normalizer(root_.value("normalizer", json()), "normalizer");
      read_byte_level_pre_tokenizer(root_.value("pre_tokenizer", json()), "pre_tokenizer");
      name_preset_split();
    } else {
      read_normalizer(root_.value("normalizer", json()), "normalizer");
      read_metaspace(root_.value("pre_tokenizer", json()), "pre_tokenizer");
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      if (auto id = id_of(model["unk_token"].get<std::string>())) {
        spec_.unk = id;
        if (spec_.types[static_cast<size_t>(*id)] == TokenType::Normal ||
            spec_.types[static_cast<size_t>(*id)] == TokenType::Control) {
          spec_.types[static_cast<size_t>(*id)] = TokenType::Unknown;
        }
      }
    }
    read_post_processor(root_.value("post_processor", json()), "post_processor");
  }

  void apply_config(const json& config, const std::string& name) {
    if (!config.is_object()) fail("{}: expected a JSON object", name);
    auto token_name = [&](const char* key) -> std::optional<std::string> {
      if (!config.contains(key)) return std::nullopt;
      const json& v = config[key];
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
      return std::nullopt;
    };
    auto set = [&](const char* key, std::optional<int32_t>& target) {
      if (auto text = token_name(key)) {
        auto id = id_of(*text);
        if (!id) fail("{}: {} '{}' is not a token of the vocabulary", name, key, *text);
        target = id;
      }
    };
    set("bos_token", spec_.bos);
    set("eos_token", spec_.eos);
    set("unk_token", spec_.unk);
    set("pad_token", spec_.pad);
    set("mask_token", spec_.mask);
    if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
      spec_.add_bos = config["add_bos_token"].get<bool>();
    }
    if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) {
      spec_.add_eos = config["add_eos_token"].get<bool>();
    }
  }

  // Where neither the template nor a config names them, the usual spellings do.
  void guess_missing_ids() {
    auto first_of = [&](std::initializer_list<const char*> names) -> std::optional<int32_t> {
      for (const char* n : names) {
        if (auto id = id_of(n)) return id;
      }
      return std::nullopt;
    };
    if (!spec_.bos) spec_.bos = first_of({"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>"});
    if (!spec_.eos) spec_.eos = first_of({"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"});
    if (!spec_.pad) spec_.pad = first_of({"<pad>", "<|pad|>", "[PAD]"});
  }

 private:
  const json& object_at(const json& parent, const char* key, const std::string& path) const {
    if (!parent.is_object() || !parent.contains(key)) fail("{}: has no {}", spec_.source, path);
    const json& v = parent[key];
    if (!v.is_object()) fail("{}: {} is not an object", spec_.source, path);
    return v;
  }

  std::string string_of(const json& v, const std::string& path) const {
    if (!v.is_string()) fail("{}: {} is not a string", spec_.source, path);
    return v.get<std::string>();
  }

  int32_t id_of_value(const json& v, const std::string& path) const {
    if (!v.is_number_integer()) fail("{}: {} is not an integer token id", spec_.source, path);
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id > kMaxTokenId) fail("{}: {} = {} is not a plausible token id", spec_.source, path, id);
    return static_cast<int32_t>(id);
  }

  std::optional<int32_t> id_of(const std::string& text) const {
    for (size_t i = 0; i < spec_.texts.size(); ++i) {
      if (spec_.texts[i] == text && spec_.types[i] != TokenType::Unused) return static_cast<int32_t>(i);
    }
    return std::nullopt;
  }

  static bool has_type(const json& node, std::string_view type) {
    if (!node.is_object()) return false;
    if (node.value("type", std::string()) == type) return true;
    for (const char* list : {"pretokenizers", "decoders", "normalizers"}) {
      if (node.contains(list) && node[list].is_array()) {
        for (const json& child : node[list]) {
          if (has_type(child, type)) return true;
        }
      }
    }
    return false;
  }

  void read_kind(const json& model) {
    const json pre = root_.value("pre_tokenizer", json());
    const json decoder = root_.value("decoder", json());
    const json normalizer = root_.value("normalizer", json());
    if (has_type(pre, "ByteLevel") || has_type(decoder, "ByteLevel")) {
      spec_.kind = TokenizerKind::ByteLevelBpe;
    } else if (byte_fallback_ || has_type(pre, "Metaspace") || has_type(decoder, "Metaspace") ||
               has_type(normalizer, "Prepend") || has_type(decoder, "ByteFallback")) {
      spec_.kind = TokenizerKind::SentencePieceBpe;
    } else {
      fail("{}: cannot tell whether model '{}' is byte-level or SentencePiece-style BPE (no ByteLevel or "
           "Metaspace step)", spec_.source, model.value("type", std::string("BPE")));
    }
  }

  void grow_to(size_t id) {
    if (spec_.texts.size() <= id) {
      spec_.texts.resize(id + 1);
      spec_.types.resize(id + 1, TokenType::Unused);
    }
  }

  void read_vocab(const json& model) {
    const json& vocab = object_at(model, "vocab", "model.vocab");
    if (vocab.empty()) fail("{}: model.vocab is empty", spec_.source);
    spec_.texts.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const int32_t id = id_of_value(it.value(), "model.vocab['" + it.key() + "']");
      grow_to(static_cast<size_t>(id));
      if (spec_.types[static_cast<size_t>(id)] != TokenType::Unused) {
        fail("{}: model.vocab gives id {} to both '{}' and '{}'", spec_.source, id, spec_.texts[static_cast<size_t>(id)],
             it.key());
      }
      spec_.texts[static_cast<size_t>(id)] = it.key();
      const bool byte_token = spec_.kind == TokenizerKind::SentencePieceBpe && byte_fallback_ && it.key().size() == 6 &&
                              it.key().starts_with("<0x") && it.key().back() == '>';
      spec_.types[static_cast<size_t>(id)] = byte_token ? TokenType::Byte : TokenType::Normal;
    }
  }

  void read_added_tokens() {
    if (!root_.contains("added_tokens") || root_["added_tokens"].is_null()) return;
    const json& added = root_["added_tokens"];
    if (!added.is_array()) fail("{}: added_tokens is not an array", spec_.source);
    for (size_t i = 0; i < added.size(); ++i) {
      const std::string path = fmt::format("added_tokens[{}]", i);
      const json& entry = added[i];
      if (!entry.is_object()) fail("{}: {} is not an object", spec_.source, path);
      const int32_t id = id_of_value(entry.value("id", json()), path + ".id");
      const std::string content = string_of(entry.value("content", json()), path + ".content");
      if (content.empty()) fail("{}: {} has empty content", spec_.source, path);
      grow_to(static_cast<size_t>(id));
      spec_.texts[static_cast<size_t>(id)] = content;
      spec_.types[static_cast<size_t>(id)] = entry.value("special", false) ? TokenType::Control : TokenType::UserDefined;
      spec_.added.push_back({id, entry.value("lstrip", false), entry.value("rstrip", false)});
      read_roles(entry, id, path);
    }
  }

  // Our writer (tokenizer_io.cpp) marks which added token is BOS, EOS, ... with a field that
  // Hugging Face ignores: tokenizer.json has no other place for it outside a template.
  void read_roles(const json& entry, int32_t id, const std::string& path) {
    if (!entry.contains("ruvdllm_roles")) return;
    const json& roles = entry["ruvdllm_roles"];
    if (!roles.is_array()) fail("{}: {}.ruvdllm_roles is not an array", spec_.source, path);
    for (const json& role : roles) {
      const std::string name = role.is_string() ? role.get<std::string>() : std::string();
      if (name == "bos") spec_.bos = id;
      else if (name == "eos") spec_.eos = id;
      else if (name == "unk") spec_.unk = id;
      else if (name == "pad") spec_.pad = id;
      else if (name == "mask") spec_.mask = id;
      else fail("{}: {}.ruvdllm_roles has unknown role {}", spec_.source, path, role.dump());
    }
  }

  // A Split regex that is exactly one of the named GGUF presets takes that name, so a
  // vocabulary written out by tokenizer_to_json keeps it.
  void name_preset_split() {
    if (spec_.pre_name != "custom") return;
    for (const char* name : {"llama-bpe", "qwen2"}) {
      auto preset = text_detail::pre_tokenizer_preset(name);
      if (preset->patterns == spec_.split_patterns && preset->ignore_merges == spec_.ignore_merges) {
        spec_.pre_name = name;
        return;
      }
    }
  }

  void read_merges(const json& model) {
    if (!model.contains("merges") || model["merges"].is_null()) return;
    const json& merges = model["merges"];
    if (!merges.is_array()) fail("{}: model.merges is not an array", spec_.source);
    spec_.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& m = merges[i];
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || space == 0 || space + 1 == s.size() || s.find(' ', space + 1) != std::string::npos) {
          fail("{}: model.merges[{}] '{}' is not two tokens separated by one space", spec_.source, i, s);
        }
        spec_.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec_.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        fail("{}: model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", spec_.source, i);
      }
    }
  }

  void read_normalizer(const json& node, const std::string& path) {
    if (node.is_null()) return;
    if (!node.is_object()) fail("{}: {} is not an object", spec_.source, path);
    const std::string type = node.value("type", std::string());
    if (type == "Sequence") {
      const json& list = node.value("normalizers", json());
      if (!list.is_array()) fail("{}: {}.normalizers is not an array", spec_.source, path);
      for (size_t i = 0; i < list.size(); ++i) read_normalizer(list[i], fmt::format("{}.normalizers[{}]", path, i));
    } else if (type == "NFC") {
      // Composed input is left as it is (llama.cpp does the same); text that is already NFC,
      // which is nearly all text, tokenizes identically.
    } else if (type == "Prepend" && spec_.kind == TokenizerKind::SentencePieceBpe &&
               node.value("prepend", std::string()) == kSpaceMarker) {
      spec_.space_prefix = SpacePrefix::EverySegment;
      saw_space_prefix_ = true;
    } else if (type == "Replace" && spec_.kind == TokenizerKind::SentencePieceBpe &&
               node.value("pattern", json()).value("String", std::string()) == " " &&
               node.value("content", std::string()) == kSpaceMarker) {
      // Spaces become "▁": the SentencePiece path always does this.
    } else {
      fail("{}: {} of type '{}' is not supported", spec_.source, path, type);
    }
  }

  void read_byte_level_pre_tokenizer(const json& node, const std::string& path) {
    if (node.is_null()) return;
    if (!node.is_object()) fail("{}: {} is not an object", spec_.source, path);
    const std::string type = node.value("type", std::string());
    if (type == "Sequence") {
      const json& list = node.value("pretokenizers", json());
      if (!list.is_array()) fail("{}: {}.pretokenizers is not an array", spec_.source, path);
      for (size_t i = 0; i < list.size(); ++i) read_byte_level_pre_tokenizer(list[i], fmt::format("{}.pretokenizers[{}]", path, i));
    } else if (type == "ByteLevel") {
      spec_.byte_level_prefix_space = node.value("add_prefix_space", false);
      if (node.value("use_regex", true)) {
        spec_.split_patterns.push_back(text_detail::kGpt2Pattern);
        if (spec_.pre_name.empty()) spec_.pre_name = "gpt2";
      }
    } else if (type == "Split") {
      const std::string behavior = node.value("behavior", std::string("Isolated"));
      if (behavior != "Isolated") fail("{}: {} behavior '{}' is not supported (only Isolated)", spec_.source, path, behavior);
      if (node.value("invert", false)) fail("{}: {} with invert is not supported", spec_.source, path);
      const json& pattern = node.value("pattern", json());
      if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
        spec_.split_patterns.push_back(pattern["Regex"].get<std::string>());
      } else if (pattern.contains("String") && pattern["String"].is_string()) {
        spec_.split_patterns.push_back(quote_regex(pattern["String"].get<std::string>()));
      } else {
        fail("{}: {}.pattern has neither Regex nor String", spec_.source, path);
      }
      spec_.pre_name = "custom";
    } else {
      fail("{}: {} of type '{}' is not supported", spec_.source, path, type);
    }
  }

  void read_metaspace(const json& node, const std::string& path) {
    if (!saw_space_prefix_) spec_.space_prefix = SpacePrefix::None;
    if (node.is_null()) return;
    if (!node.is_object()) fail("{}: {} is not an object", spec_.source, path);
    const std::string type = node.value("type", std::string());
    if (type != "Metaspace") fail("{}: {} of type '{}' is not supported with a SentencePiece vocabulary", spec_.source, path, type);
    if (node.value("replacement", std::string(kSpaceMarker)) != kSpaceMarker) {
      fail("{}: {}.replacement other than \"▁\" is not supported", spec_.source, path);
    }
    const std::string scheme = node.value("prepend_scheme", std::string(node.value("add_prefix_space", true) ? "always" : "never"));
    if (scheme == "always") spec_.space_prefix = SpacePrefix::EverySegment;
    else if (scheme == "first") spec_.space_prefix = SpacePrefix::FirstSegment;
    else if (scheme == "never") spec_.space_prefix = SpacePrefix::None;
    else fail("{}: {}.prepend_scheme '{}' is not supported", spec_.source, path, scheme);
    spec_.split_on_space_marker = node.value("split", true);
  }

  void read_post_processor(const json& node, const std::string& path) {
    if (!node.is_object()) return;
    const std::string type = node.value("type", std::string());
    if (type == "Sequence") {
      const json& list = node.value("processors", json());
      if (list.is_array()) {
        for (size_t i = 0; i < list.size(); ++i) read_post_processor(list[i], fmt::format("{}.processors[{}]", path, i));
      }
    } else if (type == "TemplateProcessing") {
      const json& single = node.value("single", json());
      if (!single.is_array()) fail("{}: {}.single is not an array", spec_.source, path);
      bool seen_sequence = false;
      for (const json& piece : single) {
        if (piece.contains("Sequence")) {
          seen_sequence = true;
        } else if (piece.contains("SpecialToken")) {
          const std::string name = piece["SpecialToken"].value("id", std::string());
          std::optional<int32_t> id;
          const json& specials = node.value("special_tokens", json());
          if (specials.contains(name) && specials[name].contains("ids") && specials[name]["ids"].is_array() &&
              specials[name]["ids"].size() == 1) {
            id = id_of_value(specials[name]["ids"][0], path + ".special_tokens['" + name + "']");
          } else {
            id = id_of(name);
          }
          if (!id) fail("{}: {} names special token '{}', which is not in the vocabulary", spec_.source, path, name);
          (seen_sequence ? spec_.eos : spec_.bos) = id;
          (seen_sequence ? spec_.add_eos : spec_.add_bos) = true;
        }
      }
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      for (const auto& [key, target, add] : {std::tuple{"cls", &spec_.bos, &spec_.add_bos}, std::tuple{"sep", &spec_.eos, &spec_.add_eos}}) {
        const json& pair = node.value(key, json());
        if (pair.is_array() && pair.size() == 2) {
          *target = id_of_value(pair[1], path + "." + key);
          *add = true;
        }
      }
    }
  }

  const json& root_;
  VocabSpec& spec_;
  bool byte_fallback_ = false;
  bool saw_space_prefix_ = false;
};

}  // namespace

Tokenizer Tokenizer::from_tokenizer_json_text(std::string_view text, const std::string& name, std::string_view config_text) {
  VocabSpec spec;
  spec.source = name;
  spec.space_prefix = SpacePrefix::None;
  try {
    const json root = parse_json(text, name);
    if (!root.is_object()) fail("{}: expected a JSON object", name);
    JsonReader reader(root, spec);
    reader.read();
    if (!config_text.empty()) reader.apply_config(parse_json(config_text, name + " (tokenizer_config.json)"), name + " (tokenizer_config.json)");
    reader.guess_missing_ids();
  } catch (const json::exception& e) {
    fail("{}: unexpected JSON layout: {}", name, e.what());
  }
  return Tokenizer(text_detail::build_model(std::move(spec)));
}

Tokenizer Tokenizer::from_tokenizer_json(const std::string& path) {
  const std::string text = read_text_file(path);
  std::string config;
  const auto config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(config_path, ec)) config = read_text_file(config_path.string());
  return from_tokenizer_json_text(text, path, config);
}

}  // namespace ruvdllm
