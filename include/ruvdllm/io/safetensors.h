#pragma once
// safetensors over mmap: one file, or a sharded checkpoint through model.safetensors.index.json.
// Shapes are converted to GGUF order (reversed) so the rest of ruvdllm sees one convention.
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ruvdllm/core/tensor.h"
#include "ruvdllm/io/mapped_file.h"

namespace ruvdllm {

class SafetensorsFile {
 public:
  // PATH may be a .safetensors file, a *.safetensors.index.json, or a directory holding
  // model.safetensors or model.safetensors.index.json. Supported dtypes: F32, F16, BF16.
  // Throws Error("PATH: PROBLEM") for malformed headers, overlapping or out-of-file offsets,
  // a byte size that does not match the shape, unknown dtypes, or a missing shard.
  static SafetensorsFile open(const std::string& path);

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // __metadata__
  const std::vector<std::string>& shard_paths() const { return shard_paths_; }

 private:
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::vector<std::string> shard_paths_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  // type must be F32, F16 or BF16; shape in GGUF order. Bytes are referenced until write().
  void add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                  const void* data, size_t nbytes);
  void add_tensor(const TensorView& view) {
    add_tensor(view.name, view.type, view.shape, view.data, view.nbytes);
  }
  void write(const std::string& path) const;  // atomically

 private:
  struct PendingTensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace ruvdllm
