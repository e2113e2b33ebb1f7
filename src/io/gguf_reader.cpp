#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "io/gguf_parse.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"

namespace ruvdllm {
namespace io {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

constexpr size_t kHeaderBytes = 24;  // magic, version, tensor count, key/value count
// The fewest bytes one item can take, to reject counts the file cannot hold before allocating.
constexpr size_t kMinKeyValueBytes = 8 + 4 + 1;         // empty key, type, one-byte value
constexpr size_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, one dim, type, offset
constexpr int kMaxArrayDepth = 4;
constexpr uint32_t kMaxDims = 4;
constexpr size_t kMaxNameInMessage = 80;

// Untrusted names go into one-line messages: keep them short and printable.
std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMaxNameInMessage; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (s.size() > kMaxNameInMessage) out += "...";
  return out;
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

size_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}

// Bytes that one element of an array of `t` takes at the least.
size_t min_element_size(GgufType t) {
  if (t == GgufType::STRING) return 8;
  if (t == GgufType::ARRAY) return 4 + 8;
  return fixed_size(t);
}

class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& name) : data_(data), size_(size), name_(name) {}

  // What is being read, for messages: "metadata key 12 ('general.name')".
  void set_context(const char* what, uint64_t index = kNoIndex) {
    what_ = what;
    index_ = index;
    item_name_.clear();
  }
  void set_item_name(std::string_view item_name) { item_name_ = printable(item_name); }

  std::string context() const {
    std::string c = what_;
    if (index_ != kNoIndex) c += fmt::format(" {}", index_);
    if (!item_name_.empty()) c += fmt::format(" ('{}')", item_name_);
    return c;
  }

  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}: {}: {}", name_, context(), fmt::format(format, std::forward<Args>(args)...));
  }

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }

  void need(uint64_t n) const {
    if (n > remaining()) {
      fail("{}: truncated in {} (needs {} bytes at offset {}, file has {})", name_, context(), n, pos_, size_);
    }
  }
  // Checks that `count` items of at least `min_size` bytes each can still fit.
  void need_items(uint64_t count, size_t min_size) const {
    const uint64_t limit = std::numeric_limits<uint64_t>::max() / min_size;
    need(count > limit ? std::numeric_limits<uint64_t>::max() : count * min_size);
  }

  template <typename T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string() {
    const uint64_t length = read<uint64_t>();
    need(length);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(length));
    pos_ += static_cast<size_t>(length);
    return s;
  }

  void seek(size_t pos) { pos_ = pos; }

 private:
  static constexpr uint64_t kNoIndex = std::numeric_limits<uint64_t>::max();
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& name_;
  const char* what_ = "header";
  uint64_t index_ = kNoIndex;
  std::string item_name_;
};

GgufType read_type(Cursor& c, const char* role) {
  const uint32_t t = c.read<uint32_t>();
  if (!known_value_type(t)) c.error("unknown {} type {}", role, t);
  return static_cast<GgufType>(t);
}

bool read_bool(Cursor& c) {
  const uint8_t b = c.read<uint8_t>();
  if (b > 1) c.error("BOOL value is {}, expected 0 or 1", b);
  return b == 1;
}

int64_t read_integer(Cursor& c, GgufType t) {
  switch (t) {
    case GgufType::UINT8: return c.read<uint8_t>();
    case GgufType::INT8: return c.read<int8_t>();
    case GgufType::UINT16: return c.read<uint16_t>();
    case GgufType::INT16: return c.read<int16_t>();
    case GgufType::UINT32: return c.read<uint32_t>();
    case GgufType::INT32: return c.read<int32_t>();
    case GgufType::UINT64: return static_cast<int64_t>(c.read<uint64_t>());  // bit pattern kept
    case GgufType::INT64: return c.read<int64_t>();
    case GgufType::BOOL: return read_bool(c) ? 1 : 0;
    default: c.error("internal: {} is not an integer type", gguf_type_name(t));
  }
}

double read_float(Cursor& c, GgufType t) {
  if (t == GgufType::FLOAT32) return c.read<float>();
  return c.read<double>();
}

GgufValue read_value(Cursor& c, GgufType type, int depth);

GgufValue read_array(Cursor& c, int depth) {
  if (depth >= kMaxArrayDepth) c.error("arrays nested deeper than {} levels", kMaxArrayDepth);
  const GgufType element = read_type(c, "array element");
  const uint64_t count = c.read<uint64_t>();
  c.need_items(count, min_element_size(element));
  const size_t n = static_cast<size_t>(count);
  switch (element) {
    case GgufType::STRING: {
      std::vector<std::string> v;
      v.reserve(n);
      for (size_t i = 0; i < n; ++i) v.push_back(c.read_string());
      return GgufValue::string_array(std::move(v));
    }
    case GgufType::FLOAT32: case GgufType::FLOAT64: {
      std::vector<double> v(n);
      for (auto& x : v) x = read_float(c, element);
      return GgufValue::float_array(element, std::move(v));
    }
    case GgufType::ARRAY: {
      std::vector<GgufValue> v;
      v.reserve(n);
      for (size_t i = 0; i < n; ++i) v.push_back(read_array(c, depth + 1));
      return GgufValue::nested_array(std::move(v));
    }
    default: {
      std::vector<int64_t> v(n);
      for (auto& x : v) x = read_integer(c, element);
      return GgufValue::int_array(element, std::move(v));
    }
  }
}

