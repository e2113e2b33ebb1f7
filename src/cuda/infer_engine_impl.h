#pragma once
// The state of the GPU denoising engine (CudaInferEngine::Impl) and the types it is made of,
// shared by infer_engine.cpp (passes, products, logits) and infer_engine_load.cpp (uploading a
// model's weights). Private to those two files.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/infer_gemm.h"
#include "cuda/infer_kernels.h"
#include "cuda/quant_gemm.h"
#include "cuda/sampling.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/cuda/infer_engine.h"

namespace ruvdllm::cuda {
namespace infer_detail {

// One matrix product's weight, out × in, possibly several GGUF tensors stacked by rows (q|k|v,
// gate|up). Float parts and every part in WeightMode::Dense live dense in the operand type
// (bf16, or f32 in Precision::F32); quantized parts in WeightMode::Quantized keep their blocks,
// which a product either decodes inside QuantGemm or first dequantizes into the shared scratch.
struct Linear {
  struct Part {
    const void* blocks = nullptr;  // device; owned by `owned` or another Linear
    TensorType type = TensorType::F32;
    int64_t row0 = 0, rows = 0;
  };
  int64_t out = 0, in = 0;
  // gate|up kept in blocks as one matrix with its rows interleaved in groups of 8
  // (swiglu.cuh), so that WgmmaGemm can apply SwiGLU to its tiles (linear_blocks_swiglu);
  // every other way multiplies it as it is and swiglu_rows reads it interleaved.
  bool swiglu_interleaved = false;
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
  DeviceArray<Op> head_in;         // the rows the head runs for, when a pass asks for some only
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

struct DeviceLayer {
  DeviceArray<float> attn_norm, ffn_norm, qkv_bias, q_norm, k_norm;
  Linear qkv, wo, gate_up, down;
};

// What one pass computes. A captured graph replays exactly this (and the buffer addresses).
struct PassShape {
  int64_t tokens = 0, n_seq = 1;
  MaskMode mask = MaskMode::Full;
  int64_t block_len = 0;
  // With the KV cache (n_seq = 1): the pass's tokens follow `past` cached ones, its keys and
  // values go to cache rows [past, past + tokens), and those of the first `kept` rows stay
  // there (ForwardOptions::append_to_cache: all, extend_rows: that many). With 0 < kept <
  // tokens, the kept rows attend to the cache and each other only. `past` reaches the kernels
  // through device memory (Impl::past_on_device), so a graph depends only on whether it is 0
  // (Dream's shift takes the cached last hidden state after a non-empty cache).
  bool use_cache = false;
  int64_t kept = 0;
  int64_t past = 0;
  // Logit rows per sequence when the head runs for listed rows only (ForwardOptions::
  // logit_rows, padded to a multiple of kHeadRowStep so few shapes get graphs), 0 for all.
  int64_t head_rows = 0;
  auto key() const {
    return std::tuple(tokens, n_seq, static_cast<int>(mask), block_len, use_cache, kept, past > 0,
                      head_rows);
  }
};
using PassKey = decltype(PassShape{}.key());

// Which passes are captured as graphs once their shape has run eagerly: every one (the
// default), those without a KV cache, or none (RUVDLLM_CUDA_GRAPHS=all|uncached|off, for
// measuring). A cached pass reads the cache's length from device memory, so its graph replays
// in every block; while the length was part of the shape, a graph replayed only within one
// block, and a capture (3 ms at the 8B shape on an H200) cost more than the replays saved
// (0.17 ms each against eager launches; docs/PERFORMANCE.md). Graphs are kept for the
// kMaxGraphs shapes used last (a server sees a canvas length per request), so their number
// stays bounded however many shapes a process runs.
enum class GraphPolicy { All, Uncached, Off };

}  // namespace infer_detail

using infer_detail::DeviceLayer;
using infer_detail::GraphPolicy;
using infer_detail::Linear;
using infer_detail::Operands;
using infer_detail::PassKey;
using infer_detail::PassShape;

struct CudaInferEngine::Impl {
  ModelConfig config;
  InferOptions options;
  std::string name;
  cudaStream_t stream = nullptr;
  std::unique_ptr<InferGemm> gemm;
  std::unique_ptr<QuantGemm> quant_gemm;  // in WeightMode::Quantized with bf16 operands only
  // Quantized weights multiply through QuantGemm up to this many rows, through WgmmaGemm's
  // decoding tiles or a dequantized copy and cuBLAS above; -1: as measured per type
  // (fused_rows_measured); 0: always the dequantized copy.
  int64_t fused_rows = -1;
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
  // Values between the rows of the normed hidden states (Operands::xn, shifted, head_in): the
  // width plus RUVDLLM_CUDA_ROW_PAD (default 0), an experiment knob. WgmmaGemm's copies of x's
  // tiles at 32 rows run 15% slower in some processes than in others (an 8B Q4_K 32-position
  // pass: 6.9 or 8.0 ms, same build, card and command, decided by where the buffers' pages
  // fall); padding the rows changes which layouts are slow but measured no pad that is fast in
  // all of them (docs/PERFORMANCE.md), so rows stay packed by default.
  int64_t hidden_pitch = 0;
  DeviceArray<int32_t> tokens;
  PinnedArray<int32_t> host_tokens;
  // The KV cache's length before the pass, copied to the device at its start: the kernels add
  // it to positions and key counts when they run, so one captured graph serves every length.
  DeviceArray<int32_t> past_on_device;
  PinnedArray<int32_t> past_on_host;
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

