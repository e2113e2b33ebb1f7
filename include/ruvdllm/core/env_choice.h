#pragma once
// Settings read from environment variables that name one of a few choices (the engine's A/B
// switches, e.g. RUVDLLM_CUDA_GEMM=auto|cublas|wgmma): the first choice when the variable is
// unset, an Error naming the choices for any other value. Free of fmt, so CUDA sources can
// include it (nvcc cannot compile fmt's compile-time format checks).
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace ruvdllm {

// Throws Error("<name> must be one of <choices>, not '<value>'").
[[noreturn]] void throw_bad_env_choice(const char* name, const std::string& choices,
                                       const char* value);

template <class T>
T env_choice(const char* name, std::initializer_list<std::pair<std::string_view, T>> choices) {
  const char* set = std::getenv(name);
  if (set == nullptr) return choices.begin()->second;
  std::string words;
  for (const auto& [word, value] : choices) {
    if (word == set) return value;
    words += (words.empty() ? "" : ", ") + std::string(word);
  }
  throw_bad_env_choice(name, words, set);
}

}  // namespace ruvdllm
