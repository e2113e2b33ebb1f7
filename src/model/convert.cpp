// Any loaded model → GGUF in llama.cpp's layout. The tensor list comes from
// model_tensor_specs (the same description every GGUF writer here uses); each entry is filled
// from the model's bound weights while the file is written, so no second copy of the weights
// is ever held.
//
// Q/K rows: Hugging Face checkpoints rotate halves (NeoX pairing) on unpermuted rows. For
// LLaDA and Llama, llama.cpp's converter permutes the Q/K rows (and their biases) so that its
// normal-order RoPE computes the same thing; llama.cpp reads those GGUFs with normal RoPE, so
// the rows must move here too. qk-norm weights scale head dimensions and move with them.
#include "ruvdllm/model/convert.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>
#include <unordered_map>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/kernels/quant.h"
#include "ruvdllm/model/gguf_metadata.h"
#include "ruvdllm/model/model.h"

namespace ruvdllm {
namespace {

// Which way Q/K head dimensions move, if at all.
enum class HeadPermutation { None, NeoXToNormal, NormalToNeoX };

// Index in the source of the head dimension that lands at `dst` (within one head).
int64_t permuted_source(int64_t dst, int64_t head_dim, HeadPermutation p) {
  const int64_t half = head_dim / 2;
  switch (p) {
    case HeadPermutation::None:
      break;
    case HeadPermutation::NeoXToNormal:  // normal pair (2i, 2i+1) holds NeoX pair (i, i + d/2)
      return dst % 2 == 0 ? dst / 2 : half + dst / 2;
    case HeadPermutation::NormalToNeoX:
      return dst < half ? 2 * dst : 2 * (dst - half) + 1;
  }
  return dst;
}

// One GGUF tensor's content: the source matrices (several for Hugging Face's per-expert
// tensors, stacked in order) and how its rows or elements are reordered.
struct TensorSource {
  std::vector<TensorView> parts;
  HeadPermutation permutation = HeadPermutation::None;
  bool permute_elements = false;  // 1-D bias / qk-norm: elements move, not rows
};

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Hugging Face keeps LLaDA-MoE's experts as separate tensors (hf_loader.cpp's naming), which
// Model exposes only through all_tensors(); GGUF input has them stacked in the layer weights.
std::vector<TensorView> expert_parts(const Model& model, const TensorView& stacked, int64_t layer,
                                     std::string_view proj,
                                     const std::unordered_map<std::string, const TensorView*>& by_name) {
  if (stacked.data) return {stacked};
  std::vector<TensorView> parts;
  for (int64_t e = 0; e < model.config().n_expert; ++e) {
    const std::string name = fmt::format("model.layers.{}.mlp.experts.{}.{}_proj.weight", layer, e, proj);
    const auto it = by_name.find(name);
    if (it == by_name.end()) fail("tensor {} is missing", name);
    parts.push_back(*it->second);
  }
  return parts;
}

TensorSource find_source(const Model& model, const TensorSpec& spec, HeadPermutation qk_permutation,
                         const std::unordered_map<std::string, const TensorView*>& by_name) {
  const ModelWeights& w = model.weights();
  TensorSource s;
  auto one = [&s](const TensorView& v) { s.parts = {v}; };
  if (spec.layer < 0) {
    if (spec.name == "token_embd.weight") one(w.token_embd);
    else if (spec.name == "output_norm.weight") one(w.output_norm);
    else if (spec.name == "output.weight") one(w.output);
  } else {
    const LayerWeights& l = w.layers.at(static_cast<size_t>(spec.layer));
    const std::string_view role = std::string_view(spec.name).substr(spec.name.find('.', 4) + 1);
    const std::pair<std::string_view, const TensorView*> plain[] = {
        {"attn_norm.weight", &l.attn_norm}, {"attn_v.weight", &l.wv},       {"attn_v.bias", &l.bv},
        {"attn_output.weight", &l.wo},      {"ffn_norm.weight", &l.ffn_norm}, {"ffn_gate.weight", &l.ffn_gate},
        {"ffn_up.weight", &l.ffn_up},       {"ffn_down.weight", &l.ffn_down}, {"ffn_gate_inp.weight", &l.ffn_gate_inp},
    };
    const std::pair<std::string_view, const TensorView*> head_ordered[] = {
        {"attn_q.weight", &l.wq}, {"attn_k.weight", &l.wk}, {"attn_q.bias", &l.bq}, {"attn_k.bias", &l.bk},
        {"attn_q_norm.weight", &l.q_norm}, {"attn_k_norm.weight", &l.k_norm},
    };
    for (const auto& [name, view] : plain) {
      if (role == name) one(*view);
    }
    for (const auto& [name, view] : head_ordered) {
      if (role == name) {
        one(*view);
        s.permutation = qk_permutation;
        s.permute_elements = spec.shape.size() == 1;
      }
    }
    if (role == "ffn_gate_exps.weight") s.parts = expert_parts(model, l.ffn_gate_exps, spec.layer, "gate", by_name);
    if (role == "ffn_up_exps.weight") s.parts = expert_parts(model, l.ffn_up_exps, spec.layer, "up", by_name);
    if (role == "ffn_down_exps.weight") s.parts = expert_parts(model, l.ffn_down_exps, spec.layer, "down", by_name);
  }
  if (s.parts.empty() || !s.parts[0].data) fail("the model has no tensor for {}", spec.name);
  int64_t elements = 0;
  for (const TensorView& p : s.parts) {
    if (p.row_len() != spec.shape[0]) {
      fail("tensor {} (for {}) has rows of {}, expected {}", p.name, spec.name, p.row_len(), spec.shape[0]);
    }
    elements += p.elements();
  }
  if (elements != element_count(spec.shape)) {
    fail("tensor {} has {} elements, {} needs {}", s.parts[0].name, elements, spec.name, element_count(spec.shape));
  }
  return s;
}

// Fills dst (rows × row_len of dst_type) from the source, reordering rows as asked.
void convert_source(const TensorSource& src, const TensorSpec& spec, int64_t head_dim, TensorType dst_type,
                    void* dst, ThreadPool& pool) {
  const int64_t row_len = spec.shape[0];
  const int64_t rows = element_count(spec.shape) / row_len;
  const int64_t part_rows = src.parts[0].rows();
  const size_t dst_stride = row_bytes(dst_type, row_len);
  const bool move_rows = src.permutation != HeadPermutation::None && !src.permute_elements;
  // The part and row within it that destination row r comes from.
  auto source_row = [&](int64_t r) -> std::pair<const TensorView*, int64_t> {
    if (move_rows) r = r / head_dim * head_dim + permuted_source(r % head_dim, head_dim, src.permutation);
    return {&src.parts[static_cast<size_t>(r / part_rows)], r % part_rows};
  };
  constexpr int64_t kRowsPerTask = 16;
  const int64_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()),
                                          std::vector<float>(static_cast<size_t>(row_len) * 2));
  auto convert_task = [&](int64_t task, int thread) {
    float* row = scratch[static_cast<size_t>(thread)].data();
    float* moved = row + row_len;
    const int64_t end = std::min(rows, (task + 1) * kRowsPerTask);
    for (int64_t r = task * kRowsPerTask; r < end; ++r) {
      const auto [part, part_row] = source_row(r);
      dequantize_row(part->type, part->row(part_row), row, row_len);
      const float* out = row;
      if (src.permute_elements && src.permutation != HeadPermutation::None) {
        for (int64_t i = 0; i < row_len; ++i) {
          moved[i] = row[i / head_dim * head_dim + permuted_source(i % head_dim, head_dim, src.permutation)];
        }
        out = moved;
      }
      quantize_row(dst_type, out, static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * dst_stride, row_len);
    }
  };
  // Small tensors are not worth waking the pool for.
  if (tasks == 1) {
    convert_task(0, 0);
  } else {
    pool.parallel_for(tasks, convert_task);
  }
}

}  // namespace

