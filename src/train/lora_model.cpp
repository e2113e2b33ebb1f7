// TrainModel's LoRA adapters: attaching them (freezing the base), the PEFT adapter folder
// (save and load), and merging them into the base weights.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "io/atomic_writer.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/io/safetensors.h"
#include "ruvdllm/kernels/quant.h"
#include "train/layers_internal.h"
#include "train/train_model_impl.h"

namespace ruvdllm::train {
namespace {

using detail::kAbsent;
using detail::LoraAdapter;

// in and out of a projection: [out × in] as the forward pass multiplies it.
std::pair<int64_t, int64_t> projection_shape(const ModelConfig& c, LoraTarget t) {
  const int64_t q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim;
  switch (t) {
    case LoraTarget::AttnQ: return {c.n_embd, q_dim};
    case LoraTarget::AttnK:
    case LoraTarget::AttnV: return {c.n_embd, kv_dim};
    case LoraTarget::AttnOutput: return {q_dim, c.n_embd};
    case LoraTarget::FfnGate:
    case LoraTarget::FfnUp: return {c.n_embd, c.n_ff};
    case LoraTarget::FfnDown: return {c.n_ff, c.n_embd};
  }
  return {0, 0};
}

int64_t base_slot(const detail::LayerSlots& s, LoraTarget t) {
  switch (t) {
    case LoraTarget::AttnQ: return s.wq;
    case LoraTarget::AttnK: return s.wk;
    case LoraTarget::AttnV: return s.wv;
    case LoraTarget::AttnOutput: return s.wo;
    case LoraTarget::FfnGate: return s.gate;
    case LoraTarget::FfnUp: return s.up;
    case LoraTarget::FfnDown: return s.down;
  }
  return kAbsent;
}

// Hugging Face's RoPE rotates halves of each head; when this model's Q/K rows are in
// llama.cpp's interleaved order (RopeOrder::Normal), B's rows of q_proj/k_proj move between
// the two orders on save and load. Row j of a head in Hugging Face order is row
// (j < d/2 ? 2j : 2(j − d/2) + 1) in the interleaved one.
bool rows_reordered(const ModelConfig& c, LoraTarget t) {
  return c.rope_order == RopeOrder::Normal && (t == LoraTarget::AttnQ || t == LoraTarget::AttnK);
}

void reorder_rows(const float* src, float* dst, int64_t rows, int64_t head_dim, int64_t row_len, bool to_hf) {
  const int64_t half = head_dim / 2;
  for (int64_t base = 0; base < rows; base += head_dim) {
    for (int64_t j = 0; j < head_dim; ++j) {
      const int64_t hf = base + j, normal = base + (j < half ? 2 * j : 2 * (j - half) + 1);
      std::memcpy(dst + (to_hf ? hf : normal) * row_len, src + (to_hf ? normal : hf) * row_len,
                  static_cast<size_t>(row_len) * sizeof(float));
    }
  }
}

// Uniform in [-bound, bound) from a splitmix64 stream: PEFT's kaiming_uniform_(a = √5) on A
// gives bound = 1/√in.
void fill_uniform(std::span<float> out, float bound, uint64_t seed) {
  uint64_t state = seed;
  for (float& x : out) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const double u = static_cast<double>(z >> 11) * 0x1p-53;  // [0, 1)
    x = static_cast<float>((2.0 * u - 1.0) * bound);
  }
}

void write_text_atomically(const std::string& path, const std::string& text) {
  io::AtomicFileWriter out(path);
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace

void TrainModel::add_lora(const LoraOptions& options) {
  options.validate();
  Impl& m = *impl_;
  if (!m.lora.adapters.empty()) fail("the model already has LoRA adapters");
  if (m.device != "cpu") {
    fail("LoRA runs on the CPU only: the {} engine does not support LoRA adapters", m.device);
  }
  const ModelConfig& c = m.config;
  const int64_t r = options.rank;
  std::vector<LoraTarget> targets = options.targets;
  std::sort(targets.begin(), targets.end());  // PEFT's module order within a layer

  detail::LoraState& lora = m.lora;
  lora.options = options;
  lora.scale = static_cast<float>(options.scale());
  lora.index.assign(static_cast<size_t>(c.n_layer), {});
  int64_t total = 0;
  for (int64_t il = 0; il < c.n_layer; ++il) {
    lora.index[static_cast<size_t>(il)].fill(kAbsent);
    for (LoraTarget t : targets) {
      LoraAdapter a;
      a.target = t;
      a.layer = il;
      std::tie(a.in, a.out) = projection_shape(c, t);
      a.a_slot = total;
      a.b_slot = total + r * a.in;
      total += r * (a.in + a.out);
      lora.index[static_cast<size_t>(il)][static_cast<size_t>(t)] = static_cast<int64_t>(lora.adapters.size());
      lora.adapters.push_back(std::move(a));
    }
  }
  lora.values = Tensor("lora", TensorType::F32, {total});
  std::memset(lora.values.data(), 0, lora.values.nbytes());
  // The base's gradients are never computed again: their buffer goes, the adapters' comes.
  m.grads = Tensor("grads", TensorType::F32, {total});
  std::memset(m.grads.data(), 0, m.grads.nbytes());
  m.base_frozen = true;
  for (Parameter& p : m.parameters) p.grad = {};

  for (size_t i = 0; i < lora.adapters.size(); ++i) {
    LoraAdapter& a = lora.adapters[i];
    auto add = [&](bool b_matrix, int64_t slot, std::vector<int64_t> shape) {
      const size_t n = static_cast<size_t>(shape[0] * shape[1]);
      Parameter p;
      p.name = lora_tensor_name(a.layer, a.target, b_matrix);
      p.shape = std::move(shape);
      p.value = std::span<float>(lora.values.f32() + slot, n);
      p.grad = std::span<float>(m.grads.f32() + slot, n);
      m.parameters.push_back(std::move(p));
      return m.parameters.size() - 1;
    };
    a.a_param = add(false, a.a_slot, {a.in, r});
    a.b_param = add(true, a.b_slot, {r, a.out});
    fill_uniform(m.parameters[a.a_param].value, 1.0f / std::sqrt(static_cast<float>(a.in)),
                 options.seed ^ (0xd1b54a32d192ed03ull * (i + 1)));
  }
  values_changed();
}

bool TrainModel::has_lora() const { return !impl_->lora.adapters.empty(); }

const LoraOptions& TrainModel::lora_options() const {
  if (!has_lora()) fail("the model has no LoRA adapters");
  return impl_->lora.options;
}

int64_t TrainModel::n_trainable() const {
  int64_t n = 0;
  for (const Parameter& p : impl_->parameters) n += static_cast<int64_t>(p.grad.size());
  return n;
}

void TrainModel::save_lora(const std::string& folder, const std::string& base_model) const {
  const Impl& m = *impl_;
  if (!has_lora()) fail("{}: the model has no LoRA adapters to save", folder);
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) fail("{}: cannot create the adapter folder: {}", folder, ec.message());

  SafetensorsWriter writer;
  writer.set_metadata("format", "pt");  // what PEFT's save_pretrained writes
  std::vector<std::vector<float>> reordered;
  reordered.reserve(m.lora.adapters.size());
  for (const LoraAdapter& a : m.lora.adapters) {
    const Parameter& pa = m.parameters[a.a_param];
    const Parameter& pb = m.parameters[a.b_param];
    writer.add_tensor(pa.name, TensorType::F32, pa.shape, pa.value.data(), pa.value.size_bytes());
    const float* b = pb.value.data();
    if (rows_reordered(m.config, a.target)) {
      reordered.emplace_back(pb.value.size());
      reorder_rows(b, reordered.back().data(), a.out, m.config.head_dim, m.lora.options.rank, true);
      b = reordered.back().data();
    }
    writer.add_tensor(pb.name, TensorType::F32, pb.shape, b, pb.value.size_bytes());
  }
  writer.write(lora_weights_path(folder));

  const LoraOptions& o = m.lora.options;
  std::vector<std::string> modules;
  for (LoraTarget t : o.targets) modules.emplace_back(lora_target_hf_name(t));
  nlohmann::json j = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(base_model)},
      {"r", o.rank},
      // PEFT writes an int; keep one when alpha is whole.
      {"lora_alpha", o.alpha == std::floor(o.alpha) && std::fabs(o.alpha) < 1e15
                         ? nlohmann::json(static_cast<int64_t>(o.alpha))
                         : nlohmann::json(o.alpha)},
      {"lora_dropout", 0.0},
      {"target_modules", modules},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"use_rslora", false},
      {"use_dora", false},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"rank_pattern", nlohmann::json::object()},
      {"alpha_pattern", nlohmann::json::object()},
      {"revision", nullptr},
  };
  write_text_atomically(lora_config_path(folder), j.dump(2) + "\n");
}

