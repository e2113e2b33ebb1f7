#include <fmt/format.h>

#include <limits>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"

namespace ruvdllm {
namespace {

bool is_integer_type(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
      return true;
    default:
      return false;
  }
}

bool is_float_type(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }

// The range an integer element of `t` can hold on disk, as int64 (UINT64 keeps its bit pattern
// in the int64, so any int64 is accepted for it).
bool fits(GgufType t, int64_t v) {
  switch (t) {
    case GgufType::UINT8: return v >= 0 && v <= 0xff;
    case GgufType::INT8: return v >= -128 && v <= 127;
    case GgufType::UINT16: return v >= 0 && v <= 0xffff;
    case GgufType::INT16: return v >= -32768 && v <= 32767;
    case GgufType::UINT32: return v >= 0 && v <= 0xffffffffLL;
    case GgufType::INT32: return v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
    case GgufType::BOOL: return v == 0 || v == 1;
    default: return true;
  }
}

void append_quoted(std::string& out, const std::string& s, size_t max_chars) {
  size_t end = s.size();
  const bool truncated = end > max_chars;
  if (truncated) {
    end = max_chars;
    // Never cut a UTF-8 sequence in half: back up over continuation bytes.
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  }
  out += '"';
  for (size_t i = 0; i < end; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += truncated ? "...\"" : "\"";
}

std::string format_float(double v, GgufType t) {
  // An f32 widened to double would print as 0.10000000149011612; print it at its own precision.
  return t == GgufType::FLOAT32 ? fmt::format("{}", static_cast<float>(v)) : fmt::format("{}", v);
}

std::string format_int(int64_t v, GgufType t) {
  if (t == GgufType::BOOL) return v ? "true" : "false";
  if (t == GgufType::UINT64) return fmt::format("{}", static_cast<uint64_t>(v));
  return fmt::format("{}", v);
}

constexpr size_t kMaxDisplayChars = 60;

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::UINT8: return "UINT8";
    case GgufType::INT8: return "INT8";
    case GgufType::UINT16: return "UINT16";
    case GgufType::INT16: return "INT16";
    case GgufType::UINT32: return "UINT32";
    case GgufType::INT32: return "INT32";
    case GgufType::FLOAT32: return "FLOAT32";
    case GgufType::BOOL: return "BOOL";
    case GgufType::STRING: return "STRING";
    case GgufType::ARRAY: return "ARRAY";
    case GgufType::UINT64: return "UINT64";
    case GgufType::INT64: return "INT64";
    case GgufType::FLOAT64: return "FLOAT64";
  }
  return "UNKNOWN";
}

#define RUVDLLM_SCALAR(fn, ctype, gtype, storage) \
  GgufValue GgufValue::fn(ctype v) {              \
    GgufValue r;                                  \
    r.type_ = GgufType::gtype;                    \
    r.value_ = static_cast<storage>(v);           \
    return r;                                     \
  }
RUVDLLM_SCALAR(u8, uint8_t, UINT8, uint64_t)
RUVDLLM_SCALAR(i8, int8_t, INT8, int64_t)
RUVDLLM_SCALAR(u16, uint16_t, UINT16, uint64_t)
RUVDLLM_SCALAR(i16, int16_t, INT16, int64_t)
RUVDLLM_SCALAR(u32, uint32_t, UINT32, uint64_t)
RUVDLLM_SCALAR(i32, int32_t, INT32, int64_t)
RUVDLLM_SCALAR(u64, uint64_t, UINT64, uint64_t)
RUVDLLM_SCALAR(i64, int64_t, INT64, int64_t)
RUVDLLM_SCALAR(f32, float, FLOAT32, double)
RUVDLLM_SCALAR(f64, double, FLOAT64, double)
RUVDLLM_SCALAR(boolean, bool, BOOL, bool)
#undef RUVDLLM_SCALAR

GgufValue GgufValue::string(std::string v) {
  GgufValue r;
  r.type_ = GgufType::STRING;
  r.value_ = std::move(v);
  return r;
}

GgufValue GgufValue::string_array(std::vector<std::string> v) {
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.array_type_ = GgufType::STRING;
  r.value_ = std::move(v);
  return r;
}

GgufValue GgufValue::int_array(GgufType element_type, std::vector<int64_t> v) {
  if (!is_integer_type(element_type) && element_type != GgufType::BOOL) {
    fail("int_array: element type {} is not an integer type", gguf_type_name(element_type));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (!fits(element_type, v[i])) {
      fail("int_array: element {} ({}) does not fit {}", i, v[i], gguf_type_name(element_type));
    }
  }
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.array_type_ = element_type;
  r.value_ = std::move(v);
  return r;
}

GgufValue GgufValue::float_array(GgufType element_type, std::vector<double> v) {
  if (!is_float_type(element_type)) {
    fail("float_array: element type {} is not FLOAT32 or FLOAT64", gguf_type_name(element_type));
  }
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.array_type_ = element_type;
  r.value_ = std::move(v);
  return r;
}

GgufValue GgufValue::nested_array(std::vector<GgufValue> v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].type() != GgufType::ARRAY) {
      fail("nested_array: element {} is {}, not an array", i, gguf_type_name(v[i].type()));
    }
  }
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.array_type_ = GgufType::ARRAY;
  r.value_ = std::move(v);
  return r;
}

