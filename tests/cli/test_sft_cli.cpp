// `ruvdllm train` with data.format = "sft", as a user runs it: a model pre-trained a few steps,
// fine-tuned on prompt/response JSONL whose answer is a function of the prompt (fully and with
// LoRA), the held-out answer loss falling, and `ruvdllm generate` running on the result.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/token_shards.h"
#include "test_util.h"

namespace {

using ruvdllm::testing::run_command;
using ruvdllm::testing::TempDir;

const std::string kCli = RUVDLLM_CLI_PATH;
const std::string kTokenizer = std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf";
const std::vector<std::string> kWords = {"red",   "green", "blue",  "house", "river", "stone", "apple", "tiger",
                                         "cloud", "bread", "light", "music", "paper", "glass", "horse", "sugar"};

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<nlohmann::json> read_log(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// The answer repeats the prompt's word in reverse order of a fixed pairing: learnable, and
// wrong for any model that ignores the prompt.
std::string example(size_t i) {
  const std::string& a = kWords[i % kWords.size()];
  const std::string& b = kWords[(i * 5 + 3) % kWords.size()];
  return fmt::format(R"({{"prompt": "swap {} {}:", "response": " {} {}"}})", a, b, b, a) + "\n";
}

class SftCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const ruvdllm::Tokenizer tok = ruvdllm::Tokenizer::load(kTokenizer);
    ruvdllm::train::TokenShardWriter writer(dir_->file("shards"), tok.vocab_size(), 100000);
    for (int d = 0; d < 300; ++d) {
      std::string text;
      for (int k = 0; k < 6; ++k) text += kWords[static_cast<size_t>(d * 3 + k * 7) % kWords.size()] + " ";
      std::vector<int32_t> doc = tok.encode(text, false);
      doc.push_back(*tok.eos_id());
      writer.append(doc);
    }
    writer.finish();
    std::string train;
    std::string heldout;
    for (size_t i = 0; i < 200; ++i) train += example(i);
    for (size_t i = 200; i < 232; ++i) heldout += example(i);
    write_file(dir_->file("train.jsonl"), train);
    write_file(dir_->file("heldout.jsonl"), heldout);
    write_file(dir_->file("base.toml"), fmt::format(R"([model]
tokenizer = "{0}"
n_embd = 32
n_layer = 2
n_head = 2
n_ff = 64
[data]
seq_len = 16
train = [{{ name = "words", path = "{1}" }}]
[train]
steps = 60
batch_size = 8
lr = 1e-2
warmup_steps = 2
threads = 2
[output]
dir = "{2}"
)",
                                                    kTokenizer, dir_->file("shards"), dir_->file("base")));
    std::string out;
    base_ok_ = run_command(kCli + " train " + dir_->file("base.toml"), &out) == 0;
    if (!base_ok_) base_error_ = out;
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override { ASSERT_TRUE(base_ok_) << base_error_; }

  static std::string sft_config(const std::string& out_dir, const std::string& extra) {
    return fmt::format(R"([model]
init_from = "{0}"
[data]
format = "sft"
seq_len = 16
train = [{{ name = "swap", path = "{1}" }}]
heldout = [{{ name = "swap", path = "{2}" }}]
[train]
steps = 80
batch_size = 8
lr = 1e-2
warmup_steps = 5
threads = 2
[eval]
interval = 1000
samples = 4
windows = 16
[output]
dir = "{3}"
{4}
)",
                       dir_->file("base/model.gguf"), dir_->file("train.jsonl"), dir_->file("heldout.jsonl"),
                       out_dir, extra);
  }

  // Held-out answer loss at SFT step 1 and at the end.
  static std::pair<double, double> heldout_curve(const std::string& out_dir) {
    double first = -1;
    double last = -1;
    for (const nlohmann::json& line : read_log(out_dir + "/log.jsonl")) {
      if (!line.contains("heldout")) continue;
      const double bits = line["heldout"]["swap"]["bits_per_token"].get<double>();
      if (first < 0) first = bits;
      last = bits;
    }
    return {first, last};
  }

  static TempDir* dir_;
  static bool base_ok_;
  static std::string base_error_;
};

