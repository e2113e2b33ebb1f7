#pragma once
// One error type for every failure a user can cause (bad file, bad flag, bad request).
// Messages are one line, name the file or input, and say what is wrong.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace ruvdllm {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace ruvdllm
