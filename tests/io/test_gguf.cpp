#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "io/gguf_parse.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"
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

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng() % 255 + 1);  // never zero
  return v;
}

// Hand-built GGUF bytes, for files the writer refuses to produce.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    const size_t at = b.size();
    b.resize(at + sizeof(T));
    std::memcpy(b.data() + at, &v, sizeof(T));
    return *this;
  }
  Bytes& str(std::string_view s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& kv_u32(std::string_view key, uint32_t v) {
    str(key);
    put<uint32_t>(static_cast<uint32_t>(GgufType::UINT32));
    return put(v);
  }
  Bytes& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name);
    put<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) put(d);
    put(type);
    return put(offset);
  }
  Bytes& pad(size_t alignment) {
    b.resize((b.size() + alignment - 1) / alignment * alignment, 0);
    return *this;
  }
  Bytes& data(size_t n) {
    const auto r = random_bytes(n, b.size());
    b.insert(b.end(), r.begin(), r.end());
    return *this;
  }
};

Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Bytes h;
  h.b = {'G', 'G', 'U', 'F'};
  return h.put(version).put(n_tensors).put(n_kv);
}

// The Error message from opening `bytes` as a file, or "" when it opened.
std::string open_error(const testing::TempDir& dir, const std::vector<uint8_t>& bytes) {
  const std::string path = dir.file("bad.gguf");
  write_bytes(path, bytes);
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), path);
    return e.what();
  }
  return "";
}

void expect_same_value(const GgufValue& a, const GgufValue& b, const std::string& what) {
  ASSERT_EQ(a.type(), b.type()) << what;
  switch (a.type()) {
    case GgufType::STRING: EXPECT_EQ(a.as_string(), b.as_string()) << what; return;
    case GgufType::BOOL: EXPECT_EQ(a.as_bool(), b.as_bool()) << what; return;
    case GgufType::FLOAT32: case GgufType::FLOAT64: EXPECT_EQ(a.as_float(), b.as_float()) << what; return;
    case GgufType::UINT64: EXPECT_EQ(a.as_uint(), b.as_uint()) << what; return;
    case GgufType::ARRAY: break;
    default: EXPECT_EQ(a.as_int(), b.as_int()) << what; return;
  }
  ASSERT_EQ(a.array_type(), b.array_type()) << what;
  ASSERT_EQ(a.array_size(), b.array_size()) << what;
  switch (a.array_type()) {
    case GgufType::STRING: EXPECT_EQ(a.as_string_array(), b.as_string_array()) << what; break;
    case GgufType::FLOAT32: case GgufType::FLOAT64: EXPECT_EQ(a.as_float_array(), b.as_float_array()) << what; break;
    case GgufType::ARRAY:
      for (size_t i = 0; i < a.array_size(); ++i) {
        expect_same_value(a.as_nested_array()[i], b.as_nested_array()[i], what + "[" + std::to_string(i) + "]");
      }
      break;
    default: EXPECT_EQ(a.as_int_array(), b.as_int_array()) << what; break;
  }
}

