#pragma once
// Small helpers the benchmark commands share for wall-clock timing.
#include <algorithm>
#include <chrono>
#include <vector>

namespace ruvdllm {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Calls f until `ms` milliseconds have passed since `start` (not at all if they already have):
// work that brings a device to its sustained state before it is timed.
template <typename F>
void repeat_for(Clock::time_point start, double ms, F&& f) {
  while (ms_since(start) < ms) f();
}

// The middle value (the upper one of an even count), 0 for none.
template <typename T>
double median(std::vector<T> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[v.size() / 2]);
}

}  // namespace ruvdllm
