// TrainModel's parameters: one flat value buffer and one flat gradient buffer laid out in the
// GGUF tensor order, fresh initialisation, loading from a runtime Model, and GGUF export.
#include "ruvdllm/train/train_model.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/kernels/quant.h"
#include "ruvdllm/model/gguf_metadata.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/text/tokenizer_io.h"
#include "train/train_model_impl.h"

namespace ruvdllm::train {
namespace {

using detail::kAbsent;

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

void TrainModel::Impl::lay_out(const ModelConfig& model_config) {
  model_config.validate();
  if (model_config.is_moe()) {
    fail("training supports dense models only; {} is a mixture of experts", arch_name(model_config.arch));
  }
  config = model_config;
  attention.mask = config.causal ? MaskMode::Causal : MaskMode::Full;

  const std::vector<TensorSpec> specs = model_tensor_specs(config);
  int64_t total = 0;
  for (const TensorSpec& s : specs) total += element_count(s.shape);
  values = Tensor("values", TensorType::F32, {total});
  grads = Tensor("grads", TensorType::F32, {total});
  std::memset(values.data(), 0, values.nbytes());
  std::memset(grads.data(), 0, grads.nbytes());

  std::unordered_map<std::string, int64_t> offsets;
  int64_t offset = 0;
  for (const TensorSpec& s : specs) {
    const int64_t n = element_count(s.shape);
    Parameter p;
    p.name = s.name;
    p.shape = s.shape;
    p.value = std::span<float>(values.f32() + offset, static_cast<size_t>(n));
    p.grad = std::span<float>(grads.f32() + offset, static_cast<size_t>(n));
    p.decay = s.role == TensorRole::Matrix || s.role == TensorRole::ResidualOutput;
    parameters.push_back(std::move(p));
    offsets.emplace(s.name, offset);
    offset += n;
  }
  auto slot = [&offsets](const std::string& name) {
    const auto it = offsets.find(name);
    return it == offsets.end() ? kAbsent : it->second;
  };
  detail::ModelSlots& m = slots;
  m.token_embd = slot("token_embd.weight");
  m.output_norm = slot("output_norm.weight");
  m.output = config.tied_output ? m.token_embd : slot("output.weight");
  m.layers.resize(static_cast<size_t>(config.n_layer));
  for (int64_t il = 0; il < config.n_layer; ++il) {
    auto at = [&](const char* suffix) { return slot(fmt::format("blk.{}.{}", il, suffix)); };
    detail::LayerSlots& l = m.layers[static_cast<size_t>(il)];
    l.attn_norm = at("attn_norm.weight");
    l.wq = at("attn_q.weight");
    l.wk = at("attn_k.weight");
    l.wv = at("attn_v.weight");
    l.bq = at("attn_q.bias");
    l.bk = at("attn_k.bias");
    l.bv = at("attn_v.bias");
    l.q_norm = at("attn_q_norm.weight");
    l.k_norm = at("attn_k_norm.weight");
    l.wo = at("attn_output.weight");
    l.ffn_norm = at("ffn_norm.weight");
    l.gate = at("ffn_gate.weight");
    l.up = at("ffn_up.weight");
    l.down = at("ffn_down.weight");
  }
}

namespace {

// Normal draws from a splitmix64-seeded stream per tensor, so a tensor's values depend only on
// the seed and its name's position, never on the other tensors' sizes.
class NormalStream {
 public:
  explicit NormalStream(uint64_t seed) : state_(seed) {}
  float next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = uniform(), u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(6.283185307179586 * u2));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(6.283185307179586 * u2));
  }

 private:
  uint64_t mix() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // In (0, 1]: never 0, so log() stays finite.
  double uniform() { return (static_cast<double>(mix() >> 11) + 1.0) * 0x1p-53; }

  uint64_t state_;
  float spare_ = 0;
  bool has_spare_ = false;
};