std::vector<std::pair<std::string, GgufValue>> every_kind_of_value() {
  using L = std::numeric_limits<int64_t>;
  return {
      {"u8", GgufValue::u8(255)},
      {"i8", GgufValue::i8(-128)},
      {"u16", GgufValue::u16(65535)},
      {"i16", GgufValue::i16(-32768)},
      {"u32", GgufValue::u32(4000000000u)},
      {"i32", GgufValue::i32(-2000000000)},
      {"u64", GgufValue::u64(std::numeric_limits<uint64_t>::max())},
      {"i64", GgufValue::i64(L::min())},
      {"f32", GgufValue::f32(0.1f)},
      {"f64", GgufValue::f64(-1e300)},
      {"bool.true", GgufValue::boolean(true)},
      {"bool.false", GgufValue::boolean(false)},
      {"string", GgufValue::string("llada")},
      {"string.empty", GgufValue::string("")},
      {"string.utf8", GgufValue::string("héllo ✓ 日本語 \xF0\x9F\x99\x82")},
      {"string.nul", GgufValue::string(std::string("a\0b", 3))},
      {"arr.u8", GgufValue::int_array(GgufType::UINT8, {0, 1, 255})},
      {"arr.i8", GgufValue::int_array(GgufType::INT8, {-128, 5, 127})},
      {"arr.u16", GgufValue::int_array(GgufType::UINT16, {65535, 7})},
      {"arr.i16", GgufValue::int_array(GgufType::INT16, {-32768, 32767})},
      {"arr.u32", GgufValue::int_array(GgufType::UINT32, {4294967295LL, 3})},
      {"arr.i32", GgufValue::int_array(GgufType::INT32, {-2147483648LL, 9})},
      {"arr.u64", GgufValue::int_array(GgufType::UINT64, {-1, L::max(), 12})},  // -1 is 2^64-1
      {"arr.i64", GgufValue::int_array(GgufType::INT64, {L::min(), L::max()})},
      {"arr.bool", GgufValue::int_array(GgufType::BOOL, {1, 0, 1})},
      {"arr.f32", GgufValue::float_array(GgufType::FLOAT32, {0.5, -2.25, 1e-3f})},
      {"arr.f64", GgufValue::float_array(GgufType::FLOAT64, {1e-300, 3.141592653589793})},
      {"arr.string", GgufValue::string_array({"<s>", "", "日本", "tok\n"})},
      {"arr.empty.string", GgufValue::string_array({})},
      {"arr.empty.i32", GgufValue::int_array(GgufType::INT32, {})},
      {"arr.empty.f32", GgufValue::float_array(GgufType::FLOAT32, {})},
      {"arr.empty.nested", GgufValue::nested_array({})},
      {"arr.nested",
       GgufValue::nested_array({GgufValue::int_array(GgufType::INT32, {1, 2}), GgufValue::string_array({"a", "bc"}),
                                GgufValue::nested_array({GgufValue::float_array(GgufType::FLOAT64, {2.5})})})},
  };
}

TEST(GgufWriter, RoundTripsEveryMetadataType) {
  testing::TempDir dir;
  const auto values = every_kind_of_value();
  GgufWriter w;
  for (const auto& [k, v] : values) w.set(k, v);
  w.set("u8", GgufValue::u8(254));  // replacing keeps the key's place
  const std::string path = dir.file("meta.gguf");
  w.write(path);

  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_TRUE(f.tensors().empty());
  ASSERT_EQ(f.metadata().size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(f.metadata()[i].first, values[i].first);
    if (values[i].first == "u8") {
      EXPECT_EQ(f.metadata()[i].second.as_int(), 254);
    } else {
      expect_same_value(f.metadata()[i].second, values[i].second, values[i].first);
    }
  }
  EXPECT_EQ(f.get_string("string.utf8"), "héllo ✓ 日本語 \xF0\x9F\x99\x82");
  EXPECT_EQ(f.get_int("u32", 0), 4000000000LL);
  EXPECT_EQ(f.get_int("missing", -7), -7);
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("f32", 0)), 0.1f);
  EXPECT_EQ(f.get_float("i8", 0), -128.0);
  EXPECT_TRUE(f.get_bool("bool.true", false));
  EXPECT_EQ(f.get_string("missing", "fallback"), "fallback");
  EXPECT_EQ(f.find("arr.nested")->as_nested_array()[2].as_nested_array()[0].as_float_array()[0], 2.5);
}