TempDir* SftCliTest::dir_ = nullptr;
bool SftCliTest::base_ok_ = false;
std::string SftCliTest::base_error_;

TEST_F(SftCliTest, FullFineTuneLowersHeldoutAnswerLossAndGenerates) {
  const std::string out_dir = dir_->file("sft");
  // Evaluate after the first step too, for the "before" figure.
  std::string text = sft_config(out_dir, "");
  text.replace(text.find("interval = 1000"), 15, "interval = 1");
  write_file(dir_->file("sft.toml"), text);
  std::string out;
  ASSERT_EQ(run_command(kCli + " train " + dir_->file("sft.toml"), &out), 0) << out;
  EXPECT_NE(out.find("SFT data " + dir_->file("train.jsonl") + ": 200 examples, 0 truncated"), std::string::npos)
      << out;
  const auto [first, last] = heldout_curve(out_dir);
  std::cout << "held-out answer loss " << first << " -> " << last << " bits/token\n";
  ASSERT_GT(first, 0);
  EXPECT_LT(last, first * 0.6) << "held-out answer loss " << first << " -> " << last << " bits/token";

  ASSERT_TRUE(std::filesystem::exists(out_dir + "/model.gguf"));
  ASSERT_EQ(run_command(kCli + " generate -q --raw -m " + out_dir + "/model.gguf -p 'swap red blue:' -n 8 -s 4 -t 2",
                        &out),
            0)
      << out;
}

TEST_F(SftCliTest, LoraFineTuneLowersHeldoutAnswerLoss) {
  const std::string out_dir = dir_->file("sft-lora");
  std::string text = sft_config(out_dir, "merge_lora = true\n[lora]\nrank = 8\nalpha = 16\n"
                                     "targets = [\"attn_q\", \"attn_k\", \"attn_v\", \"attn_output\", \"ffn_gate\", "
                                     "\"ffn_up\", \"ffn_down\"]\n");
  text.replace(text.find("interval = 1000"), 15, "interval = 1");
  // Adapters start at zero and move the tiny base slowly: a larger step.
  text.replace(text.find("lr = 1e-2"), 9, "lr = 3e-2");
  text.replace(text.find("steps = 80"), 10, "steps = 150");
  write_file(dir_->file("lora.toml"), text);
  std::string out;
  ASSERT_EQ(run_command(kCli + " train " + dir_->file("lora.toml"), &out), 0) << out;
  const auto [first, last] = heldout_curve(out_dir);
  std::cout << "held-out answer loss " << first << " -> " << last << " bits/token\n";
  ASSERT_GT(first, 0);
  // The adapters move a 545K-parameter base far less than full fine-tuning does (which
  // more than halves it), but the drop is deterministic: same draws, same masks, 2 threads.
  EXPECT_LT(last, first - 0.15) << out << "held-out answer loss " << first << " -> " << last << " bits/token";
  EXPECT_TRUE(std::filesystem::exists(out_dir + "/adapter_model.safetensors"));
  ASSERT_EQ(run_command(kCli + " generate -q --raw -m " + out_dir + "/model.gguf -p 'swap red blue:' -n 8 -s 4 -t 2",
                        &out),
            0)
      << out;
}

TEST_F(SftCliTest, MalformedJsonlNamesFileAndLine) {
  const std::string bad = dir_->file("bad.jsonl");
  write_file(bad, example(0) + "{\"prompt\": \"x\"}\n");
  std::string text = sft_config(dir_->file("sft-bad"), "");
  text.replace(text.find(dir_->file("train.jsonl")), dir_->file("train.jsonl").size(), bad);
  write_file(dir_->file("bad.toml"), text);
  std::string out;
  EXPECT_NE(run_command(kCli + " train " + dir_->file("bad.toml"), &out), 0);
  EXPECT_NE(out.find(bad + ":2: missing \"response\""), std::string::npos) << out;
}

}  // namespace
