#include "cli/generate_env.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <hwy/targets.h>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/strings.h"

namespace ruvdllm::cli {
namespace {

std::filesystem::path executable_dir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : exe.parent_path();
}

}  // namespace

std::string resolve_model_path(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("RUVDLLM_MODEL"); env && *env) return env;
  std::vector<std::string> candidates;
  const std::filesystem::path dir = executable_dir();
  if (!dir.empty()) {
    // Installed as <prefix>/bin/ruvdllm with <prefix>/models, or run from a build directory
    // inside the source tree (build/ruvdllm with models/ beside build/).
    candidates.push_back((dir.parent_path() / "models" / "default.gguf").lexically_normal().string());
    candidates.push_back((dir / "models" / "default.gguf").lexically_normal().string());
  }
  std::string looked;
  for (const std::string& path : candidates) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) return path;
    looked += (looked.empty() ? "" : ", ") + path;
  }
  if (looked.empty()) looked = "nowhere: the executable's directory is unknown";
  fail("no default model found (looked in $RUVDLLM_MODEL, {}); pass -m MODEL", looked);
}

void apply_simd_target_override() {
  const char* want = std::getenv("RUVDLLM_TARGET");
  if (!want || !*want) return;
  std::string available;
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    const std::string name = hwy::TargetName(target);
    if (ascii_lower(name) == ascii_lower(want)) {
      hwy::SetSupportedTargetsForTest(target);
      hwy::GetChosenTarget().Update(hwy::SupportedTargets());
      return;
    }
    available += (available.empty() ? "" : ", ") + name;
  }
  fail("RUVDLLM_TARGET={} is not a SIMD target of this build and CPU (available: {})", want, available);
}

}  // namespace ruvdllm::cli
