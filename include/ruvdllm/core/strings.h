#pragma once
// Small string helpers shared by name parsers (tensor types, schedules, unmasking rules).
#include <string>
#include <string_view>

namespace ruvdllm {

// ASCII lower case; names on the command line are matched case-insensitively.
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace ruvdllm
