#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/mapped_file.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) n += entry.is_regular_file();
  return n;
}

TEST(MappedFile, MapsWholeFileAndEmptyFiles) {
  testing::TempDir dir;
  const std::string text = "hello, mapped world";
  write_file_atomically(dir.file("a"), text.data(), text.size());
  const auto f = MappedFile::open(dir.file("a"));
  ASSERT_EQ(f->size(), text.size());
  EXPECT_EQ(std::memcmp(f->data(), text.data(), text.size()), 0);
  EXPECT_EQ(f->path(), dir.file("a"));

  write_file_atomically(dir.file("empty"), nullptr, 0);
  const auto e = MappedFile::open(dir.file("empty"));
  EXPECT_EQ(e->size(), 0u);
  EXPECT_EQ(e->data(), nullptr);
}

TEST(MappedFile, NamesThePathOnFailure) {
  testing::TempDir dir;
  try {
    MappedFile::open(dir.file("missing.bin"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), dir.file("missing.bin") + ": cannot open: No such file or directory");
  }
  EXPECT_THROW(MappedFile::open(dir.path()), Error);
}

TEST(WriteFileAtomically, ReplacesTheFileAndLeavesNoTemporary) {
  testing::TempDir dir;
  const std::string path = dir.file("out.bin");
  write_file_atomically(path, "first version", 13);
  write_file_atomically(path, "second", 6);
  EXPECT_EQ(read_text(path), "second");
  EXPECT_EQ(files_in(dir.path()), 1u);
  std::vector<char> big(size_t{9} << 20);  // more than the write buffer
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 1);
  write_file_atomically(path, big.data(), big.size());
  EXPECT_EQ(read_text(path), std::string(big.begin(), big.end()));
}

TEST(WriteFileAtomically, FailsWithAnErrorNamingThePath) {
  testing::TempDir dir;
  const std::string path = dir.file("no/such/dir/out.bin");
  try {
    write_file_atomically(path, "x", 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  // A directory in the way of the rename: the temporary must not stay behind.
  std::filesystem::create_directory(dir.file("taken"));
  std::ofstream(dir.file("taken/f")) << "x";
  EXPECT_THROW(write_file_atomically(dir.file("taken"), "x", 1), Error);
  EXPECT_EQ(files_in(dir.path()), 0u);
}

}  // namespace
}  // namespace ruvdllm
