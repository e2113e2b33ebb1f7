#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "io/atomic_writer.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/safetensors.h"

namespace ruvdllm {
namespace {

const char* dtype_name(TensorType type) {
  switch (type) {
    case TensorType::F32: return "F32";
    case TensorType::F16: return "F16";
    case TensorType::BF16: return "BF16";
    default: return nullptr;
  }
}

}  // namespace

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

void SafetensorsWriter::add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                                   const void* data, size_t nbytes) {
  if (name.empty() || name == "__metadata__") fail("safetensors writer: invalid tensor name '{}'", name);
  if (!dtype_name(type)) {
    fail("safetensors writer: tensor '{}' has type {}; safetensors holds only f32, f16 and bf16", name, type_name(type));
  }
  unsigned __int128 expected = type_traits(type).block_bytes;
  for (int64_t d : shape) {
    if (d < 0) fail("safetensors writer: tensor '{}' has negative dimension {}", name, d);
    expected *= static_cast<uint64_t>(d);
    if (expected > static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max())) {
      fail("safetensors writer: tensor '{}' is too large", name);
    }
  }
  if (nbytes != static_cast<size_t>(expected)) {
    fail("safetensors writer: tensor '{}' has {} bytes, its shape and type need {}", name, nbytes,
         static_cast<size_t>(expected));
  }
  if (!data && nbytes > 0) fail("safetensors writer: tensor '{}' has no data", name);
  for (const auto& t : tensors_) {
    if (t.name == name) fail("safetensors writer: duplicate tensor name '{}'", name);
  }
  tensors_.push_back({name, type, std::move(shape), data, nbytes});
}

void SafetensorsWriter::write(const std::string& path) const {
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors_[a].name < tensors_[b].name; });

  // ordered_json keeps __metadata__ first and the tensors in the order their bytes follow.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (size_t i : order) {
    const PendingTensor& t = tensors_[i];
    // safetensors lists the outermost dimension first, GGUF order the innermost.
    std::vector<int64_t> shape(t.shape.rbegin(), t.shape.rend());
    header[t.name] = {{"dtype", dtype_name(t.type)}, {"shape", shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot write header: {}", path, e.what());
  }
  // Padding to 8 bytes keeps the data buffer aligned for readers that use it in place.
  text.append((8 - text.size() % 8) % 8, ' ');

  io::AtomicFileWriter out(path);
  const uint64_t header_bytes = text.size();
  out.write(&header_bytes, sizeof(header_bytes));
  out.write(text.data(), text.size());
  for (size_t i : order) out.write(tensors_[i].data, tensors_[i].nbytes);
  out.commit();
}

}  // namespace ruvdllm
