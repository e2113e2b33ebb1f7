// Token shard files: a 32-byte header, then the ids as little-endian uint16 (vocabularies of up
// to 65,536 tokens) or uint32. The header:
//   0  char[8]  "RVDLTOKS"
//   8  uint32   format version (1)
//  12  uint32   bytes per token (2 or 4)
//  16  uint64   token count
//  24  uint32   vocabulary size (every id is below it)
//  28  uint32   reserved, 0
// The file is exactly header + count × width bytes, so truncation shows on open. Ids are checked
// against the vocabulary size as they are read.
#include "ruvdllm/train/token_shards.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/atomic_writer.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/mapped_file.h"

namespace ruvdllm::train {

static_assert(std::endian::native == std::endian::little, "token shards are read in place as little-endian");

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kMagic[8] = {'R', 'V', 'D', 'L', 'T', 'O', 'K', 'S'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 32;
constexpr const char* kIndexName = "index.json";
constexpr const char* kIndexFormat = "ruvdllm-token-shards";

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t token_bytes;
  uint64_t n_tokens;
  uint32_t vocab_size;
  uint32_t reserved;
};
static_assert(sizeof(Header) == kHeaderBytes);

uint32_t token_width(int32_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

std::string shard_name(size_t index) { return fmt::format("shard-{:05}.tok", index); }

struct Shard {
  std::shared_ptr<MappedFile> file;
  uint32_t width = 2;
  int64_t n_tokens = 0;
  int64_t first = 0;  // global offset of its first token
};

Shard open_shard(const std::string& path) {
  auto file = MappedFile::open(path);
  if (file->size() < kHeaderBytes) fail("{}: truncated token shard ({} bytes, header needs {})", path, file->size(), kHeaderBytes);
  Header h;
  std::memcpy(&h, file->data(), sizeof(h));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) fail("{}: not a token shard (bad magic)", path);
  if (h.version != kVersion) fail("{}: token shard version {} is not supported (expected {})", path, h.version, kVersion);
  if (h.token_bytes != 2 && h.token_bytes != 4) fail("{}: token width {} bytes is not 2 or 4", path, h.token_bytes);
  if (h.vocab_size == 0 || h.vocab_size > static_cast<uint32_t>(INT32_MAX) ||
      (h.token_bytes == 2 && h.vocab_size > 65536)) {
    fail("{}: vocabulary size {} does not fit a {}-byte token", path, h.vocab_size, h.token_bytes);
  }
  const uint64_t payload = file->size() - kHeaderBytes;
  if (h.n_tokens > payload / h.token_bytes || payload != h.n_tokens * h.token_bytes) {
    fail("{}: header says {} tokens ({} bytes) but the file holds {} bytes of tokens (truncated or corrupt)", path,
         h.n_tokens, h.n_tokens * h.token_bytes, payload);
  }
  Shard s;
  s.file = std::move(file);
  s.width = h.token_bytes;
  s.n_tokens = static_cast<int64_t>(h.n_tokens);
  return s;
}

int32_t shard_vocab(const Shard& s) {
  Header h;
  std::memcpy(&h, s.file->data(), sizeof(h));
  return static_cast<int32_t>(h.vocab_size);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

struct TokenShards::Impl {
  std::string path;
  std::vector<Shard> shards;
  int64_t n_tokens = 0;
  int32_t vocab_size = 0;
};

TokenShards::TokenShards(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenShards::TokenShards(TokenShards&&) noexcept = default;
TokenShards& TokenShards::operator=(TokenShards&&) noexcept = default;
TokenShards::~TokenShards() = default;

TokenShards TokenShards::open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    if (!fs::exists(path, ec)) fail("{}: no such token shard or folder", path);
    Shard s = open_shard(path);
    impl->vocab_size = shard_vocab(s);
    impl->n_tokens = s.n_tokens;
    impl->shards.push_back(std::move(s));
    return TokenShards(std::move(impl));
  }

  const std::string index_path = (fs::path(path) / kIndexName).string();
  if (!fs::exists(index_path, ec)) fail("{}: no {} (an unfinished or foreign folder)", path, kIndexName);
  json index;
  try {
    index = json::parse(read_text(index_path));
    if (index.value("format", std::string()) != kIndexFormat) fail("{}: not a token shard index", index_path);
    if (index.value("version", 0) != static_cast<int>(kVersion)) {
      fail("{}: index version {} is not supported", index_path, index.value("version", 0));
    }
    impl->vocab_size = index.at("vocab_size").get<int32_t>();
    const int64_t total = index.at("n_tokens").get<int64_t>();
    const json& list = index.at("shards");
    if (!list.is_array() || list.empty()) fail("{}: lists no shards", index_path);
    for (const json& entry : list) {
      const std::string name = entry.at("file").get<std::string>();
      if (name.empty() || name.find('/') != std::string::npos || name.find("..") != std::string::npos) {
        fail("{}: shard name '{}' is not a plain file name", index_path, name);
      }
      const std::string shard_path = (fs::path(path) / name).string();
      Shard s = open_shard(shard_path);
      if (s.n_tokens != entry.at("n_tokens").get<int64_t>()) {
        fail("{}: holds {} tokens but {} lists {}", shard_path, s.n_tokens, kIndexName, entry.at("n_tokens").get<int64_t>());
      }
      if (shard_vocab(s) != impl->vocab_size) {
        fail("{}: vocabulary size {} differs from the index's {}", shard_path, shard_vocab(s), impl->vocab_size);
      }
      s.first = impl->n_tokens;
      impl->n_tokens += s.n_tokens;
      impl->shards.push_back(std::move(s));
    }
    if (impl->n_tokens != total) fail("{}: shards hold {} tokens but the index says {}", index_path, impl->n_tokens, total);
  } catch (const json::exception& e) {
    fail("{}: malformed index: {}", index_path, e.what());
  }
  return TokenShards(std::move(impl));
}

int64_t TokenShards::n_tokens() const { return impl_->n_tokens; }
int32_t TokenShards::vocab_size() const { return impl_->vocab_size; }

void TokenShards::read(int64_t offset, std::span<int32_t> out) const {
  const auto n = static_cast<int64_t>(out.size());
  if (offset < 0 || n > impl_->n_tokens || offset > impl_->n_tokens - n) {
    fail("{}: cannot read {} tokens at offset {} of {}", impl_->path, n, offset, impl_->n_tokens);
  }
  // The shard holding `offset`: the last one that starts at or before it.
  auto it = std::upper_bound(impl_->shards.begin(), impl_->shards.end(), offset,
                             [](int64_t value, const Shard& s) { return value < s.first; });
  size_t shard = static_cast<size_t>(it - impl_->shards.begin()) - 1;
  int64_t done = 0;
  uint32_t bad = 0;
  const auto vocab = static_cast<uint32_t>(impl_->vocab_size);
  while (done < n) {
    const Shard& s = impl_->shards[shard];
    const int64_t local = offset + done - s.first;
    const int64_t take = std::min(n - done, s.n_tokens - local);
    const uint8_t* base = s.file->data() + kHeaderBytes + static_cast<size_t>(local) * s.width;
    int32_t* dst = out.data() + done;
    if (s.width == 2) {
      for (int64_t i = 0; i < take; ++i) {
        uint16_t v;
        std::memcpy(&v, base + 2 * i, 2);
        dst[i] = v;
        bad |= static_cast<uint32_t>(v >= vocab);
      }
    } else {
      for (int64_t i = 0; i < take; ++i) {
        uint32_t v;
        std::memcpy(&v, base + 4 * i, 4);
        dst[i] = static_cast<int32_t>(v);
        bad |= static_cast<uint32_t>(v >= vocab);
      }
    }
    if (bad) {
      fail("{}: token shard holds an id outside the vocabulary of {} near offset {} (corrupt)", s.file->path(), vocab,
           offset + done);
    }
    done += take;
    ++shard;
  }
}

struct TokenShardWriter::Impl {
  std::string folder;
  int32_t vocab_size;
  int64_t max_shard_tokens;
  uint32_t width;
  std::vector<uint8_t> pending;  // the current shard's tokens, already in file width
  int64_t pending_tokens = 0;
  std::vector<int64_t> shard_tokens;
  std::vector<std::string> sources;
  std::string tokenizer;
  bool finished = false;

