#include <cstring>
#include <limits>

#include "io/atomic_writer.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"

namespace ruvdllm {
namespace {

constexpr const char* kAlignmentKey = "general.alignment";
constexpr size_t kDefaultAlignment = 32;

class HeaderBuilder {
 public:
  template <typename T>
  void put(T v) {
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &v, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  void put_type(GgufType t) { put<uint32_t>(static_cast<uint32_t>(t)); }

  void put_integer(GgufType t, int64_t v) {
    switch (t) {
      case GgufType::UINT8: case GgufType::BOOL: put(static_cast<uint8_t>(v)); break;
      case GgufType::INT8: put(static_cast<int8_t>(v)); break;
      case GgufType::UINT16: put(static_cast<uint16_t>(v)); break;
      case GgufType::INT16: put(static_cast<int16_t>(v)); break;
      case GgufType::UINT32: put(static_cast<uint32_t>(v)); break;
      case GgufType::INT32: put(static_cast<int32_t>(v)); break;
      case GgufType::UINT64: put(static_cast<uint64_t>(v)); break;
      case GgufType::INT64: put(v); break;
      default: fail("internal: {} is not an integer type", gguf_type_name(t));
    }
  }
  void put_float(GgufType t, double v) {
    if (t == GgufType::FLOAT32) {
      put(static_cast<float>(v));
    } else {
      put(v);
    }
  }

  // The value only, without its type tag.
  void put_value(const GgufValue& v) {
    switch (v.type()) {
      case GgufType::BOOL: put<uint8_t>(v.as_bool() ? 1 : 0); break;
      case GgufType::STRING: put_string(v.as_string()); break;
      case GgufType::FLOAT32: case GgufType::FLOAT64: put_float(v.type(), v.as_float()); break;
      case GgufType::UINT64: put(v.as_uint()); break;
      case GgufType::ARRAY: put_array(v); break;
      default: put_integer(v.type(), v.as_int()); break;
    }
  }

  void put_array(const GgufValue& v) {
    const GgufType element = v.array_type();
    put_type(element);
    put<uint64_t>(v.array_size());
    switch (element) {
      case GgufType::STRING:
        for (const auto& s : v.as_string_array()) put_string(s);
        break;
      case GgufType::FLOAT32: case GgufType::FLOAT64:
        for (double x : v.as_float_array()) put_float(element, x);
        break;
      case GgufType::ARRAY:
        for (const auto& inner : v.as_nested_array()) put_array(inner);
        break;
      default:
        for (int64_t x : v.as_int_array()) put_integer(element, x);
        break;
    }
  }

  void pad_to(size_t alignment) { bytes_.resize((bytes_.size() + alignment - 1) / alignment * alignment, 0); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

size_t checked_tensor_bytes(const std::string& name, TensorType type, const std::vector<int64_t>& shape) {
  if (name.empty()) fail("GGUF writer: empty tensor name");
  if (!is_supported_type(static_cast<uint32_t>(type))) {
    fail("GGUF writer: tensor '{}' has unsupported type {}", name, static_cast<uint32_t>(type));
  }
  if (shape.empty() || shape.size() > 4) fail("GGUF writer: tensor '{}' has {} dims, expected 1..4", name, shape.size());
  for (int64_t d : shape) {
    if (d <= 0) fail("GGUF writer: tensor '{}' has dimension {}", name, d);
  }
  const TypeTraits& traits = type_traits(type);
  if (shape[0] % traits.block_size != 0) {
    fail("GGUF writer: tensor '{}' row length {} is not a multiple of {}'s block size {}", name, shape[0],
         traits.name, traits.block_size);
  }
  unsigned __int128 nbytes = static_cast<unsigned __int128>(shape[0] / traits.block_size) * traits.block_bytes;
  for (size_t i = 1; i < shape.size(); ++i) {
    nbytes *= static_cast<uint64_t>(shape[i]);
    if (nbytes > (unsigned __int128)(std::numeric_limits<int64_t>::max())) fail("GGUF writer: tensor '{}' is too large", name);
  }
  return static_cast<size_t>(nbytes);
}

void check_alignment(size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > 0x80000000u) {
    fail("GGUF writer: alignment {} is not a power of two up to 2^31", alignment);
  }
}

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue value) {
  if (key == kAlignmentKey) {
    if (value.type() != GgufType::UINT32) {
      fail("GGUF writer: {} must be UINT32, got {}", kAlignmentKey, gguf_type_name(value.type()));
    }
    check_alignment(static_cast<size_t>(value.as_uint()));
    alignment_ = static_cast<size_t>(value.as_uint());
  }
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::set_alignment(size_t alignment) {
  check_alignment(alignment);
  // Readers assume 32 when the key is absent, so only another value needs to be stored.
  bool present = false;
  for (const auto& kv : metadata_) present = present || kv.first == kAlignmentKey;
  if (alignment != kDefaultAlignment || present) {
    set(kAlignmentKey, GgufValue::u32(static_cast<uint32_t>(alignment)));
  }
  alignment_ = alignment;
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                            const void* data, size_t nbytes) {
  const size_t expected = checked_tensor_bytes(name, type, shape);
  if (nbytes != expected) {
    fail("GGUF writer: tensor '{}' has {} bytes, its shape and type need {}", name, nbytes, expected);
  }
  if (!data) fail("GGUF writer: tensor '{}' has no data", name);
  for (const auto& t : tensors_) {
    if (t.name == name) fail("GGUF writer: duplicate tensor name '{}'", name);
  }
  tensors_.push_back({name, type, std::move(shape), data, nbytes, nullptr});
}

void GgufWriter::add_tensor_lazy(const std::string& name, TensorType type, std::vector<int64_t> shape,
                                 std::function<void(void* dst)> fill) {
  const size_t nbytes = checked_tensor_bytes(name, type, shape);
  if (!fill) fail("GGUF writer: tensor '{}' has no fill function", name);
  for (const auto& t : tensors_) {
    if (t.name == name) fail("GGUF writer: duplicate tensor name '{}'", name);
  }
  tensors_.push_back({name, type, std::move(shape), nullptr, nbytes, std::move(fill)});
}

void GgufWriter::write(const std::string& path, const std::function<void(size_t, size_t)>& progress) const {
  const size_t alignment = alignment_;
  auto aligned = [alignment](uint64_t n) { return (n + alignment - 1) / alignment * alignment; };

  HeaderBuilder header;
  header.put<uint32_t>(0x46554747u);  // "GGUF" read as a little-endian u32
  header.put<uint32_t>(3);
  header.put<uint64_t>(tensors_.size());
  header.put<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    header.put_string(key);
    header.put_type(value.type());
    header.put_value(value);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    header.put_string(t.name);
    header.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) header.put<uint64_t>(static_cast<uint64_t>(d));
    header.put<uint32_t>(static_cast<uint32_t>(t.type));
    header.put<uint64_t>(offset);
    offset = aligned(offset + t.nbytes);
  }
  header.pad_to(alignment);

  io::AtomicFileWriter out(path);
  out.write(header.bytes().data(), header.bytes().size());
  std::vector<uint8_t> scratch;  // for lazy tensors too large for the output buffer
  const uint64_t data_start = out.position();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = tensors_[i];
    out.write_zeros(static_cast<size_t>(aligned(out.position() - data_start) - (out.position() - data_start)));
    if (t.data) {
      out.write(t.data, t.nbytes);
    } else if (void* dst = out.reserve(t.nbytes)) {
      t.fill(dst);
      out.advance(t.nbytes);
    } else {
      if (scratch.size() < t.nbytes) {
        scratch.clear();
        scratch.shrink_to_fit();
        scratch.resize(t.nbytes);
      }
      t.fill(scratch.data());
      out.write(scratch.data(), t.nbytes);
    }
    if (progress) progress(i + 1, tensors_.size());
  }
  out.commit();
}

}  // namespace ruvdllm
