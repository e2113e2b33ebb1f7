#include "ruvdllm/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "io/atomic_writer.h"
#include "ruvdllm/core/error.h"

namespace ruvdllm {
namespace {

constexpr size_t kWriteBufferBytes = size_t{4} << 20;

[[noreturn]] void fail_errno(const std::string& path, const char* what) {
  fail("{}: {}: {}", path, what, std::strerror(errno));
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_errno(path, "cannot open");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    fail_errno(path, "cannot open");
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail("{}: cannot open: is a directory", path);
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int saved = errno;
      ::close(fd);
      errno = saved;
      fail_errno(path, "cannot map");
    }
    file->data_ = static_cast<const uint8_t*>(p);
  }
  // The mapping keeps the file's pages reachable; the descriptor is no longer needed.
  ::close(fd);
  return file;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void write_file_atomically(const std::string& path, const void* bytes, size_t size) {
  io::AtomicFileWriter out(path);
  out.write(bytes, size);
  out.commit();
}

namespace io {

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), temp_path_(path_ + ".tmp." + std::to_string(::getpid())) {
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) fail_errno(temp_path_, "cannot create");
  buffer_.reset(new uint8_t[kWriteBufferBytes]);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(temp_path_.c_str());
}

void AtomicFileWriter::write_all(const uint8_t* bytes, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd_, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(temp_path_, "cannot write");
    }
    bytes += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFileWriter::flush() {
  write_all(buffer_.get(), buffered_);
  buffered_ = 0;
}

void AtomicFileWriter::write(const void* bytes, size_t size) {
  const auto* src = static_cast<const uint8_t*>(bytes);
  position_ += size;
  if (buffered_ + size <= kWriteBufferBytes) {
    if (size > 0) std::memcpy(buffer_.get() + buffered_, src, size);
    buffered_ += size;
    return;
  }
  flush();
  if (size >= kWriteBufferBytes) {
    write_all(src, size);  // large tensors skip the extra copy
  } else {
    std::memcpy(buffer_.get(), src, size);
    buffered_ = size;
  }
}

void AtomicFileWriter::write_zeros(size_t size) {
  static const uint8_t kZeros[4096] = {};
  while (size > 0) {
    const size_t n = size < sizeof(kZeros) ? size : sizeof(kZeros);
    write(kZeros, n);
    size -= n;
  }
}

void* AtomicFileWriter::reserve(size_t size) {
  if (size > kWriteBufferBytes) return nullptr;
  if (buffered_ + size > kWriteBufferBytes) flush();
  return buffer_.get() + buffered_;
}

void AtomicFileWriter::advance(size_t size) {
  buffered_ += size;
  position_ += size;
}

void AtomicFileWriter::commit() {
  flush();
  if (::fsync(fd_) != 0) fail_errno(temp_path_, "cannot sync");
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) fail_errno(temp_path_, "cannot close");
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail_errno(path_, "cannot replace");
  committed_ = true;
  // Make the rename itself durable; a failure here loses nothing already written.
  const size_t slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace io
}  // namespace ruvdllm
