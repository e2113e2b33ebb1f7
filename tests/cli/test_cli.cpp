// End-to-end tests of the `ruvdllm` binary: what a user types, what they get back.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using ruvdllm::testing::run_command;
using ruvdllm::testing::TempDir;

const std::string kCli = RUVDLLM_CLI_PATH;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::string out;
    ASSERT_EQ(run_command(kCli + " init --arch llada --shape test --type f32 --seed 3 " + model(), &out), 0) << out;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return dir_->file("tiny.gguf"); }
  static std::string path(const std::string& name) { return dir_->file(name); }
  static TempDir* dir_;
};
TempDir* CliTest::dir_ = nullptr;

TEST_F(CliTest, InfoDescribesTheModel) {
  std::string out;
  ASSERT_EQ(run_command(kCli + " info " + model(), &out), 0) << out;
  EXPECT_NE(out.find("architecture  llada"), std::string::npos) << out;
  EXPECT_NE(out.find("token_embd.weight"), std::string::npos);
  EXPECT_NE(out.find("blk.1.ffn_down.weight"), std::string::npos);
  EXPECT_NE(out.find("memory"), std::string::npos);
  ASSERT_EQ(run_command(kCli + " info --metadata " + model(), &out), 0) << out;
  EXPECT_NE(out.find("llada.block_count"), std::string::npos) << out;
}

TEST_F(CliTest, LogitsWritesRawAndNpy) {
  std::string out;
  ASSERT_EQ(run_command(kCli + " logits " + model() + " --tokens 1,2,3,4,5 -o " + path("l.bin"), &out), 0) << out;
  ASSERT_EQ(run_command(kCli + " logits " + model() + " --tokens 1,2,3,4,5 -o " + path("l.npy") + " -t 1", &out), 0)
      << out;
  const std::string raw = read_file(path("l.bin"));
  const std::string npy = read_file(path("l.npy"));
  ASSERT_GT(raw.size(), 0u);
  ASSERT_EQ(raw.size() % (5 * sizeof(float)), 0u);
  const size_t vocab = raw.size() / 5 / sizeof(float);
  ASSERT_EQ(npy.substr(0, 6), "\x93NUMPY");
  const size_t header = 10 + static_cast<uint8_t>(npy[8]) + 256u * static_cast<uint8_t>(npy[9]);
  EXPECT_EQ(header % 64, 0u);
  EXPECT_NE(npy.find("'shape': (5, " + std::to_string(vocab) + ")"), std::string::npos) << npy.substr(0, header);
  ASSERT_EQ(npy.size() - header, raw.size());
  // Thread count never changes results.
  EXPECT_EQ(0, std::memcmp(npy.data() + header, raw.data(), raw.size()));
  std::vector<float> logits(raw.size() / 4);
  std::memcpy(logits.data(), raw.data(), raw.size());
  double sum_sq = 0;
  for (float v : logits) {
    ASSERT_TRUE(std::isfinite(v));
    sum_sq += v * v;
  }
  EXPECT_GT(sum_sq, 0.0);
}

TEST_F(CliTest, QuantizeKeepsLogitsClose) {
  std::string out;
  ASSERT_EQ(run_command(kCli + " logits " + model() + " --tokens 7,8,9 -o " + path("f32.bin"), &out), 0) << out;
  for (const char* type : {"q8_0", "f16", "q4_K", "q6_K"}) {
    const std::string q = path(std::string("m-") + type + ".gguf");
    ASSERT_EQ(run_command(kCli + " quantize " + model() + " " + q + " --type " + type, &out), 0) << out;
    ASSERT_EQ(run_command(kCli + " info " + q, &out), 0) << out;
    ASSERT_EQ(run_command(kCli + " logits " + q + " --tokens 7,8,9 -o " + path("q.bin"), &out), 0) << out;
    const std::string a = read_file(path("f32.bin"));
    const std::string b = read_file(path("q.bin"));
    ASSERT_EQ(a.size(), b.size());
    const size_t n = a.size() / 4;
    std::vector<float> fa(n), fb(n);
    std::memcpy(fa.data(), a.data(), a.size());
    std::memcpy(fb.data(), b.data(), b.size());
    double err = 0, ref = 0;
    for (size_t i = 0; i < n; ++i) {
      err += (fa[i] - fb[i]) * (fa[i] - fb[i]);
      ref += fa[i] * fa[i];
    }
    // Relative RMS error of the logits: small for 8-bit, larger for 4-bit weights.
    const double rel = std::sqrt(err / ref);
    EXPECT_LT(rel, std::string(type) == "q4_K" ? 0.25 : 0.08) << type;
    EXPECT_GT(rel, 0.0) << type << ": quantization changed nothing, suspicious";
  }
}

