#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors_parse.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/io/safetensors.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text) << "\nexpected to contain: " << (part)

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_text(const std::string& path, const std::string& text) {
  write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng() % 255 + 1);  // never zero
  return v;
}

// A file from a hand-written header and `buffer_bytes` of data.
std::vector<uint8_t> make_file(const std::string& header, size_t buffer_bytes, uint64_t declared_length = ~uint64_t{0}) {
  const uint64_t n = declared_length == ~uint64_t{0} ? header.size() : declared_length;
  const auto data = random_bytes(buffer_bytes, 5);
  std::vector<uint8_t> out(8 + header.size() + buffer_bytes);
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (buffer_bytes > 0) std::memcpy(out.data() + 8 + header.size(), data.data(), buffer_bytes);
  return out;
}

std::string open_error(const testing::TempDir& dir, const std::vector<uint8_t>& bytes) {
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), path);
    return e.what();
  }
  return "";
}

std::string one_tensor(const std::string& entry) {
  return "{\"w\": " + entry + "}";
}

TEST(Safetensors, RoundTripsEveryDtypeWithShapesReversed) {
  testing::TempDir dir;
  const auto f32 = random_bytes(4 * 3 * 5, 1);
  const auto f16 = random_bytes(2 * 7, 2);
  const auto bf16 = random_bytes(2 * 2 * 3 * 4, 3);
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("note", "ünïcode");
  w.add_tensor("z.weight", TensorType::F32, {3, 5}, f32.data(), f32.size());  // added first, sorted last
  w.add_tensor("a.bias", TensorType::F16, {7}, f16.data(), f16.size());
  w.add_tensor("m.experts", TensorType::BF16, {2, 3, 4}, bf16.data(), bf16.size());
  w.add_tensor("empty", TensorType::F32, {0, 4}, nullptr, 0);
  const std::string path = dir.file("model.safetensors");
  w.write(path);

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "ünïcode"}}));
  EXPECT_EQ(f.shard_paths(), std::vector<std::string>{path});
  ASSERT_EQ(f.tensors().size(), 4u);
  const TensorView* z = f.find_tensor("z.weight");
  const TensorView* a = f.find_tensor("a.bias");
  const TensorView* m = f.find_tensor("m.experts");
  ASSERT_TRUE(z && a && m && f.find_tensor("empty"));
  EXPECT_EQ(f.find_tensor("absent"), nullptr);
  EXPECT_EQ(z->type, TensorType::F32);
  EXPECT_EQ(z->shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(a->type, TensorType::F16);
  EXPECT_EQ(m->type, TensorType::BF16);
  EXPECT_EQ(m->shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(f.find_tensor("empty")->nbytes, 0u);
  EXPECT_EQ(std::memcmp(z->data, f32.data(), f32.size()), 0);
  EXPECT_EQ(std::memcmp(a->data, f16.data(), f16.size()), 0);
  EXPECT_EQ(std::memcmp(m->data, bf16.data(), bf16.size()), 0);

  // The layout other tools expect: padded header, tensors sorted by name, PyTorch shape order.
  const auto raw = read_bytes(path);
  uint64_t n;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const auto header = nlohmann::json::parse(raw.begin() + 8, raw.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header["z.weight"]["shape"], nlohmann::json({5, 3}));
  EXPECT_EQ(header["m.experts"]["dtype"], "BF16");
  EXPECT_EQ(header["a.bias"]["data_offsets"], nlohmann::json({0, 14}));
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  EXPECT_EQ(header["z.weight"]["data_offsets"], nlohmann::json({62, 122}));
  EXPECT_EQ(static_cast<const uint8_t*>(z->data) - static_cast<const uint8_t*>(a->data), 62);
  EXPECT_EQ(raw.size(), 8 + n + 122);
  EXPECT_EQ(f.tensors().front().name, "a.bias") << "tensors listed in file order";
}

TEST(Safetensors, ReadsScalarsAndHandWrittenHeaders) {
  testing::TempDir dir;
  const std::string header =
      R"({"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},)"
      R"( "v": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [4, 16]}})"
      "    ";
  write_bytes(dir.file("x.safetensors"), make_file(header, 16));
  const SafetensorsFile f = SafetensorsFile::open(dir.file("x.safetensors"));
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.find_tensor("s")->shape, std::vector<int64_t>{1});
  EXPECT_EQ(f.find_tensor("s")->nbytes, 4u);
  EXPECT_EQ(f.find_tensor("v")->shape, (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(f.metadata().empty());
}

TEST(Safetensors, EveryTruncationIsAnError) {
  testing::TempDir dir;
  const auto data = random_bytes(4 * 6 + 2 * 3, 9);
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.add_tensor("a", TensorType::F32, {3, 2}, data.data(), 24);
  w.add_tensor("b", TensorType::F16, {3}, data.data() + 24, 6);
  w.write(dir.file("valid.safetensors"));
  const auto valid = read_bytes(dir.file("valid.safetensors"));
  ASSERT_EQ(open_error(dir, valid), "");
  for (size_t n = 0; n < valid.size(); ++n) {
    EXPECT_NE(open_error(dir, std::vector<uint8_t>(valid.begin(), valid.begin() + static_cast<long>(n))), "")
        << "truncated to " << n << " bytes opened without error";
    if (::testing::Test::HasFailure()) break;
  }
}

TEST(Safetensors, RejectsBadHeaders) {
  testing::TempDir dir;
  const std::string ok = R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";
  EXPECT_EQ(open_error(dir, make_file(one_tensor(ok), 16)), "");
  EXPECT_CONTAINS(open_error(dir, make_file("{\"w\": ", 0)), "not valid JSON");
  EXPECT_CONTAINS(open_error(dir, make_file("", 0)), "not valid JSON");
  EXPECT_CONTAINS(open_error(dir, make_file("[1, 2]", 0)), "expected an object");
  EXPECT_CONTAINS(open_error(dir, make_file("{}", 0, 4096)), "truncated");
  EXPECT_CONTAINS(open_error(dir, make_file("{}", 0, uint64_t{1} << 40)), "larger than the 100 MB limit");
  EXPECT_CONTAINS(open_error(dir, {1, 2, 3}), "truncated");
  EXPECT_CONTAINS(open_error(dir, {}), "truncated");
  EXPECT_CONTAINS(open_error(dir, make_file("{\"w\": 3}", 0)), "tensor 'w': entry is number");
  EXPECT_CONTAINS(open_error(dir, make_file(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4)), "missing \"dtype\"");
  EXPECT_CONTAINS(open_error(dir, make_file(R"({"w": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})", 4)),
                  "\"dtype\" is number, expected string");
  EXPECT_CONTAINS(open_error(dir, make_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", 4)), "missing \"shape\"");
  EXPECT_CONTAINS(open_error(dir, make_file(R"({"w": {"dtype": "F32", "shape": [1]}})", 4)), "missing \"data_offsets\"");
  EXPECT_CONTAINS(open_error(dir, make_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4)),
                  "two non-negative integers");
  EXPECT_CONTAINS(open_error(dir, make_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4)),
                  "two non-negative integers");
  EXPECT_CONTAINS(open_error(dir, make_file(R"({"__metadata__": {"a": 1}})", 0)), "__metadata__ 'a' is number");
  EXPECT_CONTAINS(open_error(dir, make_file(R"({"__metadata__": []})", 0)), "__metadata__ is array");
  const std::string twice = R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, )"
                            R"("w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})";
  EXPECT_CONTAINS(open_error(dir, make_file(twice, 8)), "duplicate key 'w'");
}