TEST(GgufFile, TypedLookupsNameTheKeyOnMismatch) {
  testing::TempDir dir;
  GgufWriter w;
  w.set("general.name", GgufValue::u32(3));
  w.set("big", GgufValue::u64(std::numeric_limits<uint64_t>::max()));
  w.write(dir.file("m.gguf"));
  const GgufFile f = GgufFile::open(dir.file("m.gguf"));
  try {
    f.get_string("general.name");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "general.name");
    EXPECT_CONTAINS(e.what(), "UINT32");
    EXPECT_CONTAINS(e.what(), dir.file("m.gguf"));
  }
  EXPECT_THROW(f.get_int("big", 0), Error);
  EXPECT_THROW(f.get_bool("general.name", false), Error);
  EXPECT_EQ(f.find("big")->as_uint(), std::numeric_limits<uint64_t>::max());
}

struct TensorCase {
  TensorType type;
  std::vector<int64_t> shape;
};

std::vector<TensorCase> every_tensor_type() {
  return {
      {TensorType::F32, {7}},           {TensorType::F32, {3, 5, 2}},     {TensorType::F16, {9, 3}},
      {TensorType::BF16, {5, 1, 3, 2}}, {TensorType::Q4_0, {64, 3}},      {TensorType::Q8_0, {96, 5}},
      {TensorType::Q4_K, {256, 2}},     {TensorType::Q5_K, {512, 1, 2}}, {TensorType::Q6_K, {256, 3}},
      {TensorType::Q8_K, {256}},
  };
}

size_t bytes_of(TensorType type, const std::vector<int64_t>& shape) {
  size_t n = row_bytes(type, shape[0]);
  for (size_t i = 1; i < shape.size(); ++i) n *= static_cast<size_t>(shape[i]);
  return n;
}

void check_tensors_round_trip(size_t alignment) {
  SCOPED_TRACE("alignment " + std::to_string(alignment));
  testing::TempDir dir;
  const auto cases = every_tensor_type();
  std::vector<std::vector<uint8_t>> data;
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llada"));
  if (alignment != 32) w.set_alignment(alignment);
  for (size_t i = 0; i < cases.size(); ++i) {
    data.push_back(random_bytes(bytes_of(cases[i].type, cases[i].shape), 100 + i));
    w.add_tensor("t" + std::to_string(i), cases[i].type, cases[i].shape, data.back().data(), data.back().size());
  }
  const std::string path = dir.file("tensors.gguf");
  w.write(path);

  const GgufFile f = GgufFile::open(path);
  const auto raw = read_bytes(path);
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.file_size(), raw.size());
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  if (alignment != 32) {
    EXPECT_EQ(f.get_int("general.alignment", 0), static_cast<int64_t>(alignment));
  }
  ASSERT_EQ(f.tensors().size(), cases.size());
  const auto* base = static_cast<const uint8_t*>(f.tensors()[0].data) - f.data_offset();
  size_t previous_offset = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const TensorView& t = f.tensors()[i];
    EXPECT_EQ(t.name, "t" + std::to_string(i));
    EXPECT_EQ(t.type, cases[i].type);
    EXPECT_EQ(t.shape, cases[i].shape);
    ASSERT_EQ(t.nbytes, data[i].size());
    EXPECT_EQ(std::memcmp(t.data, data[i].data(), t.nbytes), 0) << t.name;
    const size_t file_offset = static_cast<size_t>(static_cast<const uint8_t*>(t.data) - base);
    EXPECT_EQ((file_offset - f.data_offset()) % alignment, 0u) << t.name;
    EXPECT_EQ(std::memcmp(raw.data() + file_offset, data[i].data(), t.nbytes), 0) << t.name;
    if (i > 0) {
      EXPECT_GT(file_offset, previous_offset) << "tensors keep the order of add_tensor";
    }
    previous_offset = file_offset;
    EXPECT_EQ(f.find_tensor(t.name), &t);
  }
  EXPECT_EQ(f.find_tensor("absent"), nullptr);
}

TEST(GgufWriter, RoundTripsEveryTensorTypeAtDefaultAlignment) { check_tensors_round_trip(32); }
TEST(GgufWriter, RoundTripsWithCustomAlignments) {
  for (size_t a : {1, 8, 64, 4096}) check_tensors_round_trip(a);
}

