#pragma once
// Helpers shared by every test program: seeded random data and scratch directories.
#include <cstdint>
#include <string>
#include <vector>

namespace ruvdllm::testing {

// n values uniform in [lo, hi) from a fixed seed (never all zeros).
std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
// n values from a normal distribution with the given standard deviation.
std::vector<float> random_normal(size_t n, uint64_t seed, float stddev = 1.0f);

// A fresh directory under the system temp folder, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs a shell command, returns its exit status and fills `output` with stdout+stderr.
int run_command(const std::string& command, std::string* output);

// Largest |a-b| / (|b| + floor) over two arrays, and the largest |a-b|.
struct Diff {
  double max_abs = 0;
  double max_rel = 0;
};
Diff compare(const float* a, const float* b, size_t n, double floor = 1e-3);

}  // namespace ruvdllm::testing
