// `ruvdllm train` and `ruvdllm eval` as a user runs them: a TOML config in, a run folder out,
// resumption, Ctrl-C, and the trained model working in `eval` and `generate`.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace {

using ruvdllm::testing::counting_model_config;
using ruvdllm::testing::fails_with_one_line;
using ruvdllm::testing::read_jsonl;
using ruvdllm::testing::run_command;
using ruvdllm::testing::TempDir;
using ruvdllm::testing::toml_data_list;
using ruvdllm::testing::TomlConfig;
using ruvdllm::testing::write_file;

const std::string kCli = RUVDLLM_CLI_PATH;

class TrainCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ruvdllm::testing::write_counting_shards(dir_->file("shards"));
  }
  static void TearDownTestSuite() { delete dir_; }

  static TomlConfig config() {
    TomlConfig c = counting_model_config(/*n_layer=*/1);
    c.set("data", {{"seq_len", 24},
                   {"train", toml_data_list("count", dir_->file("shards"))},
                   {"heldout", toml_data_list("count", dir_->file("shards"))}});
    c.set("train", {{"steps", 1000}, {"batch_size", 4}, {"lr", 5e-3}, {"warmup_steps", 2}, {"threads", 1}});
    c.set("eval", {{"samples", 2}, {"windows", 4}});
    c.set("output", {{"dir", dir_->file("unused-run")}, {"type", "q8_0"}});
    return c;
  }
  static TempDir* dir_;
};
TempDir* TrainCliTest::dir_ = nullptr;

TEST_F(TrainCliTest, TrainsResumesAndEvaluates) {
  TempDir work;
  const std::string cfg = config().write(work.file("tiny.toml"));
  const std::string run = work.file("run");
  std::string out;
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --steps 3 --out " + run, &out), 0) << out;
  EXPECT_NE(out.find("step 3/3"), std::string::npos) << out;
  EXPECT_NE(out.find("held-out count"), std::string::npos) << out;
  EXPECT_NE(out.find("tok/s"), std::string::npos) << out;
  EXPECT_EQ(read_jsonl(run + "/log.jsonl").size(), 3u);
  EXPECT_TRUE(std::filesystem::exists(run + "/ckpt"));
  EXPECT_TRUE(std::filesystem::exists(run + "/config.toml"));
  ASSERT_TRUE(std::filesystem::exists(run + "/model.gguf"));

  // Without --resume the run folder is protected; with it the run continues to step 5.
  EXPECT_EQ(run_command(kCli + " train " + cfg + " --steps 5 --out " + run, &out), 1) << out;
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --steps 5 --out " + run + " --resume -t 2", &out), 0) << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  const auto log = read_jsonl(run + "/log.jsonl");
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

TEST_F(TrainCliTest, UserErrorsAreOneLine) {
  TempDir work;
  const std::string typo = config().set("checkpoint", "intreval", 5).write(work.file("typo.toml"));
  EXPECT_TRUE(fails_with_one_line(kCli + " train " + typo, "unknown key 'checkpoint.intreval'"));
  EXPECT_TRUE(fails_with_one_line(kCli + " train " + work.file("missing.toml"), "missing.toml"));
  const std::string ok = config().write(work.file("ok.toml"));
  EXPECT_TRUE(fails_with_one_line(kCli + " train " + ok + " --out " + work.file("none") + " --resume", "no checkpoint"));
  EXPECT_TRUE(fails_with_one_line(kCli + " eval -m " + work.file("none.gguf") + " --data count", "NAME=SHARD_FOLDER"));
  EXPECT_TRUE(
      fails_with_one_line(kCli + " eval -m " + work.file("none.gguf") + " --data count=" + work.file("nothing"), "nothing"));
}

TEST_F(TrainCliTest, CtrlCFinishesTheStepAndCheckpoints) {
  TempDir work;
  const std::string cfg = config().write(work.file("long.toml"));
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
  const auto log = read_jsonl(run + "/log.jsonl");
  ASSERT_GE(log.size(), 1u);
  EXPECT_LT(log.size(), 1000u);
  // The checkpoint holds the last logged step: resuming continues right after it.
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --out " + run + " --resume --steps " +
                            std::to_string(log.size() + 1),
                        &out),
            0)
      << out;
  const auto resumed = read_jsonl(run + "/log.jsonl");
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
  TomlConfig cfg = ruvdllm::testing::tiny_model_config(/*n_layer=*/1);
  cfg.set("model", "tokenizer", work.file("tok.json"));
  cfg.set("data", {{"seq_len", 32}, {"train", toml_data_list("words", work.file("shards"))}});
  cfg.set("train", {{"steps", 4}, {"batch_size", 2}, {"threads", 1}});
  cfg.set("output", "dir", work.file("run"));
  cfg.write(work.file("cfg.toml"));
  ASSERT_EQ(run_command(kCli + " train " + work.file("cfg.toml"), &out), 0) << out;
  ASSERT_EQ(run_command(kCli + " generate -m " + work.file("run/model.gguf") + " -p 'the cat' -n 8 -q", &out), 0)
      << out;
  EXPECT_FALSE(out.empty());
}

}  // namespace