TEST(Safetensors, RejectsUnsupportedDtypesNamingTheTensor) {
  testing::TempDir dir;
  for (const char* dtype : {"I64", "F64", "U8", "BOOL", "F8_E4M3", "I32", "f32"}) {
    const std::string header = std::string(R"({"model.embed": {"dtype": ")") + dtype +
                               R"(", "shape": [2], "data_offsets": [0, 8]}})";
    const std::string msg = open_error(dir, make_file(header, 8));
    EXPECT_CONTAINS(msg, "tensor 'model.embed': dtype " + std::string(dtype) + " is not supported");
  }
}

TEST(Safetensors, RejectsShapesAndOffsetsThatDisagree) {
  testing::TempDir dir;
  auto with = [&](const std::string& shape, const std::string& offsets, size_t buffer) {
    return open_error(dir, make_file(R"({"w": {"dtype": "F16", "shape": )" + shape + R"(, "data_offsets": )" + offsets + "}}",
                                     buffer));
  };
  EXPECT_EQ(with("[2, 3]", "[0, 12]", 12), "");
  EXPECT_CONTAINS(with("[2, 3]", "[0, 10]", 12), "hold 10 bytes, but the F16 shape [2,3] needs 12");
  EXPECT_CONTAINS(with("[2, 3]", "[0, 12]", 11), "extend past the data buffer (11 bytes)");
  EXPECT_CONTAINS(with("[2, 3]", "[12, 0]", 12), "end before they begin");
  EXPECT_CONTAINS(with("[2, -3]", "[0, 12]", 12), "dimension -3 is negative");
  EXPECT_CONTAINS(with("[2, 1.5]", "[0, 12]", 12), "expected integers");
  EXPECT_CONTAINS(with("[2, \"3\"]", "[0, 12]", 12), "expected integers");
  EXPECT_CONTAINS(with("[18446744073709551615]", "[0, 12]", 12), "too large");
  EXPECT_CONTAINS(with("[4294967296, 4294967296, 4]", "[0, 12]", 12), "more bytes than the data buffer");
  EXPECT_CONTAINS(with("[9223372036854775807, 9223372036854775807]", "[0, 12]", 12), "more bytes than the data buffer");
  EXPECT_EQ(with("[4096, 0]", "[6, 6]", 12), "") << "zero-size tensors are valid";
  EXPECT_CONTAINS(with("[9223372036854775807, 4, 0]", "[6, 6]", 12), "more elements than int64");
  EXPECT_CONTAINS(with("[2, 3]", "[18446744073709551600, 18446744073709551612]", 12), "extend past");
}