const TensorView* runtime_tensor(const ModelWeights& w, const TensorSpec& spec) {
  if (spec.layer < 0) {
    if (spec.name == "token_embd.weight") return &w.token_embd;
    if (spec.name == "output_norm.weight") return &w.output_norm;
    if (spec.name == "output.weight") return &w.output;
    return nullptr;
  }
  static const std::pair<std::string_view, TensorView LayerWeights::*> kFields[] = {
      {"attn_norm.weight", &LayerWeights::attn_norm}, {"attn_q.weight", &LayerWeights::wq},
      {"attn_k.weight", &LayerWeights::wk},           {"attn_v.weight", &LayerWeights::wv},
      {"attn_q.bias", &LayerWeights::bq},             {"attn_k.bias", &LayerWeights::bk},
      {"attn_v.bias", &LayerWeights::bv},             {"attn_q_norm.weight", &LayerWeights::q_norm},
      {"attn_k_norm.weight", &LayerWeights::k_norm},  {"attn_output.weight", &LayerWeights::wo},
      {"ffn_norm.weight", &LayerWeights::ffn_norm},   {"ffn_gate.weight", &LayerWeights::ffn_gate},
      {"ffn_up.weight", &LayerWeights::ffn_up},       {"ffn_down.weight", &LayerWeights::ffn_down},
  };
  const std::string prefix = fmt::format("blk.{}.", spec.layer);
  const std::string_view suffix = std::string_view(spec.name).substr(prefix.size());
  for (const auto& [name, field] : kFields) {
    if (name == suffix) return &(w.layers[static_cast<size_t>(spec.layer)].*field);
  }
  return nullptr;
}

// llama.cpp's converter permutes Q/K rows of LLaDA/Llama checkpoints so that its normal-order
// RoPE (pairs 2i, 2i+1) computes what Hugging Face's half-rotation (pairs i, i + d/2) does.
// Row j of each head moves to: j < d/2 → 2j, else 2(j − d/2) + 1 (to_normal), or back.
void permute_heads(const float* src, float* dst, int64_t n_head, int64_t head_dim, int64_t row_len,
                   bool to_normal) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t j = 0; j < head_dim; ++j) {
      const int64_t neox_row = j, normal_row = j < half ? 2 * j : 2 * (j - half) + 1;
      const int64_t from = h * head_dim + (to_normal ? neox_row : normal_row);
      const int64_t to = h * head_dim + (to_normal ? normal_row : neox_row);
      std::memcpy(dst + to * row_len, src + from * row_len, static_cast<size_t>(row_len) * sizeof(float));
    }
  }
}

}  // namespace

void Batch::validate(int64_t vocab_size) const {
  if (n_seq <= 0 || seq_len <= 0) fail("batch: {} sequences of {} tokens is empty", n_seq, seq_len);
  const size_t n = static_cast<size_t>(n_seq * seq_len);
  if (inputs.size() != n || targets.size() != n || weights.size() != n) {
    fail("batch: {} sequences of {} tokens need {} inputs, targets and weights (have {}, {}, {})",
         n_seq, seq_len, n, inputs.size(), targets.size(), weights.size());
  }
  for (size_t i = 0; i < n; ++i) {
    if (inputs[i] < 0 || inputs[i] >= vocab_size) {
      fail("batch: input token {} at index {} is outside the vocabulary of {}", inputs[i], i, vocab_size);
    }
    if (!(weights[i] >= 0.0f) || !std::isfinite(weights[i])) {
      fail("batch: weight {} at index {} is not a finite non-negative number", weights[i], i);
    }
    // A row without loss never reads its target, so padding may carry any value there.
    if (weights[i] > 0.0f && (targets[i] < 0 || targets[i] >= vocab_size)) {
      fail("batch: target token {} at index {} is outside the vocabulary of {}", targets[i], i, vocab_size);
    }
  }
}

TrainModel::TrainModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrainModel::~TrainModel() = default;

std::unique_ptr<TrainModel> TrainModel::create(const ModelConfig& config, uint64_t seed, float init_std) {
  if (!(init_std > 0.0f) || !std::isfinite(init_std)) fail("init_std must be positive (is {})", init_std);
  auto impl = std::make_unique<Impl>();
  impl->lay_out(config);
  const std::vector<TensorSpec> specs = model_tensor_specs(config);
  // GPT-2 style depth scaling of the projections that write into the residual stream.
  const float out_std = init_std / std::sqrt(2.0f * static_cast<float>(config.n_layer));
  for (size_t i = 0; i < specs.size(); ++i) {
    std::span<float> v = impl->parameters[i].value;
    switch (specs[i].role) {
      case TensorRole::Norm:
        std::fill(v.begin(), v.end(), 1.0f);
        break;
      case TensorRole::Bias:
        std::fill(v.begin(), v.end(), 0.0f);
        break;
      case TensorRole::Matrix:
      case TensorRole::Router:
      case TensorRole::ResidualOutput: {
        uint64_t key = seed ^ (0x9e3779b97f4a7c15ull * (i + 1));
        NormalStream normal(key);
        const float stddev = specs[i].role == TensorRole::ResidualOutput ? out_std : init_std;
        for (float& x : v) x = normal.next() * stddev;
        break;
      }
    }
  }
  return std::unique_ptr<TrainModel>(new TrainModel(std::move(impl)));
}