TEST(GgufWriter, FillsLazyTensorsDuringWriteAndReportsProgress) {
  testing::TempDir dir;
  const auto small = random_bytes(34 * 4, 1);
  const auto large = random_bytes(size_t{6} << 20, 2);  // larger than the output buffer
  const auto plain = random_bytes(40, 3);
  bool small_filled = false, large_filled = false;
  GgufWriter w;
  w.add_tensor_lazy("small", TensorType::Q8_0, {64, 2}, [&](void* dst) {
    std::memcpy(dst, small.data(), small.size());
    small_filled = true;
  });
  w.add_tensor("plain", TensorType::F32, {10}, plain.data(), plain.size());
  w.add_tensor_lazy("large", TensorType::F16, {1024, 3072}, [&](void* dst) {
    std::memcpy(dst, large.data(), large.size());
    large_filled = true;
  });
  EXPECT_FALSE(small_filled || large_filled);
  std::vector<std::pair<size_t, size_t>> progress;
  w.write(dir.file("lazy.gguf"), [&](size_t done, size_t total) { progress.emplace_back(done, total); });
  EXPECT_TRUE(small_filled && large_filled);
  EXPECT_EQ(progress, (std::vector<std::pair<size_t, size_t>>{{1, 3}, {2, 3}, {3, 3}}));

  const GgufFile f = GgufFile::open(dir.file("lazy.gguf"));
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(std::memcmp(f.find_tensor("small")->data, small.data(), small.size()), 0);
  EXPECT_EQ(std::memcmp(f.find_tensor("plain")->data, plain.data(), plain.size()), 0);
  EXPECT_EQ(std::memcmp(f.find_tensor("large")->data, large.data(), large.size()), 0);
}

TEST(GgufWriter, FailedWriteLeavesNoFileBehind) {
  testing::TempDir dir;
  const std::string path = dir.file("out.gguf");
  write_bytes(path, {1, 2, 3});
  GgufWriter w;
  w.add_tensor_lazy("x", TensorType::F32, {4}, [](void*) { throw Error("fill failed"); });
  EXPECT_THROW(w.write(path), Error);
  EXPECT_EQ(read_bytes(path), (std::vector<uint8_t>{1, 2, 3})) << "the old file stays untouched";
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) files += entry.is_regular_file();
  EXPECT_EQ(files, 1u) << "temporary file removed";
  EXPECT_THROW(w.write(dir.file("no/such/dir/out.gguf")), Error);
}

TEST(GgufWriter, RejectsInvalidTensorsAndSettings) {
  GgufWriter w;
  std::vector<uint8_t> buf(1024, 1);
  EXPECT_THROW(w.add_tensor("a", TensorType::F32, {4}, buf.data(), 12), Error);  // wrong size
  EXPECT_THROW(w.add_tensor("a", TensorType::Q4_0, {33}, buf.data(), 18), Error);  // partial block
  EXPECT_THROW(w.add_tensor("a", TensorType::F32, {}, buf.data(), 4), Error);
  EXPECT_THROW(w.add_tensor("a", TensorType::F32, {1, 1, 1, 1, 1}, buf.data(), 4), Error);
  EXPECT_THROW(w.add_tensor("a", TensorType::F32, {0}, buf.data(), 0), Error);
  EXPECT_THROW(w.add_tensor("a", static_cast<TensorType>(3), {32}, buf.data(), 20), Error);
  EXPECT_THROW(w.add_tensor("", TensorType::F32, {1}, buf.data(), 4), Error);
  w.add_tensor("a", TensorType::F32, {4}, buf.data(), 16);
  EXPECT_THROW(w.add_tensor("a", TensorType::F32, {4}, buf.data(), 16), Error);
  EXPECT_THROW(w.add_tensor_lazy("a", TensorType::F32, {4}, [](void*) {}), Error);
  EXPECT_THROW(w.set_alignment(48), Error);
  EXPECT_THROW(w.set_alignment(0), Error);
  EXPECT_THROW(w.set("general.alignment", GgufValue::u64(64)), Error);
  EXPECT_THROW(w.set("general.alignment", GgufValue::u32(3)), Error);
}

