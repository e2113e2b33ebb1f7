// `ruvdllm train` with data.format = "sft", as a user runs it: a model pre-trained a few steps,
// fine-tuned on prompt/response JSONL whose answer is a function of the prompt (fully and with
// LoRA), the held-out answer loss falling, and `ruvdllm generate` running on the result.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/token_shards.h"
#include "test_util.h"

namespace {

using ruvdllm::testing::read_jsonl;
using ruvdllm::testing::run_command;
using ruvdllm::testing::TempDir;
using ruvdllm::testing::toml_data_list;
using ruvdllm::testing::TomlConfig;
using ruvdllm::testing::write_file;

const std::string kCli = RUVDLLM_CLI_PATH;
const std::string kTokenizer = std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf";
const std::vector<std::string> kWords = {"red",   "green", "blue",  "house", "river", "stone", "apple", "tiger",
                                         "cloud", "bread", "light", "music", "paper", "glass", "horse", "sugar"};

// The answer repeats the prompt's word in reverse order of a fixed pairing: learnable, and
// wrong for any model that ignores the prompt.
std::string example(size_t i) {
  const std::string& a = kWords[i % kWords.size()];
  const std::string& b = kWords[(i * 5 + 3) % kWords.size()];
  return fmt::format(R"({{"prompt": "swap {} {}:", "response": " {} {}"}})", a, b, b, a) + "\n";
}

// The same task as a chat (TRL's "messages" format); every third one opens with a system
// message and every fourth carries an earlier exchange, which belongs to the prompt.
std::string chat_example(size_t i) {
  const std::string& a = kWords[i % kWords.size()];
  const std::string& b = kWords[(i * 5 + 3) % kWords.size()];
  nlohmann::json messages = nlohmann::json::array();
  if (i % 3 == 0) messages.push_back({{"role", "system"}, {"content", "Swap the words."}});
  if (i % 4 == 0) {
    messages.push_back({{"role", "user"}, {"content", "swap " + b + " " + a + ":"}});
    messages.push_back({{"role", "assistant"}, {"content", a + " " + b}});
  }
  messages.push_back({{"role", "user"}, {"content", "swap " + a + " " + b + ":"}});
  messages.push_back({{"role", "assistant"}, {"content", b + " " + a}});
  return nlohmann::json{{"messages", messages}}.dump() + "\n";
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
    TomlConfig base = ruvdllm::testing::tiny_model_config(/*n_layer=*/2);
    base.set("model", "tokenizer", kTokenizer);
    base.set("data", {{"seq_len", 16}, {"train", toml_data_list("words", dir_->file("shards"))}});
    base.set("train", {{"steps", 60}, {"batch_size", 8}, {"lr", 1e-2}, {"warmup_steps", 2}, {"threads", 2}});
    base.set("output", "dir", dir_->file("base"));
    std::string out;
    base_ok_ = run_command(kCli + " train " + base.write(dir_->file("base.toml")), &out) == 0;
    if (!base_ok_) base_error_ = out;
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override { ASSERT_TRUE(base_ok_) << base_error_; }

  static TomlConfig sft_config(const std::string& out_dir) {
    TomlConfig c;
    c.set("model", "init_from", dir_->file("base/model.gguf"));
    c.set("data", {{"format", "sft"},
                   {"seq_len", 16},
                   {"train", toml_data_list("swap", dir_->file("train.jsonl"))},
                   {"heldout", toml_data_list("swap", dir_->file("heldout.jsonl"))}});
    c.set("train", {{"steps", 80}, {"batch_size", 8}, {"lr", 1e-2}, {"warmup_steps", 5}, {"threads", 2}});
    c.set("eval", {{"interval", 1000}, {"samples", 4}, {"windows", 16}});
    c.set("output", "dir", out_dir);
    return c;
  }

  // Held-out answer loss at SFT step 1 and at the end.
  static std::pair<double, double> heldout_curve(const std::string& out_dir) {
    double first = -1;
    double last = -1;
    for (const nlohmann::json& line : read_jsonl(out_dir + "/log.jsonl")) {
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
  const std::string cfg = sft_config(out_dir).set("eval", "interval", 1).write(dir_->file("sft.toml"));
  std::string out;
  ASSERT_EQ(run_command(kCli + " train " + cfg, &out), 0) << out;
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
  TomlConfig config = sft_config(out_dir);
  config.set("output", "merge_lora", true);
  config.set("lora", {{"rank", 8},
                      {"alpha", 16},
                      {"targets", ruvdllm::testing::TomlValue::strings({"attn_q", "attn_k", "attn_v", "attn_output",
                                                                        "ffn_gate", "ffn_up", "ffn_down"})}});
  config.set("eval", "interval", 1);
  // Adapters start at zero and move the tiny base slowly: a larger step.
  config.set("train", {{"lr", 3e-2}, {"steps", 150}});
  const std::string cfg = config.write(dir_->file("lora.toml"));
  std::string out;
  ASSERT_EQ(run_command(kCli + " train " + cfg, &out), 0) << out;
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
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"prompt\": \"x\"}\n", ":2: missing \"response\""},
      {R"({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]})"
       "\n",
       ":2: the last message is from the user, not the assistant"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string bad = dir_->file(fmt::format("bad{}.jsonl", i));
    write_file(bad, example(0) + cases[i].first);
    const std::string cfg = sft_config(dir_->file("sft-bad"))
                                .set("data", "train", toml_data_list("swap", bad))
                                .write(dir_->file("bad.toml"));
    std::string out;
    EXPECT_NE(run_command(kCli + " train " + cfg, &out), 0);
    EXPECT_NE(out.find(bad + cases[i].second), std::string::npos) << out;
  }
}

// TRL/Axolotl chat data ("messages" lines, mixed with a prompt/response line) trains end to end
// and its held-out answer loss is scored.
TEST_F(SftCliTest, TrainsOnChatMessages) {
  std::string train = example(0);
  std::string heldout;
  for (size_t i = 0; i < 100; ++i) train += chat_example(i);
  for (size_t i = 200; i < 216; ++i) heldout += chat_example(i);
  write_file(dir_->file("chat-train.jsonl"), train);
  write_file(dir_->file("chat-heldout.jsonl"), heldout);
  const std::string out_dir = dir_->file("sft-chat");
  // Templated chats outgrow the base model's context of 16, so this run starts from scratch.
  TomlConfig config = ruvdllm::testing::tiny_model_config(/*n_layer=*/1);
  config.set("model", "tokenizer", kTokenizer);
  config.set("data", {{"format", "sft"},
                      {"seq_len", 64},
                      {"train", toml_data_list("chat", dir_->file("chat-train.jsonl"))},
                      {"heldout", toml_data_list("chat", dir_->file("chat-heldout.jsonl"))}});
  config.set("train", {{"steps", 3}, {"batch_size", 4}, {"threads", 2}});
  config.set("eval", {{"samples", 2}, {"windows", 8}});
  config.set("output", "dir", out_dir);
  const std::string cfg = config.write(dir_->file("chat.toml"));
  std::string out;
  ASSERT_EQ(run_command(kCli + " train " + cfg, &out), 0) << out;
  EXPECT_NE(out.find("SFT data " + dir_->file("chat-train.jsonl") + ": 101 examples, 0 truncated"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("0 skipped"), std::string::npos) << out;
  const auto log = read_jsonl(out_dir + "/log.jsonl");
  ASSERT_EQ(log.size(), 3u);
  ASSERT_TRUE(log.back().contains("heldout")) << log.back().dump();
  const double bits = log.back()["heldout"]["chat"]["bits_per_token"].get<double>();
  EXPECT_GT(bits, 0.0);
  EXPECT_LT(bits, 20.0);
  EXPECT_TRUE(std::filesystem::exists(out_dir + "/model.gguf"));
}

}  // namespace
