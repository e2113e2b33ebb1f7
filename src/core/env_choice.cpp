#include "ruvdllm/core/env_choice.h"

#include "ruvdllm/core/error.h"

namespace ruvdllm {

void throw_bad_env_choice(const char* name, const std::string& choices, const char* value) {
  fail("{} must be one of {}, not '{}'", name, choices, value);
}

}  // namespace ruvdllm