TEST(GgufWriter, AlignmentKeyAndSetAlignmentAgree) {
  testing::TempDir dir;
  std::vector<uint8_t> buf(16, 1);
  GgufWriter w;
  w.set("general.alignment", GgufValue::u32(128));
  w.add_tensor("a", TensorType::F32, {1}, buf.data(), 4);
  w.add_tensor("b", TensorType::F32, {1}, buf.data(), 4);
  w.write(dir.file("a.gguf"));
  const GgufFile f = GgufFile::open(dir.file("a.gguf"));
  EXPECT_EQ(f.alignment(), 128u);
  EXPECT_EQ(static_cast<const uint8_t*>(f.tensors()[1].data) - static_cast<const uint8_t*>(f.tensors()[0].data), 128);
}

// A valid file with metadata of several kinds and three tensors, for the corruption tests.
std::vector<uint8_t> small_valid_file(const testing::TempDir& dir) {
  static const auto q8 = random_bytes(34 * 2, 11);
  static const auto f32 = random_bytes(4 * 6, 12);
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llada"));
  w.set("llada.block_count", GgufValue::u32(2));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array({"<s>", "a", "bc"}));
  w.set("tokenizer.ggml.scores", GgufValue::float_array(GgufType::FLOAT32, {0.5, -1}));
  w.set("nested", GgufValue::nested_array({GgufValue::int_array(GgufType::INT16, {1, -2})}));
  w.add_tensor("w", TensorType::Q8_0, {64, 1}, q8.data(), q8.size());
  w.add_tensor("b", TensorType::F32, {3, 2}, f32.data(), f32.size());
  w.add_tensor("c", TensorType::F32, {1}, f32.data(), 4);
  w.write(dir.file("valid.gguf"));
  return read_bytes(dir.file("valid.gguf"));
}

TEST(GgufReader, EveryTruncationIsAnError) {
  testing::TempDir dir;
  const auto valid = small_valid_file(dir);
  ASSERT_LT(valid.size(), 2000u);
  ASSERT_EQ(open_error(dir, valid), "");
  for (size_t n = 0; n < valid.size(); ++n) {
    const std::string msg = open_error(dir, std::vector<uint8_t>(valid.begin(), valid.begin() + static_cast<long>(n)));
    EXPECT_NE(msg, "") << "truncated to " << n << " bytes opened without error";
    if (::testing::Test::HasFailure()) break;
  }
}

TEST(GgufReader, TruncationMessageSaysWhereAndHowMuch) {
  testing::TempDir dir;
  auto bytes = header(0, 2).kv_u32("a", 1).str("tokens").put<uint32_t>(8).str("0123456789").b;  // STRING
  bytes.resize(bytes.size() - 4);
  const std::string msg = open_error(dir, bytes);
  EXPECT_CONTAINS(msg, "truncated in metadata key 1 ('tokens')");
  EXPECT_CONTAINS(msg, "needs 10 bytes at offset 67, file has 73");
}

TEST(GgufReader, ReadsVersion2AndRejectsOtherVersions) {
  testing::TempDir dir;
  auto v2 = small_valid_file(dir);
  v2[4] = 2;
  EXPECT_EQ(open_error(dir, v2), "");
  EXPECT_EQ(GgufFile::open(dir.file("bad.gguf")).version(), 2u);
  EXPECT_CONTAINS(open_error(dir, header(0, 0, 1).b), "version 1 is not supported");
  EXPECT_CONTAINS(open_error(dir, header(0, 0, 99).b), "version 99 is not supported");
  EXPECT_CONTAINS(open_error(dir, header(0, 0, 0x03000000).b), "big-endian");
}

