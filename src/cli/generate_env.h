#pragma once
// What `generate` and `bench generate` take from the environment rather than from flags:
// the default model and a pinned SIMD target.
#include <string>

namespace ruvdllm::cli {

// The model to load: `flag` when given, else $RUVDLLM_MODEL, else models/default.gguf beside
// the executable (<exe dir>/../models, then <exe dir>/models). Error listing the places looked
// in when none exists.
std::string resolve_model_path(const std::string& flag);

// RUVDLLM_TARGET=NAME (a Highway target: SCALAR, SSSE3, SSE4, AVX2, AVX3, AVX3_DL; any case)
// restricts run-time dispatch to that target, so results can be reproduced bit for bit on
// machines whose best target differs (golden tests pin SCALAR). Unset or empty: the best
// target. Error for a target this build or CPU lacks. Call before any kernel runs.
void apply_simd_target_override();

}  // namespace ruvdllm::cli
