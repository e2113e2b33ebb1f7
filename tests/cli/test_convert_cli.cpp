// `ruvdllm quantize` on Hugging Face checkpoints: a directory becomes a GGUF that gives the
// same logits; a broken checkpoint gives one line of error, exit 1 and no output file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ruvdllm/io/safetensors.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/text/tokenizer_io.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using nlohmann::json;
using testing::run_command;
using testing::TempDir;

const std::string kCli = RUVDLLM_CLI_PATH;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A tiny random LLaDA checkpoint in Hugging Face's layout, with a tokenizer.json.
void write_llada_checkpoint(const std::string& dir, const std::string& tokenizer_json) {
  const ModelConfig c = shape_config(Arch::LLaDA, "test");
  const int64_t E = c.n_embd, V = c.vocab_size, F = c.n_ff, q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  std::filesystem::create_directories(dir);
  std::deque<std::vector<float>> buffers;
  SafetensorsWriter writer;
  uint64_t seed = 7;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm = false) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    auto& values = buffers.emplace_back(testing::random_normal(static_cast<size_t>(n), ++seed, norm ? 0.1f : 0.04f));
    if (norm) {
      for (float& v : values) v += 1.0f;
    }
    writer.add_tensor(name, TensorType::F32, std::move(shape), values.data(), values.size() * sizeof(float));
  };
  add("model.transformer.wte.weight", {E, V});
  add("model.transformer.ln_f.weight", {E}, true);
  add("model.transformer.ff_out.weight", {E, V});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string b = "model.transformer.blocks." + std::to_string(il) + ".";
    add(b + "attn_norm.weight", {E}, true);
    add(b + "q_proj.weight", {E, q});
    add(b + "k_proj.weight", {E, kv});
    add(b + "v_proj.weight", {E, kv});
    add(b + "attn_out.weight", {q, E});
    add(b + "ff_norm.weight", {E}, true);
    add(b + "ff_proj.weight", {E, F});
    add(b + "up_proj.weight", {E, F});
    add(b + "ff_out.weight", {F, E});
  }
  writer.write(dir + "/model.safetensors");
  const json config = {{"architectures", {"LLaDAModelLM"}}, {"model_type", "llada"}, {"d_model", E},
                       {"n_layers", c.n_layer}, {"n_heads", c.n_head}, {"n_kv_heads", c.n_head_kv},
                       {"mlp_hidden_size", F}, {"vocab_size", V}, {"embedding_size", V},
                       {"max_sequence_length", c.context_length}, {"rope_theta", c.rope_base},
                       {"rms_norm_eps", c.rms_eps}, {"weight_tying", false}, {"activation_type", "silu"},
                       {"eos_token_id", c.eos_token_id}};
  write_text(dir + "/config.json", config.dump(2));
  write_text(dir + "/tokenizer.json", tokenizer_json);
}

class ConvertCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // The placeholder vocabulary of `ruvdllm init`, as tokenizer.json.
    std::string out;
    ASSERT_EQ(run_command(kCli + " init --arch llada --shape test --type f32 --seed 1 " + dir_->file("v.gguf"), &out), 0)
        << out;
    write_llada_checkpoint(checkpoint(), tokenizer_to_json(Tokenizer::from_gguf_file(dir_->file("v.gguf"))));
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string checkpoint() { return dir_->file("llada-hf"); }
  static std::string path(const std::string& name) { return dir_->file(name); }
  static TempDir* dir_;
};
TempDir* ConvertCliTest::dir_ = nullptr;

std::vector<float> read_floats(const std::string& path) {
  const std::string raw = read_file(path);
  std::vector<float> v(raw.size() / sizeof(float));
  std::memcpy(v.data(), raw.data(), v.size() * sizeof(float));
  return v;
}