TEST(GgufReader, RejectsBadMagicAndEmptyAndMissingFiles) {
  testing::TempDir dir;
  auto bytes = small_valid_file(dir);
  bytes[3] = 'X';
  EXPECT_CONTAINS(open_error(dir, bytes), "not a GGUF file");
  EXPECT_CONTAINS(open_error(dir, {}), "truncated in header");
  try {
    GgufFile::open(dir.file("missing.gguf"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), dir.file("missing.gguf") + ": cannot open: No such file or directory");
  }
  EXPECT_THROW(GgufFile::open(dir.path()), Error);
}

TEST(GgufReader, RejectsCountsAndLengthsTheFileCannotHold) {
  testing::TempDir dir;
  EXPECT_CONTAINS(open_error(dir, header(0, uint64_t{1} << 60).b), "count");
  EXPECT_CONTAINS(open_error(dir, header(uint64_t{1} << 60, 0).b), "count");
  EXPECT_CONTAINS(open_error(dir, header(~uint64_t{0}, ~uint64_t{0}).b), "count");
  EXPECT_CONTAINS(open_error(dir, header(0, 1).put<uint64_t>(uint64_t{1} << 62).data(40).b), "truncated in metadata key 0");
  // An array claiming 2^61 u64 elements.
  auto arr = header(0, 1).str("a").put<uint32_t>(9).put<uint32_t>(10).put<uint64_t>(uint64_t{1} << 61).b;
  EXPECT_CONTAINS(open_error(dir, arr), "truncated in metadata key 0 ('a')");
  auto strings = header(0, 1).str("s").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(~uint64_t{0}).b;
  EXPECT_CONTAINS(open_error(dir, strings), "truncated in metadata key 0 ('s')");
  auto nested = header(0, 1).str("n").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(uint64_t{1} << 40).b;
  EXPECT_CONTAINS(open_error(dir, nested), "truncated");
}

TEST(GgufReader, RejectsBadMetadata) {
  testing::TempDir dir;
  EXPECT_CONTAINS(open_error(dir, header(0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0).b), "unknown value type 13");
  EXPECT_CONTAINS(open_error(dir, header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(0).b),
                  "unknown array element type 77");
  EXPECT_CONTAINS(open_error(dir, header(0, 2).kv_u32("k", 1).kv_u32("k", 2).b), "duplicate key");
  EXPECT_CONTAINS(open_error(dir, header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2).pad(32).b), "BOOL");
  Bytes deep = header(0, 1).str("deep").put<uint32_t>(9);
  for (int i = 0; i < 6; ++i) deep.put<uint32_t>(9).put<uint64_t>(1);
  deep.put<uint32_t>(4).put<uint64_t>(0);
  EXPECT_CONTAINS(open_error(dir, deep.b), "nested deeper");
  EXPECT_CONTAINS(open_error(dir, header(0, 1).kv_u32("general.alignment", 48).pad(32).b), "not a power of two");
  EXPECT_CONTAINS(open_error(dir, header(0, 1).kv_u32("general.alignment", 0).pad(32).b), "not a power of two");
  auto u64_alignment = header(0, 1).str("general.alignment").put<uint32_t>(10).put<uint64_t>(32).pad(32).b;
  EXPECT_CONTAINS(open_error(dir, u64_alignment), "expected UINT32");
  EXPECT_EQ(open_error(dir, header(0, 1).kv_u32("general.alignment", 16).pad(16).b), "");
}

