// Binding file tensors to the transformer's weights, shared by the GGUF and Hugging Face
// loaders, plus small helpers of the forward pass.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>

#include "model/model_internal.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::model_detail {
namespace {

std::string layer_name(const std::string& pattern, int64_t layer) {
  return fmt::format(fmt::runtime(pattern), layer);
}

class Binder {
 public:
  Binder(LoadedModel& model, const TensorLookup& find) : model_(model), find_(find) {}

  // A weight matrix or stack, used in place in whatever type the file stores.
  TensorView matrix(const std::string& name, std::vector<int64_t> shape) {
    const TensorView& t = require(name, shape);
    if (t.type == TensorType::Q8_K) {
      fail("{}: tensor {} has type q8_K, which is not a weight type", model_.path, name);
    }
    return t;
  }

  // A 1-D vector (norm weight, bias) as aligned F32, converting when the file stores another
  // type: the element-wise kernels take plain float pointers.
  TensorView vector(const std::string& name, int64_t n) {
    const TensorView& t = require(name, {n});
    const bool aligned = reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0;
    if (t.type == TensorType::F32 && aligned) return t;
    if (type_traits(t.type).quantized && n % type_traits(t.type).block_size != 0) {
      fail("{}: tensor {} of type {} cannot hold {} elements", model_.path, name, type_name(t.type), n);
    }
    Tensor copy(t.name, TensorType::F32, {n});
    dequantize_row(t.type, t.data, copy.f32(), n);
    model_.converted.push_back(std::move(copy));
    return model_.converted.back().view();
  }

  TensorView optional_vector(const std::string& name, int64_t n) {
    if (name.empty() || !find_(name)) return {};
    return vector(name, n);
  }

  bool has(const std::string& name) const { return !name.empty() && find_(name) != nullptr; }

 private:
  const TensorView& require(const std::string& name, const std::vector<int64_t>& shape) {
    const TensorView* t = name.empty() ? nullptr : find_(name);
    if (!t) fail("{}: missing tensor {}", model_.path, name.empty() ? "(unnamed)" : name);
    if (t->shape != shape) {
      fail("{}: tensor {} has shape [{}], expected [{}]", model_.path, name, fmt::join(t->shape, ", "),
           fmt::join(shape, ", "));
    }
    if (!t->data) fail("{}: tensor {} has no data", model_.path, name);
    return *t;
  }

  LoadedModel& model_;
  const TensorLookup& find_;
};

}  // namespace

void bind_weights(LoadedModel& model, const TensorNaming& names, const TensorLookup& find) {
  const ModelConfig& c = model.config;
  // Views into model.converted stay valid as it grows: a Tensor's storage is on the heap and
  // moves with it.
  Binder bind(model, find);
  const int64_t E = c.n_embd, V = c.vocab_size;
  const int64_t q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim;

  ModelWeights& w = model.weights;
  w.token_embd = bind.matrix(names.token_embd, {E, V});
  w.output_norm = bind.vector(names.output_norm, E);
  w.output = c.tied_output ? w.token_embd : bind.matrix(names.output, {E, V});

  w.layers.assign(static_cast<size_t>(c.n_layer), LayerWeights{});
  if (c.is_moe()) model.experts.assign(static_cast<size_t>(c.n_layer), ExpertWeights{});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    auto name = [&](const std::string& pattern) { return layer_name(pattern, il); };
    LayerWeights& l = w.layers[static_cast<size_t>(il)];
    l.attn_norm = bind.vector(name(names.attn_norm), E);
    l.wq = bind.matrix(name(names.wq), {E, q_dim});
    l.wk = bind.matrix(name(names.wk), {E, kv_dim});
    l.wv = bind.matrix(name(names.wv), {E, kv_dim});
    l.wo = bind.matrix(name(names.wo), {q_dim, E});
    if (c.qkv_bias) {
      l.bq = bind.vector(name(names.bq), q_dim);
      l.bk = bind.vector(name(names.bk), kv_dim);
      l.bv = bind.vector(name(names.bv), kv_dim);
    }
    if (c.qk_norm) {
      l.q_norm = bind.vector(name(names.q_norm), c.head_dim);
      l.k_norm = bind.vector(name(names.k_norm), c.head_dim);
    }
    l.ffn_norm = bind.vector(name(names.ffn_norm), E);
    if (!c.is_moe()) {
      l.ffn_gate = bind.matrix(name(names.ffn_gate), {E, c.n_ff});
      l.ffn_up = bind.matrix(name(names.ffn_up), {E, c.n_ff});
      l.ffn_down = bind.matrix(name(names.ffn_down), {c.n_ff, E});
      continue;
    }
    const int64_t F = c.n_ff_expert, X = c.n_expert;
    l.ffn_gate_inp = bind.matrix(name(names.ffn_gate_inp), {E, X});
    ExpertWeights& ex = model.experts[static_cast<size_t>(il)];
    if (names.experts_stacked) {
      l.ffn_gate_exps = bind.matrix(name(names.gate_exps), {E, F, X});
      l.ffn_up_exps = bind.matrix(name(names.up_exps), {E, F, X});
      l.ffn_down_exps = bind.matrix(name(names.down_exps), {F, E, X});
      for (int64_t e = 0; e < X; ++e) {
        ex.gate.push_back(l.ffn_gate_exps.matrix(e));
        ex.up.push_back(l.ffn_up_exps.matrix(e));
        ex.down.push_back(l.ffn_down_exps.matrix(e));
      }
    } else {
      // The stacked views stay empty: the experts are separate tensors, not one block.
      for (int64_t e = 0; e < X; ++e) {
        auto expert = [&](const std::string& pattern) { return fmt::format(fmt::runtime(pattern), il, e); };
        ex.gate.push_back(bind.matrix(expert(names.gate_exps), {E, F}));
        ex.up.push_back(bind.matrix(expert(names.up_exps), {E, F}));
        ex.down.push_back(bind.matrix(expert(names.down_exps), {F, E}));
      }
    }
  }
}

void for_row_chunks(ThreadPool& pool, int64_t rows, int64_t min_rows_per_chunk,
                    const std::function<void(int64_t, int64_t)>& fn) {
  if (rows <= 0) return;
  const int64_t max_chunks = std::max<int64_t>(1, rows / std::max<int64_t>(1, min_rows_per_chunk));
  const int64_t n_chunks = std::min<int64_t>(max_chunks, 4 * static_cast<int64_t>(pool.size()));
  if (n_chunks <= 1) {
    fn(0, rows);
    return;
  }
  pool.parallel_for(n_chunks, [&](int64_t chunk, int) {
    const int64_t begin = rows * chunk / n_chunks;
    const int64_t end = rows * (chunk + 1) / n_chunks;
    if (end > begin) fn(begin, end);
  });
}

float* ScratchBuffer::get(size_t n_floats) {
  if (n_floats * sizeof(float) > tensor_.nbytes() || !tensor_.data()) {
    tensor_ = Tensor("scratch", TensorType::F32, {static_cast<int64_t>(std::max<size_t>(n_floats, 1))});
  }
  return tensor_.f32();
}

}  // namespace ruvdllm::model_detail
