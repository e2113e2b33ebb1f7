#pragma once
// A one-line progress bar on stderr for long jobs (quantize, init, later train/convert).
#include <chrono>
#include <cstdint>
#include <string>

namespace ruvdllm::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  // Redraws at most a few times a second, and always at done == total.
  void update(int64_t done, int64_t total, const std::string& detail = {});
  void finish();

 private:
  std::string label_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
  bool drawn_ = false;
  bool is_tty_;
};

std::string human_bytes(double bytes);

}  // namespace ruvdllm::cli
