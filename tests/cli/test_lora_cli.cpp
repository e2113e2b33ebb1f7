// `ruvdllm train` with a [lora] section, as a user runs it: a quantized base GGUF in, the PEFT
// adapter folder (and, when asked, the merged model.gguf) out, resumable, and refused on CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ruvdllm/io/safetensors.h"
#include "ruvdllm/train/token_shards.h"
#include "test_util.h"

namespace {

using ruvdllm::testing::run_command;
using ruvdllm::testing::TempDir;

const std::string kCli = RUVDLLM_CLI_PATH;

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<nlohmann::json> read_log(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

class LoraCliTest : public ::testing::Test {
 protected:
  // Counting sequences modulo 40 (ids 0-39), EOS 40, mask 41, and a base model trained a few
  // steps on them, exported in Q8_0 (the QLoRA case).
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ruvdllm::train::TokenShardWriter writer(dir_->file("shards"), 48, 2000);
    for (int d = 0; d < 200; ++d) {
      std::vector<int32_t> doc;
      for (int i = 0; i < 30; ++i) doc.push_back((d * 7 + i) % 40);
      doc.push_back(40);
      writer.append(doc);
    }
    writer.finish();
    write_file(dir_->file("base.toml"), fmt::format(R"([model]
vocab_size = 48
mask_token_id = 41
eos_token_id = 40
n_embd = 32
n_layer = 2
n_head = 2
n_ff = 64
[data]
seq_len = 24
train = [{{ name = "count", path = "{0}" }}]
[train]
steps = 60
batch_size = 8
lr = 1e-2
warmup_steps = 5
threads = 1
[output]
dir = "{1}"
type = "q8_0"
)",
                                                    dir_->file("shards"), dir_->file("base")));
    std::string out;
    base_ok_ = run_command(kCli + " train " + dir_->file("base.toml"), &out) == 0;
    if (!base_ok_) base_error_ = out;
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override { ASSERT_TRUE(base_ok_) << base_error_; }

  static std::string base() { return dir_->file("base/model.gguf"); }

  static std::string config(const std::string& lora, const std::string& out_dir, const std::string& extra = "") {
    return fmt::format(R"([model]
init_from = "{0}"
[data]
seq_len = 24
train = [{{ name = "count", path = "{1}" }}]
[train]
steps = 150
batch_size = 8
lr = 2e-2
min_lr = 2e-2
warmup_steps = 2
weight_decay = 0.0
threads = 1
{4}
[checkpoint]
interval = 10
[output]
dir = "{2}"
type = "f32"
[lora]
{3}
)",
                       base(), dir_->file("shards"), out_dir, lora, extra);
  }

  static TempDir* dir_;
  static bool base_ok_;
  static std::string base_error_;
};
TempDir* LoraCliTest::dir_ = nullptr;
bool LoraCliTest::base_ok_ = false;
std::string LoraCliTest::base_error_;

double heldout_bits(const std::string& model, const std::string& shards) {
  std::string out;
  if (run_command(kCli + " eval -m " + model + " --data count=" + shards +
                      " --samples 4 --windows 8 --seq-len 24 --json 2>/dev/null",
                  &out) != 0) {
    ADD_FAILURE() << out;
    return 0;
  }
  return nlohmann::json::parse(out)["domains"][0]["bits_per_token"].get<double>();
}

