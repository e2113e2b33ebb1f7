#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "io/safetensors_parse.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/safetensors.h"

namespace ruvdllm {
namespace io {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;
constexpr size_t kMaxNameInMessage = 80;

std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMaxNameInMessage; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (s.size() > kMaxNameInMessage) out += "...";
  return out;
}

// nlohmann keeps the last of two equal keys; a header that names a tensor twice is corrupt,
// so duplicates at any depth are refused while parsing.
json parse_json(const char* begin, const char* end, const std::string& name, const char* what) {
  std::vector<std::unordered_set<std::string>> open_objects;
  auto check_duplicates = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: open_objects.emplace_back(); break;
      case json::parse_event_t::object_end: if (!open_objects.empty()) open_objects.pop_back(); break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second) {
          fail("{}: {} has duplicate key '{}'", name, what, printable(parsed.get<std::string>()));
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(begin, end, check_duplicates);
  } catch (const json::exception& e) {
    fail("{}: {} is not valid JSON: {}", name, what, e.what());
  }
}

std::optional<TensorType> dtype_from_name(const std::string& dtype) {
  if (dtype == "F32") return TensorType::F32;
  if (dtype == "F16") return TensorType::F16;
  if (dtype == "BF16") return TensorType::BF16;
  return std::nullopt;
}

struct Range {
  uint64_t begin, end;
  size_t tensor;
};

class TensorParser {
 public:
  TensorParser(const std::string& file_name, uint64_t buffer_size) : file_(file_name), buffer_size_(buffer_size) {}

  // Fills `t` (data left as an offset) from one header entry; returns its byte range.
  Range parse(const std::string& tensor_name, const json& entry, TensorView& t) {
    name_ = printable(tensor_name);
    if (tensor_name.empty()) error("empty tensor name");
    if (!entry.is_object()) error("entry is {}, expected an object", entry.type_name());
    t.name = tensor_name;

    const json& dtype = field(entry, "dtype", json::value_t::string);
    const auto type = dtype_from_name(dtype.get<std::string>());
    if (!type) error("dtype {} is not supported (ruvdllm reads F32, F16 and BF16)", printable(dtype.get<std::string>()));
    t.type = *type;

    const json& shape = field(entry, "shape", json::value_t::array);
    std::vector<int64_t> dims;
    for (const json& d : shape) {
      if (d.is_number_unsigned()) {
        const uint64_t v = d.get<uint64_t>();
        if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) error("dimension {} is too large", v);
        dims.push_back(static_cast<int64_t>(v));
      } else if (d.is_number_integer()) {
        error("dimension {} is negative", d.get<int64_t>());
      } else {
        error("shape holds {}, expected integers", d.dump());
      }
    }
    // GGUF order puts the contiguous dimension first.
    t.shape.assign(dims.rbegin(), dims.rend());
    if (t.shape.empty()) t.shape = {1};

    const json& offsets = field(entry, "data_offsets", json::value_t::array);
    if (offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      error("data_offsets must be two non-negative integers, got {}", offsets.dump().substr(0, kMaxNameInMessage));
    }
    const uint64_t begin = offsets[0].get<uint64_t>();
    const uint64_t end = offsets[1].get<uint64_t>();
    if (end < begin) error("data_offsets [{}, {}] end before they begin", begin, end);
    if (end > buffer_size_) error("data_offsets [{}, {}] extend past the data buffer ({} bytes)", begin, end, buffer_size_);

    t.nbytes = expected_bytes(t.type, dims);
    if (end - begin != t.nbytes) {
      error("data_offsets [{}, {}] hold {} bytes, but the {} shape {} needs {}", begin, end, end - begin, dtype.get<std::string>(),
            shape.dump(), t.nbytes);
    }
    return {begin, end, 0};
  }

 private:
  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}: tensor '{}': {}", file_, name_, fmt::format(format, std::forward<Args>(args)...));
  }

  const json& field(const json& entry, const char* key, json::value_t type) const {
    const auto it = entry.find(key);
    if (it == entry.end()) error("missing \"{}\"", key);
    if (it->type() != type) error("\"{}\" is {}, expected {}", key, it->type_name(), json(type).type_name());
    return *it;
  }

  // Element count × element size, refusing anything larger than the data buffer so the
  // product can never overflow. An empty tensor takes no bytes, but its other dims must still
  // multiply within int64 so that TensorView::elements() and rows() stay defined.
  size_t expected_bytes(TensorType type, const std::vector<int64_t>& dims) const {
    const bool empty = std::find(dims.begin(), dims.end(), 0) != dims.end();
    const uint64_t limit = empty ? static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) : buffer_size_;
    uint64_t bytes = type_traits(type).block_bytes;
    for (int64_t d : dims) {
      if (d == 0) continue;
      const uint64_t u = static_cast<uint64_t>(d);
      if (bytes > limit / u) {
        if (empty) error("shape has more elements than int64 can count");
        error("shape needs more bytes than the data buffer has ({})", buffer_size_);
      }
      bytes *= u;
    }
    return empty ? 0 : static_cast<size_t>(bytes);
  }

  const std::string& file_;
  uint64_t buffer_size_;
  std::string name_;
};

}  // namespace