std::unique_ptr<TrainModel> TrainModel::from_model(const Model& model) {
  auto impl = std::make_unique<Impl>();
  impl->lay_out(model.config());
  const std::vector<TensorSpec> specs = model_tensor_specs(model.config());
  const ModelWeights& w = model.weights();
  if (w.layers.size() != static_cast<size_t>(model.config().n_layer)) {
    fail("model has {} layers of weights, its config {}", w.layers.size(), model.config().n_layer);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    const TensorView* t = runtime_tensor(w, spec);
    const std::span<float> dst = impl->parameters[i].value;
    if (!t || !t->data) fail("model has no tensor {}", spec.name);
    if (t->elements() != static_cast<int64_t>(dst.size())) {
      fail("model tensor {} has {} elements, expected {}", spec.name, t->elements(), dst.size());
    }
    const int64_t row_len = t->row_len();
    for (int64_t r = 0; r < t->rows(); ++r) dequantize_row(t->type, t->row(r), dst.data() + r * row_len, row_len);
  }
  return std::unique_ptr<TrainModel>(new TrainModel(std::move(impl)));
}

const ModelConfig& TrainModel::config() const { return impl_->config; }
std::vector<Parameter>& TrainModel::parameters() { return impl_->parameters; }
const std::vector<Parameter>& TrainModel::parameters() const { return impl_->parameters; }
int64_t TrainModel::n_parameters() const { return impl_->values.view().elements(); }
void TrainModel::zero_grad() {
  if (device_zero_grad()) return;
  if (impl_->grads.nbytes() > 0) std::memset(impl_->grads.data(), 0, impl_->grads.nbytes());
}

void TrainModel::set_attention(const AttentionMode& mode) {
  if (mode.mask == MaskMode::BlockCausal && mode.block_len <= 0) {
    fail("block-causal attention needs block_len > 0 (is {})", mode.block_len);
  }
  impl_->attention = mode;
}

namespace {

void check_batch(const Batch& batch, const ModelConfig& c) {
  batch.validate(c.vocab_size);
  if (batch.seq_len > c.context_length) {
    fail("batch: sequences of {} tokens exceed the model's context of {}", batch.seq_len, c.context_length);
  }
}

}  // namespace

double TrainModel::forward_backward(const Batch& batch, float grad_scale, ThreadPool& pool) {
  check_batch(batch, impl_->config);
  if (!std::isfinite(grad_scale)) fail("forward_backward: grad_scale {} is not finite", grad_scale);
  Impl& m = *impl_;
  // The output head needs the scored rows only; a batch without any has nothing to learn.
  if (std::none_of(batch.weights.begin(), batch.weights.end(), [](float w) { return w > 0.0f; })) return 0.0;
  if (double loss = 0; device_forward_backward(batch, grad_scale, true, &loss)) return loss;
  m.forward(batch.inputs.data(), batch.n_seq, batch.seq_len, pool);
  m.select_head_rows(batch.targets.data(), batch.weights.data(), batch.n_seq, batch.seq_len);
  return m.head_loss(batch.inputs.data(), batch.n_seq, batch.seq_len, grad_scale, true, pool);
}

double TrainModel::forward_loss(const Batch& batch, ThreadPool& pool) {
  check_batch(batch, impl_->config);
  Impl& m = *impl_;
  if (std::none_of(batch.weights.begin(), batch.weights.end(), [](float w) { return w > 0.0f; })) return 0.0;
  if (double loss = 0; device_forward_backward(batch, 1.0f, false, &loss)) return loss;
  m.forward(batch.inputs.data(), batch.n_seq, batch.seq_len, pool);
  m.select_head_rows(batch.targets.data(), batch.weights.data(), batch.n_seq, batch.seq_len);
  return m.head_loss(batch.inputs.data(), batch.n_seq, batch.seq_len, 1.0f, false, pool);
}