TEST(GgufReader, RejectsBadTensorInfos) {
  testing::TempDir dir;
  auto one = [&](std::vector<uint64_t> dims, uint32_t type, uint64_t offset, size_t data_bytes) {
    return open_error(dir, header(1, 0).tensor("blk.0.w", dims, type, offset).pad(32).data(data_bytes).b);
  };
  EXPECT_EQ(one({4, 2}, 0, 0, 32), "");
  EXPECT_CONTAINS(one({4, 2}, 0, 0, 31), "extends past the end");
  EXPECT_CONTAINS(one({4, 2}, 0, 32, 32), "extends past the end");
  EXPECT_CONTAINS(one({4, 2}, 0, ~uint64_t{0} - 31, 32), "extends past the end");
  EXPECT_CONTAINS(one({4, 2}, 0, 4, 64), "not a multiple of the alignment 32");
  EXPECT_CONTAINS(one({4, 2}, 99, 0, 32), "tensor 0 ('blk.0.w'): unsupported tensor type 99");
  EXPECT_CONTAINS(one({32}, 3, 0, 32), "unsupported tensor type 3");
  EXPECT_CONTAINS(one({33}, 2, 0, 64), "not a multiple of q4_0's block size 32");
  EXPECT_CONTAINS(one({1, 1, 1, 1, 1}, 0, 0, 32), "n_dims 5");
  EXPECT_CONTAINS(one({}, 0, 0, 32), "n_dims 0");
  EXPECT_CONTAINS(one({4, 0}, 0, 0, 32), "dimension 1 is 0");
  EXPECT_CONTAINS(one({~uint64_t{0}}, 0, 0, 32), "too large");
  EXPECT_CONTAINS(one({uint64_t{1} << 40, uint64_t{1} << 40}, 0, 0, 32), "larger than the file");
  EXPECT_CONTAINS(one({uint64_t{1} << 32, uint64_t{1} << 32, 16}, 0, 0, 32), "larger than the file");
  EXPECT_CONTAINS(one({uint64_t{1} << 62}, 0, 0, 32), "larger than the file");
}

TEST(GgufReader, RejectsOverlappingAndDuplicateTensors) {
  testing::TempDir dir;
  auto two = [&](const char* second_name, uint64_t second_offset) {
    return open_error(dir, header(2, 0)
                               .tensor("a", {16}, 0, 0)
                               .tensor(second_name, {8}, 0, second_offset)
                               .pad(32)
                               .data(128)
                               .b);
  };
  EXPECT_EQ(two("b", 64), "");
  EXPECT_CONTAINS(two("b", 32), "overlaps tensor 'a'");
  EXPECT_CONTAINS(two("b", 0), "overlaps");
  EXPECT_CONTAINS(two("a", 64), "duplicate tensor name");
  EXPECT_CONTAINS(open_error(dir, header(1, 0).tensor("", {8}, 0, 0).pad(32).data(32).b), "empty tensor name");
}

TEST(GgufReader, ParsesFromMemoryWithoutAFile) {
  testing::TempDir dir;
  const auto valid = small_valid_file(dir);
  const io::GgufContents c = io::parse_gguf(valid.data(), valid.size(), "mem");
  ASSERT_EQ(c.tensors.size(), 3u);
  EXPECT_EQ(c.tensors[0].name, "w");
  EXPECT_EQ(static_cast<const uint8_t*>(c.tensors[0].data), valid.data() + c.data_offset);
  try {
    io::parse_gguf(valid.data(), 10, "mem");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("mem: truncated in header", 0), 0u) << e.what();
  }
}

