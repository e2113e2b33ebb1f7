#include "text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "ruvdllm/core/error.h"

namespace ruvdllm::text_detail {
namespace {

// PCRE2's JIT stack defaults to 32 KiB, which a long run of whitespace against "\s+(?!\S)"
// can exhaust; one larger stack per thread serves every pattern.
constexpr size_t kJitStackBytes = 1 << 20;

class MatchScratch {
 public:
  MatchScratch()
      : data_(pcre2_match_data_create(1, nullptr)),
        context_(pcre2_match_context_create(nullptr)),
        stack_(pcre2_jit_stack_create(32 * 1024, kJitStackBytes, nullptr)) {
    if (context_ && stack_) pcre2_jit_stack_assign(context_, nullptr, stack_);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack_);
    pcre2_match_context_free(context_);
    pcre2_match_data_free(data_);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
  pcre2_match_data* data() const { return data_; }
  pcre2_match_context* context() const { return context_; }

 private:
  pcre2_match_data* data_;
  pcre2_match_context* context_;
  pcre2_jit_stack* stack_;
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? "unknown PCRE2 error " + std::to_string(code)
               : std::string(reinterpret_cast<const char*>(buffer), static_cast<size_t>(n));
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& source) : pattern_(pattern), source_(source) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset,
                                   nullptr);
  if (!code) {
    fail("{}: bad pre-tokenizer regex at offset {}: {}", source, offset, pcre2_message(error));
  }
  // Without JIT support PCRE2 interprets the pattern: slower, same result.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

Regex::Regex(Regex&& other) noexcept
    : code_(std::exchange(other.code_, nullptr)),
      pattern_(std::move(other.pattern_)),
      source_(std::move(other.source_)) {}

Regex& Regex::operator=(Regex&& other) noexcept {
  if (this != &other) {
    pcre2_code_free(static_cast<pcre2_code*>(code_));
    code_ = std::exchange(other.code_, nullptr);
    pattern_ = std::move(other.pattern_);
    source_ = std::move(other.source_);
  }
  return *this;
}

void Regex::split(std::string_view text, std::vector<std::string_view>& out) const {
  auto* code = static_cast<const pcre2_code*>(code_);
  MatchScratch& s = scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    // NOTEMPTY: a pattern that can match nothing must not stall the scan.
    const int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NOTEMPTY, s.data(), s.context());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      fail("{}: pre-tokenizer regex failed on a {}-byte text: {}", source_, text.size(), pcre2_message(rc));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(s.data());
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (begin < pos || end <= begin || end > text.size()) {
      fail("{}: pre-tokenizer regex reported a match outside the text (\\K in a lookaround?)", source_);
    }
    if (begin > pos) out.push_back(text.substr(pos, begin - pos));
    out.push_back(text.substr(begin, end - begin));
    pos = end;
  }
  if (pos < text.size()) out.push_back(text.substr(pos));
}

}  // namespace ruvdllm::text_detail