void TrainModel::load_lora(const std::string& folder) {
  const LoraAdapterConfig config = read_lora_config(folder);
  const std::string weights = lora_weights_path(folder);
  const std::string config_path = lora_config_path(folder);
  if (!std::filesystem::exists(weights)) fail("{}: missing (the adapter's weights)", weights);
  if (!has_lora()) {
    add_lora(config.options);
  } else {
    const LoraOptions& have = impl_->lora.options;
    const std::set<LoraTarget> a(have.targets.begin(), have.targets.end());
    const std::set<LoraTarget> b(config.options.targets.begin(), config.options.targets.end());
    if (have.rank != config.options.rank || have.alpha != config.options.alpha || a != b) {
      fail("{}: r = {}, lora_alpha = {}, {} targets differ from the model's adapters (r = {}, alpha = {}, {} targets)",
           config_path, config.options.rank, config.options.alpha, b.size(), have.rank, have.alpha, a.size());
    }
  }
  Impl& m = *impl_;
  const SafetensorsFile file = SafetensorsFile::open(weights);
  const size_t expected = 2 * m.lora.adapters.size();
  if (file.tensors().size() != expected) {
    fail("{}: holds {} tensors, but r = {} on {} targets of {} layers needs {}", weights, file.tensors().size(),
         m.lora.options.rank, m.lora.options.targets.size(), m.config.n_layer, expected);
  }
  std::vector<float> scratch;
  auto read = [&](const LoraAdapter& a, bool b_matrix, const Parameter& p, float* dst) {
    const TensorView* t = file.find_tensor(p.name);
    if (!t) t = file.find_tensor(lora_tensor_name_llada(a.layer, a.target, b_matrix));
    if (!t) fail("{}: has no tensor {}", weights, p.name);
    if (t->shape != p.shape) {
      // Shapes print in safetensors order ([rows, columns]), as the file and PEFT show them.
      fail("{}: {} has shape [{}], expected [{}]", weights, p.name, fmt::join(t->shape.rbegin(), t->shape.rend(), ", "),
           fmt::join(p.shape.rbegin(), p.shape.rend(), ", "));
    }
    if (t->type != TensorType::F32 && t->type != TensorType::F16 && t->type != TensorType::BF16) {
      fail("{}: {} is {}; adapters must be f32, f16 or bf16", weights, p.name, type_name(t->type));
    }
    dequantize_row(t->type, t->data, dst, static_cast<int64_t>(p.value.size()));
    for (size_t i = 0; i < p.value.size(); ++i) {
      if (!std::isfinite(dst[i])) fail("{}: {} holds a non-finite value at index {}", weights, p.name, i);
    }
  };
  for (const LoraAdapter& a : m.lora.adapters) {
    Parameter& pa = m.parameters[a.a_param];
    Parameter& pb = m.parameters[a.b_param];
    read(a, false, pa, pa.value.data());
    if (rows_reordered(m.config, a.target)) {
      scratch.resize(pb.value.size());
      read(a, true, pb, scratch.data());
      reorder_rows(scratch.data(), pb.value.data(), a.out, m.config.head_dim, m.lora.options.rank, false);
    } else {
      read(a, true, pb, pb.value.data());
    }
  }
  values_changed();
}

void TrainModel::merge_lora() {
  Impl& m = *impl_;
  if (!has_lora()) fail("the model has no LoRA adapters to merge");
  size_t first_lora_param = m.parameters.size();
  const int64_t r = m.lora.options.rank;
  for (const LoraAdapter& a : m.lora.adapters) {
    float* w = m.value(base_slot(m.slots.layers[static_cast<size_t>(a.layer)], a.target));
    const float* A = m.lora_value(a.a_slot);
    const float* B = m.lora_value(a.b_slot);
    detail::gemm<float>(false, false, a.out, a.in, r, m.lora.scale, B, r, A, a.in, 1.0f, w, a.in);
    first_lora_param = std::min(first_lora_param, a.a_param);
  }
  m.parameters.erase(m.parameters.begin() + static_cast<std::ptrdiff_t>(first_lora_param), m.parameters.end());
  m.lora = detail::LoraState();
  m.grads = Tensor();
  values_changed();
}

}  // namespace ruvdllm::train
