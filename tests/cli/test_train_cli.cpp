// `ruvdllm train` and `ruvdllm eval` as a user runs them: a TOML config in, a run folder out,
// resumption, Ctrl-C, and the trained model working in `eval` and `generate`.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ruvdllm/train/token_shards.h"
#include "test_util.h"

namespace {

using ruvdllm::testing::run_command;
using ruvdllm::testing::TempDir;

const std::string kCli = RUVDLLM_CLI_PATH;

std::vector<nlohmann::json> read_log(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

class TrainCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // Counting sequences modulo 40 (ids 0-39), EOS 40, mask 41.
    ruvdllm::train::TokenShardWriter writer(dir_->file("shards"), 48, 2000);
    for (int d = 0; d < 200; ++d) {
      std::vector<int32_t> doc;
      for (int i = 0; i < 30; ++i) doc.push_back((d * 7 + i) % 40);
      doc.push_back(40);
      writer.append(doc);
    }
    writer.finish();
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string config(const std::string& extra = "") {
    return fmt::format(R"([model]
vocab_size = 48
mask_token_id = 41
eos_token_id = 40
n_embd = 32
n_layer = 1
n_head = 2
n_ff = 64
[data]
seq_len = 24
train = [{{ name = "count", path = "{0}" }}]
heldout = [{{ name = "count", path = "{0}" }}]
[train]
steps = 1000
batch_size = 4
lr = 5e-3
warmup_steps = 2
threads = 1
[eval]
samples = 2
windows = 4
[output]
dir = "{1}"
type = "q8_0"
{2}
)",
                       dir_->file("shards"), dir_->file("unused-run"), extra);
  }
  static TempDir* dir_;
};
TempDir* TrainCliTest::dir_ = nullptr;

TEST_F(TrainCliTest, TrainsResumesAndEvaluates) {
  TempDir work;
  const std::string cfg = work.file("tiny.toml");
  write_file(cfg, config());
  const std::string run = work.file("run");
  std::string out;
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --steps 3 --out " + run, &out), 0) << out;
  EXPECT_NE(out.find("step 3/3"), std::string::npos) << out;
  EXPECT_NE(out.find("held-out count"), std::string::npos) << out;
  EXPECT_NE(out.find("tok/s"), std::string::npos) << out;
  EXPECT_EQ(read_log(run + "/log.jsonl").size(), 3u);
  EXPECT_TRUE(std::filesystem::exists(run + "/ckpt"));
  EXPECT_TRUE(std::filesystem::exists(run + "/config.toml"));
  ASSERT_TRUE(std::filesystem::exists(run + "/model.gguf"));

  // Without --resume the run folder is protected; with it the run continues to step 5.
  EXPECT_EQ(run_command(kCli + " train " + cfg + " --steps 5 --out " + run, &out), 1) << out;
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --steps 5 --out " + run + " --resume -t 2", &out), 0) << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  const auto log = read_log(run + "/log.jsonl");
  ASSERT_EQ(log.size(), 5u);
  for (size_t i = 0; i < log.size(); ++i) EXPECT_EQ(log[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));

  ASSERT_EQ(run_command(kCli + " eval -m " + run + "/model.gguf --data count=" + dir_->file("shards") +
                            " --samples 2 --windows 3 --seq-len 24 --json 2>/dev/null",
                        &out),
            0)
      << out;
  const auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j["domains"].size(), 1u);
  EXPECT_EQ(j["domains"][0]["name"], "count");
  EXPECT_EQ(j["domains"][0]["windows"], 3);
  EXPECT_EQ(j["samples"], 2);
  const double bits = j["domains"][0]["bits_per_token"].get<double>();
  EXPECT_GT(bits, 0.5);
  EXPECT_LT(bits, 8.0);
  ASSERT_EQ(run_command(kCli + " eval -m " + run + "/model.gguf --data count=" + dir_->file("shards") +
                            " --samples 1 --windows 2 --seq-len 24",
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("bits/token"), std::string::npos) << out;
}

