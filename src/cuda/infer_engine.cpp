// The GPU denoising step: weights uploaded once, each pass a fixed chain of kernels and bf16
// GEMMs over buffers sized for the largest pass so far, captured as a CUDA graph per shape.
#include "ruvdllm/cuda/infer_engine.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/flash_attention.h"
#include "cuda/infer_engine_impl.h"
#include "cuda/infer_kernels.h"
#include "ruvdllm/core/error.h"

namespace ruvdllm::cuda {
namespace {

// The exact mode's attention in f32, the fast one on bf16 tensor cores.
void attend(bf16* out, const bf16* q, const bf16* k, const bf16* v, const FlashAttentionDims& d,
            cudaStream_t stream) {
  flash_attention(out, q, k, v, d, stream);
}
void attend(float* out, const float* q, const float* k, const float* v, const FlashAttentionDims& d,
            cudaStream_t stream) {
  exact_attention(out, q, k, v, d, stream);
}

constexpr int64_t kHeadRowStep = 64;

// Up to this many rows QuantGemm multiplied an 8B step's products faster than dequantizing
// them for cuBLAS did (bench_cuda_quant_gemm on an H200, docs/PERFORMANCE.md): Q8_0 (and Q4_0,
// decoded the same way) to 64 rows; Q4_K (and Q5_K) to 32, their decode costing more. On an
// H100/H200 WgmmaGemm goes first where it takes a product (blocks_way(): Q4_K and Q5_K at any row
// count, Q8_0 from 64 rows; InferGemm::blocks_min_rows). Q6_K keeps the dequantize way
// unless RUVDLLM_CUDA_QUANT_GEMM=fused: its 210-byte blocks, copied 2 bytes at a time, made
// QuantGemm 2.5× slower than dequantizing at 32–64 rows (H200).
int64_t fused_rows_measured(TensorType type) {
  switch (type) {
    case TensorType::Q4_0:
    case TensorType::Q8_0:
      return 64;
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      return 32;
    default:
      return 0;
  }
}

}  // namespace

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
  pass->kept = rows_appended(o, T);
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

CudaInferEngine::Impl::BlocksWay CudaInferEngine::Impl::blocks_way(const Linear& lin,
                                                                   int64_t rows) const {
  if (!quant_gemm || lin.all_dense()) return BlocksWay::Dequantize;  // exact or dense engines
  auto every_part = [&](auto&& takes) {
    return std::all_of(lin.quantized.begin(), lin.quantized.end(), takes);
  };
  const bool wgmma = fused_rows != 0 && every_part([&](const Linear::Part& p) {
                       return gemm->takes_blocks(p.type, p.blocks, rows, lin.in, p.rows);
                     });
  // Where both could run it, WgmmaGemm measured faster (the K-quants up to 32 rows, Q8_0 at 64;
  // InferGemm::blocks_min_rows), unless RUVDLLM_CUDA_QUANT_GEMM=fused asks for QuantGemm.
  if (wgmma && fused_rows < 0) return BlocksWay::Wgmma;
  if (every_part([&](const Linear::Part& p) {
        const int64_t limit = fused_rows < 0 ? fused_rows_measured(p.type) : fused_rows;
        return rows <= limit && QuantGemm::supports(p.type, lin.in);
      })) {
    return BlocksWay::QuantGemm;
  }
  return wgmma ? BlocksWay::Wgmma : BlocksWay::Dequantize;
}

template <typename Op>
bool CudaInferEngine::Impl::on_wgmma(const Linear& lin, int64_t rows) const {
  if constexpr (std::is_same_v<Op, bf16>) {
    // A product product() leaves to a dense GEMM may still go to WgmmaGemm inside InferGemm.
    const BlocksWay way = blocks_way(lin, rows);
    return way == BlocksWay::Wgmma ||
           (way == BlocksWay::Dequantize && gemm->uses_own(rows, lin.in, lin.out));
  } else {
    return false;  // exact mode: f32 operands, cuBLAS only
  }
}

bool CudaInferEngine::Impl::fuses_swiglu(const Linear& lin, int64_t rows) const {
  // (Exact engines, with f32 operands, never take BlocksWay::Wgmma.)
  return lin.swiglu_interleaved && swiglu_epilogue && blocks_way(lin, rows) == BlocksWay::Wgmma;
}

int CudaInferEngine::Impl::residual_k_parts(const Linear& lin, int64_t rows) const {
  // Only where product() would leave the blocks to WgmmaGemm or to dequantizing (not when
  // RUVDLLM_CUDA_QUANT_GEMM asks for one way, nor where QuantGemm's tiles serve).
  if (!quant_gemm || lin.all_dense() || lin.quantized.empty() || fused_rows >= 0 ||
      blocks_way(lin, rows) == BlocksWay::QuantGemm) {
    return 1;
  }
  const Linear::Part& first = lin.quantized.front();
  const int parts = gemm->blocks_parts(first.type, first.blocks, rows, lin.in, first.rows);
  for (const Linear::Part& p : lin.quantized) {
    if (gemm->blocks_parts(p.type, p.blocks, rows, lin.in, p.rows) != parts) return 1;
  }
  return parts;
}

template <typename Op, typename Y>
void CudaInferEngine::Impl::product(Linear& lin, Y* y, const Op* in, int64_t rows, float beta,
                                    const char* label, int64_t ldx) {
  if constexpr (std::is_same_v<Op, bf16>) {
    const BlocksWay way = blocks_way(lin, rows);
    if (way != BlocksWay::Dequantize) {
      const bool small = way == BlocksWay::QuantGemm;
      mark(label);
      // A bf16 y takes no beta; both products take the same arguments otherwise.
      auto multiply = [&](const Linear::Part& p, auto... beta_if_f32_and_ldx) {
        if (small) {
          quant_gemm->linear(y + p.row0, lin.out, in, p.blocks, p.type, rows, lin.in, p.rows,
                             beta_if_f32_and_ldx...);
        } else {
          gemm->linear_blocks(y + p.row0, lin.out, in, p.blocks, p.type, rows, lin.in, p.rows,
                              beta_if_f32_and_ldx...);
        }
      };
      for (const Linear::Part& p : lin.quantized) {
        if constexpr (std::is_same_v<Y, float>) {
          multiply(p, beta, ldx);
        } else {
          multiply(p, ldx);
        }
      }
      return;
    }
  }
  const Op* w = weight_of<Op>(lin);
  mark(label);
  if constexpr (std::is_same_v<Y, float>) {
    gemm->linear(y, in, w, rows, lin.in, lin.out, beta, ldx);
  } else {
    gemm->linear(y, in, w, rows, lin.in, lin.out, ldx);
  }
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
  // cuBLAS's split products, or WgmmaGemm's K parts (up to 256 rows).
  partials.reserve(E * std::max<size_t>(T * InferGemm::kMaxSplits,
                                        std::min<size_t>(T, 256) * InferGemm::kMaxBlockParts));
  logits.reserve(T * static_cast<size_t>(c.vocab_size));
  const auto pitch = static_cast<size_t>(hidden_pitch);
  auto size = [&](auto& o) {
    o.xn.reserve(T * pitch);
    o.shifted.reserve(T * pitch);
    o.qkv.reserve(T * (qd + 2 * kvd));
    o.q.reserve(T * qd);
    o.k.reserve(T * kvd);
    o.v.reserve(T * kvd);
    o.att.reserve(T * qd);
    o.gate_up.reserve(T * 2 * F);
    o.h.reserve(T * F);
    o.head_in.reserve(T * pitch);
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
  const int64_t pitch = hidden_pitch;
  check_cuda(cudaMemcpyAsync(tokens.data(), host_tokens.data(), static_cast<size_t>(T) * 4,
                             cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync");
  // The cache's length reaches the kernels through device memory (PassShape::past): positions
  // and key counts below are relative to it.
  const int32_t* device_past = nullptr;
  if (pass.use_cache) {
    check_cuda(cudaMemcpyAsync(past_on_device.data(), past_on_host.data(), sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream),
               "cudaMemcpyAsync");
    device_past = past_on_device.data();
  }
  mark("embed");
  embed_rows(x.data(), embd_blocks.data(), embd_type, tokens.data(), T, E, stream);

  QkvLayout layout;
  layout.n_seq = S;
  layout.seq_len = L;
  layout.n_head = H;
  layout.n_head_kv = Hkv;
  layout.head_dim = D;
  layout.kv_rows = pass.use_cache ? ctx : L;
  layout.past = device_past;
  layout.order = c.rope_order;
  layout.eps = c.rms_eps;
  FlashAttentionDims dims;
  dims.n_seq = S;
  dims.n_q = L;
  dims.n_kv = L;
  dims.past = device_past;
  dims.kv_rows = pass.use_cache ? ctx : 0;
  dims.n_head = H;
  dims.n_head_kv = Hkv;
  dims.head_dim = D;
  dims.scale = 1.0f / std::sqrt(static_cast<float>(D));
  dims.mask = pass.mask;
  dims.block_len = pass.block_len;

  // Products into the residual stream (attention output, FFN down) either add into x directly
  // or leave partials that the next RMSNorm adds in first: split along K by cuBLAS, or whole
  // from our own GEMM, whose y += product epilogue reads x back in scattered pieces (7 µs slower
  // per product than the norm's coalesced add; bench_cuda_gemm wgmma_f32add against
  // wgmma_f32out, H200).
  const int o_splits = gemm->split_for(T, H * D, E), down_splits = gemm->split_for(T, F, E);
  auto into_residual = [&](const Op* in, Linear& lin, int splits, const char* label) {
    if constexpr (std::is_same_v<Op, bf16>) {
      // Few output tiles (the 4096-output products at 128–256 rows): WgmmaGemm cuts K into
      // parts the norm adds, rather than sharing tiles between CTAs and adding their partial
      // sums itself (8B Q4_K step, H200: docs/PERFORMANCE.md).
      if (const int parts = residual_k_parts(lin, T); parts > 1) {
        mark(label);
        for (const Linear::Part& p : lin.quantized) {
          gemm->linear_blocks_split(partials.data() + p.row0, lin.out, in, p.blocks, p.type, T,
                                    lin.in, p.rows, parts);
        }
        return parts;
      }
    }
    if (on_wgmma<Op>(lin, T)) {
      product(lin, partials.data(), in, T, 0.0f, label);
      return 1;
    }
    if (splits > 1 && blocks_way(lin, T) == BlocksWay::Dequantize) {
      const Op* w = weight_of<Op>(lin);
      mark(label);
      gemm->linear_split(partials.data(), in, w, T, lin.in, E, splits);
      return splits;
    }
    product(lin, x.data(), in, T, 1.0f, label);
    return 0;
  };
  int pending = 0;  // partials waiting for the next norm
  auto norm = [&](const float* weight) {
    mark("rmsnorm");
    residual_rmsnorm_rows(o.xn.data(), x.data(), partials.data(), pending, weight, T, E, c.rms_eps,
                          stream, pitch);
    pending = 0;
  };

  for (size_t il = 0; il < layers.size(); ++il) {
    DeviceLayer& lw = layers[il];
    Op* k_dst = pass.use_cache ? o.cache_k[il].data() : o.k.data();
    Op* v_dst = pass.use_cache ? o.cache_v[il].data() : o.v.data();
    norm(lw.attn_norm.data());
    product(lw.qkv, o.qkv.data(), o.xn.data(), T, 0.0f, "gemm qkv", pitch);
    mark("qkv split+rope");
    split_qkv_heads(o.q.data(), k_dst, v_dst, o.qkv.data(),
                    lw.qkv_bias.capacity() ? lw.qkv_bias.data() : nullptr,
                    lw.q_norm.capacity() ? lw.q_norm.data() : nullptr,
                    lw.k_norm.capacity() ? lw.k_norm.data() : nullptr, cos_sin.data(), layout,
                    stream);
    mark("attention");
    if (pass.kept > 0 && pass.kept < L) {
      // Two spans of queries (n_seq is 1 with a cache): the rows that extend the cache see it
      // and themselves, the rest everything.
      FlashAttentionDims kept_rows = dims, rest = dims;
      kept_rows.n_q = pass.kept;
      kept_rows.n_kv = pass.kept;
      rest.n_q = L - pass.kept;
      rest.q_pos0 = pass.kept;
      // q is head-major (L rows per head), the output token-major.
      kept_rows.q_rows = rest.q_rows = L;
      attend(o.att.data(), o.q.data(), k_dst, v_dst, kept_rows, stream);
      attend(o.att.data() + pass.kept * H * D, o.q.data() + pass.kept * D, k_dst, v_dst, rest,
             stream);
    } else {
      attend(o.att.data(), o.q.data(), k_dst, v_dst, dims, stream);
    }
    pending = into_residual(o.att.data(), lw.wo, o_splits, "gemm wo");

    norm(lw.ffn_norm.data());
    bool swiglu_done = false;
    if constexpr (std::is_same_v<Op, bf16>) {
      if (fuses_swiglu(lw.gate_up, T)) {
        mark("gemm gate_up+swiglu");
        gemm->linear_blocks_swiglu(o.h.data(), F, o.xn.data(), lw.gate_up.quantized[0].blocks,
                                   lw.gate_up.quantized[0].type, T, E, 2 * F, pitch);
        swiglu_done = true;
      }
    }
    if (!swiglu_done) {
      product(lw.gate_up, o.gate_up.data(), o.xn.data(), T, 0.0f, "gemm gate_up", pitch);
      mark("swiglu");
      swiglu_rows(o.h.data(), o.gate_up.data(), T, F, stream, lw.gate_up.swiglu_interleaved);
    }
    pending = into_residual(o.h.data(), lw.down, down_splits, "gemm down");
  }

  norm(output_norm.data());
  const Op* head_in = o.xn.data();
  const size_t row = static_cast<size_t>(E) * sizeof(Op);
  const size_t row_pitch = static_cast<size_t>(pitch) * sizeof(Op);
  if (c.shift_logits) {
    // Row i scores position i from the hidden state of i − 1; each sequence's first row keeps
    // its own, or after a cache takes the last cached position's (as Model::forward does).
    for (int64_t s = 0; s < S; ++s) {
      Op* dst = o.shifted.data() + s * L * pitch;
      const Op* src = o.xn.data() + s * L * pitch;
      const Op* first = pass.use_cache && past > 0 ? o.cache_last_hidden.data() : src;
      check_cuda(cudaMemcpyAsync(dst, first, row, cudaMemcpyDeviceToDevice, stream),
                 "cudaMemcpyAsync");
      if (L > 1) {
        check_cuda(cudaMemcpy2DAsync(dst + pitch, row_pitch, src, row_pitch, row,
                                     static_cast<size_t>(L - 1), cudaMemcpyDeviceToDevice, stream),
                   "cudaMemcpy2DAsync");
      }
    }
    head_in = o.shifted.data();
  }
  if (pass.kept > 0) {
    check_cuda(cudaMemcpyAsync(o.cache_last_hidden.data(), o.xn.data() + (pass.kept - 1) * pitch,
                               row, cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync");
  }
  int64_t head_in_rows = T;
  if (pass.head_rows > 0) {
    head_in_rows = S * pass.head_rows;
    check_cuda(
        cudaMemcpyAsync(head_ids.data(), host_head_ids.data(),
                        static_cast<size_t>(head_in_rows) * 4, cudaMemcpyHostToDevice, stream),
        "cudaMemcpyAsync");
    mark("gather (head rows)");
    gather_rows(o.head_in.data(), head_in, head_ids.data(), head_in_rows, E, stream, pitch, pitch);
    head_in = o.head_in.data();
  }
  product(head, logits.data(), head_in, head_in_rows, 0.0f, "gemm (head)", pitch);
  mark("end");
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
  check_extend_rows(o, T, "cuda");
  check_cuda(cudaSetDevice(m.options.device), "cudaSetDevice");
  PassShape pass;
  pass.tokens = T;
  pass.n_seq = o.n_seq;
  pass.mask = o.mask;
  pass.block_len = o.mask == MaskMode::BlockCausal ? o.block_len : 0;
  if (o.cache) m.prepare_cache(*o.cache, o, T, &pass);
  m.reserve(T);
  m.past_on_host.data()[0] = static_cast<int32_t>(pass.past);
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
        const int64_t row =
            listed.empty() ? 0
                           : listed[static_cast<size_t>(std::min<int64_t>(i, listed.size() - 1))];
        m.host_head_ids.data()[s * pass.head_rows + i] = static_cast<int32_t>(s * L + row);
      }
    }
  }
  const PassKey key = pass.key();
  const auto start = std::chrono::steady_clock::now();
  const char* way = "eager";
  const bool capturable = m.graph_policy == GraphPolicy::All ||
                          (m.graph_policy == GraphPolicy::Uncached && !pass.use_cache);

  ++m.passes_run;
  auto it = m.graphs.find(key);
  if (it != m.graphs.end()) {
    it->second.last_use = m.passes_run;
    way = "replay";
    check_cuda(cudaGraphLaunch(it->second.exec, m.stream), "cudaGraphLaunch");
  } else if (capturable && m.seen[key] > 0) {
    way = "capture";
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
    m.keep_graph(key, exec);
    check_cuda(cudaGraphLaunch(exec, m.stream), "cudaGraphLaunch");
  } else {
    m.encode_pass(pass);
    if (capturable) m.count_eager_pass(key);
  }
  check_cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize (forward pass)");
  if (m.trace) {
    const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
    std::fprintf(stderr, "cuda pass: %lld tokens, %lld cached%s, head rows %lld, %s, %.3f ms\n",
                 static_cast<long long>(T), static_cast<long long>(pass.past),
                 pass.kept > 0 ? " (extended)" : "", static_cast<long long>(pass.head_rows), way,
                 took.count());
  }
  m.n_tokens = T;
  m.n_seq = o.n_seq;
  m.head_rows = pass.head_rows;
  m.logit_row_of = std::move(row_of);
  if (pass.kept > 0) {
    m.cached = pass.past + pass.kept;
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
    check_cuda(
        cudaMemcpy(host, m.logits.data(), static_cast<size_t>(m.n_tokens) * V * sizeof(float),
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
  m.sampler->sample(m.logits.data(), uncond, m.logit_rows(), rows, positions, options, step, *out);
}

bool CudaInferEngine::propose_top(std::span<const int64_t> candidates, int64_t first_row,
                                  const SamplingOptions& options, int64_t step, int64_t count,
                                  std::vector<Proposal>* out) {
  if (options.rule == Unmasking::Origin || options.rule == Unmasking::Random) return false;
  Impl& m = *impl_;
  std::vector<int64_t> rows;
  const float* uncond = m.rows_of(candidates, first_row, options, &rows);
  m.sampler->sample_top(m.logits.data(), uncond, m.logit_rows(), rows, candidates, options, step,
                        count, out);
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