GgufValue read_value(Cursor& c, GgufType type, int depth) {
  switch (type) {
    case GgufType::UINT8: return GgufValue::u8(c.read<uint8_t>());
    case GgufType::INT8: return GgufValue::i8(c.read<int8_t>());
    case GgufType::UINT16: return GgufValue::u16(c.read<uint16_t>());
    case GgufType::INT16: return GgufValue::i16(c.read<int16_t>());
    case GgufType::UINT32: return GgufValue::u32(c.read<uint32_t>());
    case GgufType::INT32: return GgufValue::i32(c.read<int32_t>());
    case GgufType::UINT64: return GgufValue::u64(c.read<uint64_t>());
    case GgufType::INT64: return GgufValue::i64(c.read<int64_t>());
    case GgufType::FLOAT32: return GgufValue::f32(c.read<float>());
    case GgufType::FLOAT64: return GgufValue::f64(c.read<double>());
    case GgufType::BOOL: return GgufValue::boolean(read_bool(c));
    case GgufType::STRING: return GgufValue::string(c.read_string());
    case GgufType::ARRAY: return read_array(c, depth);
  }
  c.error("unknown value type {}", static_cast<uint32_t>(type));
}

void read_header(Cursor& c, GgufContents& out) {
  c.set_context("header");
  c.need(4);
  const uint32_t magic = c.read<uint32_t>();
  if (std::memcmp(&magic, "GGUF", 4) != 0) {
    char bytes[4];
    std::memcpy(bytes, &magic, 4);
    c.error("not a GGUF file (starts with {}, expected 'GGUF')", printable(std::string_view(bytes, 4)));
  }
  const uint32_t version = c.read<uint32_t>();
  if (version == 0x02000000u || version == 0x03000000u) {
    c.error("big-endian GGUF files are not supported");
  }
  if (version != 2 && version != 3) {
    c.error("GGUF version {} is not supported (ruvdllm reads versions 2 and 3)", version);
  }
  out.version = version;
}

size_t read_alignment(const GgufContents& contents, const std::string& name) {
  for (const auto& [key, value] : contents.metadata) {
    if (key != "general.alignment") continue;
    if (value.type() != GgufType::UINT32) {
      fail("{}: general.alignment is {}, expected UINT32", name, gguf_type_name(value.type()));
    }
    const uint64_t a = value.as_uint();
    if (a == 0 || (a & (a - 1)) != 0) fail("{}: general.alignment {} is not a power of two", name, a);
    return static_cast<size_t>(a);
  }
  return 32;
}

struct TensorLayout {
  uint64_t offset;  // relative to the data section
  size_t nbytes;
};

// Byte size of a tensor from its dims; each step is checked against the file size, so the
// product can never overflow.
size_t tensor_bytes(Cursor& c, TensorType type, const std::vector<int64_t>& shape) {
  const TypeTraits& traits = type_traits(type);
  if (shape[0] % traits.block_size != 0) {
    c.error("row length {} is not a multiple of {}'s block size {}", shape[0], traits.name, traits.block_size);
  }
  const uint64_t blocks = static_cast<uint64_t>(shape[0] / traits.block_size);
  const size_t limit = c.size();
  if (blocks > limit / traits.block_bytes) c.error("is larger than the file ({} bytes)", limit);
  uint64_t nbytes = blocks * traits.block_bytes;
  for (size_t i = 1; i < shape.size(); ++i) {
    const uint64_t d = static_cast<uint64_t>(shape[i]);
    if (nbytes > limit / d) c.error("is larger than the file ({} bytes)", limit);
    nbytes *= d;
  }
  return static_cast<size_t>(nbytes);
}

void read_tensor_infos(Cursor& c, uint64_t count, GgufContents& out, std::vector<TensorLayout>& layout) {
  c.set_context("tensor infos");
  c.need_items(count, kMinTensorInfoBytes);
  out.tensors.reserve(static_cast<size_t>(count));
  layout.reserve(static_cast<size_t>(count));
  std::unordered_set<std::string> names;
  for (uint64_t i = 0; i < count; ++i) {
    c.set_context("tensor", i);
    TensorView t;
    t.name = c.read_string();
    c.set_item_name(t.name);
    if (t.name.empty()) c.error("empty tensor name");
    if (!names.insert(t.name).second) c.error("duplicate tensor name");
    const uint32_t n_dims = c.read<uint32_t>();
    if (n_dims == 0 || n_dims > kMaxDims) c.error("n_dims {} is not in 1..{}", n_dims, kMaxDims);
    t.shape.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = c.read<uint64_t>();
      if (dim == 0) c.error("dimension {} is 0", d);
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) c.error("dimension {} ({}) is too large", d, dim);
      t.shape[d] = static_cast<int64_t>(dim);
    }
    const uint32_t type = c.read<uint32_t>();
    if (!is_supported_type(type)) c.error("unsupported tensor type {}", type);
    t.type = static_cast<TensorType>(type);
    const uint64_t offset = c.read<uint64_t>();
    t.nbytes = tensor_bytes(c, t.type, t.shape);
    layout.push_back({offset, t.nbytes});
    out.tensors.push_back(std::move(t));
  }
}

