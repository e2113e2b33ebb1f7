#pragma once
// Prompts with mask spans, for infilling: "<mask:N>" anywhere in a prompt stands for N mask
// tokens, which the sampler fills in place, conditioned on the text on both sides.
//   "def add(a, b):\n    <mask:8>\n"  ->  tokens of "def add(a, b):\n    ", 8 masks, tokens of "\n"
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ruvdllm {

class Tokenizer;

// A run of plain text or of masks (exactly one of the two is non-empty).
struct PromptPiece {
  std::string_view text;  // points into the prompt
  int64_t masks = 0;
};

// Longest span accepted, so a typo cannot ask for gigabytes; the model's context is the real
// limit and is checked by the caller.
inline constexpr int64_t kMaxMaskSpan = 1 << 20;

// Splits at every "<mask:N>" (N decimal, 1 <= N <= kMaxMaskSpan). Throws Error naming the byte
// offset for a span that starts like one but is malformed ("<mask:>", "<mask:0>", "<mask:x>").
// Adjacent spans stay separate pieces; empty text between them is dropped.
std::vector<PromptPiece> split_mask_spans(std::string_view prompt);

// Whether the prompt holds at least one mask span (same parsing, so it throws alike).
bool has_mask_spans(std::string_view prompt);

// The prompt's token ids: text pieces encoded one by one (control-token text such as
// "<|eot_id|>" becomes its id), each span as N copies of mask_id. add_bos prepends BOS when the
// vocabulary asks for one; EOS is never appended, since generation continues after the prompt.
std::vector<int32_t> encode_prompt(const Tokenizer& tokenizer, std::string_view prompt,
                                   int32_t mask_id, bool add_bos);

}  // namespace ruvdllm