void TrainModel::forward_logits(std::span<const int32_t> tokens, int64_t n_seq, float* logits,
                                ThreadPool& pool) {
  const ModelConfig& c = impl_->config;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (!logits) fail("forward_logits: no logits buffer");
  if (n == 0 || n_seq < 1 || n % n_seq != 0) {
    fail("forward_logits: {} tokens do not split into {} sequences of equal length", n, n_seq);
  }
  const int64_t seq_len = n / n_seq;
  if (seq_len > c.context_length) {
    fail("forward_logits: sequences of {} tokens exceed the model's context of {}", seq_len, c.context_length);
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = tokens[static_cast<size_t>(i)];
    if (id < 0 || id >= c.vocab_size) {
      fail("forward_logits: token id {} at index {} is outside the vocabulary of {}", id, i, c.vocab_size);
    }
  }
  if (device_forward_logits(tokens, n_seq, logits)) return;
  impl_->forward(tokens.data(), n_seq, seq_len, pool);
  impl_->select_head_rows(nullptr, nullptr, n_seq, seq_len);
  impl_->head_logits(logits, pool);
}

void TrainModel::save_gguf(const std::string& path, TensorType type, const Tokenizer* tokenizer) const {
  const ModelConfig& c = impl_->config;
  if (type == TensorType::Q8_K) fail("{}: q8_K is an activation type, not a weight type", path);
  type_traits(type);  // Error for an unsupported type
  GgufWriter writer;
  write_model_metadata(c, fmt::format("ruvdllm {}", arch_name(c.arch)), writer);
  if (tokenizer) {
    if (tokenizer->vocab_size() > c.vocab_size) {
      fail("{}: the tokenizer's {} tokens do not fit the model's vocabulary of {}", path,
           tokenizer->vocab_size(), c.vocab_size);
    }
    const std::optional<int32_t> mask = tokenizer->mask_id();
    if (mask && c.mask_token_id >= 0 && *mask != c.mask_token_id) {
      fail("{}: the tokenizer's mask token {} differs from the model's {}", path, *mask, c.mask_token_id);
    }
    write_tokenizer_metadata(*tokenizer, writer);
  }

  // Q/K rows in the pairing llama.cpp's runtime expects for this architecture.
  const bool permute = c.rope_order != gguf_rope_order(c.arch);
  const bool to_normal = gguf_rope_order(c.arch) == RopeOrder::Normal;
  std::vector<std::vector<float>> permuted;
  const std::vector<TensorSpec> specs = model_tensor_specs(c);
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    const float* src = impl_->parameters[i].value.data();
    auto named = [&spec](const char* suffix) { return spec.name.ends_with(suffix); };
    const bool is_q = named(".attn_q.weight") || named(".attn_q.bias");
    const bool is_k = named(".attn_k.weight") || named(".attn_k.bias");
    // The q/k norm weights scale head dimensions, so they move with the rows.
    const bool is_qk_norm = named(".attn_q_norm.weight") || named(".attn_k_norm.weight");
    if (permute && (is_q || is_k || is_qk_norm)) {
      const int64_t row_len = spec.shape.size() == 2 ? spec.shape[0] : 1;
      const int64_t heads = is_qk_norm ? 1 : is_q ? c.n_head : c.n_head_kv;
      permuted.emplace_back(impl_->parameters[i].value.size());
      permute_heads(src, permuted.back().data(), heads, c.head_dim, row_len, to_normal);
      src = permuted.back().data();
    }
    const TensorType stored = storable_type(type, spec);
    const int64_t row_len = spec.shape[0];
    const int64_t rows = element_count(spec.shape) / row_len;
    writer.add_tensor_lazy(spec.name, stored, spec.shape, [src, stored, row_len, rows](void* dst) {
      const size_t stride = row_bytes(stored, row_len);
      for (int64_t r = 0; r < rows; ++r) {
        quantize_row(stored, src + r * row_len, static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * stride, row_len);
      }
    });
  }
  writer.write(path);
}

}  // namespace ruvdllm::train
