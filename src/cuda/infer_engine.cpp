// The GPU denoising step: weights uploaded once, each pass a fixed chain of kernels and bf16
// GEMMs over buffers sized for the largest pass so far, captured as a CUDA graph per shape.
#include "ruvdllm/cuda/infer_engine.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/flash_attention.h"
#include "cuda/infer_gemm.h"
#include "cuda/infer_kernels.h"
#include "cuda/sampling.h"
#include "cuda/train_kernels.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::cuda {
namespace {

bool is_float_type(TensorType type) {
  return type == TensorType::F32 || type == TensorType::F16 || type == TensorType::BF16;
}

// Every upload goes through the engine's stream: a plain cudaMemcpy from pageable memory may
// return before its DMA lands, and the engine's non-blocking stream would not wait for it.
void upload(void* device, const void* host, size_t bytes, cudaStream_t stream) {
  check_cuda(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync (upload)");
}

// A small tensor (norm weight, bias) as f32 on the device.
DeviceArray<float> upload_vector(const TensorView& t, int64_t expected, cudaStream_t stream) {
  if (t.elements() != expected) {
    fail("{}: {} elements, expected {}", t.name, t.elements(), expected);
  }
  std::vector<float> host(static_cast<size_t>(expected));
  dequantize_row(t.type, t.data, host.data(), expected);
  DeviceArray<float> d(host.size());
  upload(d.data(), host.data(), host.size() * sizeof(float), stream);
  // `host` dies here; the copy must have left it.
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return d;
}

// One matrix product's weight, out × in, possibly several GGUF tensors stacked by rows (q|k|v,
// gate|up). Float parts and every part in WeightMode::Dense live dense in the operand type
// (bf16, or f32 in Precision::F32); quantized parts in WeightMode::Quantized keep their blocks
// and are dequantized into the shared scratch per use.
struct Linear {
  struct Part {
    const void* blocks = nullptr;  // device; owned by `owned` or another Linear
    TensorType type = TensorType::F32;
    int64_t row0 = 0, rows = 0;
  };
  int64_t out = 0, in = 0;
  std::vector<Part> quantized;
  std::vector<DeviceArray<uint8_t>> owned;
  DeviceArray<bf16> dense;  // out × in, when every part is dense
  DeviceArray<float> dense_f32;
  bool all_dense() const { return quantized.empty(); }
  template <typename Op>
  DeviceArray<Op>& dense_of() {
    if constexpr (std::is_same_v<Op, float>) {
      return dense_f32;
    } else {
      return dense;
    }
  }
};

// The buffers whose element type is the GEMMs' operand type: bf16, or f32 in Precision::F32.
template <typename Op>
struct Operands {
  using Element = Op;
  DeviceArray<Op> xn, shifted, qkv, q, k, v, att, gate_up, h;
  DeviceArray<Op> head_in;  // the rows the head runs for, when a pass asks for some only
  DeviceArray<Op> weight_scratch;  // one dequantized matrix (Quantized mode)
  // KV cache: keys and values of cached positions per layer, [n_head_kv][context][head_dim],
  // and the final-normed hidden state of the last cached position (Dream's shift).
  std::vector<DeviceArray<Op>> cache_k, cache_v;
  DeviceArray<Op> cache_last_hidden;
  size_t activation_bytes() const {
    size_t n = xn.bytes() + shifted.bytes() + qkv.bytes() + q.bytes() + k.bytes() + v.bytes() +
               att.bytes() + gate_up.bytes() + h.bytes() + head_in.bytes() +
               cache_last_hidden.bytes();
    for (const auto& c : cache_k) n += c.bytes();
    for (const auto& c : cache_v) n += c.bytes();
    return n;
  }
};

// The exact mode's attention in f32, the fast one on bf16 tensor cores.
void attend(bf16* out, const bf16* q, const bf16* k, const bf16* v, const FlashAttentionDims& d,
            cudaStream_t stream) {
  flash_attention(out, q, k, v, d, stream);
}
void attend(float* out, const float* q, const float* k, const float* v, const FlashAttentionDims& d,
            cudaStream_t stream) {
  exact_attention(out, q, k, v, d, stream);
}

struct DeviceLayer {
  DeviceArray<float> attn_norm, ffn_norm, qkv_bias, q_norm, k_norm;
  Linear qkv, wo, gate_up, down;
};

constexpr int64_t kHeadRowStep = 64;

// What one pass computes. A captured graph replays exactly this (and the buffer addresses).
struct PassShape {
  int64_t tokens = 0, n_seq = 1;
  MaskMode mask = MaskMode::Full;
  int64_t block_len = 0;
  // With the KV cache (n_seq = 1): the pass's tokens follow `past` cached ones, its keys and
  // values go to cache rows [past, past + tokens), and with `append` they stay there.
  bool use_cache = false, append = false;
  int64_t past = 0;
  // Logit rows per sequence when the head runs for listed rows only (ForwardOptions::
  // logit_rows, padded to a multiple of kHeadRowStep so few shapes get graphs), 0 for all.
  int64_t head_rows = 0;
  auto key() const {
    return std::tuple(tokens, n_seq, static_cast<int>(mask), block_len, use_cache, append, past,
                      head_rows);
  }
};
using PassKey = decltype(PassShape{}.key());

}  // namespace

struct CudaInferEngine::Impl {
  ModelConfig config;
  InferOptions options;
  std::string name;
  cudaStream_t stream = nullptr;
  std::unique_ptr<InferGemm> gemm;
  std::unique_ptr<CudaRowSampler> sampler;

