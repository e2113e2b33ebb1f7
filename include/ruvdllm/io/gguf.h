#pragma once
// GGUF v3 (also reads v2): metadata key/values of every type and tensor infos, over mmap.
// Every count, offset and size is checked against the file length before it is used.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "ruvdllm/core/tensor.h"
#include "ruvdllm/io/mapped_file.h"

namespace ruvdllm {

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType type);

// One metadata value. Integers are held widened (signed in `int_array`/`i`, unsigned in
// `u`), floats as double; `type` (and `array_type`) keep the type that is written to disk.
class GgufValue {
 public:
  GgufValue() = default;
  static GgufValue u8(uint8_t v);
  static GgufValue i8(int8_t v);
  static GgufValue u16(uint16_t v);
  static GgufValue i16(int16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue i64(int64_t v);
  static GgufValue f32(float v);
  static GgufValue f64(double v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue string_array(std::vector<std::string> v);
  // Any integer type, or BOOL (0/1). UINT64 elements keep their bit pattern in the int64.
  static GgufValue int_array(GgufType element_type, std::vector<int64_t> v);
  static GgufValue float_array(GgufType element_type, std::vector<double> v);  // FLOAT32/64
  static GgufValue nested_array(std::vector<GgufValue> v);  // arrays of arrays (rare)

  GgufType type() const { return type_; }
  GgufType array_type() const { return array_type_; }
  bool is_integer() const;
  bool is_float() const;

  // Conversions throw Error("metadata value is TYPE, expected ...") on a type mismatch or an
  // integer out of range. as_int accepts any integer type, as_float any integer or float.
  int64_t as_int() const;
  uint64_t as_uint() const;
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;
  size_t array_size() const;
  const std::vector<std::string>& as_string_array() const;
  const std::vector<int64_t>& as_int_array() const;
  const std::vector<double>& as_float_array() const;
  const std::vector<GgufValue>& as_nested_array() const;
  std::string to_display_string(size_t max_items = 8) const;  // for `ruvdllm info`

 private:
  GgufType type_ = GgufType::UINT32;
  GgufType array_type_ = GgufType::UINT8;
  using Storage = std::variant<int64_t, uint64_t, double, bool, std::string,
                               std::vector<std::string>, std::vector<int64_t>,
                               std::vector<double>, std::vector<GgufValue>>;
  Storage value_{int64_t{0}};
};

class GgufFile {
 public:
  // Throws Error("PATH: PROBLEM") for a missing, truncated or corrupt file, an unsupported
  // version, an unknown tensor type, or a tensor whose bytes do not fit its shape or the file.
  static GgufFile open(const std::string& path);

  const std::string& path() const;
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t file_size() const;
  size_t data_offset() const { return data_offset_; }  // start of the tensor data section

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Typed lookups: the default when the key is absent, Error when it has the wrong type.
  std::string get_string(std::string_view key, std::string fallback = {}) const;
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_float(std::string_view key, double fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;

  // Tensor views point into the mapped file and stay valid while any copy of this object lives.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(std::string_view name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 3;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<TensorView> tensors_;
};

// Builds a GGUF v3 file. Tensor bytes are referenced, not copied, until write().
class GgufWriter {
 public:
  void set(const std::string& key, GgufValue value);  // replaces an existing key, keeps order
  void set_alignment(size_t alignment);                // a power of two; default 32
  // Throws Error when nbytes does not match the shape and type, or the name is a duplicate.
  void add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                  const void* data, size_t nbytes);
  void add_tensor(const TensorView& view) {
    add_tensor(view.name, view.type, view.shape, view.data, view.nbytes);
  }
  // For tensors too large to hold all at once (an 8B model): fill(dst) is called during
  // write() and must write exactly the tensor's byte size to dst.
  void add_tensor_lazy(const std::string& name, TensorType type, std::vector<int64_t> shape,
                       std::function<void(void* dst)> fill);
  // Writes PATH atomically (temporary file, then rename). `progress` is called after each
  // tensor with (tensors written, total) when given.
  void write(const std::string& path,
             const std::function<void(size_t, size_t)>& progress = nullptr) const;

 private:
  struct PendingTensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    const void* data;  // null for lazy tensors
    size_t nbytes;
    std::function<void(void*)> fill;
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
  size_t alignment_ = 32;
};

}  // namespace ruvdllm