// Exit status 1 and a single line on stderr that holds `fragment`.
void expect_error(const std::string& command, const std::string& fragment) {
  std::string out;
  EXPECT_EQ(run_command(command, &out), 1) << command << "\n" << out;
  EXPECT_NE(out.find(fragment), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST_F(TrainCliTest, UserErrorsAreOneLine) {
  TempDir work;
  write_file(work.file("typo.toml"), config("[checkpoint]\nintreval = 5\n"));
  expect_error(kCli + " train " + work.file("typo.toml"), "unknown key 'checkpoint.intreval'");
  expect_error(kCli + " train " + work.file("missing.toml"), "missing.toml");
  write_file(work.file("ok.toml"), config());
  expect_error(kCli + " train " + work.file("ok.toml") + " --out " + work.file("none") + " --resume", "no checkpoint");
  expect_error(kCli + " eval -m " + work.file("none.gguf") + " --data count", "NAME=SHARD_FOLDER");
  expect_error(kCli + " eval -m " + work.file("none.gguf") + " --data count=" + work.file("nothing"), "nothing");
}

TEST_F(TrainCliTest, CtrlCFinishesTheStepAndCheckpoints) {
  TempDir work;
  const std::string cfg = work.file("long.toml");
  write_file(cfg, config());
  const std::string run = work.file("run");
  // Interrupt once the first step is logged; the run must stop within a step or two.
  const std::string script = fmt::format(
      "{} train {} --out {} --steps 1000000 & pid=$!; "
      "for i in $(seq 1 400); do [ -s {}/log.jsonl ] && break; sleep 0.05; done; "
      "kill -INT $pid; wait $pid; echo \"exit=$?\"",
      kCli, cfg, run, run);
  std::string out;
  ASSERT_EQ(run_command("timeout 60 bash -c '" + script + "'", &out), 0) << out;
  EXPECT_NE(out.find("exit=130"), std::string::npos) << out;
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
  ASSERT_TRUE(std::filesystem::exists(run + "/ckpt"));
  EXPECT_FALSE(std::filesystem::exists(run + "/model.gguf"));
  const auto log = read_log(run + "/log.jsonl");
  ASSERT_GE(log.size(), 1u);
  EXPECT_LT(log.size(), 1000u);
  // The checkpoint holds the last logged step: resuming continues right after it.
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --out " + run + " --resume --steps " +
                            std::to_string(log.size() + 1),
                        &out),
            0)
      << out;
  const auto resumed = read_log(run + "/log.jsonl");
  ASSERT_EQ(resumed.size(), log.size() + 1);
  EXPECT_EQ(resumed.back()["step"].get<size_t>(), log.size() + 1);
}

// The whole user path: a tokenizer and shards from text, training, then `generate` runs the
// exported model.
TEST_F(TrainCliTest, TrainedModelRunsInGenerate) {
  TempDir work;
  std::string corpus;
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"};
  for (int d = 0; d < 120; ++d) {
    for (int i = 0; i < 30; ++i) corpus += std::string(words[(d * 3 + i * 7) % 10]) + " ";
    corpus += ".\n<|endoftext|>\n";
  }
  write_file(work.file("corpus.txt"), corpus);
  std::string out;
  ASSERT_EQ(run_command(kCli + " tokenizer train " + work.file("corpus.txt") + " -o " + work.file("tok.json") +
                            " --vocab-size 280",
                        &out),
            0)
      << out;
  ASSERT_EQ(run_command(kCli + " pack " + work.file("corpus.txt") + " --tokenizer " + work.file("tok.json") +
                            " -o " + work.file("shards"),
                        &out),
            0)
      << out;
  write_file(work.file("cfg.toml"), fmt::format(R"([model]
tokenizer = "{0}"
n_embd = 32
n_layer = 1
n_head = 2
n_ff = 64
[data]
seq_len = 32
train = [{{ name = "words", path = "{1}" }}]
[train]
steps = 4
batch_size = 2
threads = 1
[output]
dir = "{2}"
)",
                                                work.file("tok.json"), work.file("shards"), work.file("run")));
  ASSERT_EQ(run_command(kCli + " train " + work.file("cfg.toml"), &out), 0) << out;
  ASSERT_EQ(run_command(kCli + " generate -m " + work.file("run/model.gguf") + " -p 'the cat' -n 8 -q", &out), 0)
      << out;
  EXPECT_FALSE(out.empty());
}

}  // namespace