  // Weights.
  DeviceArray<uint8_t> embd_blocks;
  TensorType embd_type = TensorType::F32;
  DeviceArray<float> output_norm;
  Linear head;
  std::vector<DeviceLayer> layers;
  DeviceArray<float2> cos_sin;
  // 0, 1, 2, …: f32 dequantization reads weight rows through embed_rows (bit-exact with the CPU).
  DeviceArray<int32_t> row_ids;
  size_t weight_bytes = 0;
  size_t scratch_elements = 0;  // of Operands::weight_scratch

  // Activations, sized for `capacity` tokens.
  int64_t capacity = 0;
  DeviceArray<int32_t> tokens;
  PinnedArray<int32_t> host_tokens;
  // Rows of the head's input (over all sequences) when a pass computes listed rows only, and
  // per position of the last pass its logit row (-1: none computed).
  DeviceArray<int32_t> head_ids;
  PinnedArray<int32_t> host_head_ids;
  std::vector<int32_t> logit_row_of;
  DeviceArray<float> x, partials, logits;
  Operands<bf16> half;
  Operands<float> full;
  bool exact() const { return options.precision == Precision::F32; }
  // Calls f with the operand buffers of the engine's precision (only those are ever sized).
  template <typename F>
  void with_operands(F&& f) {
    if (exact()) {
      f(full);
    } else {
      f(half);
    }
  }
  template <typename Op>
  Operands<Op>& ops() {
    if constexpr (std::is_same_v<Op, float>) {
      return full;
    } else {
      return half;
    }
  }

  // Last pass; head_rows as in PassShape (0: every row has logits).
  int64_t n_tokens = 0, n_seq = 1, head_rows = 0;

  // The device KV cache lives in Operands; the host KVCache only counts its tokens (n_tokens),
  // and carries `fill` (KVCache::device_fill) while it is the one being filled.
  uint64_t fill = 0;
  int64_t cached = 0;

  std::map<PassKey, cudaGraphExec_t> graphs;
  std::map<PassKey, int> seen;  // passes run eagerly so far per shape (the first warms up)

  ~Impl() {
    drop_graphs();
    if (stream) cudaStreamDestroy(stream);
  }
  void drop_graphs() {
    for (auto& [key, exec] : graphs) cudaGraphExecDestroy(exec);
    graphs.clear();
  }

  // Events between the pass's operations, when a profile is asked for (eager passes only).
  bool profiling = false;
  std::vector<std::pair<const char*, cudaEvent_t>> marks;
  void mark(const char* what) {
    if (!profiling) return;
    cudaEvent_t e = nullptr;
    check_cuda(cudaEventCreate(&e), "cudaEventCreate");
    check_cuda(cudaEventRecord(e, stream), "cudaEventRecord");
    marks.emplace_back(what, e);
  }

