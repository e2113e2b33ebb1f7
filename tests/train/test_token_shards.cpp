// Token shards: what is appended is what is read back, at any offset and across shard
// boundaries, in both token widths; damaged folders and files are refused with an Error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/token_shards.h"
#include "test_util.h"

namespace ruvdllm::train {
namespace {

namespace fs = std::filesystem;

#define EXPECT_ERROR_CONTAINS(statement, part)                                                                  \
  do {                                                                                                          \
    try {                                                                                                       \
      statement;                                                                                                \
      ADD_FAILURE() << "no Error from " #statement;                                                             \
    } catch (const Error& e) {                                                                                  \
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "message: " << e.what() << "\nexpected: " \
                                                                     << (part);                                 \
    }                                                                                                           \
  } while (0)

std::vector<int32_t> random_ids(size_t n, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  ids.front() = vocab - 1;  // the largest id must survive the narrow width
  return ids;
}

// Appends in uneven chunks so appends straddle shard boundaries.
void write_shards(const std::string& folder, const std::vector<int32_t>& ids, int32_t vocab, int64_t per_shard) {
  TokenShardWriter writer(folder, vocab, per_shard);
  writer.set_tokenizer("test tokenizer");
  writer.add_source("random ids");
  size_t at = 0, chunk = 1;
  while (at < ids.size()) {
    const size_t n = std::min(chunk, ids.size() - at);
    writer.append(std::span<const int32_t>(ids.data() + at, n));
    at += n;
    chunk = chunk * 3 % 17 + 1;
  }
  writer.finish();
}

void expect_reads_back(const TokenShards& shards, const std::vector<int32_t>& ids) {
  ASSERT_EQ(shards.n_tokens(), static_cast<int64_t>(ids.size()));
  std::vector<int32_t> all(ids.size());
  shards.read(0, all);
  EXPECT_EQ(all, ids);
  // Every offset, with windows longer than a shard.
  for (size_t offset = 0; offset < ids.size(); offset += 3) {
    for (size_t len : {size_t{1}, size_t{7}, size_t{23}}) {
      if (offset + len > ids.size()) continue;
      std::vector<int32_t> window(len);
      shards.read(static_cast<int64_t>(offset), window);
      ASSERT_TRUE(std::equal(window.begin(), window.end(), ids.begin() + static_cast<ptrdiff_t>(offset)))
          << "offset " << offset << " length " << len;
    }
  }
}

TEST(TokenShards, Uint16RoundTripAcrossShardBoundaries) {
  testing::TempDir dir;
  const auto ids = random_ids(1000, 8192, 1);
  write_shards(dir.file("prose"), ids, 8192, 97);
  const TokenShards shards = TokenShards::open(dir.file("prose"));
  EXPECT_EQ(shards.vocab_size(), 8192);
  expect_reads_back(shards, ids);
  // 1000 tokens at 97 a shard: 11 files of 2-byte ids after a 32-byte header.
  EXPECT_TRUE(fs::exists(dir.file("prose/shard-00010.tok")));
  EXPECT_FALSE(fs::exists(dir.file("prose/shard-00011.tok")));
  EXPECT_EQ(fs::file_size(dir.file("prose/shard-00000.tok")), 32u + 97u * 2u);
  EXPECT_EQ(fs::file_size(dir.file("prose/shard-00010.tok")), 32u + 30u * 2u);
}

TEST(TokenShards, Uint32ForLargeVocabularies) {
  testing::TempDir dir;
  const auto ids = random_ids(500, 126464, 2);  // LLaDA-8B's vocabulary
  write_shards(dir.file("big"), ids, 126464, 64);
  const TokenShards shards = TokenShards::open(dir.file("big"));
  EXPECT_EQ(shards.vocab_size(), 126464);
  expect_reads_back(shards, ids);
  EXPECT_EQ(fs::file_size(dir.file("big/shard-00000.tok")), 32u + 64u * 4u);
  // 65,536 tokens still fit 16 bits (ids up to 65,535).
  write_shards(dir.file("edge"), random_ids(100, 65536, 3), 65536, 1000);
  EXPECT_EQ(fs::file_size(dir.file("edge/shard-00000.tok")), 32u + 100u * 2u);
}

TEST(TokenShards, SingleShardFileOpensAlone) {
  testing::TempDir dir;
  const auto ids = random_ids(300, 1000, 4);
  write_shards(dir.file("one"), ids, 1000, 1 << 20);
  const TokenShards shards = TokenShards::open(dir.file("one/shard-00000.tok"));
  EXPECT_EQ(shards.vocab_size(), 1000);
  expect_reads_back(shards, ids);
}

TEST(TokenShards, RewritingAFolderDropsStaleShards) {
  testing::TempDir dir;
  write_shards(dir.file("d"), random_ids(500, 300, 5), 300, 50);
  ASSERT_TRUE(fs::exists(dir.file("d/shard-00009.tok")));
  const auto ids = random_ids(120, 300, 6);
  write_shards(dir.file("d"), ids, 300, 50);
  EXPECT_FALSE(fs::exists(dir.file("d/shard-00003.tok")));
  expect_reads_back(TokenShards::open(dir.file("d")), ids);
}

TEST(TokenShards, ReadsOutsideTheStreamAreErrors) {
  testing::TempDir dir;
  write_shards(dir.file("d"), random_ids(100, 300, 7), 300, 30);
  const TokenShards shards = TokenShards::open(dir.file("d"));
  std::vector<int32_t> out(10);
  EXPECT_ERROR_CONTAINS(shards.read(95, out), "offset 95");
  EXPECT_ERROR_CONTAINS(shards.read(-1, out), "offset -1");
  shards.read(90, out);  // the last ten are fine
}

TEST(TokenShards, WriterRejectsIdsOutsideTheVocabulary) {
  testing::TempDir dir;
  TokenShardWriter writer(dir.file("w"), 100);
  const std::vector<int32_t> bad = {1, 2, 100};
  EXPECT_ERROR_CONTAINS(writer.append(bad), "token id 100");
  const std::vector<int32_t> negative = {-1};
  EXPECT_ERROR_CONTAINS(writer.append(negative), "token id -1");
  EXPECT_ERROR_CONTAINS(writer.finish(), "no tokens");
  EXPECT_ERROR_CONTAINS(TokenShardWriter(dir.file("z"), 0), "vocabulary size 0");
}

class DamagedShards : public ::testing::Test {
 protected:
  void SetUp() override {
    ids_ = random_ids(200, 5000, 8);
    write_shards(dir_.file("d"), ids_, 5000, 60);
  }
  std::string shard(int i) const { return dir_.file("d/shard-0000" + std::to_string(i) + ".tok"); }
  void patch(const std::string& path, size_t offset, const std::string& bytes) const {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  testing::TempDir dir_;
  std::vector<int32_t> ids_;
};

TEST_F(DamagedShards, TruncatedShard) {
  fs::resize_file(shard(1), fs::file_size(shard(1)) - 1);
  EXPECT_ERROR_CONTAINS(TokenShards::open(dir_.file("d")), "shard-00001.tok");
  EXPECT_ERROR_CONTAINS(TokenShards::open(shard(1)), "truncated or corrupt");
  fs::resize_file(shard(2), 10);
  EXPECT_ERROR_CONTAINS(TokenShards::open(shard(2)), "truncated token shard");
}

TEST_F(DamagedShards, BadMagicVersionAndWidth) {
  patch(shard(0), 0, "XXXX");
  EXPECT_ERROR_CONTAINS(TokenShards::open(dir_.file("d")), "bad magic");
  patch(shard(1), 8, std::string("\x07\0\0\0", 4));
  EXPECT_ERROR_CONTAINS(TokenShards::open(shard(1)), "version 7");
  patch(shard(2), 12, std::string("\x03\0\0\0", 4));
  EXPECT_ERROR_CONTAINS(TokenShards::open(shard(2)), "width 3");
}

TEST_F(DamagedShards, CountThatDisagreesWithTheIndex) {
  // A shard replaced by a shorter, valid one no longer matches index.json.
  write_shards(dir_.file("other"), random_ids(10, 5000, 9), 5000, 100);
  fs::copy_file(dir_.file("other/shard-00000.tok"), shard(1), fs::copy_options::overwrite_existing);
  EXPECT_ERROR_CONTAINS(TokenShards::open(dir_.file("d")), "index.json lists 60");
}

TEST_F(DamagedShards, IdOutsideTheVocabularyFoundOnRead) {
  patch(shard(1), 32 + 2 * 5, std::string("\xFF\xFF", 2));  // token 65 becomes 65535 >= 5000
  const TokenShards shards = TokenShards::open(dir_.file("d"));
  std::vector<int32_t> out(20);
  shards.read(0, out);  // before the damage
  EXPECT_ERROR_CONTAINS(shards.read(50, out), "outside the vocabulary");
}

TEST_F(DamagedShards, MissingOrMalformedIndex) {
  fs::remove(dir_.file("d/index.json"));
  EXPECT_ERROR_CONTAINS(TokenShards::open(dir_.file("d")), "no index.json");
  std::ofstream(dir_.file("d/index.json")) << "{\"format\": \"ruvdllm-token-shards\", \"version\": 1";
  EXPECT_ERROR_CONTAINS(TokenShards::open(dir_.file("d")), "malformed index");
  std::ofstream(dir_.file("d/index.json")) << R"({"format": "ruvdllm-token-shards", "version": 1, "vocab_size": 5000,
      "n_tokens": 60, "shards": [{"file": "../escape.tok", "n_tokens": 60}]})";
  EXPECT_ERROR_CONTAINS(TokenShards::open(dir_.file("d")), "not a plain file name");
  EXPECT_ERROR_CONTAINS(TokenShards::open(dir_.file("nothing")), "no such token shard");
}

}  // namespace
}  // namespace ruvdllm::train
