// train.devices / --devices: parsing and the errors a user can make, on the CPU (the device
// indices themselves are checked against the GPUs present in tests/cuda/test_cuda_multi_gpu).
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/train_config.h"

namespace ruvdllm::train {
namespace {

std::string config_text(const std::string& extra_train, const std::string& extra = "") {
  return R"(
[model]
arch = "llada"
vocab_size = 64
mask_token_id = 63
n_embd = 32
n_layer = 1
n_head = 2
n_ff = 64

[data]
seq_len = 16
train = [{ name = "a", path = "/nonexistent/a.tok" }]

[train]
batch_size = 4
)" + extra_train + "\n" + extra;
}

std::string lora_config_text(const std::string& extra_train) {
  return R"(
[model]
init_from = "/nonexistent/base.gguf"

[data]
seq_len = 16
train = [{ name = "a", path = "/nonexistent/a.tok" }]

[lora]
rank = 4

[train]
batch_size = 4
)" + extra_train + "\n";
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TrainDevices, TomlListSetsTheDevicesAndTheFirstAsDevice) {
  const TrainConfig c = parse_train_config(config_text("devices = [1, 0]"), "t.toml");
  EXPECT_EQ(c.devices, (std::vector<int>{1, 0}));
  EXPECT_EQ(c.device, "cuda:1");
  const TrainConfig plain = parse_train_config(config_text(""), "t.toml");
  EXPECT_TRUE(plain.devices.empty());
  EXPECT_EQ(plain.device, "cpu");
}

TEST(TrainDevices, BadTomlListsAreErrorsNamingTheKey) {
  const auto err = [](const std::string& extra) {
    return error_of([&] { parse_train_config(config_text(extra), "t.toml"); });
  };
  EXPECT_NE(err("devices = []").find("train.devices"), std::string::npos);
  EXPECT_NE(err("devices = []").find("empty"), std::string::npos);
  EXPECT_NE(err("devices = [0, 0]").find("listed twice"), std::string::npos);
  EXPECT_NE(err("devices = [-1]").find("train.devices[0]"), std::string::npos);
  EXPECT_NE(err("devices = [\"0\"]").find("train.devices[0]"), std::string::npos);
  EXPECT_NE(err("devices = 0").find("must be an array"), std::string::npos);
  EXPECT_NE(err("devices = [0, 1]\ndevice = \"cpu\"").find("conflicts"), std::string::npos);
  const std::string lora =
      error_of([] { parse_train_config(lora_config_text("devices = [0, 1]"), "t.toml"); });
  EXPECT_NE(lora.find("LoRA"), std::string::npos) << lora;
}

TEST(TrainDevices, ParsesCommandLineLists) {
  EXPECT_EQ(parse_device_list("0,1"), (std::vector<int>{0, 1}));
  EXPECT_EQ(parse_device_list("3"), (std::vector<int>{3}));
  EXPECT_EQ(parse_device_list("2,0,1"), (std::vector<int>{2, 0, 1}));
  for (const char* bad : {"", ",", "0,", ",1", "0,,1", "a", "0,x", "-1", "1.5", "0 ,1", "0,0", "1,2,1"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(parse_device_list(bad), Error);
  }
  EXPECT_NE(error_of([] { parse_device_list("0,0"); }).find("listed twice"), std::string::npos);
  EXPECT_NE(error_of([] { parse_device_list(""); }).find("empty"), std::string::npos);
}

TEST(TrainDevices, CommandLineOverridesTheConfig) {
  TrainConfig c = parse_train_config(config_text("device = \"cuda:1\""), "t.toml");
  apply_device_options(c, "", std::string("0,1"));
  EXPECT_EQ(c.devices, (std::vector<int>{0, 1}));
  EXPECT_EQ(c.device, "cuda:0");
  // --device replaces a TOML list.
  TrainConfig d = parse_train_config(config_text("devices = [0, 1]"), "t.toml");
  apply_device_options(d, "cuda:1", std::nullopt);
  EXPECT_TRUE(d.devices.empty());
  EXPECT_EQ(d.device, "cuda:1");
  // Neither given: unchanged.
  TrainConfig e = parse_train_config(config_text("devices = [0, 1]"), "t.toml");
  apply_device_options(e, "", std::nullopt);
  EXPECT_EQ(e.devices, (std::vector<int>{0, 1}));
}

TEST(TrainDevices, CommandLineMisuseIsAnError) {
  TrainConfig c = parse_train_config(config_text(""), "t.toml");
  const std::string cpu = error_of([&] { apply_device_options(c, "cpu", std::string("0,1")); });
  EXPECT_NE(cpu.find("--device cpu conflicts with --devices"), std::string::npos) << cpu;
  EXPECT_THROW(apply_device_options(c, "cuda:0", std::string("0,1")), Error);
  EXPECT_NE(error_of([&] { apply_device_options(c, "", std::string("")); }).find("empty"),
            std::string::npos);
  EXPECT_THROW(apply_device_options(c, "", std::string("0,0")), Error);
  TrainConfig lora = parse_train_config(lora_config_text(""), "t.toml");
  const std::string l = error_of([&] { apply_device_options(lora, "", std::string("0,1")); });
  EXPECT_NE(l.find("LoRA"), std::string::npos) << l;
}

}  // namespace
}  // namespace ruvdllm::train
