// Byte-level BPE training with incremental pair counts (see bpe_trainer.h for the scheme).
#include "ruvdllm/text/bpe_trainer.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <queue>
#include <unordered_map>
#include <utility>

#include "ruvdllm/core/error.h"
#include "text/regex.h"
#include "text/tokenizer_model.h"

namespace ruvdllm {

using text_detail::StringHash;

namespace {

constexpr const char* kEndOfText = "<|endoftext|>";
constexpr const char* kMask = "<|mdm_mask|>";
// Splitting a block this size at a time keeps the piece list small whatever the input.
constexpr size_t kSplitBlockBytes = 1 << 20;
constexpr size_t kFileBlockBytes = 16 << 20;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

uint64_t pair_key(int32_t left, int32_t right) {
  return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 | static_cast<uint32_t>(right);
}
int32_t left_of(uint64_t key) { return static_cast<int32_t>(key >> 32); }
int32_t right_of(uint64_t key) { return static_cast<int32_t>(key & 0xFFFFFFFFu); }

bool is_visible_ascii(char c) { return c > ' ' && c < 0x7F; }

// The first position at or after `from` where the text can be cut without changing how any of
// the pre-tokenizer patterns split it: just after a newline with visible ASCII on both sides
// (no piece of gpt2, llama-bpe or qwen2 runs across such a newline; Unicode spaces would).
// text.size() if there is none.
size_t safe_cut(std::string_view text, size_t from) {
  for (size_t i = std::max<size_t>(from, 1); i + 1 < text.size(); ++i) {
    i = text.find('\n', i);
    if (i == std::string_view::npos || i + 1 >= text.size()) break;
    if (is_visible_ascii(text[i - 1]) && is_visible_ascii(text[i + 1])) return i + 1;
  }
  return text.size();
}

struct HeapEntry {
  int64_t count;
  uint64_t pair;
};
// Most frequent first; ties to the smaller (left, right) ids, which pair_key orders.
struct HeapOrder {
  bool operator()(const HeapEntry& a, const HeapEntry& b) const {
    return a.count < b.count || (a.count == b.count && a.pair > b.pair);
  }
};

// The pairs of a symbol sequence, sorted, so two of them can be diffed.
void sorted_pairs(const std::vector<int32_t>& symbols, std::vector<uint64_t>& out) {
  out.clear();
  for (size_t i = 0; i + 1 < symbols.size(); ++i) out.push_back(pair_key(symbols[i], symbols[i + 1]));
  std::sort(out.begin(), out.end());
}

}  // namespace

struct BpeTrainer::Impl {
  BpeTrainerOptions options;
  std::vector<std::string> specials;
  text_detail::Regex regex;
  std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>> word_counts;
  BpeTrainingStats stats;
  bool spent = false;
  std::vector<std::string_view> pieces;  // scratch

  Impl(BpeTrainerOptions o, std::vector<std::string> s, const std::string& pattern)
      : options(std::move(o)), specials(std::move(s)), regex(pattern, "bpe trainer") {}

  void count_block(std::string_view block) {
    pieces.clear();
    regex.split(block, pieces);
    for (std::string_view piece : pieces) {
      auto it = word_counts.find(piece);
      if (it == word_counts.end()) word_counts.emplace(std::string(piece), 1);
      else ++it->second;
    }
  }

  void count_segment(std::string_view segment) {
    stats.input_bytes += static_cast<int64_t>(segment.size());
    size_t start = 0;
    while (start < segment.size()) {
      const size_t end = start + kSplitBlockBytes >= segment.size() ? segment.size() : safe_cut(segment, start + kSplitBlockBytes);
      count_block(segment.substr(start, end - start));
      start = end;
    }
  }

  // Special-token texts separate words and are not counted: they never take part in merges.
  void add_text(std::string_view text) {
    if (spent) fail("bpe trainer: add_text after train()");
    const auto start_time = Clock::now();
    size_t segment_start = 0;
    size_t pos = 0;
    while ((pos = text.find("<|", pos)) != std::string_view::npos) {
      size_t matched = 0;
      for (const auto& s : specials) {
        if (text.compare(pos, s.size(), s) == 0) matched = std::max(matched, s.size());
      }
      if (matched == 0) {
        pos += 2;
        continue;
      }
      count_segment(text.substr(segment_start, pos - segment_start));
      pos += matched;
      segment_start = pos;
    }
    count_segment(text.substr(segment_start));
    stats.distinct_words = static_cast<int64_t>(word_counts.size());
    stats.count_seconds += seconds_since(start_time);
  }