  GraphPolicy graph_policy = GraphPolicy::All;
  bool trace = false;  // RUVDLLM_CUDA_TRACE: one line per pass on stderr (shape, way, host ms)
  // RUVDLLM_CUDA_SWIGLU=epilogue|kernel: SwiGLU in WgmmaGemm's gate|up tiles where the product
  // runs there (the default), or always the element-wise kernel (to compare the two).
  bool swiglu_epilogue = true;
  static constexpr size_t kMaxGraphs = 16;
  struct CapturedPass {
    cudaGraphExec_t exec = nullptr;
    uint64_t last_use = 0;
  };
  std::map<PassKey, CapturedPass> graphs;
  uint64_t passes_run = 0;
  // Passes run eagerly so far per shape (the first warms up); forgotten past kMaxGraphs × 64
  // shapes, after which a shape runs eagerly twice again before it is captured.
  std::map<PassKey, int> seen;
  // Adds a graph, first destroying the least recently replayed one when kMaxGraphs are kept.
  void keep_graph(const PassKey& key, cudaGraphExec_t exec) {
    if (graphs.size() >= kMaxGraphs) {
      auto oldest = std::min_element(
          graphs.begin(), graphs.end(),
          [](const auto& a, const auto& b) { return a.second.last_use < b.second.last_use; });
      cudaGraphExecDestroy(oldest->second.exec);
      graphs.erase(oldest);
    }
    graphs[key] = CapturedPass{exec, passes_run};
  }
  void count_eager_pass(const PassKey& key) {
    if (seen.size() >= kMaxGraphs * 64) seen.clear();
    ++seen[key];
  }

  ~Impl() {
    drop_graphs();
    if (stream) cudaStreamDestroy(stream);
  }
  void drop_graphs() {
    for (auto& [key, graph] : graphs) cudaGraphExecDestroy(graph.exec);
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
  int64_t logit_rows() const { return head_rows > 0 ? head_rows : n_tokens / n_seq; }
  // gate_up: parts are {gate, up}; kept in blocks of one type, their rows are interleaved.
  void upload_linear(Linear* lin, std::initializer_list<const TensorView*> parts,
                     bool gate_up = false);
  // rows × cols of `type` blocks to a dense operand matrix.
  void dequantize(bf16* out, const void* blocks, TensorType type, int64_t rows, int64_t cols);
  void dequantize(float* out, const void* blocks, TensorType type, int64_t rows, int64_t cols);
  template <typename Op>
  const Op* weight_of(Linear& lin);
  // Where a product over weights in blocks decodes them: inside QuantGemm's tiles (mma.sync, up
  // to fused_rows), inside WgmmaGemm's (H100/H200, from InferGemm::blocks_min_rows rows), or
  // into a dequantized copy for a dense GEMM (also every product of dense or exact engines).
  enum class BlocksWay { QuantGemm, Wgmma, Dequantize };
  BlocksWay blocks_way(const Linear& lin, int64_t rows) const;
  // Whether product() runs this one on WgmmaGemm (blocks decoded in its tiles, or every bf16
  // product with RUVDLLM_CUDA_GEMM=wgmma).
  template <typename Op>
  bool on_wgmma(const Linear& lin, int64_t rows) const;
  // Whether the gate|up product and SwiGLU run as one WgmmaGemm launch (linear_blocks_swiglu).
  bool fuses_swiglu(const Linear& lin, int64_t rows) const;
  // For a residual product (its partials added by the next RMSNorm): the parts WgmmaGemm cuts
  // K into for it (InferGemm::blocks_parts, the same for every part of lin), or 1.
  int residual_k_parts(const Linear& lin, int64_t rows) const;
  // y = in · linᵀ: bf16 y, or f32 y = product + beta·y. Row r of in at in + r·ldx (0: lin.in).
  template <typename Op, typename Y>
  void product(Linear& lin, Y* y, const Op* in, int64_t rows, float beta = 0.0f,
               const char* label = "gemm", int64_t ldx = 0);
  void reserve(int64_t n);
  void encode_pass(const PassShape& pass) {
    with_operands([&](auto& o) { encode<typename std::decay_t<decltype(o)>::Element>(pass); });
  }
  template <typename Op>
  void encode(const PassShape& pass);
  void prepare_cache(KVCache& cache, const ForwardOptions& o, int64_t T, PassShape* pass);
};

}  // namespace ruvdllm::cuda