TEST_F(LoraCliTest, TrainsAdaptersResumesAndMerges) {
  TempDir work;
  const std::string cfg = work.file("lora.toml");
  const std::string run = work.file("run");
  write_file(cfg, config("rank = 4\nalpha = 8\ntargets = [\"attn_q\", \"attn_v\", \"o_proj\", \"ffn_up\", \"ffn_down\"]", run));
  std::string out;
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --steps 20", &out), 0) << out;
  EXPECT_NE(out.find("LoRA parameters (rank 4)"), std::string::npos) << out;
  ASSERT_TRUE(std::filesystem::exists(run + "/adapter_model.safetensors")) << out;
  ASSERT_TRUE(std::filesystem::exists(run + "/adapter_config.json"));
  EXPECT_FALSE(std::filesystem::exists(run + "/model.gguf"));
  std::ifstream in(run + "/adapter_config.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["lora_alpha"].get<double>(), 8.0);
  EXPECT_EQ(j["target_modules"], (nlohmann::json{"q_proj", "v_proj", "o_proj", "up_proj", "down_proj"}));
  EXPECT_EQ(j["base_model_name_or_path"], base());
  const auto adapter = ruvdllm::SafetensorsFile::open(run + "/adapter_model.safetensors");
  EXPECT_EQ(adapter.tensors().size(), 2u * 5 * 2);
  // The checkpoint holds the adapters and their AdamW moments, not the frozen base.
  const auto ckpt = ruvdllm::SafetensorsFile::open(run + "/ckpt");
  EXPECT_EQ(ckpt.tensors().size(), 3u * 2 * 5 * 2);
  EXPECT_NE(ckpt.find_tensor("model/base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"), nullptr);

  // Resume to the last step and merge into model.gguf.
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --resume --merge-lora", &out), 0) << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  const auto log = read_log(run + "/log.jsonl");
  ASSERT_EQ(log.size(), 150u);
  for (size_t i = 0; i < log.size(); ++i) EXPECT_EQ(log[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));
  ASSERT_TRUE(std::filesystem::exists(run + "/model.gguf")) << out;

  // Resuming reproduces the uninterrupted run's losses exactly (the learning rate is constant
  // after warmup, so the first run's --steps 20 did not change the schedule).
  const std::string straight = work.file("straight");
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --out " + straight, &out), 0) << out;
  const auto straight_log = read_log(straight + "/log.jsonl");
  ASSERT_EQ(straight_log.size(), log.size());
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(straight_log[i]["loss"].get<double>(), log[i]["loss"].get<double>()) << "step " << i + 1;
  }

  // The adapters learned: the merged model scores held-out data better than the base.
  const double before = heldout_bits(base(), dir_->file("shards"));
  const double after = heldout_bits(run + "/model.gguf", dir_->file("shards"));
  EXPECT_LT(after, before - 0.2) << "base " << before << " bits/token, merged " << after << ", losses "
                                 << log.front()["loss"] << " ... " << log.back()["loss"];
}

// Exit status 1 and a single line on stderr that holds `fragment`.
void expect_error(const std::string& command, const std::string& fragment) {
  std::string out;
  EXPECT_EQ(run_command(command, &out), 1) << command << "\n" << out;
  EXPECT_NE(out.find(fragment), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST_F(LoraCliTest, UserErrorsAreOneLine) {
  TempDir work;
  const std::string run = work.file("run");
  write_file(work.file("ok.toml"), config("rank = 2", run));
  expect_error(kCli + " train " + work.file("ok.toml") + " --device cuda", "does not support LoRA");
  write_file(work.file("cuda.toml"), config("rank = 2", run, "device = \"cuda\""));
  expect_error(kCli + " train " + work.file("cuda.toml"), "does not support LoRA");
  write_file(work.file("dropout.toml"), config("rank = 2\ndropout = 0.1", run));
  expect_error(kCli + " train " + work.file("dropout.toml"), "lora.dropout");
  write_file(work.file("target.toml"), config("targets = [\"qkv\"]", run));
  expect_error(kCli + " train " + work.file("target.toml"), "unknown LoRA target 'qkv'");
  write_file(work.file("typo.toml"), config("rnak = 2", run));
  expect_error(kCli + " train " + work.file("typo.toml"), "unknown key 'lora.rnak'");
  std::string no_base = config("rank = 2", run);
  const size_t init_line = no_base.find("init_from");
  no_base.replace(init_line, no_base.find('\n', init_line) - init_line, "vocab_size = 48\nmask_token_id = 41");
  write_file(work.file("nobase.toml"), no_base);
  expect_error(kCli + " train " + work.file("nobase.toml"), "needs model.init_from");
  std::string merge_only = config("rank = 2", run);
  merge_only = merge_only.substr(0, merge_only.find("[lora]")) + "merge_lora = true\n";
  write_file(work.file("merge.toml"), merge_only);
  expect_error(kCli + " train " + work.file("merge.toml"), "merge_lora needs a [lora] section");
  EXPECT_FALSE(std::filesystem::exists(run + "/ckpt"));
}

}  // namespace
