// The GPU denoising step: weights uploaded once, each pass a fixed chain of kernels and bf16
// GEMMs over buffers sized for the largest pass so far, captured as a CUDA graph per shape.
#include "ruvdllm/cuda/infer_engine.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
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
// gate|up). Float parts and every part in WeightMode::Bf16 live in `dense`; quantized parts in
// WeightMode::Quantized keep their blocks and are dequantized into the shared scratch per use.
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
  bool all_dense() const { return quantized.empty(); }
};

struct DeviceLayer {
  DeviceArray<float> attn_norm, ffn_norm, qkv_bias, q_norm, k_norm;
  Linear qkv, wo, gate_up, down;
};

// Key of a captured pass: the graph's kernels depend on these and on the buffer addresses.
using PassKey = std::tuple<int64_t, int64_t, int, int64_t>;  // tokens, n_seq, mask, block_len

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
  DeviceArray<bf16> weight_scratch;  // one dequantized matrix (Quantized mode)
  size_t weight_bytes = 0;

  // Activations, sized for `capacity` tokens.
  int64_t capacity = 0;
  DeviceArray<int32_t> tokens;
  PinnedArray<int32_t> host_tokens;
  DeviceArray<float> x, qkv, gate_up, logits;
  DeviceArray<bf16> xn, shifted, q, k, v, att, h;

  // Last pass.
  int64_t n_tokens = 0, n_seq = 1;

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

  void upload_linear(Linear* lin, std::initializer_list<const TensorView*> parts);
  const bf16* weight_of(const Linear& lin);
  void reserve(int64_t n);
  void encode_pass(int64_t T, int64_t S, MaskMode mask, int64_t block_len);
};

void CudaInferEngine::Impl::upload_linear(Linear* lin, std::initializer_list<const TensorView*> parts) {
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
  const bool dense = options.weights == WeightMode::Bf16 ||
                     std::all_of(parts.begin(), parts.end(),
                                 [](const TensorView* t) { return is_float_type(t->type); });
  if (dense) lin->dense.reserve(static_cast<size_t>(lin->out * lin->in));
  int64_t row0 = 0;
  for (const TensorView* t : parts) {
    DeviceArray<uint8_t> blocks(t->nbytes);
    upload(blocks.data(), t->data, t->nbytes, stream);
    if (dense) {
      dequantize_to_bf16(lin->dense.data() + row0 * lin->in, blocks.data(), t->type, t->rows(),
                         lin->in, stream);
      check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    } else {
      lin->quantized.push_back({blocks.data(), t->type, row0, t->rows()});
      weight_bytes += t->nbytes;
      lin->owned.push_back(std::move(blocks));
    }
    row0 += t->rows();
  }
  if (dense) {
    weight_bytes += lin->dense.bytes();
  } else {
    weight_scratch.reserve(static_cast<size_t>(lin->out * lin->in));
  }
}

const bf16* CudaInferEngine::Impl::weight_of(const Linear& lin) {
  if (lin.all_dense()) return lin.dense.data();
  mark("dequantize");
  for (const Linear::Part& p : lin.quantized) {
    dequantize_to_bf16(weight_scratch.data() + p.row0 * lin.in, p.blocks, p.type, p.rows, lin.in,
                       stream);
  }
  return weight_scratch.data();
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
  x.reserve(T * E);
  xn.reserve(T * E);
  shifted.reserve(T * E);
  qkv.reserve(T * (qd + 2 * kvd));
  q.reserve(T * qd);
  k.reserve(T * kvd);
  v.reserve(T * kvd);
  att.reserve(T * qd);
  gate_up.reserve(T * 2 * F);
  h.reserve(T * F);
  logits.reserve(T * static_cast<size_t>(c.vocab_size));
  capacity = n;
}