TEST(GgufValue, ConversionsCheckTypesAndRanges) {
  EXPECT_EQ(GgufValue::u8(200).as_int(), 200);
  EXPECT_EQ(GgufValue::i16(-5).as_int(), -5);
  EXPECT_EQ(GgufValue::u64(uint64_t{1} << 62).as_int(), int64_t{1} << 62);
  EXPECT_THROW(GgufValue::u64(~uint64_t{0}).as_int(), Error);
  EXPECT_THROW(GgufValue::i32(-1).as_uint(), Error);
  EXPECT_EQ(GgufValue::i32(7).as_uint(), 7u);
  EXPECT_EQ(GgufValue::u32(3).as_float(), 3.0);
  EXPECT_EQ(GgufValue::f32(0.5f).as_float(), 0.5);
  EXPECT_THROW(GgufValue::string("x").as_int(), Error);
  EXPECT_THROW(GgufValue::f64(1).as_int(), Error);
  EXPECT_THROW(GgufValue::u8(1).as_bool(), Error);
  EXPECT_THROW(GgufValue::boolean(true).as_float(), Error);
  EXPECT_THROW(GgufValue::string_array({"a"}).as_int_array(), Error);
  EXPECT_THROW(GgufValue::u8(1).array_size(), Error);
  try {
    GgufValue::u32(1).as_string();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "metadata value is UINT32, expected STRING");
  }
  EXPECT_TRUE(GgufValue::u64(1).is_integer());
  EXPECT_FALSE(GgufValue::f32(1).is_integer());
  EXPECT_TRUE(GgufValue::f64(1).is_float());
  EXPECT_THROW(GgufValue::int_array(GgufType::UINT8, {256}), Error);
  EXPECT_THROW(GgufValue::int_array(GgufType::INT8, {-129}), Error);
  EXPECT_THROW(GgufValue::int_array(GgufType::FLOAT32, {1}), Error);
  EXPECT_THROW(GgufValue::float_array(GgufType::INT32, {1}), Error);
  EXPECT_THROW(GgufValue::nested_array({GgufValue::u8(1)}), Error);
  EXPECT_STREQ(gguf_type_name(GgufType::FLOAT64), "FLOAT64");
}

TEST(GgufValue, DisplayStrings) {
  EXPECT_EQ(GgufValue::u32(42).to_display_string(), "42");
  EXPECT_EQ(GgufValue::i8(-3).to_display_string(), "-3");
  EXPECT_EQ(GgufValue::u64(~uint64_t{0}).to_display_string(), "18446744073709551615");
  EXPECT_EQ(GgufValue::f32(0.1f).to_display_string(), "0.1");
  EXPECT_EQ(GgufValue::f64(1e-5).to_display_string(), "1e-05");
  EXPECT_EQ(GgufValue::boolean(true).to_display_string(), "true");
  EXPECT_EQ(GgufValue::string("a\"b\nc").to_display_string(), "\"a\\\"b\\nc\"");
  const std::string long_text(100, 'x');
  EXPECT_EQ(GgufValue::string(long_text).to_display_string(), "\"" + std::string(60, 'x') + "...\"");
  // Truncation never splits a UTF-8 character.
  std::string wide = "x";
  for (int i = 0; i < 40; ++i) wide += "é";
  EXPECT_EQ(GgufValue::string(wide).to_display_string(), "\"" + wide.substr(0, 59) + "...\"");
  EXPECT_EQ(GgufValue::int_array(GgufType::INT32, {1, 2, 3}).to_display_string(), "[1, 2, 3]");
  EXPECT_EQ(GgufValue::int_array(GgufType::INT32, {1, 2, 3, 4, 5}).to_display_string(3), "[1, 2, 3, ... (5 items)]");
  EXPECT_EQ(GgufValue::int_array(GgufType::UINT8, {}).to_display_string(), "[]");
  EXPECT_EQ(GgufValue::int_array(GgufType::BOOL, {1, 0}).to_display_string(), "[true, false]");
  EXPECT_EQ(GgufValue::int_array(GgufType::UINT64, {-1}).to_display_string(), "[18446744073709551615]");
  EXPECT_EQ(GgufValue::string_array({"<s>", "a"}).to_display_string(), "[\"<s>\", \"a\"]");
  EXPECT_EQ(GgufValue::float_array(GgufType::FLOAT32, {0.25, 0.1f}).to_display_string(), "[0.25, 0.1]");
  EXPECT_EQ(GgufValue::string_array({"a", "b", "c"}).to_display_string(0), "[... (3 items)]");
  EXPECT_EQ(GgufValue::nested_array({GgufValue::int_array(GgufType::INT8, {1}), GgufValue::string_array({})})
                .to_display_string(),
            "[[1], []]");
}

}  // namespace
}  // namespace ruvdllm