TEST(Safetensors, RejectsOverlappingRanges) {
  testing::TempDir dir;
  auto two = [&](const std::string& a, const std::string& b) {
    return open_error(dir, make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": )" + a +
                                         R"(}, "b": {"dtype": "F32", "shape": [2], "data_offsets": )" + b + "}}",
                                     24));
  };
  EXPECT_EQ(two("[0, 8]", "[8, 16]"), "");
  EXPECT_EQ(two("[16, 24]", "[0, 8]"), "") << "holes between tensors are allowed";
  EXPECT_CONTAINS(two("[0, 8]", "[4, 12]"), "overlaps");
  EXPECT_CONTAINS(two("[8, 16]", "[8, 16]"), "overlaps");
  EXPECT_CONTAINS(two("[4, 12]", "[0, 8]"), "overlaps");
}

TEST(Safetensors, ParsesFromMemory) {
  const auto bytes = make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 8);
  const io::SafetensorsContents c = io::parse_safetensors(bytes.data(), bytes.size(), "mem");
  ASSERT_EQ(c.tensors.size(), 1u);
  EXPECT_EQ(static_cast<const uint8_t*>(c.tensors[0].data), bytes.data() + bytes.size() - 8);
  EXPECT_THROW(io::parse_safetensors(bytes.data(), 7, "mem"), Error);
}

struct Shards {
  std::vector<uint8_t> a = random_bytes(16, 1), b = random_bytes(8, 2), c = random_bytes(12, 3);
  std::string index;
  explicit Shards(const testing::TempDir& dir) {
    SafetensorsWriter one, two;
    one.set_metadata("format", "pt");
    one.add_tensor("embed", TensorType::F32, {2, 2}, a.data(), a.size());
    one.add_tensor("extra", TensorType::F16, {4}, b.data(), b.size());
    two.add_tensor("head", TensorType::BF16, {6}, c.data(), c.size());
    std::filesystem::create_directory(dir.file("ckpt"));
    one.write(dir.file("ckpt/model-00001-of-00002.safetensors"));
    two.write(dir.file("ckpt/model-00002-of-00002.safetensors"));
    index = dir.file("ckpt/model.safetensors.index.json");
    write_index(R"({"embed": "model-00001-of-00002.safetensors", "head": "model-00002-of-00002.safetensors"})");
  }
  void write_index(const std::string& weight_map) const {
    write_text(index, R"({"metadata": {"total_size": 36}, "weight_map": )" + weight_map + "}");
  }
};

std::string open_message(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SafetensorsShards, OpensAnIndexOrItsDirectory) {
  testing::TempDir dir;
  Shards shards(dir);
  for (const std::string& path : {shards.index, dir.file("ckpt")}) {
    const SafetensorsFile f = SafetensorsFile::open(path);
    ASSERT_EQ(f.tensors().size(), 2u) << "only the tensors the index names";
    EXPECT_EQ(f.shard_paths().size(), 2u);
    EXPECT_EQ(std::memcmp(f.find_tensor("embed")->data, shards.a.data(), shards.a.size()), 0);
    EXPECT_EQ(std::memcmp(f.find_tensor("head")->data, shards.c.data(), shards.c.size()), 0);
    EXPECT_EQ(f.find_tensor("head")->type, TensorType::BF16);
    EXPECT_EQ(f.metadata().at("format"), "pt");
  }
}