  void flush_shard() {
    if (pending_tokens == 0) return;
    const std::string path = (fs::path(folder) / shard_name(shard_tokens.size())).string();
    Header h{};
    std::memcpy(h.magic, kMagic, sizeof(kMagic));
    h.version = kVersion;
    h.token_bytes = width;
    h.n_tokens = static_cast<uint64_t>(pending_tokens);
    h.vocab_size = static_cast<uint32_t>(vocab_size);
    io::AtomicFileWriter out(path);
    out.write(&h, sizeof(h));
    out.write(pending.data(), pending.size());
    out.commit();
    shard_tokens.push_back(pending_tokens);
    pending.clear();
    pending_tokens = 0;
  }
};

TokenShardWriter::TokenShardWriter(const std::string& folder, int32_t vocab_size, int64_t max_shard_tokens)
    : impl_(std::make_unique<Impl>()) {
  if (vocab_size <= 0) fail("{}: vocabulary size {} is not positive", folder, vocab_size);
  if (max_shard_tokens <= 0) fail("{}: a shard must hold at least one token (asked for {})", folder, max_shard_tokens);
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec || !fs::is_directory(folder)) fail("{}: cannot create folder: {}", folder, ec ? ec.message() : "not a directory");
  // Until finish() writes a new index, the folder must not pass for a complete one.
  fs::remove(fs::path(folder) / kIndexName, ec);
  impl_->folder = folder;
  impl_->vocab_size = vocab_size;
  impl_->max_shard_tokens = max_shard_tokens;
  impl_->width = token_width(vocab_size);
}