// Every operation of one pass, enqueued on `stream` (eagerly or into a graph being captured).
void CudaInferEngine::Impl::encode_pass(int64_t T, int64_t S, MaskMode mask, int64_t block_len) {
  const ModelConfig& c = config;
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
  layout.kv_rows = L;
  layout.order = c.rope_order;
  layout.eps = c.rms_eps;
  FlashAttentionDims dims;
  dims.n_seq = S;
  dims.n_q = L;
  dims.n_kv = L;
  dims.n_head = H;
  dims.n_head_kv = Hkv;
  dims.head_dim = D;
  dims.scale = 1.0f / std::sqrt(static_cast<float>(D));
  dims.mask = mask;
  dims.block_len = block_len;

  for (DeviceLayer& lw : layers) {
    mark("rmsnorm");
    rmsnorm_to_bf16(xn.data(), x.data(), lw.attn_norm.data(), T, E, c.rms_eps, stream);
    const bf16* w_qkv = weight_of(lw.qkv);
    mark("gemm");
    gemm->linear(qkv.data(), xn.data(), w_qkv, T, E, n_qkv);
    mark("qkv split+rope");
    split_qkv_heads(q.data(), k.data(), v.data(), qkv.data(),
                    lw.qkv_bias.capacity() ? lw.qkv_bias.data() : nullptr,
                    lw.q_norm.capacity() ? lw.q_norm.data() : nullptr,
                    lw.k_norm.capacity() ? lw.k_norm.data() : nullptr, cos_sin.data(), layout,
                    stream);
    mark("attention");
    flash_attention(att.data(), q.data(), k.data(), v.data(), dims, stream);
    const bf16* w_o = weight_of(lw.wo);
    mark("gemm");
    gemm->linear(x.data(), att.data(), w_o, T, H * D, E, 1.0f);

    mark("rmsnorm");
    rmsnorm_to_bf16(xn.data(), x.data(), lw.ffn_norm.data(), T, E, c.rms_eps, stream);
    const bf16* w_gate_up = weight_of(lw.gate_up);
    mark("gemm");
    gemm->linear(gate_up.data(), xn.data(), w_gate_up, T, E, 2 * F);
    mark("swiglu");
    swiglu_to_bf16(h.data(), gate_up.data(), T, F, stream);
    const bf16* w_down = weight_of(lw.down);
    mark("gemm");
    gemm->linear(x.data(), h.data(), w_down, T, F, E, 1.0f);
  }

  mark("rmsnorm");
  rmsnorm_to_bf16(xn.data(), x.data(), output_norm.data(), T, E, c.rms_eps, stream);
  const bf16* head_in = xn.data();
  if (c.shift_logits) {
    // Row i scores position i from the hidden state of i − 1; each sequence's first row keeps
    // its own (Model::forward does the same).
    const size_t row = static_cast<size_t>(E) * sizeof(bf16);
    for (int64_t s = 0; s < S; ++s) {
      bf16* dst = shifted.data() + s * L * E;
      const bf16* src = xn.data() + s * L * E;
      check_cuda(cudaMemcpyAsync(dst, src, row, cudaMemcpyDeviceToDevice, stream),
                 "cudaMemcpyAsync");
      if (L > 1) {
        check_cuda(cudaMemcpyAsync(dst + E, src, static_cast<size_t>(L - 1) * row,
                                   cudaMemcpyDeviceToDevice, stream),
                   "cudaMemcpyAsync");
      }
    }
    head_in = shifted.data();
  }
  const bf16* w_head = weight_of(head);
  mark("gemm (head)");
  gemm->linear(logits.data(), head_in, w_head, T, E, c.vocab_size);
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
      if (t.data) dequantized += static_cast<size_t>(t.elements()) * sizeof(bf16);
    };
    for (const LayerWeights& lw : weights.layers) {
      for (const TensorView* t : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.ffn_gate, &lw.ffn_up,
                                  &lw.ffn_down}) {
        add(*t);
      }
    }
    add(weights.output);
    size_t free = 0, total = 0;
    check_cuda(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    m.options.weights = dequantized <= free / 2 ? WeightMode::Bf16 : WeightMode::Quantized;
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
    m.weight_scratch.reserve(static_cast<size_t>(E * config.vocab_size));
  } else {
    m.upload_linear(&m.head, {&weights.output});
  }

  const std::vector<float2> table = rope_table(config.context_length, D, config.rope_base);
  m.cos_sin.reserve(table.size());
  upload(m.cos_sin.data(), table.data(), table.size() * sizeof(float2), m.stream);
  check_cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize (weights upload)");
  m.weight_bytes += m.weight_scratch.bytes();
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
  return m.weight_bytes + m.tokens.bytes() + m.x.bytes() + m.xn.bytes() + m.shifted.bytes() +
         m.qkv.bytes() + m.q.bytes() + m.k.bytes() + m.v.bytes() + m.att.bytes() +
         m.gate_up.bytes() + m.h.bytes() + m.logits.bytes();
}