void place_tensors(Cursor& c, const uint8_t* data, GgufContents& out, const std::vector<TensorLayout>& layout) {
  const size_t size = c.size();
  for (size_t i = 0; i < out.tensors.size(); ++i) {
    TensorView& t = out.tensors[i];
    c.set_context("tensor", i);
    c.set_item_name(t.name);
    const uint64_t offset = layout[i].offset;
    if (offset % out.alignment != 0) c.error("data offset {} is not a multiple of the alignment {}", offset, out.alignment);
    const size_t room = size - out.data_offset;
    if (offset > room || t.nbytes > room - offset) {
      c.error("data ({} bytes at offset {} of the data section at {}) extends past the end of the file ({} bytes)",
              t.nbytes, offset, out.data_offset, size);
    }
    t.data = data + out.data_offset + offset;
  }
  std::vector<size_t> order(out.tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return layout[a].offset < layout[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorLayout& prev = layout[order[k - 1]];
    if (prev.offset + prev.nbytes > layout[order[k]].offset) {
      c.set_context("tensor", order[k]);
      c.set_item_name(out.tensors[order[k]].name);
      c.error("data overlaps tensor '{}'", printable(out.tensors[order[k - 1]].name));
    }
  }
}

}  // namespace

GgufContents parse_gguf(const uint8_t* data, size_t size, const std::string& name) {
  GgufContents out;
  Cursor c(data, size, name);
  read_header(c, out);
  const uint64_t tensor_count = c.read<uint64_t>();
  const uint64_t kv_count = c.read<uint64_t>();
  const size_t body = size - kHeaderBytes;
  if (tensor_count > body / kMinTensorInfoBytes) {
    c.error("tensor count {} cannot fit in a file of {} bytes", tensor_count, size);
  }
  if (kv_count > body / kMinKeyValueBytes) {
    c.error("metadata key/value count {} cannot fit in a file of {} bytes", kv_count, size);
  }

  out.metadata.reserve(static_cast<size_t>(kv_count));
  std::unordered_set<std::string> keys;
  for (uint64_t i = 0; i < kv_count; ++i) {
    c.set_context("metadata key", i);
    std::string key = c.read_string();
    c.set_item_name(key);
    if (!keys.insert(key).second) c.error("duplicate key");
    const GgufType type = read_type(c, "value");
    GgufValue value = read_value(c, type, 0);
    out.metadata.emplace_back(std::move(key), std::move(value));
  }
  out.alignment = read_alignment(out, name);

  std::vector<TensorLayout> layout;
  read_tensor_infos(c, tensor_count, out, layout);

  c.set_context("padding before the tensor data");
  const size_t padding = (out.alignment - c.pos() % out.alignment) % out.alignment;
  c.need(padding);
  out.data_offset = c.pos() + padding;
  place_tensors(c, data, out, layout);
  return out;
}

}  // namespace io

GgufFile GgufFile::open(const std::string& path) {
  GgufFile file;
  file.file_ = MappedFile::open(path);
  io::GgufContents contents = io::parse_gguf(file.file_->data(), file.file_->size(), path);
  file.version_ = contents.version;
  file.alignment_ = contents.alignment;
  file.data_offset_ = contents.data_offset;
  file.metadata_ = std::move(contents.metadata);
  file.tensors_ = std::move(contents.tensors);
  return file;
}

const std::string& GgufFile::path() const {
  static const std::string kNone;
  return file_ ? file_->path() : kNone;
}

size_t GgufFile::file_size() const { return file_ ? file_->size() : 0; }

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const TensorView* GgufFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

namespace {

template <typename Get>
auto typed_lookup(const GgufFile& file, std::string_view key, Get get) {
  try {
    return get(*file.find(key));
  } catch (const Error& e) {
    fail("{}: metadata key '{}': {}", file.path(), key, e.what());
  }
}

}  // namespace

std::string GgufFile::get_string(std::string_view key, std::string fallback) const {
  if (!has(key)) return fallback;
  return typed_lookup(*this, key, [](const GgufValue& v) { return v.as_string(); });
}

int64_t GgufFile::get_int(std::string_view key, int64_t fallback) const {
  if (!has(key)) return fallback;
  return typed_lookup(*this, key, [](const GgufValue& v) { return v.as_int(); });
}

double GgufFile::get_float(std::string_view key, double fallback) const {
  if (!has(key)) return fallback;
  return typed_lookup(*this, key, [](const GgufValue& v) { return v.as_float(); });
}

bool GgufFile::get_bool(std::string_view key, bool fallback) const {
  if (!has(key)) return fallback;
  return typed_lookup(*this, key, [](const GgufValue& v) { return v.as_bool(); });
}

}  // namespace ruvdllm
