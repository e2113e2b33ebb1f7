// "<mask:N>" spans in prompts (see prompt.h).
#include "ruvdllm/text/prompt.h"

#include "ruvdllm/core/error.h"
#include "ruvdllm/text/tokenizer.h"

namespace ruvdllm {
namespace {

constexpr std::string_view kOpen = "<mask:";

// The count of the span starting at `at` (which holds "<mask:"), and its length in bytes.
std::pair<int64_t, size_t> parse_span(std::string_view prompt, size_t at) {
  size_t p = at + kOpen.size();
  int64_t count = 0;
  const size_t digits_begin = p;
  while (p < prompt.size() && prompt[p] >= '0' && prompt[p] <= '9') {
    count = count * 10 + (prompt[p] - '0');
    if (count > kMaxMaskSpan) {
      fail("prompt: mask span at byte {} asks for more than {} tokens", at, kMaxMaskSpan);
    }
    ++p;
  }
  if (p == digits_begin || p >= prompt.size() || prompt[p] != '>') {
    fail("prompt: '<mask:' at byte {} must be written <mask:N> with N a number of tokens", at);
  }
  if (count == 0) fail("prompt: mask span <mask:0> at byte {} holds no tokens", at);
  return {count, p + 1 - at};
}

}  // namespace

std::vector<PromptPiece> split_mask_spans(std::string_view prompt) {
  std::vector<PromptPiece> pieces;
  size_t text_begin = 0;
  size_t at = prompt.find(kOpen);
  while (at != std::string_view::npos) {
    const auto [count, length] = parse_span(prompt, at);
    if (at > text_begin) pieces.push_back({prompt.substr(text_begin, at - text_begin), 0});
    pieces.push_back({{}, count});
    text_begin = at + length;
    at = prompt.find(kOpen, text_begin);
  }
  if (text_begin < prompt.size()) pieces.push_back({prompt.substr(text_begin), 0});
  return pieces;
}

bool has_mask_spans(std::string_view prompt) {
  for (const PromptPiece& piece : split_mask_spans(prompt)) {
    if (piece.masks > 0) return true;
  }
  return false;
}

std::vector<int32_t> encode_prompt(const Tokenizer& tokenizer, std::string_view prompt,
                                   int32_t mask_id, bool add_bos) {
  if (mask_id < 0 || mask_id >= tokenizer.vocab_size()) {
    fail("prompt: mask id {} is outside the vocabulary of {}", mask_id, tokenizer.vocab_size());
  }
  const std::vector<PromptPiece> pieces = split_mask_spans(prompt);
  std::vector<int32_t> ids;
  if (add_bos && tokenizer.adds_bos() && tokenizer.bos_id()) ids.push_back(*tokenizer.bos_id());
  for (const PromptPiece& piece : pieces) {
    if (piece.masks > 0) {
      ids.insert(ids.end(), static_cast<size_t>(piece.masks), mask_id);
    } else {
      const std::vector<int32_t> text = tokenizer.encode(piece.text, /*add_special=*/false,
                                                         /*parse_special=*/true);
      ids.insert(ids.end(), text.begin(), text.end());
    }
  }
  return ids;
}

}  // namespace ruvdllm