void CudaInferEngine::forward(std::span<const int32_t> tokens, const ForwardOptions& o) {
  Impl& m = *impl_;
  const ModelConfig& c = m.config;
  const auto T = static_cast<int64_t>(tokens.size());
  if (T == 0) fail("cuda forward: no tokens");
  if (o.cache) {
    fail("cuda forward: the CUDA backend has no KV cache yet (drop --cache-blocks or use "
         "--device cpu)");
  }
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
  m.reserve(T);
  std::copy(tokens.begin(), tokens.end(), m.host_tokens.data());
  const int64_t block_len = o.mask == MaskMode::BlockCausal ? o.block_len : 0;
  const PassKey key{T, o.n_seq, static_cast<int>(o.mask), block_len};

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
      m.encode_pass(T, o.n_seq, o.mask, block_len);
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
    m.encode_pass(T, o.n_seq, o.mask, block_len);
    ++m.seen[key];
  }
  check_cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize (forward pass)");
  m.n_tokens = T;
  m.n_seq = o.n_seq;
}

std::vector<std::pair<std::string, double>> CudaInferEngine::profile(
    std::span<const int32_t> tokens, const ForwardOptions& options) {
  Impl& m = *impl_;
  forward(tokens, options);  // validates and sizes the buffers
  m.profiling = true;
  const int64_t block_len = options.mask == MaskMode::BlockCausal ? options.block_len : 0;
  try {
    m.encode_pass(static_cast<int64_t>(tokens.size()), options.n_seq, options.mask, block_len);
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
  check_cuda(cudaMemcpy(host, m.logits.data(),
                        static_cast<size_t>(m.n_tokens * m.config.vocab_size) * sizeof(float),
                        cudaMemcpyDeviceToHost),
             "cudaMemcpy (logits)");
}

void CudaInferEngine::propose(std::span<const int64_t> positions, int64_t first_row,
                              const SamplingOptions& options, int64_t step,
                              std::vector<Proposal>* out) {
  Impl& m = *impl_;
  if (m.n_tokens == 0) fail("cuda: no forward pass has run yet");
  const int64_t rows_per_seq = m.n_tokens / m.n_seq;
  std::vector<int64_t> rows(positions.size());
  for (size_t i = 0; i < positions.size(); ++i) rows[i] = positions[i] - first_row;
  const float* uncond = m.n_seq == 2 && options.cfg_scale > 0
                            ? m.logits.data() + rows_per_seq * m.config.vocab_size
                            : nullptr;
  out->resize(positions.size());
  m.sampler->sample(m.logits.data(), uncond, rows_per_seq, rows, positions, options, step, *out);
}

CudaDenoiser::CudaDenoiser(const Model& model, const InferOptions& options)
    : engine_(model.config(), model.weights(), options), device_(options.device) {}

std::string CudaDenoiser::description() const {
  return "cuda:" + std::to_string(device_) + ", " + engine_.device_name();
}

}  // namespace ruvdllm::cuda