void expect_clean_failure(const std::string& args, const std::string& needle, int expected_code = 1) {
  std::string out;
  const int code = run_command(kCli + " " + args, &out);
  EXPECT_EQ(code, expected_code) << args << "\n" << out;
  EXPECT_NE(out.find(needle), std::string::npos) << args << "\n" << out;
  EXPECT_EQ(count_lines(out), 1) << args << "\n" << out;
}

// `bench generate` on the CPU, plain and with the KV cache: one line of step times (median and
// mean, which a cached generation's extending passes pull apart) and a positive tokens/s.
TEST_F(CliTest, BenchGenerateReportsStepTimesAndTokensPerSecond) {
  for (const std::string extra : {"", " --cache-blocks"}) {
    std::string out;
    ASSERT_EQ(run_command(kCli + " bench generate -m " + model() +
                              " -n 16 -s 4 -b 8 --prompt-len 8 -t 1" + extra,
                          &out),
              0)
        << out;
    EXPECT_NE(out.find("step ms: median "), std::string::npos) << out;
    EXPECT_NE(out.find(" mean "), std::string::npos) << out;
    const size_t at = out.find("tokens/s: ");
    ASSERT_NE(at, std::string::npos) << out;
    EXPECT_GT(std::atof(out.c_str() + at + 10), 0.0) << out;
  }
}

TEST_F(CliTest, BadInputGivesOneLineErrors) {
  expect_clean_failure("info " + path("missing.gguf"), "missing.gguf");
  {
    std::ofstream(path("junk.gguf"), std::ios::binary) << "this is not a model file at all";
  }
  expect_clean_failure("info " + path("junk.gguf"), "junk.gguf");
  // Truncate a real model in the middle of its tensor data.
  const std::string bytes = read_file(model());
  {
    std::ofstream(path("cut.gguf"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  expect_clean_failure("info " + path("cut.gguf"), "cut.gguf");
  expect_clean_failure("logits " + model() + " --tokens 1,x,3 -o " + path("o.bin"), "--tokens");
  expect_clean_failure("logits " + model() + " --tokens 1,99999999,3 -o " + path("o.bin"), "99999999");
  expect_clean_failure("quantize " + model() + " " + path("o.gguf") + " --type q3_K", "q3_K");
  expect_clean_failure("init --arch gpt5 --shape test " + path("o.gguf"), "gpt5");
  expect_clean_failure("init --arch llada --shape 3b " + path("o.gguf"), "3b");
  expect_clean_failure("frobnicate", "frobnicate", 2);
  expect_clean_failure("logits " + model() + " --tokens 1 -o " + path("o.bin") + " --threads -4", "threads", 2);
  expect_clean_failure("bench gpu-step " + model() + " --cached -5", "cached", 2);
  expect_clean_failure("bench gpu-step " + model() + " --sustain-ms -1", "sustain-ms", 2);
  EXPECT_FALSE(std::filesystem::exists(path("o.bin")));
  EXPECT_FALSE(std::filesystem::exists(path("o.gguf")));
}

}  // namespace