TEST(SafetensorsShards, OpensADirectoryWithOneFile) {
  testing::TempDir dir;
  const auto a = random_bytes(8, 4);
  SafetensorsWriter w;
  w.add_tensor("x", TensorType::F32, {2}, a.data(), a.size());
  w.write(dir.file("model.safetensors"));
  const SafetensorsFile f = SafetensorsFile::open(dir.path());
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.shard_paths()[0], dir.file("model.safetensors"));
  std::filesystem::remove(dir.file("model.safetensors"));
  EXPECT_CONTAINS(open_message(dir.path()), "neither model.safetensors nor model.safetensors.index.json");
}

TEST(SafetensorsShards, RejectsMissingShardsAndTensors) {
  testing::TempDir dir;
  Shards shards(dir);
  shards.write_index(R"({"embed": "model-00001-of-00002.safetensors", "head": "model-00003-of-00003.safetensors"})");
  std::string msg = open_message(shards.index);
  EXPECT_CONTAINS(msg, shards.index);
  EXPECT_CONTAINS(msg, "model-00003-of-00003.safetensors");
  EXPECT_CONTAINS(msg, "No such file or directory");

  shards.write_index(R"({"embed": "model-00001-of-00002.safetensors", "lost": "model-00002-of-00002.safetensors"})");
  msg = open_message(shards.index);
  EXPECT_CONTAINS(msg, "tensor 'lost' is listed in shard 'model-00002-of-00002.safetensors'");

  write_text(shards.index, R"({"metadata": {}})");
  EXPECT_CONTAINS(open_message(shards.index), "no \"weight_map\"");
  write_text(shards.index, R"({"weight_map": {"embed": 3}})");
  EXPECT_CONTAINS(open_message(shards.index), "'embed' is not a file name");
  write_text(shards.index, "{not json");
  EXPECT_CONTAINS(open_message(shards.index), "not valid JSON");
  write_text(shards.index, "");
  EXPECT_CONTAINS(open_message(shards.index), "not valid JSON");
  EXPECT_CONTAINS(open_message(dir.file("nothing.safetensors")), dir.file("nothing.safetensors") + ": cannot open");
}

TEST(SafetensorsWriter, RejectsInvalidTensors) {
  std::vector<uint8_t> buf(64, 1);
  SafetensorsWriter w;
  EXPECT_THROW(w.add_tensor("q", TensorType::Q8_0, {32}, buf.data(), 34), Error);
  EXPECT_THROW(w.add_tensor("a", TensorType::F32, {3}, buf.data(), 8), Error);
  EXPECT_THROW(w.add_tensor("a", TensorType::F32, {-3}, buf.data(), 12), Error);
  EXPECT_THROW(w.add_tensor("__metadata__", TensorType::F32, {1}, buf.data(), 4), Error);
  EXPECT_THROW(w.add_tensor("a", TensorType::F32, {2}, nullptr, 8), Error);
  w.add_tensor("a", TensorType::F32, {2}, buf.data(), 8);
  EXPECT_THROW(w.add_tensor("a", TensorType::F16, {4}, buf.data(), 8), Error);
  testing::TempDir dir;
  SafetensorsWriter bad_name;
  bad_name.add_tensor("\xff\xfe", TensorType::F32, {1}, buf.data(), 4);  // not UTF-8: JSON cannot hold it
  EXPECT_THROW(bad_name.write(dir.file("x.safetensors")), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.safetensors")));
}

TEST(SafetensorsWriter, Bf16ValuesReadBackBitExact) {
  testing::TempDir dir;
  const auto values = testing::random_normal(33, 8);
  std::vector<uint16_t> bf(values.size());
  for (size_t i = 0; i < values.size(); ++i) bf[i] = f32_to_bf16(values[i]);
  SafetensorsWriter w;
  w.add_tensor("v", TensorType::BF16, {33}, bf.data(), bf.size() * 2);
  w.write(dir.file("v.safetensors"));
  const SafetensorsFile f = SafetensorsFile::open(dir.file("v.safetensors"));
  const auto* got = static_cast<const uint16_t*>(f.find_tensor("v")->data);
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(got[i], bf[i]) << i;
}

}  // namespace
}  // namespace ruvdllm