  Tokenizer train(const BpeProgress& progress);
};

std::vector<std::string> BpeTrainer::special_tokens(const BpeTrainerOptions& options) {
  std::vector<std::string> out{kEndOfText, kMask};
  if (options.chat_tokens) {
    for (const char* marker : {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}) out.emplace_back(marker);
  }
  return out;
}

BpeTrainer::BpeTrainer(BpeTrainerOptions options) {
  auto preset = text_detail::pre_tokenizer_preset(options.pre_tokenizer);
  if (!preset || preset->patterns.size() != 1) {
    fail("bpe trainer: pre-tokenizer '{}' is not supported (gpt2, llama-bpe, qwen2)", options.pre_tokenizer);
  }
  auto specials = special_tokens(options);
  const int64_t minimum = 256 + static_cast<int64_t>(specials.size());
  if (options.vocab_size < minimum) {
    fail("bpe trainer: a vocabulary of {} tokens cannot hold the 256 bytes and {} special tokens", options.vocab_size,
         specials.size());
  }
  if (options.vocab_size > (1 << 24)) fail("bpe trainer: a vocabulary of {} tokens is too large", options.vocab_size);
  if (options.min_pair_count < 1) fail("bpe trainer: the minimum pair count must be at least 1");
  const std::string pattern = preset->patterns[0];
  impl_ = std::make_unique<Impl>(std::move(options), std::move(specials), pattern);
}

BpeTrainer::~BpeTrainer() = default;

void BpeTrainer::add_text(std::string_view text) { impl_->add_text(text); }

void BpeTrainer::add_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::string buffer;
  std::vector<char> block(kFileBlockBytes);
  while (true) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    buffer.append(block.data(), static_cast<size_t>(in.gcount()));
    if (in.bad()) fail("{}: read error", path);
    if (in.eof()) break;
    // Count up to a safe cut in the second half, keep the rest for the next block.
    const size_t cut = safe_cut(buffer, buffer.size() / 2);
    if (cut < buffer.size()) {
      impl_->add_text(std::string_view(buffer).substr(0, cut));
      buffer.erase(0, cut);
    }
  }
  impl_->add_text(buffer);
}

const BpeTrainingStats& BpeTrainer::stats() const { return impl_->stats; }

Tokenizer BpeTrainer::train(const BpeProgress& progress) {
  if (impl_->spent) fail("bpe trainer: train() was already called");
  impl_->spent = true;
  return impl_->train(progress);
}

