// `ruvdllm train` with a [lora] section, as a user runs it: a quantized base GGUF in, the PEFT
// adapter folder (and, when asked, the merged model.gguf) out, resumable, and refused on CUDA.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "ruvdllm/io/safetensors.h"
#include "test_util.h"

namespace {

using ruvdllm::testing::counting_model_config;
using ruvdllm::testing::fails_with_one_line;
using ruvdllm::testing::read_jsonl;
using ruvdllm::testing::run_command;
using ruvdllm::testing::TempDir;
using ruvdllm::testing::toml_data_list;
using ruvdllm::testing::TomlConfig;
using ruvdllm::testing::TomlValue;

const std::string kCli = RUVDLLM_CLI_PATH;

class LoraCliTest : public ::testing::Test {
 protected:
  // Counting sequences modulo 40 (ids 0-39), EOS 40, mask 41, and a base model trained a few
  // steps on them, exported in Q8_0 (the QLoRA case).
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ruvdllm::testing::write_counting_shards(dir_->file("shards"));
    TomlConfig base_config = counting_model_config(/*n_layer=*/2);
    base_config.set("data", {{"seq_len", 24}, {"train", toml_data_list("count", dir_->file("shards"))}});
    base_config.set("train", {{"steps", 60}, {"batch_size", 8}, {"lr", 1e-2}, {"warmup_steps", 5}, {"threads", 1}});
    base_config.set("output", {{"dir", dir_->file("base")}, {"type", "q8_0"}});
    std::string out;
    base_ok_ = run_command(kCli + " train " + base_config.write(dir_->file("base.toml")), &out) == 0;
    if (!base_ok_) base_error_ = out;
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override { ASSERT_TRUE(base_ok_) << base_error_; }

  static std::string base() { return dir_->file("base/model.gguf"); }

  // A LoRA run on the base, with `lora` as its [lora] table.
  static TomlConfig config(std::initializer_list<std::pair<std::string, TomlValue>> lora, const std::string& out_dir) {
    TomlConfig c;
    c.set("model", "init_from", base());
    c.set("data", {{"seq_len", 24}, {"train", toml_data_list("count", dir_->file("shards"))}});
    c.set("train", {{"steps", 150},
                    {"batch_size", 8},
                    {"lr", 2e-2},
                    {"min_lr", 2e-2},
                    {"warmup_steps", 2},
                    {"weight_decay", 0.0},
                    {"threads", 1}});
    c.set("checkpoint", "interval", 10);
    c.set("output", {{"dir", out_dir}, {"type", "f32"}});
    c.set("lora", lora);
    return c;
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
  const std::string run = work.file("run");
  const std::string cfg =
      config({{"rank", 4},
              {"alpha", 8},
              {"targets", TomlValue::strings({"attn_q", "attn_v", "o_proj", "ffn_up", "ffn_down"})}},
             run)
          .write(work.file("lora.toml"));
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
  const auto log = read_jsonl(run + "/log.jsonl");
  ASSERT_EQ(log.size(), 150u);
  for (size_t i = 0; i < log.size(); ++i) EXPECT_EQ(log[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));
  ASSERT_TRUE(std::filesystem::exists(run + "/model.gguf")) << out;

  // Resuming reproduces the uninterrupted run's losses exactly (the learning rate is constant
  // after warmup, so the first run's --steps 20 did not change the schedule).
  const std::string straight = work.file("straight");
  ASSERT_EQ(run_command(kCli + " train " + cfg + " --out " + straight, &out), 0) << out;
  const auto straight_log = read_jsonl(straight + "/log.jsonl");
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

TEST_F(LoraCliTest, UserErrorsAreOneLine) {
  TempDir work;
  const std::string run = work.file("run");
  auto train_fails = [&](const TomlConfig& config, const std::string& name, const std::string& fragment) {
    return fails_with_one_line(kCli + " train " + config.write(work.file(name)), fragment);
  };
  const std::string ok = config({{"rank", 2}}, run).write(work.file("ok.toml"));
  EXPECT_TRUE(fails_with_one_line(kCli + " train " + ok + " --device cuda", "does not support LoRA"));
  EXPECT_TRUE(train_fails(config({{"rank", 2}}, run).set("train", "device", "cuda"), "cuda.toml", "does not support LoRA"));
  EXPECT_TRUE(train_fails(config({{"rank", 2}, {"dropout", 0.1}}, run), "dropout.toml", "lora.dropout"));
  EXPECT_TRUE(train_fails(config({{"targets", TomlValue::strings({"qkv"})}}, run), "target.toml",
                          "unknown LoRA target 'qkv'"));
  EXPECT_TRUE(train_fails(config({{"rnak", 2}}, run), "typo.toml", "unknown key 'lora.rnak'"));
  TomlConfig no_base = config({{"rank", 2}}, run);
  no_base.erase("model", "init_from")
      .set("model", {{"vocab_size", ruvdllm::testing::kCountingVocab}, {"mask_token_id", ruvdllm::testing::kCountingMask}});
  EXPECT_TRUE(train_fails(no_base, "nobase.toml", "needs model.init_from"));
  TomlConfig merge_only = config({{"rank", 2}}, run);
  merge_only.erase_table("lora").set("output", "merge_lora", true);
  EXPECT_TRUE(train_fails(merge_only, "merge.toml", "merge_lora needs a [lora] section"));
  EXPECT_FALSE(std::filesystem::exists(run + "/ckpt"));
}

}  // namespace
