#pragma once
// Internal to the io layer: a buffered, streaming writer that publishes PATH only once the
// whole file is on disk, so a crash or an error never leaves a half-written model behind.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ruvdllm::io {

class AtomicFileWriter {
 public:
  // Creates PATH.tmp.<pid>. Throws Error naming PATH when it cannot.
  explicit AtomicFileWriter(std::string path);
  // Removes the temporary file unless commit() succeeded.
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* bytes, size_t size);
  void write_zeros(size_t size);
  // Space for `size` bytes straight inside the output buffer (saves a copy when a producer can
  // write in place), or nullptr when it does not fit; follow a non-null result with advance().
  void* reserve(size_t size);
  void advance(size_t size);
  uint64_t position() const { return position_; }
  // Flushes, fsyncs and renames the temporary file over PATH.
  void commit();

 private:
  void flush();
  void write_all(const uint8_t* bytes, size_t size);

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
  std::unique_ptr<uint8_t[]> buffer_;
  size_t buffered_ = 0;
  uint64_t position_ = 0;
};

}  // namespace ruvdllm::io