void write_gguf(const Model& model, const std::string& path, TensorType type, ThreadPool& pool,
                const ConvertOptions& options) {
  if (type == TensorType::Q8_K) fail("{}: q8_K is an activation type, not a weight type", path);
  type_traits(type);  // Error for an unsupported type
  ModelConfig c = model.config();
  const RopeOrder gguf_order = gguf_rope_order(c.arch);
  HeadPermutation qk_permutation = HeadPermutation::None;
  if (c.rope_order != gguf_order) {
    qk_permutation = gguf_order == RopeOrder::Normal ? HeadPermutation::NeoXToNormal : HeadPermutation::NormalToNeoX;
  }
  c.rope_order = gguf_order;

  GgufWriter writer;
  try {
    write_model_metadata(c, options.model_name.empty() ? std::string(arch_name(c.arch)) : options.model_name, writer);
    writer.set("general.file_type", GgufValue::u32(gguf_file_type(type)));
    writer.set("general.quantized_by", GgufValue::string("ruvdllm"));
    if (options.extra_metadata) options.extra_metadata(writer);

    std::unordered_map<std::string, const TensorView*> by_name;
    const std::vector<TensorView> file_tensors = model.all_tensors();
    for (const TensorView& t : file_tensors) by_name.emplace(t.name, &t);
    for (const TensorSpec& spec : model_tensor_specs(c)) {
      TensorSource source = find_source(model, spec, qk_permutation, by_name);
      const TensorType stored = storable_type(type, spec);
      if (stored != type && (spec.role == TensorRole::Matrix || spec.role == TensorRole::ResidualOutput) &&
          options.on_fallback) {
        options.on_fallback(spec.name, stored);
      }
      const bool same_bytes = source.parts.size() == 1 && source.parts[0].type == stored &&
                              source.permutation == HeadPermutation::None;
      if (same_bytes) {
        writer.add_tensor(spec.name, stored, spec.shape, source.parts[0].data, source.parts[0].nbytes);
        continue;
      }
      const int64_t head_dim = c.head_dim;
      writer.add_tensor_lazy(spec.name, stored, spec.shape,
                             [source = std::move(source), spec, head_dim, stored, &pool](void* dst) {
                               convert_source(source, spec, head_dim, stored, dst, pool);
                             });
    }
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  writer.write(path, options.progress);
}

uint32_t gguf_file_type(TensorType type) {
  switch (type) {
    case TensorType::F32: return 0;
    case TensorType::F16: return 1;
    case TensorType::Q4_0: return 2;
    case TensorType::Q8_0: return 7;
    case TensorType::Q4_K: return 15;  // Q4_K_M
    case TensorType::Q5_K: return 17;  // Q5_K_M
    case TensorType::Q6_K: return 18;
    case TensorType::BF16: return 32;
    case TensorType::Q8_K: break;
  }
  return 0;
}

}  // namespace ruvdllm