bool GgufValue::is_integer() const { return is_integer_type(type_); }
bool GgufValue::is_float() const { return is_float_type(type_); }

int64_t GgufValue::as_int() const {
  if (const auto* s = std::get_if<int64_t>(&value_)) return *s;
  if (const auto* u = std::get_if<uint64_t>(&value_)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail("metadata value {} {} does not fit a signed 64-bit integer", gguf_type_name(type_), *u);
    }
    return static_cast<int64_t>(*u);
  }
  fail("metadata value is {}, expected an integer", gguf_type_name(type_));
}

uint64_t GgufValue::as_uint() const {
  if (const auto* u = std::get_if<uint64_t>(&value_)) return *u;
  if (const auto* s = std::get_if<int64_t>(&value_)) {
    if (*s < 0) fail("metadata value {} {} is negative, expected an unsigned integer", gguf_type_name(type_), *s);
    return static_cast<uint64_t>(*s);
  }
  fail("metadata value is {}, expected an unsigned integer", gguf_type_name(type_));
}

double GgufValue::as_float() const {
  if (const auto* d = std::get_if<double>(&value_)) return *d;
  if (const auto* s = std::get_if<int64_t>(&value_)) return static_cast<double>(*s);
  if (const auto* u = std::get_if<uint64_t>(&value_)) return static_cast<double>(*u);
  fail("metadata value is {}, expected a number", gguf_type_name(type_));
}

bool GgufValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&value_)) return *b;
  fail("metadata value is {}, expected BOOL", gguf_type_name(type_));
}

const std::string& GgufValue::as_string() const {
  if (const auto* s = std::get_if<std::string>(&value_)) return *s;
  fail("metadata value is {}, expected STRING", gguf_type_name(type_));
}

size_t GgufValue::array_size() const {
  if (type_ != GgufType::ARRAY) fail("metadata value is {}, expected ARRAY", gguf_type_name(type_));
  return std::visit(
      [](const auto& v) -> size_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::vector<std::string>> || std::is_same_v<T, std::vector<int64_t>> ||
                      std::is_same_v<T, std::vector<double>> || std::is_same_v<T, std::vector<GgufValue>>) {
          return v.size();
        } else {
          return 0;
        }
      },
      value_);
}

const std::vector<std::string>& GgufValue::as_string_array() const {
  if (const auto* v = std::get_if<std::vector<std::string>>(&value_)) return *v;
  fail("metadata value is {}, expected ARRAY of STRING", type_ == GgufType::ARRAY ? fmt::format("ARRAY of {}", gguf_type_name(array_type_)) : gguf_type_name(type_));
}

const std::vector<int64_t>& GgufValue::as_int_array() const {
  if (const auto* v = std::get_if<std::vector<int64_t>>(&value_)) return *v;
  fail("metadata value is {}, expected ARRAY of integers", type_ == GgufType::ARRAY ? fmt::format("ARRAY of {}", gguf_type_name(array_type_)) : gguf_type_name(type_));
}

const std::vector<double>& GgufValue::as_float_array() const {
  if (const auto* v = std::get_if<std::vector<double>>(&value_)) return *v;
  fail("metadata value is {}, expected ARRAY of floats", type_ == GgufType::ARRAY ? fmt::format("ARRAY of {}", gguf_type_name(array_type_)) : gguf_type_name(type_));
}

const std::vector<GgufValue>& GgufValue::as_nested_array() const {
  if (const auto* v = std::get_if<std::vector<GgufValue>>(&value_)) return *v;
  fail("metadata value is {}, expected ARRAY of ARRAY", type_ == GgufType::ARRAY ? fmt::format("ARRAY of {}", gguf_type_name(array_type_)) : gguf_type_name(type_));
}

std::string GgufValue::to_display_string(size_t max_items) const {
  std::string out;
  switch (type_) {
    case GgufType::BOOL: return as_bool() ? "true" : "false";
    case GgufType::STRING: append_quoted(out, as_string(), kMaxDisplayChars); return out;
    case GgufType::FLOAT32: case GgufType::FLOAT64: return format_float(as_float(), type_);
    case GgufType::ARRAY: break;
    default:
      if (const auto* u = std::get_if<uint64_t>(&value_)) return fmt::format("{}", *u);
      return fmt::format("{}", std::get<int64_t>(value_));
  }
  const size_t n = array_size();
  const size_t shown = n < max_items ? n : max_items;
  out += '[';
  for (size_t i = 0; i < shown; ++i) {
    if (i > 0) out += ", ";
    if (const auto* s = std::get_if<std::vector<std::string>>(&value_)) {
      append_quoted(out, (*s)[i], kMaxDisplayChars);
    } else if (const auto* ints = std::get_if<std::vector<int64_t>>(&value_)) {
      out += format_int((*ints)[i], array_type_);
    } else if (const auto* fs = std::get_if<std::vector<double>>(&value_)) {
      out += format_float((*fs)[i], array_type_);
    } else {
      out += std::get<std::vector<GgufValue>>(value_)[i].to_display_string(max_items);
    }
  }
  if (shown < n) out += fmt::format("{}... ({} items)", shown > 0 ? ", " : "", n);
  out += ']';
  return out;
}

}  // namespace ruvdllm