SafetensorsContents parse_safetensors(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 8) fail("{}: truncated: {} bytes, a safetensors file starts with an 8-byte header length", name, size);
  uint64_t header_bytes;
  std::memcpy(&header_bytes, data, 8);
  if (header_bytes > kMaxHeaderBytes) {
    fail("{}: header length {} is larger than the {} MB limit (not a safetensors file?)", name, header_bytes,
         kMaxHeaderBytes >> 20);
  }
  if (header_bytes > size - 8) {
    fail("{}: truncated: header length {} needs {} bytes, file has {}", name, header_bytes, 8 + header_bytes, size);
  }
  const char* header = reinterpret_cast<const char*>(data + 8);
  const json root = parse_json(header, header + header_bytes, name, "header");
  if (!root.is_object()) fail("{}: header is a JSON {}, expected an object", name, root.type_name());

  const uint8_t* buffer = data + 8 + header_bytes;
  const uint64_t buffer_size = size - 8 - header_bytes;
  SafetensorsContents out;
  std::vector<Range> ranges;
  TensorParser parser(name, buffer_size);
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail("{}: __metadata__ is {}, expected an object", name, value.type_name());
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          fail("{}: __metadata__ '{}' is {}, expected a string", name, printable(mkey), mvalue.type_name());
        }
        out.metadata[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    TensorView t;
    Range r = parser.parse(key, value, t);
    r.tensor = out.tensors.size();
    t.data = buffer + r.begin;
    ranges.push_back(r);
    out.tensors.push_back(std::move(t));
  }

  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Range* prev = nullptr;
  for (const Range& r : ranges) {
    if (r.begin == r.end) continue;  // an empty tensor occupies no bytes
    if (prev && prev->end > r.begin) {
      fail("{}: tensor '{}' (bytes {}..{}) overlaps tensor '{}' (bytes {}..{})", name, printable(out.tensors[r.tensor].name),
           r.begin, r.end, printable(out.tensors[prev->tensor].name), prev->begin, prev->end);
    }
    prev = &r;
  }
  // Report tensors in the order of their bytes, as they lie in the file.
  std::vector<TensorView> ordered;
  ordered.reserve(ranges.size());
  for (const Range& r : ranges) ordered.push_back(std::move(out.tensors[r.tensor]));
  out.tensors = std::move(ordered);
  return out;
}

}  // namespace io

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string index = (fs::path(path) / "model.safetensors.index.json").string();
    const std::string single = (fs::path(path) / "model.safetensors").string();
    if (fs::exists(index, ec)) return open(index);
    if (fs::exists(single, ec)) return open(single);
    fail("{}: directory holds neither model.safetensors nor model.safetensors.index.json", path);
  }

  SafetensorsFile result;
  if (!ends_with(path, ".index.json")) {
    auto file = MappedFile::open(path);
    io::SafetensorsContents contents = io::parse_safetensors(file->data(), file->size(), path);
    result.files_.push_back(std::move(file));
    result.shard_paths_.push_back(path);
    result.tensors_ = std::move(contents.tensors);
    result.metadata_ = std::move(contents.metadata);
    return result;
  }

  // A sharded checkpoint: the index maps every tensor to the file that holds it.
  const auto index_file = MappedFile::open(path);
  const char* text = index_file->size() ? reinterpret_cast<const char*>(index_file->data()) : "";
  const json index = io::parse_json(text, text + index_file->size(), path, "index");
  if (!index.is_object()) fail("{}: index is a JSON {}, expected an object", path, index.type_name());
  const auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) fail("{}: index has no \"weight_map\" object", path);
  std::map<std::string, std::vector<std::string>> tensors_by_shard;
  for (const auto& [tensor, shard] : weight_map->items()) {
    if (!shard.is_string() || shard.get<std::string>().empty()) {
      fail("{}: weight_map entry '{}' is not a file name", path, io::printable(tensor));
    }
    tensors_by_shard[shard.get<std::string>()].push_back(tensor);
  }

  const fs::path dir = fs::path(path).parent_path();
  for (const auto& [shard, names] : tensors_by_shard) {
    const std::string shard_path = (dir / shard).string();
    std::shared_ptr<MappedFile> file;
    try {
      file = MappedFile::open(shard_path);
    } catch (const Error& e) {
      fail("{}: shard '{}' for tensor '{}': {}", path, io::printable(shard), io::printable(names.front()), e.what());
    }
    io::SafetensorsContents contents = io::parse_safetensors(file->data(), file->size(), shard_path);
    std::unordered_map<std::string, size_t> by_name;
    for (size_t i = 0; i < contents.tensors.size(); ++i) by_name.emplace(contents.tensors[i].name, i);
    std::vector<bool> wanted(contents.tensors.size(), false);
    for (const std::string& name : names) {
      const auto it = by_name.find(name);
      if (it == by_name.end()) {
        fail("{}: tensor '{}' is listed in shard '{}' but that file does not hold it", path, io::printable(name),
             io::printable(shard));
      }
      wanted[it->second] = true;
    }
    // The index is the authority on which tensors make up the model; extras are ignored.
    for (size_t i = 0; i < contents.tensors.size(); ++i) {
      if (wanted[i]) result.tensors_.push_back(std::move(contents.tensors[i]));
    }
    for (auto& [key, value] : contents.metadata) result.metadata_.emplace(key, value);
    result.files_.push_back(std::move(file));
    result.shard_paths_.push_back(shard_path);
  }
  return result;
}

const TensorView* SafetensorsFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace ruvdllm