TokenShardWriter::~TokenShardWriter() = default;

void TokenShardWriter::append(std::span<const int32_t> tokens) {
  Impl& w = *impl_;
  if (w.finished) fail("{}: append after finish()", w.folder);
  for (int32_t id : tokens) {
    if (id < 0 || id >= w.vocab_size) fail("{}: token id {} is outside the vocabulary of {}", w.folder, id, w.vocab_size);
  }
  size_t i = 0;
  while (i < tokens.size()) {
    const auto room = static_cast<size_t>(w.max_shard_tokens - w.pending_tokens);
    const size_t take = std::min(room, tokens.size() - i);
    const size_t at = w.pending.size();
    w.pending.resize(at + take * w.width);
    for (size_t k = 0; k < take; ++k) {
      const auto v = static_cast<uint32_t>(tokens[i + k]);
      if (w.width == 2) {
        const auto v16 = static_cast<uint16_t>(v);
        std::memcpy(w.pending.data() + at + 2 * k, &v16, 2);
      } else {
        std::memcpy(w.pending.data() + at + 4 * k, &v, 4);
      }
    }
    w.pending_tokens += static_cast<int64_t>(take);
    i += take;
    if (w.pending_tokens == w.max_shard_tokens) w.flush_shard();
  }
}

void TokenShardWriter::add_source(const std::string& description) { impl_->sources.push_back(description); }
void TokenShardWriter::set_tokenizer(const std::string& description) { impl_->tokenizer = description; }

void TokenShardWriter::finish() {
  Impl& w = *impl_;
  if (w.finished) return;
  w.flush_shard();
  if (w.shard_tokens.empty()) fail("{}: no tokens to write", w.folder);
  json index;
  index["format"] = kIndexFormat;
  index["version"] = kVersion;
  index["vocab_size"] = w.vocab_size;
  index["token_bytes"] = w.width;
  int64_t total = 0;
  json shards = json::array();
  for (size_t i = 0; i < w.shard_tokens.size(); ++i) {
    shards.push_back({{"file", shard_name(i)}, {"n_tokens", w.shard_tokens[i]}});
    total += w.shard_tokens[i];
  }
  index["n_tokens"] = total;
  index["tokenizer"] = w.tokenizer;
  index["sources"] = w.sources;
  index["shards"] = std::move(shards);
  const std::string text = index.dump(2) + "\n";
  write_file_atomically((fs::path(w.folder) / kIndexName).string(), text.data(), text.size());
  // Shards left by an earlier, longer run of the same folder are not part of this one.
  for (size_t i = w.shard_tokens.size();; ++i) {
    std::error_code ec;
    if (!fs::remove(fs::path(w.folder) / shard_name(i), ec)) break;
  }
  w.finished = true;
}

}  // namespace ruvdllm::train