TEST_F(ConvertCliTest, HfDirectoryBecomesAGgufWithTheSameLogits) {
  std::string out;
  const std::string tokens = " --tokens 5,17,299,42,0,298,120,7 -o ";
  ASSERT_EQ(run_command(kCli + " logits " + checkpoint() + tokens + path("hf.bin"), &out), 0) << out;
  const std::vector<float> expected = read_floats(path("hf.bin"));
  ASSERT_FALSE(expected.empty());
  double scale = 0;
  for (float v : expected) scale = std::max(scale, static_cast<double>(std::abs(v)));

  struct Want {
    const char* type;
    double max_relative;
  };
  for (const Want& want : {Want{"f32", 1e-5}, Want{"q8_0", 0.05}}) {
    SCOPED_TRACE(want.type);
    const std::string gguf = path(std::string("llada-") + want.type + ".gguf");
    ASSERT_EQ(run_command(kCli + " quantize " + checkpoint() + " " + gguf + " --type " + want.type, &out), 0) << out;
    EXPECT_NE(out.find("wrote " + gguf), std::string::npos) << out;
    ASSERT_EQ(run_command(kCli + " logits " + gguf + tokens + path("gguf.bin"), &out), 0) << out;
    const std::vector<float> got = read_floats(path("gguf.bin"));
    ASSERT_EQ(got.size(), expected.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(got[i]) - expected[i]));
    EXPECT_LE(worst / scale, want.max_relative);

    ASSERT_EQ(run_command(kCli + " info " + gguf, &out), 0) << out;
    EXPECT_NE(out.find("architecture  llada"), std::string::npos) << out;
    EXPECT_NE(out.find("blk.1.attn_q.weight"), std::string::npos) << out;
    EXPECT_NE(out.find("300 tokens"), std::string::npos) << out;  // the tokenizer came along
  }
  // A GGUF made from the checkpoint re-quantizes through the GGUF path.
  ASSERT_EQ(run_command(kCli + " quantize " + path("llada-f32.gguf") + " " + path("again.gguf") + " --type f16", &out), 0)
      << out;
  EXPECT_TRUE(std::filesystem::exists(path("again.gguf")));
}

TEST_F(ConvertCliTest, SafetensorsFileInputFindsItsConfig) {
  std::string out;
  const std::string gguf = path("from-file.gguf");
  ASSERT_EQ(run_command(kCli + " quantize " + checkpoint() + "/model.safetensors " + gguf + " --type q8_0", &out), 0)
      << out;
  // Named after the checkpoint's directory, not its weight file.
  ASSERT_EQ(run_command(kCli + " info --metadata " + gguf, &out), 0) << out;
  EXPECT_NE(out.find("llada-hf"), std::string::npos) << out;
}

// One line on stderr, exit 1, and neither the output nor a temporary file left behind.
void expect_clean_failure(const std::string& command, const std::string& output_dir, const std::string& output,
                          const std::string& must_mention) {
  std::string out;
  EXPECT_EQ(run_command(command, &out), 1) << out;
  std::printf("%s", out.c_str());  // the message a user sees, for the test log
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find(must_mention), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(output));
  for (const auto& entry : std::filesystem::directory_iterator(output_dir)) {
    EXPECT_EQ(entry.path().string().find(".gguf"), std::string::npos) << entry.path();
  }
}

TEST_F(ConvertCliTest, CorruptCheckpointsFailWithOneLine) {
  namespace fs = std::filesystem;
  const std::string outputs = path("outputs");
  fs::create_directories(outputs);
  const std::string gguf = outputs + "/out.gguf";

  // Truncated weights.
  const std::string truncated = path("truncated");
  fs::copy(checkpoint(), truncated, fs::copy_options::recursive);
  fs::resize_file(truncated + "/model.safetensors", fs::file_size(truncated + "/model.safetensors") / 2);
  expect_clean_failure(kCli + " quantize " + truncated + " " + gguf + " --type q8_0", outputs, gguf, "model.safetensors");

  // config.json that is not JSON.
  const std::string bad_config = path("bad-config");
  fs::copy(checkpoint(), bad_config, fs::copy_options::recursive);
  write_text(bad_config + "/config.json", "{\"d_model\": 64,");
  expect_clean_failure(kCli + " quantize " + bad_config + " " + gguf + " --type f16", outputs, gguf, "config.json");

  // A tokenizer.json that is not JSON.
  const std::string bad_tokenizer = path("bad-tokenizer");
  fs::copy(checkpoint(), bad_tokenizer, fs::copy_options::recursive);
  write_text(bad_tokenizer + "/tokenizer.json", "[1, 2");
  expect_clean_failure(kCli + " quantize " + bad_tokenizer + " " + gguf + " --type f16", outputs, gguf, "tokenizer.json");

  // Not a checkpoint at all.
  expect_clean_failure(kCli + " quantize " + outputs + " " + gguf + " --type f16", outputs, gguf, "config.json");
  // An unknown type names the option.
  expect_clean_failure(kCli + " quantize " + checkpoint() + " " + gguf + " --type q3_K", outputs, gguf, "--type");
}

}  // namespace
}  // namespace ruvdllm
