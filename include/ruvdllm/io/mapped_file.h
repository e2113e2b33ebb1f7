#pragma once
// A read-only memory map of a whole file. Weights are used in place, never copied.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ruvdllm {

class MappedFile {
 public:
  // Throws Error("PATH: cannot open: REASON") on failure. An empty file maps to size 0.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Writes `bytes` to PATH.tmp.<pid>, fsyncs, and renames it over PATH, so readers never see a
// half-written file. Throws Error on failure (and removes the temporary file).
void write_file_atomically(const std::string& path, const void* bytes, size_t size);

}  // namespace ruvdllm
