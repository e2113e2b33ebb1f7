// Random-weight models in llama.cpp's GGUF layout, for tests and benchmarks. Every tensor is
// generated (and quantized) while the file is written, row by row on a thread pool, so even an
// 8B model never sits in memory whole; each row has its own seed, so the file depends only on
// the seed, never on the thread count.
#include "ruvdllm/model/init.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/kernels/quant.h"
#include "ruvdllm/model/gguf_metadata.h"

namespace ruvdllm {
namespace {

struct Shape {
  int64_t vocab, embd, layers, heads, heads_kv, ff, context;
  float rope_base;
  int64_t mask, bos, eos;
};

// "test": tiny, for unit tests. "160m": GPT-2's vocabulary plus a mask token. "1b":
// TinyLlama-1.1B's shape (LLaMA tokenizer's 32000 ids plus a mask). "8b": LLaDA-8B's
// config.json (mask 126336, <|startoftext|> 126080, <|eot_id|>-style eos 126081).
Shape named_shape(const std::string& name) {
  if (name == "test") return {300, 64, 2, 4, 2, 160, 512, 10000.0f, 299, 298, 298};
  if (name == "160m") return {50258, 768, 12, 12, 12, 2048, 4096, 500000.0f, 50257, 50256, 50256};
  if (name == "1b") return {32001, 2048, 22, 32, 4, 5632, 2048, 10000.0f, 32000, 1, 2};
  if (name == "8b")
    return {126464, 4096, 32, 32, 32, 12288, 4096, 500000.0f, 126336, 126080, 126081};
  // The shipped models/default.gguf.
  if (name == "default") return {8192, 384, 6, 6, 6, 1024, 512, 10000.0f, 8191, 8190, 8190};
  fail("unknown model shape '{}' (test, default, 160m, 1b, 8b)", name);
}

// xoshiro256** seeded through splitmix64: fast, and good enough for weights.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& s : state_) s = splitmix(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  // Uniform in (0, 1]: never 0, so log() in Box-Muller stays finite.
  double uniform() {
    return (static_cast<double>(next() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  }
  void normals(float* out, int64_t n, float stddev) {
    for (int64_t i = 0; i < n; i += 2) {
      const double r = std::sqrt(-2.0 * std::log(uniform()));
      const double a = 6.283185307179586 * uniform();
      out[i] = static_cast<float>(r * std::cos(a)) * stddev;
      if (i + 1 < n) out[i + 1] = static_cast<float>(r * std::sin(a)) * stddev;
    }
  }
  static uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t state_[4];
};

uint64_t row_seed(uint64_t seed, uint64_t tensor, uint64_t row) {
  uint64_t x = seed ^ (tensor * 0x9e3779b97f4a7c15ull);
  x = Rng::splitmix(x) ^ row;
  return Rng::splitmix(x);
}

enum class Fill { Normal, NormWeight };

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the others are moved to
// code points from 256 up, so every byte has a visible one-character token.
std::string byte_token(int byte) {
  int code = byte;
  const bool printable =
      (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
  if (!printable) {
    int shifted = 0;
    for (int b = 0; b < byte; ++b) {
      const bool p = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      if (!p) ++shifted;
    }
    code = 256 + shifted;
  }
  std::string utf8;
  if (code < 0x80) {
    utf8.push_back(static_cast<char>(code));
  } else {
    utf8.push_back(static_cast<char>(0xC0 | (code >> 6)));
    utf8.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
  return utf8;
}

class RandomModelWriter {
 public:
  RandomModelWriter(const ModelConfig& c, const InitOptions& o) : c_(c), o_(o), pool_(0) {}

  void write(const std::string& path) {
    metadata();
    if (o_.write_vocab) vocab();
    tensors();
    writer_.write(path, o_.progress);
  }

 private:
  void metadata() {
    write_model_metadata(c_, fmt::format("ruvdllm random {}", arch_name(c_.arch)), writer_);
  }

  void vocab() {
    const int64_t V = c_.vocab_size;
    std::vector<std::string> tokens(static_cast<size_t>(V));
    std::vector<int64_t> types(static_cast<size_t>(V),
                               1);  // llama.cpp's token types: 1 normal, 3 control
    for (int64_t i = 0; i < V; ++i)
      tokens[static_cast<size_t>(i)] =
          i < 256 ? byte_token(static_cast<int>(i)) : fmt::format("<|t{}|>", i);
    auto special = [&](int64_t id, const char* text) {
      if (id < 0) return;
      tokens[static_cast<size_t>(id)] = text;
      types[static_cast<size_t>(id)] = 3;
    };
    special(c_.bos_token_id,
            c_.bos_token_id == c_.eos_token_id ? "<|endoftext|>" : "<|startoftext|>");
    special(c_.eos_token_id, "<|endoftext|>");
    special(c_.mask_token_id, "<|mdm_mask|>");
    writer_.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    writer_.set("tokenizer.ggml.pre", GgufValue::string("default"));
    writer_.set("tokenizer.ggml.tokens", GgufValue::string_array(std::move(tokens)));
    writer_.set("tokenizer.ggml.token_type",
                GgufValue::int_array(GgufType::INT32, std::move(types)));
    writer_.set("tokenizer.ggml.merges", GgufValue::string_array({}));
  }

  void tensors() {
    const float std = o_.init_std;
    // GPT-2 style depth scaling of the projections that write into the residual stream.
    const float out_std = std / std::sqrt(2.0f * static_cast<float>(c_.n_layer));
    for (TensorSpec& spec : model_tensor_specs(c_)) {
      const TensorType type = storable_type(o_.type, spec);
      switch (spec.role) {
        case TensorRole::Norm:
          add(spec.name, type, std::move(spec.shape), Fill::NormWeight, 0);
          break;
        case TensorRole::ResidualOutput:
          add(spec.name, type, std::move(spec.shape), Fill::Normal, out_std);
          break;
        case TensorRole::Matrix:
        case TensorRole::Router:
        case TensorRole::Bias:
          add(spec.name, type, std::move(spec.shape), Fill::Normal, std);
          break;
      }
    }
  }

  void add(const std::string& name, TensorType type, std::vector<int64_t> shape, Fill fill,
           float stddev) {
    const int64_t row_len = shape[0];
    int64_t rows = 1;
    for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
    const size_t stride = row_bytes(type, row_len);
    const uint64_t tensor_id = next_tensor_id_++;
    const uint64_t seed = o_.seed;
    writer_.add_tensor_lazy(name, type, std::move(shape), [=, this](void* dst) {
      const int64_t rows_per_task = std::max<int64_t>(1, (1 << 16) / row_len);
      const int64_t n_tasks = (rows + rows_per_task - 1) / rows_per_task;
      std::vector<std::vector<float>> scratch(static_cast<size_t>(pool_.size()),
                                              std::vector<float>(static_cast<size_t>(row_len)));
      pool_.parallel_for(n_tasks, [&](int64_t task, int thread) {
        float* row = scratch[static_cast<size_t>(thread)].data();
        const int64_t end = std::min(rows, (task + 1) * rows_per_task);
        for (int64_t r = task * rows_per_task; r < end; ++r) {
          Rng rng(row_seed(seed, tensor_id, static_cast<uint64_t>(r)));
          if (fill == Fill::NormWeight) {
            // Norm weights near 1, not exactly 1, so a forward pass that skipped one would show.
            rng.normals(row, row_len, 0.05f);
            for (int64_t i = 0; i < row_len; ++i) row[i] += 1.0f;
          } else {
            rng.normals(row, row_len, stddev);
          }
          quantize_row(type, row, static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * stride,
                       row_len);
        }
      });
    });
  }

  const ModelConfig& c_;
  const InitOptions& o_;
  ThreadPool pool_;
  GgufWriter writer_;
  uint64_t next_tensor_id_ = 0;
};

}  // namespace

ModelConfig shape_config(Arch arch, const std::string& shape) {
  const Shape s = named_shape(shape);
  if (arch == Arch::LLaDAMoE && shape != "test")
    fail("llada-moe has only the 'test' shape (asked for '{}')", shape);
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = s.vocab;
  c.n_embd = s.embd;
  c.n_layer = s.layers;
  c.n_head = s.heads;
  c.n_head_kv = s.heads_kv;
  c.head_dim = s.embd / s.heads;
  c.n_ff = s.ff;
  c.context_length = s.context;
  c.rope_base = s.rope_base;
  c.rms_eps = 1e-5f;
  c.mask_token_id = s.mask;
  c.bos_token_id = s.bos;
  c.eos_token_id = s.eos;
  c.rope_order = gguf_rope_order(arch);
  c.qkv_bias = arch == Arch::Dream || arch == Arch::Qwen2;
  c.shift_logits = arch == Arch::Dream;
  c.causal = arch == Arch::Llama || arch == Arch::Qwen2;
  if (arch == Arch::LLaDAMoE) {
    c.qk_norm = true;
    c.n_expert = 4;
    c.n_expert_used = 2;
    c.n_ff_expert = 64;
  }
  return c;
}

void write_random_model(const ModelConfig& config, const InitOptions& options,
                        const std::string& path) {
  config.validate();
  if (options.type == TensorType::Q8_K)
    fail("{}: q8_K is an activation type, not a weight type", path);
  if (!(options.init_std > 0.0f))
    fail("{}: init_std must be positive (is {})", path, options.init_std);
  RandomModelWriter(config, options).write(path);
}

}  // namespace ruvdllm
