#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace ruvdllm::cli {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), start_(std::chrono::steady_clock::now()),
      is_tty_(isatty(STDERR_FILENO) != 0) {}

void ProgressBar::update(int64_t done, int64_t total, const std::string& detail) {
  const auto now = std::chrono::steady_clock::now();
  // A redirected stderr gets a line every few seconds instead of a redraw storm.
  const auto interval = is_tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(3000);
  if (done < total && drawn_ && now - last_draw_ < interval) return;
  last_draw_ = now;
  drawn_ = true;
  const double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = frac > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  const std::string line = fmt::format("{} [{}] {:5.1f}% {}/{} {:.1f}s eta {:.1f}s {}", label_, bar,
                                       frac * 100.0, done, total, elapsed, eta, detail);
  if (is_tty_) {
    std::fprintf(stderr, "\r%-100s", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (is_tty_ && drawn_) std::fputc('\n', stderr);
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", bytes, units[u]) : fmt::format("{:.2f} {}", bytes, units[u]);
}

}  // namespace ruvdllm::cli