  // The last pass's logit rows of canvas positions (first sequence) and, under guidance on a
  // two-sequence pass, the unconditional rows (else null).
  const float* rows_of(std::span<const int64_t> positions, int64_t first_row,
                       const SamplingOptions& options, std::vector<int64_t>* rows) {
    if (n_tokens == 0) fail("cuda: no forward pass has run yet");
    rows->resize(positions.size());
    for (size_t i = 0; i < positions.size(); ++i) {
      const int64_t row = positions[i] - first_row;
      if (head_rows == 0) {
        (*rows)[i] = row;
        continue;
      }
      const int32_t logit_row =
          row >= 0 && row < static_cast<int64_t>(logit_row_of.size()) ? logit_row_of[row] : -1;
      if (logit_row < 0) {
        fail("cuda: position {} has no logits: the last pass computed its logit_rows only",
             positions[i]);
      }
      (*rows)[i] = logit_row;
    }
    return n_seq == 2 && options.cfg_scale > 0 ? logits.data() + logit_rows() * config.vocab_size
                                               : nullptr;
  }
  // Logit rows per sequence of the last pass.
  int64_t logit_rows() const { return head_rows > 0 ? head_rows : n_tokens / n_seq;
  }
  void upload_linear(Linear* lin, std::initializer_list<const TensorView*> parts);
  // rows × cols of `type` blocks to a dense operand matrix.
  void dequantize(bf16* out, const void* blocks, TensorType type, int64_t rows, int64_t cols);
  void dequantize(float* out, const void* blocks, TensorType type, int64_t rows, int64_t cols);
  template <typename Op>
  const Op* weight_of(Linear& lin);
  void reserve(int64_t n);
  void encode_pass(const PassShape& pass) {
    with_operands([&](auto& o) { encode<typename std::decay_t<decltype(o)>::Element>(pass); });
  }
  template <typename Op>
  void encode(const PassShape& pass);
  void prepare_cache(KVCache& cache, const ForwardOptions& o, int64_t T, PassShape* pass);
};

void CudaInferEngine::Impl::upload_linear(Linear* lin,
                                          std::initializer_list<const TensorView*> parts) {
  lin->in = (*parts.begin())->row_len();
  lin->out = 0;
  for (const TensorView* t : parts) {
    if (t->row_len() != lin->in || t->dims() != 2) {
      fail("{}: shape does not fit a {}-wide product", t->name, lin->in);
    }
    if (!dequantize_supported(t->type)) {
      fail("{}: tensor type {} is not supported on the CUDA backend", t->name,
           type_traits(t->type).name);
    }
    lin->out += t->rows();
  }
  const bool dense = options.weights == WeightMode::Dense ||
                     std::all_of(parts.begin(), parts.end(),
                                 [](const TensorView* t) { return is_float_type(t->type); });
  const auto elements = static_cast<size_t>(lin->out * lin->in);
  // The dense matrix in the engine's operand type.
  auto dense_matrix = [&](auto& o) -> auto& {
    return lin->dense_of<typename std::decay_t<decltype(o)>::Element>();
  };
  if (dense) with_operands([&](auto& o) { dense_matrix(o).reserve(elements); });
  int64_t row0 = 0;
  for (const TensorView* t : parts) {
    DeviceArray<uint8_t> blocks(t->nbytes);
    upload(blocks.data(), t->data, t->nbytes, stream);
    if (dense) {
      with_operands([&](auto& o) {
        dequantize(dense_matrix(o).data() + row0 * lin->in, blocks.data(), t->type, t->rows(),
                   lin->in);
      });
      check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    } else {
      lin->quantized.push_back({blocks.data(), t->type, row0, t->rows()});
      weight_bytes += t->nbytes;
      lin->owned.push_back(std::move(blocks));
    }
    row0 += t->rows();
  }
  if (dense) {
    weight_bytes += lin->dense.bytes() + lin->dense_f32.bytes();
  } else {
    scratch_elements = std::max(scratch_elements, elements);
  }
}

void CudaInferEngine::Impl::dequantize(bf16* out, const void* blocks, TensorType type, int64_t rows,
                                       int64_t cols) {
  dequantize_to_bf16(out, blocks, type, rows, cols, stream);
}

void CudaInferEngine::Impl::dequantize(float* out, const void* blocks, TensorType type,
                                       int64_t rows, int64_t cols) {
  if (static_cast<int64_t>(row_ids.capacity()) < rows) {
    std::vector<int32_t> ids(static_cast<size_t>(rows));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // old ids in use
    row_ids = DeviceArray<int32_t>(ids.size());
    upload(row_ids.data(), ids.data(), ids.size() * sizeof(int32_t), stream);
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // `ids` dies here
  }
  embed_rows(out, blocks, type, row_ids.data(), rows, cols, stream);
}

// Checks that `cache` is the one this engine has been filling (or an empty one, which starts
// over), allocates the device cache on first use, and sets the pass's cache fields.
void CudaInferEngine::Impl::prepare_cache(KVCache& cache, const ForwardOptions& o, int64_t T,
                                          PassShape* pass) {
  // Fills are numbered across all engines, so a cache stamped by another engine never matches.
  static std::atomic<uint64_t> fills{0};
  const ModelConfig& c = config;
  if (o.n_seq != 1) fail("cuda forward: a KV cache needs n_seq == 1 (is {})", o.n_seq);
  if (cache.n_tokens == 0) {
    fill = ++fills;
    cache.device_fill = fill;
    cached = 0;
  } else if (cache.device_fill == 0 || cache.device_fill != fill || cache.n_tokens != cached) {
    fail(
        "cuda forward: this KV cache of {} tokens was not filled by this GPU engine; start "
        "from an empty cache",
        cache.n_tokens);
  }
  if (cached + T > c.context_length) {
    fail("cuda forward: {} cached + {} new positions exceed the model's context of {}", cached, T,
         c.context_length);
  }
  auto allocate = [&](auto& o) {
    if (!o.cache_k.empty()) return;
    const auto per_layer = static_cast<size_t>(c.n_head_kv * c.context_length * c.head_dim);
    for (int64_t il = 0; il < c.n_layer; ++il) {
      o.cache_k.emplace_back(per_layer);
      o.cache_v.emplace_back(per_layer);
    }
    o.cache_last_hidden.reserve(static_cast<size_t>(c.n_embd));
  };
  with_operands(allocate);
  pass->use_cache = true;
  pass->append = o.append_to_cache;
  pass->past = cached;
}

template <typename Op>
const Op* CudaInferEngine::Impl::weight_of(Linear& lin) {
  if (lin.all_dense()) return lin.dense_of<Op>().data();
  mark("dequantize");
  Op* scratch = ops<Op>().weight_scratch.data();
  for (const Linear::Part& p : lin.quantized) {
    dequantize(scratch + p.row0 * lin.in, p.blocks, p.type, p.rows, lin.in);
  }
  return scratch;
}

void CudaInferEngine::Impl::reserve(int64_t n) {
  if (n <= capacity) return;
  const ModelConfig& c = config;
  const auto T = static_cast<size_t>(n);
  const auto E = static_cast<size_t>(c.n_embd), F = static_cast<size_t>(c.n_ff);
  const auto qd = static_cast<size_t>(c.n_head * c.head_dim);
  const auto kvd = static_cast<size_t>(c.n_head_kv * c.head_dim);
  drop_graphs();  // they point at the buffers about to move
  tokens.reserve(T);
  host_tokens.reserve(T);
  head_ids.reserve(T);
  host_head_ids.reserve(T);
  x.reserve(T * E);
  partials.reserve(T * E * InferGemm::kMaxSplits);
  logits.reserve(T * static_cast<size_t>(c.vocab_size));
  auto size = [&](auto& o) {
    o.xn.reserve(T * E);
    o.shifted.reserve(T * E);
    o.qkv.reserve(T * (qd + 2 * kvd));
    o.q.reserve(T * qd);
    o.k.reserve(T * kvd);
    o.v.reserve(T * kvd);
    o.att.reserve(T * qd);
    o.gate_up.reserve(T * 2 * F);
    o.h.reserve(T * F);
    o.head_in.reserve(T * E);
  };
  with_operands(size);
  capacity = n;
}

// Every operation of one pass, enqueued on `stream` (eagerly or into a graph being captured).
template <typename Op>
void CudaInferEngine::Impl::encode(const PassShape& pass) {
  Operands<Op>& o = ops<Op>();
  const ModelConfig& c = config;
  const int64_t T = pass.tokens, S = pass.n_seq, past = pass.past;
  const int64_t ctx = c.context_length;
  const int64_t L = T / S, E = c.n_embd, F = c.n_ff, D = c.head_dim;
  const int64_t H = c.n_head, Hkv = c.n_head_kv;
  const int64_t n_qkv = (H + 2 * Hkv) * D;
  check_cuda(cudaMemcpyAsync(tokens.data(), host_tokens.data(), static_cast<size_t>(T) * 4,
                             cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync");
  mark("embed");
  embed_rows(x.data(), embd_blocks.data(), embd_type, tokens.data(), T, E, stream);

  QkvLayout layout;
  layout.n_seq = S;
  layout.seq_len = L;
  layout.n_head = H;
  layout.n_head_kv = Hkv;
  layout.head_dim = D;
  layout.kv_rows = pass.use_cache ? ctx : L;
  layout.kv_row0 = past;
  layout.pos0 = past;
  layout.order = c.rope_order;
  layout.eps = c.rms_eps;
  FlashAttentionDims dims;
  dims.n_seq = S;
  dims.n_q = L;
  dims.n_kv = past + L;
  dims.q_pos0 = past;
  dims.kv_rows = pass.use_cache ? ctx : 0;
  dims.n_head = H;
  dims.n_head_kv = Hkv;
  dims.head_dim = D;
  dims.scale = 1.0f / std::sqrt(static_cast<float>(D));
  dims.mask = pass.mask;
  dims.block_len = pass.block_len;

  // Products into the residual stream (attention output, FFN down) either add into x directly
  // or, split along K, leave partials that the next RMSNorm adds in first.
  const int o_splits = gemm->split_for(T, H * D, E), down_splits = gemm->split_for(T, F, E);
  auto into_residual = [&](const Op* in, const Op* w, int64_t width, int splits) {
    if (splits > 1) {
      gemm->linear_split(partials.data(), in, w, T, width, E, splits);
    } else {
      gemm->linear(x.data(), in, w, T, width, E, 1.0f);
    }
    return splits > 1 ? splits : 0;
  };
  int pending = 0;  // partials waiting for the next norm
  auto norm = [&](const float* weight) {
    mark("rmsnorm");
    residual_rmsnorm_rows(o.xn.data(), x.data(), partials.data(), pending, weight, T, E, c.rms_eps,
                          stream);
    pending = 0;
  };

  for (size_t il = 0; il < layers.size(); ++il) {
    DeviceLayer& lw = layers[il];
    Op* k_dst = pass.use_cache ? o.cache_k[il].data() : o.k.data();
    Op* v_dst = pass.use_cache ? o.cache_v[il].data() : o.v.data();
    norm(lw.attn_norm.data());
    const Op* w_qkv = weight_of<Op>(lw.qkv);
    mark("gemm");
    gemm->linear(o.qkv.data(), o.xn.data(), w_qkv, T, E, n_qkv);
    mark("qkv split+rope");
    split_qkv_heads(o.q.data(), k_dst, v_dst, o.qkv.data(),
                    lw.qkv_bias.capacity() ? lw.qkv_bias.data() : nullptr,
                    lw.q_norm.capacity() ? lw.q_norm.data() : nullptr,
                    lw.k_norm.capacity() ? lw.k_norm.data() : nullptr, cos_sin.data(), layout,
                    stream);
    mark("attention");
    attend(o.att.data(), o.q.data(), k_dst, v_dst, dims, stream);
    const Op* w_o = weight_of<Op>(lw.wo);
    mark("gemm");
    pending = into_residual(o.att.data(), w_o, H * D, o_splits);

    norm(lw.ffn_norm.data());
    const Op* w_gate_up = weight_of<Op>(lw.gate_up);
    mark("gemm");
    gemm->linear(o.gate_up.data(), o.xn.data(), w_gate_up, T, E, 2 * F);
    mark("swiglu");
    swiglu_rows(o.h.data(), o.gate_up.data(), T, F, stream);
    const Op* w_down = weight_of<Op>(lw.down);
    mark("gemm");
    pending = into_residual(o.h.data(), w_down, F, down_splits);
  }

  norm(output_norm.data());
  const Op* head_in = o.xn.data();
  const size_t row = static_cast<size_t>(E) * sizeof(Op);
  if (c.shift_logits) {
    // Row i scores position i from the hidden state of i − 1; each sequence's first row keeps
    // its own, or after a cache takes the last cached position's (as Model::forward does).
    for (int64_t s = 0; s < S; ++s) {
      Op* dst = o.shifted.data() + s * L * E;
      const Op* src = o.xn.data() + s * L * E;
      const Op* first = pass.use_cache && past > 0 ? o.cache_last_hidden.data() : src;
      check_cuda(cudaMemcpyAsync(dst, first, row, cudaMemcpyDeviceToDevice, stream),
                 "cudaMemcpyAsync");
      if (L > 1) {
        check_cuda(cudaMemcpyAsync(dst + E, src, static_cast<size_t>(L - 1) * row,
                                   cudaMemcpyDeviceToDevice, stream),
                   "cudaMemcpyAsync");
      }
    }
    head_in = o.shifted.data();
  }
  if (pass.append) {
    check_cuda(cudaMemcpyAsync(o.cache_last_hidden.data(), o.xn.data() + (T - 1) * E, row,
                               cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync");
  }
  int64_t head_in_rows = T;
  if (pass.head_rows > 0) {
    head_in_rows = S * pass.head_rows;
    check_cuda(cudaMemcpyAsync(head_ids.data(), host_head_ids.data(),
                               static_cast<size_t>(head_in_rows) * 4, cudaMemcpyHostToDevice,
                               stream),
               "cudaMemcpyAsync");
    mark("gather (head rows)");
    gather_rows(o.head_in.data(), head_in, head_ids.data(), head_in_rows, E, stream);
    head_in = o.head_in.data();
  }
  const Op* w_head = weight_of<Op>(head);
  mark("gemm (head)");
  gemm->linear(logits.data(), head_in, w_head, head_in_rows, E, c.vocab_size);
  mark("end");
}

CudaInferEngine::CudaInferEngine(const ModelConfig& config, const ModelWeights& weights,
                                 const InferOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = config;
  m.options = options;
  if (config.is_moe()) {
    fail("the CUDA backend does not run mixture-of-experts models yet ({}); use --device cpu",
         arch_name(config.arch));
  }
  if (config.head_dim % 16 != 0 || config.head_dim > 256) {
    fail("the CUDA backend needs a head size that is a multiple of 16 up to 256, got {}",
         config.head_dim);
  }
  std::string why;
  if (!cuda_available(&why)) fail("device 'cuda:{}': {}", options.device, why);
  if (options.device < 0 || options.device >= device_count()) {
    fail("device 'cuda:{}': this machine has {} CUDA device(s)", options.device, device_count());
  }
  check_cuda(cudaSetDevice(options.device), "cudaSetDevice");
  m.name = cuda::device_name(options.device);
  if (options.weights == WeightMode::Auto) {
    size_t dequantized = 0;
    auto add = [&](const TensorView& t) {
      if (t.data) {
        dequantized += static_cast<size_t>(t.elements()) *
                       (options.precision == Precision::F32 ? sizeof(float) : sizeof(bf16));
      }
    };
    for (const LayerWeights& lw : weights.layers) {
      for (const TensorView* t :
           {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.ffn_gate, &lw.ffn_up, &lw.ffn_down}) {
        add(*t);
      }
    }
    add(weights.output);
    size_t free = 0, total = 0;
    check_cuda(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    m.options.weights = dequantized <= free / 2 ? WeightMode::Dense : WeightMode::Quantized;
  }
  check_cuda(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  m.gemm = std::make_unique<InferGemm>(m.stream);
  m.sampler = std::make_unique<CudaRowSampler>(config.vocab_size, m.stream);

  const int64_t E = config.n_embd, D = config.head_dim;
  const TensorView& embd = weights.token_embd;
  if (!dequantize_supported(embd.type)) {
    fail("{}: tensor type {} is not supported on the CUDA backend", embd.name,
         type_traits(embd.type).name);
  }
  m.embd_type = embd.type;
  m.embd_blocks.reserve(embd.nbytes);
  upload(m.embd_blocks.data(), embd.data, embd.nbytes, m.stream);
  m.weight_bytes += embd.nbytes;
  m.output_norm = upload_vector(weights.output_norm, E, m.stream);

  for (const LayerWeights& lw : weights.layers) {
    DeviceLayer d;
    d.attn_norm = upload_vector(lw.attn_norm, E, m.stream);
    d.ffn_norm = upload_vector(lw.ffn_norm, E, m.stream);
    m.upload_linear(&d.qkv, {&lw.wq, &lw.wk, &lw.wv});
    m.upload_linear(&d.wo, {&lw.wo});
    m.upload_linear(&d.gate_up, {&lw.ffn_gate, &lw.ffn_up});
    m.upload_linear(&d.down, {&lw.ffn_down});
    if (lw.bq.data) {
      const int64_t qd = config.n_head * D, kvd = config.n_head_kv * D;
      std::vector<float> bias(static_cast<size_t>(qd + 2 * kvd));
      dequantize_row(lw.bq.type, lw.bq.data, bias.data(), qd);
      dequantize_row(lw.bk.type, lw.bk.data, bias.data() + qd, kvd);
      dequantize_row(lw.bv.type, lw.bv.data, bias.data() + qd + kvd, kvd);
      d.qkv_bias.reserve(bias.size());
      upload(d.qkv_bias.data(), bias.data(), bias.size() * sizeof(float), m.stream);
      check_cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
    }
    if (config.qk_norm) {
      d.q_norm = upload_vector(lw.q_norm, D, m.stream);
      d.k_norm = upload_vector(lw.k_norm, D, m.stream);
    }
    m.layers.push_back(std::move(d));
  }
  if (weights.output.data == embd.data && !is_float_type(embd.type) &&
      m.options.weights == WeightMode::Quantized) {
    // Tied head: the product dequantizes the embedding's own blocks.
    m.head.in = E;
    m.head.out = config.vocab_size;
    m.head.quantized.push_back({m.embd_blocks.data(), embd.type, 0, config.vocab_size});
    m.scratch_elements = std::max(m.scratch_elements, static_cast<size_t>(E * config.vocab_size));
  } else {
    m.upload_linear(&m.head, {&weights.output});
  }

  const std::vector<float2> table = rope_table(config.context_length, D, config.rope_base);
  m.cos_sin.reserve(table.size());
  upload(m.cos_sin.data(), table.data(), table.size() * sizeof(float2), m.stream);
  check_cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize (weights upload)");
  m.with_operands([&](auto& o) {
    o.weight_scratch.reserve(m.scratch_elements);
    m.weight_bytes += o.weight_scratch.bytes();
  });
}

CudaInferEngine::~CudaInferEngine() = default;

const ModelConfig& CudaInferEngine::config() const { return impl_->config; }
std::string CudaInferEngine::device_name() const { return impl_->name; }
size_t CudaInferEngine::weight_bytes() const { return impl_->weight_bytes; }
WeightMode CudaInferEngine::weight_mode() const { return impl_->options.weights; }
int64_t CudaInferEngine::graphs_captured() const {
  return static_cast<int64_t>(impl_->graphs.size());
}

size_t CudaInferEngine::device_bytes() const {
  const Impl& m = *impl_;
  return m.weight_bytes + m.tokens.bytes() + m.x.bytes() + m.partials.bytes() + m.logits.bytes() +
         m.half.activation_bytes() + m.full.activation_bytes();
}

void CudaInferEngine::forward(std::span<const int32_t> tokens, const ForwardOptions& o) {
  Impl& m = *impl_;
  const ModelConfig& c = m.config;
  const auto T = static_cast<int64_t>(tokens.size());
  if (T == 0) fail("cuda forward: no tokens");
  if (o.n_seq < 1 || T % o.n_seq != 0) {
    fail("cuda forward: {} tokens do not split into {} sequences of equal length", T, o.n_seq);
  }
  if (o.mask == MaskMode::BlockCausal && o.block_len <= 0) {
    fail("cuda forward: block-causal attention needs block_len > 0 (is {})", o.block_len);
  }
  if (T / o.n_seq > c.context_length) {
    fail("cuda forward: {} positions exceed the model's context of {}", T / o.n_seq,
         c.context_length);
  }
  for (int64_t i = 0; i < T; ++i) {
    const int32_t id = tokens[static_cast<size_t>(i)];
    if (id < 0 || id >= c.vocab_size) {
      fail("cuda forward: token id {} at index {} is outside the vocabulary of {}", id, i,
           c.vocab_size);
    }
  }
  check_cuda(cudaSetDevice(m.options.device), "cudaSetDevice");
  PassShape pass;
  pass.tokens = T;
  pass.n_seq = o.n_seq;
  pass.mask = o.mask;
  pass.block_len = o.mask == MaskMode::BlockCausal ? o.block_len : 0;
  if (o.cache) m.prepare_cache(*o.cache, o, T, &pass);
  m.reserve(T);
  std::copy(tokens.begin(), tokens.end(), m.host_tokens.data());
  const int64_t L = T / o.n_seq;
  std::vector<int32_t> row_of;  // becomes logit_row_of once the pass has run
  if (o.logit_rows && static_cast<int64_t>(o.logit_rows->size()) < L) {
    // The head (126k outputs per row at the 8B shape) runs for the listed rows only. Rows are
    // padded with the last one up to a multiple of kHeadRowStep, so a generation's passes
    // share a few captured graphs instead of one per count.
    const std::span<const int64_t> listed = *o.logit_rows;
    row_of.assign(static_cast<size_t>(L), -1);
    for (size_t i = 0; i < listed.size(); ++i) {
      const int64_t row = listed[i];
      if (row < 0 || row >= L) {
        fail("cuda forward: logit row {} is outside the pass's {} positions", row, L);
      }
      row_of[static_cast<size_t>(row)] = static_cast<int32_t>(i);
    }
    const auto count = static_cast<int64_t>(listed.size());
    pass.head_rows = std::max<int64_t>(1, (count + kHeadRowStep - 1) / kHeadRowStep * kHeadRowStep);
    if (pass.head_rows >= L) pass.head_rows = 0;  // padded to every row: the plain head
    for (int64_t s = 0; s < o.n_seq; ++s) {
      for (int64_t i = 0; i < pass.head_rows; ++i) {
        const int64_t row = listed.empty() ? 0
                                           : listed[static_cast<size_t>(
                                                 std::min<int64_t>(i, listed.size() - 1))];
        m.host_head_ids.data()[s * pass.head_rows + i] =
            static_cast<int32_t>(s * L + row);
      }
    }
  }
  const PassKey key = pass.key();

  auto it = m.graphs.find(key);
  if (it != m.graphs.end()) {
    check_cuda(cudaGraphLaunch(it->second, m.stream), "cudaGraphLaunch");
  } else if (m.options.cuda_graph && m.seen[key] > 0) {
    // Second pass of this shape: every kernel has been loaded and cuBLAS has chosen its
    // algorithms, so the pass can be captured once and replayed from now on.
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture");
    try {
      m.encode_pass(pass);
    } catch (...) {
      cudaStreamEndCapture(m.stream, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    check_cuda(cudaStreamEndCapture(m.stream, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check_cuda(status, "cudaGraphInstantiate");
    m.graphs[key] = exec;
    check_cuda(cudaGraphLaunch(exec, m.stream), "cudaGraphLaunch");
  } else {
    m.encode_pass(pass);
    ++m.seen[key];
  }
  check_cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize (forward pass)");
  m.n_tokens = T;
  m.n_seq = o.n_seq;
  m.head_rows = pass.head_rows;
  m.logit_row_of = std::move(row_of);
  if (pass.append) {
    m.cached = pass.past + T;
    o.cache->n_tokens = m.cached;
  }
}

std::vector<std::pair<std::string, double>> CudaInferEngine::profile(
    std::span<const int32_t> tokens, const ForwardOptions& options) {
  Impl& m = *impl_;
  if (options.cache) fail("cuda profile: profiles passes without a KV cache only");
  forward(tokens, options);  // validates and sizes the buffers
  m.profiling = true;
  PassShape pass;
  pass.tokens = static_cast<int64_t>(tokens.size());
  pass.n_seq = options.n_seq;
  pass.mask = options.mask;
  pass.block_len = options.mask == MaskMode::BlockCausal ? options.block_len : 0;
  try {
    m.encode_pass(pass);
    check_cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize (profiled pass)");
  } catch (...) {
    m.profiling = false;
    for (auto& [what, e] : m.marks) cudaEventDestroy(e);
    m.marks.clear();
    throw;
  }
  m.profiling = false;
  std::vector<std::pair<std::string, double>> totals;
  for (size_t i = 0; i + 1 < m.marks.size(); ++i) {
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, m.marks[i].second, m.marks[i + 1].second),
               "cudaEventElapsedTime");
    auto it = std::find_if(totals.begin(), totals.end(),
                           [&](const auto& t) { return t.first == m.marks[i].first; });
    if (it == totals.end()) {
      totals.emplace_back(m.marks[i].first, ms);
    } else {
      it->second += ms;
    }
  }
  for (auto& [what, e] : m.marks) cudaEventDestroy(e);
  m.marks.clear();
  return totals;
}

void CudaInferEngine::copy_logits(float* host) const {
  const Impl& m = *impl_;
  if (m.n_tokens == 0) fail("cuda: no forward pass has run yet");
  const auto V = static_cast<size_t>(m.config.vocab_size);
  if (m.head_rows == 0) {
    check_cuda(cudaMemcpy(host, m.logits.data(), static_cast<size_t>(m.n_tokens) * V * sizeof(float),
                          cudaMemcpyDeviceToHost),
               "cudaMemcpy (logits)");
    return;
  }
  std::vector<float> computed(static_cast<size_t>(m.n_seq * m.head_rows) * V);
  check_cuda(cudaMemcpy(computed.data(), m.logits.data(), computed.size() * sizeof(float),
                        cudaMemcpyDeviceToHost),
             "cudaMemcpy (logits)");
  const int64_t L = m.n_tokens / m.n_seq;
  std::fill(host, host + static_cast<size_t>(m.n_tokens) * V, std::nanf(""));
  for (int64_t s = 0; s < m.n_seq; ++s) {
    for (int64_t p = 0; p < L; ++p) {
      const int32_t row = m.logit_row_of[static_cast<size_t>(p)];
      if (row < 0) continue;
      std::copy_n(computed.data() + static_cast<size_t>(s * m.head_rows + row) * V, V,
                  host + static_cast<size_t>(s * L + p) * V);
    }
  }
}

void CudaInferEngine::propose(std::span<const int64_t> positions, int64_t first_row,
                              const SamplingOptions& options, int64_t step,
                              std::vector<Proposal>* out) {
  Impl& m = *impl_;
  std::vector<int64_t> rows;
  const float* uncond = m.rows_of(positions, first_row, options, &rows);
  out->resize(positions.size());
  m.sampler->sample(m.logits.data(), uncond, m.logit_rows(), rows, positions, options, step,
                    *out);
}

bool CudaInferEngine::propose_top(std::span<const int64_t> candidates, int64_t first_row,
                                  const SamplingOptions& options, int64_t step, int64_t count,
                                  std::vector<Proposal>* out) {
  if (options.rule == Unmasking::Origin || options.rule == Unmasking::Random) return false;
  Impl& m = *impl_;
  std::vector<int64_t> rows;
  const float* uncond = m.rows_of(candidates, first_row, options, &rows);
  m.sampler->sample_top(m.logits.data(), uncond, m.logit_rows(), rows, candidates, options,
                        step, count, out);
  return true;
}

void CudaInferEngine::warm_up() {
  const auto n = static_cast<size_t>(std::min<int64_t>(256, impl_->config.context_length));
  forward(std::vector<int32_t>(n, 0), ForwardOptions{});
  impl_->n_tokens = 0;
}

CudaDenoiser::CudaDenoiser(const Model& model, const InferOptions& options)
    : engine_(model.config(), model.weights(), options), device_(options.device) {
  engine_.warm_up();
}

std::string CudaDenoiser::description() const {
  return "cuda:" + std::to_string(device_) + ", " + engine_.device_name();
}

}  // namespace ruvdllm::cuda
