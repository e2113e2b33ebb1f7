#include "ruvdllm/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/ranges.h>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/safetensors.h"

namespace ruvdllm::train {
namespace {

constexpr const char* kFormat = "ruvdllm-train-checkpoint";
constexpr const char* kVersion = "1";

int64_t parse_count(const std::map<std::string, std::string>& metadata, const std::string& key,
                    const std::string& path) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) fail("{}: checkpoint metadata lacks '{}'", path, key);
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size() || v < 0) throw std::invalid_argument("");
    return v;
  } catch (const std::exception&) {
    fail("{}: checkpoint metadata '{}' = '{}' is not a count", path, key, it->second);
  }
}

// Copies a stored f32 tensor into `out`, checking its shape against the parameter's.
void read_into(const SafetensorsFile& file, const std::string& name, const Parameter& p,
               std::span<float> out, const std::string& path) {
  const TensorView* t = file.find_tensor(name);
  if (!t) fail("{}: checkpoint has no tensor {}", path, name);
  if (t->type != TensorType::F32) fail("{}: {} is {}, expected f32", path, name, type_name(t->type));
  if (t->shape != p.shape) {
    fail("{}: {} has shape [{}] but the model's {} is [{}]", path, name, fmt::join(t->shape, ", "),
         p.name, fmt::join(p.shape, ", "));
  }
  if (t->nbytes != out.size() * sizeof(float)) fail("{}: {} has {} bytes, expected {}", path, name, t->nbytes, out.size() * 4);
  std::memcpy(out.data(), t->data, t->nbytes);
}

// Makes the rename itself durable, not only the file's bytes.
void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

std::string checkpoint_path(const std::string& out_dir) {
  return (std::filesystem::path(out_dir) / "ckpt").string();
}

void save_checkpoint(const std::string& out_dir, const TrainModel& model, AdamW& optimizer,
                     int64_t step, const std::string& config_text) {
  SafetensorsWriter writer;
  writer.set_metadata("format", kFormat);
  writer.set_metadata("version", kVersion);
  writer.set_metadata("step", std::to_string(step));
  writer.set_metadata("adam_steps", std::to_string(optimizer.steps_done()));
  writer.set_metadata("config", config_text);
  // Frozen weights (a LoRA base) are not the run's state: they come again from the base model.
  for (const Parameter& p : model.parameters()) {
    if (p.grad.empty()) continue;
    writer.add_tensor("model/" + p.name, TensorType::F32, p.shape, p.value.data(), p.value.size_bytes());
  }
  for (size_t i = 0; i < optimizer.n_states(); ++i) {
    const Parameter& p = optimizer.state_parameter(i);
    writer.add_tensor("adam_m/" + p.name, TensorType::F32, p.shape, optimizer.first_moment(i).data(),
                      optimizer.first_moment(i).size_bytes());
    writer.add_tensor("adam_v/" + p.name, TensorType::F32, p.shape, optimizer.second_moment(i).data(),
                      optimizer.second_moment(i).size_bytes());
  }
  const std::string final_path = checkpoint_path(out_dir);
  const std::string temp_path = final_path + ".tmp";
  writer.write(temp_path);
  std::error_code ec;
  std::filesystem::rename(temp_path, final_path, ec);
  if (ec) fail("{}: cannot rename {} over it: {}", final_path, temp_path, ec.message());
  sync_directory(out_dir);
}

CheckpointInfo load_checkpoint(const std::string& path, TrainModel& model, AdamW& optimizer) {
  if (!std::filesystem::exists(path)) fail("{}: no checkpoint to resume from", path);
  const SafetensorsFile file = SafetensorsFile::open(path);
  CheckpointInfo info;
  info.metadata = file.metadata();
  const auto format = info.metadata.find("format");
  if (format == info.metadata.end() || format->second != kFormat) {
    fail("{}: not a ruvdllm training checkpoint (no format = {} in its metadata)", path, kFormat);
  }
  if (info.metadata["version"] != kVersion) {
    fail("{}: checkpoint version '{}' (this build reads {})", path, info.metadata["version"], kVersion);
  }
  info.step = parse_count(info.metadata, "step", path);
  const int64_t adam_steps = parse_count(info.metadata, "adam_steps", path);
  info.config_text = info.metadata["config"];

  size_t trainable = 0;
  for (const Parameter& p : model.parameters()) trainable += p.grad.empty() ? 0 : 1;
  const size_t expected = trainable + 2 * optimizer.n_states();
  if (file.tensors().size() != expected) {
    fail("{}: checkpoint holds {} tensors, this model and optimizer have {}", path, file.tensors().size(), expected);
  }
  for (Parameter& p : model.parameters()) {
    if (!p.grad.empty()) read_into(file, "model/" + p.name, p, p.value, path);
  }
  for (size_t i = 0; i < optimizer.n_states(); ++i) {
    const Parameter& p = optimizer.state_parameter(i);
    read_into(file, "adam_m/" + p.name, p, optimizer.first_moment(i), path);
    read_into(file, "adam_v/" + p.name, p, optimizer.second_moment(i), path);
  }
  optimizer.set_steps_done(adam_steps);
  return info;
}

}  // namespace ruvdllm::train