Tokenizer BpeTrainer::Impl::train(const BpeProgress& progress) {
  const auto start_time = Clock::now();

  // Words in a fixed order (by text), so nothing below depends on hash-map iteration.
  std::vector<std::pair<std::string, int64_t>> sorted_words(word_counts.begin(), word_counts.end());
  word_counts = {};
  std::sort(sorted_words.begin(), sorted_words.end());
  std::vector<std::vector<int32_t>> words(sorted_words.size());
  std::vector<int64_t> counts(sorted_words.size());
  for (size_t w = 0; w < sorted_words.size(); ++w) {
    const std::string& text = sorted_words[w].first;
    words[w].reserve(text.size());
    for (char c : text) words[w].push_back(static_cast<unsigned char>(c));
    counts[w] = sorted_words[w].second;
  }
  sorted_words = {};

  std::unordered_map<uint64_t, int64_t> pair_counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // words that may hold the pair
  std::vector<uint64_t> old_pairs, new_pairs;
  for (size_t w = 0; w < words.size(); ++w) {
    sorted_pairs(words[w], old_pairs);
    for (size_t i = 0; i < old_pairs.size(); ++i) {
      pair_counts[old_pairs[i]] += counts[w];
      if (i == 0 || old_pairs[i] != old_pairs[i - 1]) where[old_pairs[i]].push_back(static_cast<int32_t>(w));
    }
  }
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, HeapOrder> heap;
  for (const auto& [pair, count] : pair_counts) heap.push({count, pair});

  std::vector<std::string> token_bytes(256);
  for (int b = 0; b < 256; ++b) token_bytes[static_cast<size_t>(b)] = std::string(1, static_cast<char>(b));
  std::unordered_map<std::string, int32_t> id_of_bytes;
  for (int b = 0; b < 256; ++b) id_of_bytes.emplace(token_bytes[static_cast<size_t>(b)], b);
  std::vector<std::pair<int32_t, int32_t>> merges;

  const int64_t wanted_tokens = options.vocab_size - static_cast<int64_t>(specials.size());
  const int64_t wanted_merges = wanted_tokens - 256;
  std::vector<int32_t> merged;
  std::vector<uint64_t> grown;  // pairs whose count rose during this merge
  while (static_cast<int64_t>(token_bytes.size()) < wanted_tokens && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    auto found = pair_counts.find(top.pair);
    const int64_t current = found == pair_counts.end() ? 0 : found->second;
    if (current != top.count) {
      // Counts only fall for pairs already queued, except when a merge re-creates an existing
      // token, and then a fresh entry was pushed; a lower count is queued again here.
      if (current > 0 && current < top.count) heap.push({current, top.pair});
      continue;
    }
    if (current < options.min_pair_count) break;

    const int32_t a = left_of(top.pair);
    const int32_t b = right_of(top.pair);
    std::string bytes = token_bytes[static_cast<size_t>(a)] + token_bytes[static_cast<size_t>(b)];
    // Two different pairs can spell the same bytes ("ab"+"c", "a"+"bc"): they share one token.
    int32_t c;
    if (auto it = id_of_bytes.find(bytes); it != id_of_bytes.end()) {
      c = it->second;
    } else {
      c = static_cast<int32_t>(token_bytes.size());
      id_of_bytes.emplace(bytes, c);
      token_bytes.push_back(std::move(bytes));
    }
    merges.emplace_back(a, b);

    grown.clear();
    std::vector<int32_t> holders = std::move(where[top.pair]);
    where.erase(top.pair);
    for (int32_t w : holders) {
      std::vector<int32_t>& symbols = words[static_cast<size_t>(w)];
      merged.clear();
      bool changed = false;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == a && symbols[i + 1] == b) {
          merged.push_back(c);
          ++i;
          changed = true;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      if (!changed) continue;  // a stale entry: an earlier merge took the pair apart
      sorted_pairs(symbols, old_pairs);
      sorted_pairs(merged, new_pairs);
      symbols.swap(merged);
      const int64_t n = counts[static_cast<size_t>(w)];
      // Only the pairs that differ between the old and new spelling change count.
      size_t i = 0, j = 0;
      while (i < old_pairs.size() || j < new_pairs.size()) {
        if (j == new_pairs.size() || (i < old_pairs.size() && old_pairs[i] < new_pairs[j])) {
          auto it = pair_counts.find(old_pairs[i]);
          if ((it->second -= n) == 0) pair_counts.erase(it);
          ++i;
        } else if (i == old_pairs.size() || new_pairs[j] < old_pairs[i]) {
          const uint64_t p = new_pairs[j];
          pair_counts[p] += n;
          grown.push_back(p);
          auto& list = where[p];
          if (list.empty() || list.back() != w) list.push_back(w);
          ++j;
        } else {
          ++i;
          ++j;
        }
      }
    }
    std::sort(grown.begin(), grown.end());
    grown.erase(std::unique(grown.begin(), grown.end()), grown.end());
    for (uint64_t p : grown) heap.push({pair_counts[p], p});
    if (progress && (merges.size() % 64 == 0)) progress(static_cast<int64_t>(token_bytes.size()) - 256, wanted_merges);
  }
  if (progress) progress(static_cast<int64_t>(token_bytes.size()) - 256, wanted_merges);

  if (merges.empty()) {
    fail("bpe trainer: no pair of symbols occurs {} times or more in {} bytes of text; nothing to learn",
         options.min_pair_count, stats.input_bytes);
  }
  stats.merges = static_cast<int64_t>(merges.size());
  stats.tokens = 0;
  for (size_t w = 0; w < words.size(); ++w) stats.tokens += counts[w] * static_cast<int64_t>(words[w].size());
  stats.merge_seconds = seconds_since(start_time);

  text_detail::VocabSpec spec;
  spec.source = "trained tokenizer";
  spec.kind = TokenizerKind::ByteLevelBpe;
  for (const std::string& t : token_bytes) {
    spec.texts.push_back(text_detail::byte_level_encode(t));
    spec.types.push_back(TokenType::Normal);
  }
  spec.merges.reserve(merges.size());
  for (const auto& [left, right] : merges) {
    spec.merges.emplace_back(spec.texts[static_cast<size_t>(left)], spec.texts[static_cast<size_t>(right)]);
  }
  const auto first_special = static_cast<int32_t>(spec.texts.size());
  for (const std::string& s : specials) {
    spec.texts.push_back(s);
    spec.types.push_back(TokenType::Control);
  }
  spec.pre_name = options.pre_tokenizer;
  auto preset = text_detail::pre_tokenizer_preset(options.pre_tokenizer);
  spec.split_patterns = preset->patterns;
  spec.ignore_merges = preset->ignore_merges;
  spec.bos = first_special;
  spec.eos = first_special;
  spec.mask = first_special + 1;
  return text_detail::TokenizerAccess::make(text_detail::build_model(std::move(spec)));
}

}  // namespace ruvdllm
