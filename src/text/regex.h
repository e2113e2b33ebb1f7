#pragma once
// A compiled PCRE2 pattern (UTF + Unicode properties, JIT where available) that splits text
// the way a tokenizer's Split pre-tokenizer does: every match is a piece, and so is every
// stretch between matches. Bytes that are not valid UTF-8 never match, so they end up in the
// stretches between matches and no input byte is lost.
#include <string>
#include <string_view>
#include <vector>

namespace ruvdllm::text_detail {

class Regex {
 public:
  // Throws Error("SOURCE: bad pre-tokenizer regex at offset N: REASON").
  Regex(const std::string& pattern, const std::string& source);
  ~Regex();
  Regex(Regex&& other) noexcept;
  Regex& operator=(Regex&& other) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  const std::string& pattern() const { return pattern_; }
  // Appends the pieces of `text`, in order; together they are exactly `text`.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8; kept opaque so pcre2.h stays out of this header
  std::string pattern_;
  std::string source_;
};

}  // namespace ruvdllm::text_detail
