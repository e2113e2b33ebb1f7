// The training step on the GPU: the forward pass keeps every layer's activations, the
// backward pass walks the layers in reverse, and each layer's gradients start their copy to
// the host as soon as they are final, so the copies and the host-side adds overlap the rest of
// the pass. Linear layers and attention products run on cuBLAS, everything else in
// train_kernels.cu. In BF16 mode the linear layers read bf16 copies: the weights' copy is
// refreshed with the values, and each activation is written (or converted) to bf16 where it
// enters a product, so no product reads f32 operands but attention's.
#include "ruvdllm/cuda/train_engine.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "cuda/attention.h"
#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/gemm.h"
#include "cuda/gradient_downloads.h"
#include "cuda/infer_kernels.h"
#include "cuda/param_layout.h"
#include "cuda/train_kernels.h"
#include "cuda/train_optimizer.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/cuda/device.h"

namespace ruvdllm::cuda {
namespace {

// Logits are produced this many floats at a time (256 MB), so a large vocabulary times many
// scored rows never needs one huge buffer.
constexpr int64_t kLogitsBudgetFloats = int64_t{1} << 26;

// Index lists one batch needs on the device, built on the host and uploaded together.
struct BatchIndex {
  std::vector<int32_t> ints;
  // Offsets into ints:
  size_t tokens = 0;
  size_t head_src = 0, head_targets = 0;  // per scored row: hidden row read, target id
  size_t emb_dest = 0, emb_offsets = 0, emb_items = 0;     // positions grouped by token
  size_t head_dest = 0, head_offsets = 0, head_items = 0;  // scored rows grouped by hidden row
  int64_t n_head_rows = 0, n_emb_segments = 0, n_head_segments = 0;
  std::vector<float> head_weights;
};

// A product input: f32, or its bf16 copy in BF16 mode (exactly one is set).
struct Operand {
  const float* f32 = nullptr;
  const bf16* b16 = nullptr;
};

size_t append(std::vector<int32_t>& ints, const std::vector<int32_t>& values) {
  const size_t at = ints.size();
  ints.insert(ints.end(), values.begin(), values.end());
  return at;
}

}  // namespace

struct CudaTrainEngine::Impl {
  ModelConfig config;
  ParamLayout layout;
  int device = 0;
  std::string name;
  int64_t E, H, Hkv, D, qd, kvd, nqkv, F, V, nL;

  cudaStream_t stream = nullptr;
  std::unique_ptr<Gemm> gemm;
  DeviceArray<float> values, grads;
  DeviceArray<bf16> values_b;  // bf16 copy of values, for BF16 products
  PinnedArray<float> staging;
  ThreadPool pool;

  // This batch's shape.
  int64_t S = 0, L = 0, T = 0;
  AttentionDims attn;

  // Activations kept for the backward pass, one slice per layer.
  DeviceArray<float> x;         // (nL + 1) × T × E: the residual stream entering each layer
  DeviceArray<float> xmid;      // nL × T × E: after each layer's attention
  DeviceArray<float> xn1, xn2;  // nL × T × E: the two normalised inputs (f32 products)
  DeviceArray<float> rstd1, rstd2;
  DeviceArray<float> q, k, v;  // head-major, after bias and RoPE
  DeviceArray<float> probs;    // nL × n_seq·H·L·L
  DeviceArray<float> att;      // nL × T × qd: attention output, token-major (f32 products)
  DeviceArray<float> gu;       // nL × T × 2F: gate | up
  DeviceArray<float> hid;      // nL × T × F: silu(gate)·up (f32 products)
  // BF16 mode keeps the four layer inputs of the products in bf16 instead.
  DeviceArray<bf16> xn1_b, xn2_b, att_b, hid_b;
  DeviceArray<bf16> dy_b, dgu_b, head_in_b, dlogits_b;  // backward scratch in bf16
  // BF16 attention: q, k, v and the softmax per layer in bf16 (instead of q, k, v, probs);
  // dprobs doubles as the forward pass's f32 scores.
  bool bf16_attention = true;
  DeviceArray<bf16> q_b, k_b, v_b, probs_b, dout_b, dscores_b;
  DeviceArray<float> xnf, rstdf;  // final norm
  // Scratch shared by all layers.
  DeviceArray<float> qkv;    // T × nqkv: q|k|v products (forward), their gradients (backward)
  DeviceArray<float> heads;  // T × qd head-major: attention output (forward), its gradient
  DeviceArray<float> dprobs, dq, dk, dv, dx, dxn, dwide, dgu, norm_rows, partials;
  DeviceArray<float> head_in, d_head_in, logits, head_weights;
  DeviceArray<double> row_loss;
  DeviceArray<int32_t> ints;
  DeviceArray<float2> rope;
  int64_t rope_positions = 0;
  PinnedArray<double> loss_host;

  // Gradients to the host tensors while the backward pass runs (not with the device optimiser).
  std::unique_ptr<GradientDownloads> downloads;

  // The optimiser on the device (enable_device_optimizer); null while it runs on the host.
  std::unique_ptr<DeviceAdamW> optimizer;

  Impl(const ModelConfig& c, std::vector<HostTensor> tensors, int dev, MatmulPrecision precision)
      : config(c),
        layout(build_param_layout(c, std::move(tensors))),
        device(dev),
        pool(std::min(8, ThreadPool::physical_cores())) {
    E = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim, F = c.n_ff, V = c.vocab_size;
    nL = c.n_layer, qd = H * D, kvd = Hkv * D, nqkv = qd + 2 * kvd;
    name = cuda::device_name(dev);  // checks the index
    check_cuda(cudaSetDevice(dev), "cudaSetDevice");
    check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
               "cudaStreamCreateWithFlags");
    gemm = std::make_unique<Gemm>(stream, precision);
    values.reserve(layout.total);
    values_b.reserve(layout.total);
    grads.reserve(layout.total);
    // Padding between tensors must read as zero in the norm and the optimiser's chunks.
    check_cuda(cudaMemsetAsync(grads.data(), 0, layout.total * sizeof(float), stream),
               "cudaMemsetAsync");
    staging.reserve(layout.total);
    // The padding between tensors travels with each upload; keep it zero.
    std::fill(staging.data(), staging.data() + layout.total, 0.0f);
    downloads = std::make_unique<GradientDownloads>(layout, nL, staging.data());
    upload();
  }

  ~Impl() {
    gemm.reset();
    downloads.reset();
    if (stream) cudaStreamDestroy(stream);
  }

  void use_device() const { check_cuda(cudaSetDevice(device), "cudaSetDevice"); }
  void sync() const { check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); }

  float* w(size_t offset) { return values.data() + offset; }
  const bf16* wb(size_t offset) { return values_b.data() + offset; }
  float* g(size_t offset) { return grads.data() + offset; }
  bool bf() const { return gemm->precision() == MatmulPrecision::BF16; }
  bool attn_bf() const { return bf() && bf16_attention; }
  bf16* layer_slice(DeviceArray<bf16>& a, int64_t l, int64_t per_layer) {
    return a.data() + static_cast<size_t>(l) * static_cast<size_t>(per_layer);
  }

  // y = x·wᵀ (+ beta·y) for the weight at offset wo.
  void linear_fwd(float* y, Operand x, size_t wo, int64_t n, int64_t in, int64_t out,
                  float beta = 0.0f) {
    if (x.b16)
      gemm->linear_forward(y, x.b16, wb(wo), n, in, out, beta);
    else
      gemm->linear_forward(y, x.f32, w(wo), n, in, out, beta);
  }

  // The weight's gradient += dyᵀ·x and, when dx is set, dx = dy·w. In BF16 mode an f32 dy is
  // converted once into dy_b for both products.
  void linear_bwd(float* dx, Operand x, Operand dy, size_t wo, int64_t n, int64_t in, int64_t out) {
    if (x.b16) {
      const bf16* d = dy.b16;
      if (!d) {
        to_bf16(dy_b.data(), dy.f32, n * out, stream);
        d = dy_b.data();
      }
      gemm->linear_backward_weight(g(wo), d, x.b16, n, in, out);
      if (dx) gemm->linear_backward_input(dx, d, wb(wo), n, in, out);
      return;
    }
    gemm->linear_backward_weight(g(wo), dy.f32, x.f32, n, in, out);
    if (dx) gemm->linear_backward_input(dx, dy.f32, w(wo), n, in, out);
  }

  void upload() {
    use_device();
    float* host = staging.data();
    for (const ParamSlot& s : layout.slots) {
      std::copy(s.tensor.value, s.tensor.value + s.count, host + s.offset);
    }
    check_cuda(cudaMemcpyAsync(values.data(), host, layout.total * sizeof(float),
                               cudaMemcpyHostToDevice, stream),
               "cudaMemcpyAsync (weights to device)");
    to_bf16(values_b.data(), values.data(), static_cast<int64_t>(layout.total), stream);
    sync();  // the staging buffer is reused by the next download
  }

  // Validates the batch and sizes every buffer for it.
  void begin(int64_t n_seq, int64_t seq_len, std::span<const int32_t> inputs, MaskMode mask,
             int64_t block_len) {
    if (n_seq < 1 || seq_len < 1)
      fail("CUDA training: bad batch of {} sequences of {} tokens", n_seq, seq_len);
    if (static_cast<int64_t>(inputs.size()) != n_seq * seq_len) {
      fail("CUDA training: {} input tokens do not make {} sequences of {}", inputs.size(), n_seq,
           seq_len);
    }
    if (seq_len > config.context_length) {
      fail("CUDA training: sequences of {} tokens exceed the model's context of {}", seq_len,
           config.context_length);
    }
    if (mask == MaskMode::BlockCausal && block_len <= 0) {
      fail("CUDA training: block-causal attention needs block_len > 0 (is {})", block_len);
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i] < 0 || inputs[i] >= V) {
        fail("CUDA training: input token {} at index {} is outside the vocabulary of {}", inputs[i],
             i, V);
      }
    }
    use_device();
    S = n_seq, L = seq_len, T = n_seq * seq_len;
    attn = {S, L, H, Hkv, D, mask, block_len};
    const size_t t = static_cast<size_t>(T), layers = static_cast<size_t>(nL);
    const size_t te = t * static_cast<size_t>(E);
    x.reserve((layers + 1) * te);
    xmid.reserve(layers * te);
    if (bf()) {
      xn1_b.reserve(layers * te);
      xn2_b.reserve(layers * te);
      att_b.reserve(layers * t * static_cast<size_t>(qd));
      hid_b.reserve(layers * t * static_cast<size_t>(F));
    } else {
      xn1.reserve(layers * te);
      xn2.reserve(layers * te);
      att.reserve(layers * t * static_cast<size_t>(qd));
      hid.reserve(layers * t * static_cast<size_t>(F));
    }
    rstd1.reserve(layers * t);
    rstd2.reserve(layers * t);
    const size_t pn = static_cast<size_t>(attn.probs_size());
    if (attn_bf()) {
      q_b.reserve(layers * t * static_cast<size_t>(qd));
      k_b.reserve(layers * t * static_cast<size_t>(kvd));
      v_b.reserve(layers * t * static_cast<size_t>(kvd));
      probs_b.reserve(layers * pn);
      dprobs.reserve(pn);  // the scores
    } else {
      q.reserve(layers * t * static_cast<size_t>(qd));
      k.reserve(layers * t * static_cast<size_t>(kvd));
      v.reserve(layers * t * static_cast<size_t>(kvd));
      probs.reserve(layers * pn);
    }
    gu.reserve(layers * t * static_cast<size_t>(2 * F));
    xnf.reserve(te);
    rstdf.reserve(t);
    qkv.reserve(t * static_cast<size_t>(nqkv));
    heads.reserve(t * static_cast<size_t>(qd));
    if (rope_positions < L) {
      const std::vector<float2> table = rope_table(L, D, config.rope_base);
      rope.reserve(table.size());
      check_cuda(cudaMemcpyAsync(rope.data(), table.data(), table.size() * sizeof(float2),
                                 cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync (RoPE table)");
      rope_positions = L;
    }
  }

  void reserve_backward() {
    const size_t t = static_cast<size_t>(T);
    dprobs.reserve(static_cast<size_t>(attn.probs_size()));
    dq.reserve(t * static_cast<size_t>(qd));
    dk.reserve(t * static_cast<size_t>(kvd));
    dv.reserve(t * static_cast<size_t>(kvd));
    dx.reserve(t * static_cast<size_t>(E));
    dxn.reserve(t * static_cast<size_t>(E));
    dwide.reserve(t * static_cast<size_t>(std::max(qd, F)));
    dgu.reserve(t * static_cast<size_t>(2 * F));
    norm_rows.reserve(t * static_cast<size_t>(E));
    partials.reserve(static_cast<size_t>(column_sum_scratch(T, std::max(E, nqkv))));
    if (bf()) {
      dy_b.reserve(t * static_cast<size_t>(std::max(E, nqkv)));
      dgu_b.reserve(t * static_cast<size_t>(2 * F));
    }
    if (attn_bf()) {
      dout_b.reserve(t * static_cast<size_t>(qd));
      dscores_b.reserve(static_cast<size_t>(attn.probs_size()));
    }
  }

  // Which rows go through the output head (and from which hidden row), with their CSR groupings.
  BatchIndex index_batch(std::span<const int32_t> inputs, std::span<const int32_t> targets,
                         std::span<const float> weights, bool all_rows) {
    BatchIndex b;
    std::vector<int32_t> src, tgt;
    for (int64_t i = 0; i < T; ++i) {
      const size_t ui = static_cast<size_t>(i);
      if (!all_rows) {
        const float wi = weights[ui];
        if (!std::isfinite(wi) || wi < 0)
          fail("CUDA training: weight {} at index {} is not a finite value >= 0", wi, i);
        if (wi == 0) continue;
        if (targets[ui] < 0 || targets[ui] >= V) {
          fail("CUDA training: target {} at index {} is outside the vocabulary of {}", targets[ui],
               i, V);
        }
        tgt.push_back(targets[ui]);
        b.head_weights.push_back(wi);
      }
      // Dream scores position p from the hidden state at p − 1; a sequence's first position
      // keeps its own, as Model::forward does.
      const bool first = i % L == 0;
      src.push_back(static_cast<int32_t>(config.shift_logits && !first ? i - 1 : i));
    }
    b.n_head_rows = static_cast<int64_t>(src.size());
    std::vector<int32_t> tokens(inputs.begin(), inputs.end());
    b.tokens = append(b.ints, tokens);
    b.head_src = append(b.ints, src);
    b.head_targets = append(b.ints, tgt);
    const RowGroups by_token = group_rows(tokens);
    b.n_emb_segments = static_cast<int64_t>(by_token.dest.size());
    b.emb_dest = append(b.ints, by_token.dest);
    b.emb_offsets = append(b.ints, by_token.offsets);
    b.emb_items = append(b.ints, by_token.items);
    const RowGroups by_source = group_rows(src);
    b.n_head_segments = static_cast<int64_t>(by_source.dest.size());
    b.head_dest = append(b.ints, by_source.dest);
    b.head_offsets = append(b.ints, by_source.offsets);
    b.head_items = append(b.ints, by_source.items);

    ints.reserve(b.ints.size());
    check_cuda(cudaMemcpyAsync(ints.data(), b.ints.data(), b.ints.size() * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream),
               "cudaMemcpyAsync (batch indices)");
    if (!b.head_weights.empty()) {
      head_weights.reserve(b.head_weights.size());
      check_cuda(
          cudaMemcpyAsync(head_weights.data(), b.head_weights.data(),
                          b.head_weights.size() * sizeof(float), cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync (row weights)");
    }
    return b;
  }

  const int32_t* dev_ints(size_t offset) { return ints.data() + offset; }

  float* layer_slice(DeviceArray<float>& a, int64_t l, int64_t per_layer) {
    return a.data() + static_cast<size_t>(l) * static_cast<size_t>(per_layer);
  }

  // Layer l's product inputs, f32 or bf16 by the mode.
  struct LayerInputs {
    float *n1 = nullptr, *n2 = nullptr, *att = nullptr, *hid = nullptr;
    bf16 *n1b = nullptr, *n2b = nullptr, *attb = nullptr, *hidb = nullptr;
    Operand attn_in() const { return {n1, n1b}; }
    Operand wo_in() const { return {att, attb}; }
    Operand ffn_in() const { return {n2, n2b}; }
    Operand down_in() const { return {hid, hidb}; }
  };
  LayerInputs inputs_of(int64_t l) {
    const int64_t TE = T * E;
    LayerInputs in;
    if (bf()) {
      const size_t ul = static_cast<size_t>(l), t = static_cast<size_t>(T);
      in.n1b = xn1_b.data() + ul * static_cast<size_t>(TE);
      in.n2b = xn2_b.data() + ul * static_cast<size_t>(TE);
      in.attb = att_b.data() + ul * t * static_cast<size_t>(qd);
      in.hidb = hid_b.data() + ul * t * static_cast<size_t>(F);
    } else {
      in.n1 = layer_slice(xn1, l, TE);
      in.n2 = layer_slice(xn2, l, TE);
      in.att = layer_slice(att, l, T * qd);
      in.hid = layer_slice(hid, l, T * F);
    }
    return in;
  }

  void forward_layers(const BatchIndex& b) {
    const int64_t TE = T * E;
    const RopeOrder order = config.rope_order;
    gather_rows(x.data(), w(layout.token_embd), dev_ints(b.tokens), T, E, stream);
    for (int64_t l = 0; l < nL; ++l) {
      const LayerOffsets& lo = layout.layers[static_cast<size_t>(l)];
      const LayerInputs in = inputs_of(l);
      float* xl = layer_slice(x, l, TE);
      float* xm = layer_slice(xmid, l, TE);
      float* gul = layer_slice(gu, l, T * 2 * F);

      float* r1 = layer_slice(rstd1, l, T);
      if (in.n1b)
        rmsnorm_forward(in.n1b, r1, xl, w(lo.attn_norm), T, E, config.rms_eps, stream);
      else
        rmsnorm_forward(in.n1, r1, xl, w(lo.attn_norm), T, E, config.rms_eps, stream);
      linear_fwd(qkv.data(), in.attn_in(), lo.wqkv, T, E, nqkv);
      const float* bias = config.qkv_bias ? w(lo.bqkv) : nullptr;
      const auto split_heads = [&](auto* ql, auto* kl, auto* vl) {
        heads_from_tokens(ql, qkv.data(), nqkv, bias, S, L, H, D, rope.data(), order, stream);
        heads_from_tokens(kl, qkv.data() + qd, nqkv, bias ? bias + qd : nullptr, S, L, Hkv, D,
                          rope.data(), order, stream);
        heads_from_tokens(vl, qkv.data() + qd + kvd, nqkv, bias ? bias + qd + kvd : nullptr, S, L,
                          Hkv, D, nullptr, order, stream);
      };
      if (attn_bf()) {
        bf16* ql = layer_slice(q_b, l, T * qd);
        bf16* kl = layer_slice(k_b, l, T * kvd);
        bf16* vl = layer_slice(v_b, l, T * kvd);
        split_heads(ql, kl, vl);
        attention_forward(*gemm, attn, ql, kl, vl, dprobs.data(),
                          layer_slice(probs_b, l, attn.probs_size()), heads.data(), stream);
      } else {
        float* ql = layer_slice(q, l, T * qd);
        float* kl = layer_slice(k, l, T * kvd);
        float* vl = layer_slice(v, l, T * kvd);
        split_heads(ql, kl, vl);
        attention_forward(*gemm, attn, ql, kl, vl, layer_slice(probs, l, attn.probs_size()),
                          heads.data(), stream);
      }
      if (in.attb) {
        // q|k|v are consumed: their buffer holds the f32 output on its way to bf16.
        tokens_from_heads(qkv.data(), qd, heads.data(), S, L, H, D, nullptr, order, stream);
        to_bf16(in.attb, qkv.data(), T * qd, stream);
      } else {
        tokens_from_heads(in.att, qd, heads.data(), S, L, H, D, nullptr, order, stream);
      }
      copy(xm, xl, TE);
      linear_fwd(xm, in.wo_in(), lo.wo, T, qd, E, 1.0f);

      float* r2 = layer_slice(rstd2, l, T);
      if (in.n2b)
        rmsnorm_forward(in.n2b, r2, xm, w(lo.ffn_norm), T, E, config.rms_eps, stream);
      else
        rmsnorm_forward(in.n2, r2, xm, w(lo.ffn_norm), T, E, config.rms_eps, stream);
      linear_fwd(gul, in.ffn_in(), lo.wgu, T, E, 2 * F);
      if (in.hidb)
        swiglu_forward(in.hidb, gul, T, F, stream);
      else
        swiglu_forward(in.hid, gul, T, F, stream);
      float* next = layer_slice(x, l + 1, TE);
      copy(next, xm, TE);
      linear_fwd(next, in.down_in(), lo.wdown, T, F, E, 1.0f);
    }
    rmsnorm_forward(xnf.data(), rstdf.data(), layer_slice(x, nL, TE), w(layout.output_norm), T, E,
                    config.rms_eps, stream);
  }

  void copy(float* dst, const float* src, int64_t n) {
    check_cuda(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(float),
                               cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync (device to device)");
  }

  int64_t logits_chunk_rows() const { return std::max<int64_t>(1, kLogitsBudgetFloats / V); }

  // head_in (n rows) → its bf16 copy, in BF16 mode.
  void head_input(int64_t n) {
    if (!bf()) return;
    head_in_b.reserve(static_cast<size_t>(n * E));
    to_bf16(head_in_b.data(), head_in.data(), n * E, stream);
  }
  Operand head_rows(int64_t r0) {
    if (bf()) return {nullptr, head_in_b.data() + r0 * E};
    return {head_in.data() + r0 * E, nullptr};
  }

  // Output head and cross-entropy over the scored rows; with grad_scale set, also the head's
  // backward pass into d_head_in and the output weight's gradient. The per-row losses go to
  // loss_host asynchronously: read them with scored_loss() after the stream is synchronised.
  void head_loss(const BatchIndex& b, const float* grad_scale) {
    const int64_t n = b.n_head_rows;
    const int64_t chunk = logits_chunk_rows();
    head_in.reserve(static_cast<size_t>(n * E));
    logits.reserve(static_cast<size_t>(std::min(n, chunk) * V));
    row_loss.reserve(static_cast<size_t>(n));
    loss_host.reserve(static_cast<size_t>(n));
    if (grad_scale) d_head_in.reserve(static_cast<size_t>(n * E));
    gather_rows(head_in.data(), xnf.data(), dev_ints(b.head_src), n, E, stream);
    head_input(n);
    if (grad_scale && bf()) dlogits_b.reserve(static_cast<size_t>(std::min(n, chunk) * V));
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      const int64_t rows = std::min(chunk, n - r0);
      const Operand in = head_rows(r0);
      linear_fwd(logits.data(), in, layout.output, rows, E, V);
      // In BF16 mode the logits' gradient is written straight in bf16, for the two products.
      bf16* grad_b = grad_scale && bf() ? dlogits_b.data() : nullptr;
      cross_entropy(logits.data(), row_loss.data() + r0, dev_ints(b.head_targets) + r0,
                    head_weights.data() + r0, rows, V, grad_scale ? *grad_scale : 0.0f,
                    grad_scale != nullptr, stream, grad_b);
      if (grad_scale) {
        linear_bwd(d_head_in.data() + r0 * E, in, {logits.data(), grad_b}, layout.output, rows, E,
                   V);
      }
    }
    check_cuda(
        cudaMemcpyAsync(loss_host.data(), row_loss.data(), static_cast<size_t>(n) * sizeof(double),
                        cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync (row losses)");
  }

  // Σ w·CE in row order, after sync().
  double scored_loss(const BatchIndex& b) {
    double total = 0.0;
    for (int64_t r = 0; r < b.n_head_rows; ++r) total += loss_host.data()[r];
    return total;
  }

  void norm_backward(float* dx_acc, const float* dy, const float* xin, size_t weight,
                     const float* rstd) {
    rmsnorm_backward(dx_acc, norm_rows.data(), dy, xin, w(weight), rstd, T, E, stream);
    column_sums_add(g(weight), norm_rows.data(), T, E, E, partials.data(), stream);
  }

  // With download set, each segment of gradients starts its copy to the host as soon as the
  // pass has finished it, so the copies overlap the rest of the backward pass.
  void backward_layers(const BatchIndex& b, bool download) {
    const int64_t TE = T * E;
    const RopeOrder order = config.rope_order;
    // Scored rows back to the hidden rows they read (two rows share one under shift_logits).
    check_cuda(cudaMemsetAsync(dxn.data(), 0, static_cast<size_t>(TE) * sizeof(float), stream),
               "cudaMemsetAsync");
    segment_sum_rows(dxn.data(), d_head_in.data(), dev_ints(b.head_dest), dev_ints(b.head_offsets),
                     dev_ints(b.head_items), b.n_head_segments, E, false, stream);
    check_cuda(cudaMemsetAsync(dx.data(), 0, static_cast<size_t>(TE) * sizeof(float), stream),
               "cudaMemsetAsync");
    norm_backward(dx.data(), dxn.data(), layer_slice(x, nL, TE), layout.output_norm, rstdf.data());
    if (download) downloads->head_done(grads.data(), stream);

    for (int64_t l = nL - 1; l >= 0; --l) {
      const LayerOffsets& lo = layout.layers[static_cast<size_t>(l)];
      const LayerInputs in = inputs_of(l);
      // FFN: x_next = xmid + down(silu(gate)·up)
      linear_bwd(dwide.data(), in.down_in(), {dx.data(), nullptr}, lo.wdown, T, F, E);
      Operand dgu_in{dgu.data(), nullptr};
      if (bf()) {
        swiglu_backward(dgu_b.data(), dwide.data(), layer_slice(gu, l, T * 2 * F), T, F, stream);
        dgu_in = {nullptr, dgu_b.data()};
      } else {
        swiglu_backward(dgu.data(), dwide.data(), layer_slice(gu, l, T * 2 * F), T, F, stream);
      }
      linear_bwd(dxn.data(), in.ffn_in(), dgu_in, lo.wgu, T, E, 2 * F);
      norm_backward(dx.data(), dxn.data(), layer_slice(xmid, l, TE), lo.ffn_norm,
                    layer_slice(rstd2, l, T));

      // Attention: xmid = x + wo(attention(rope(q), rope(k), v))
      linear_bwd(dwide.data(), in.wo_in(), {dx.data(), nullptr}, lo.wo, T, qd, E);
      if (attn_bf()) {
        heads_from_tokens(dout_b.data(), dwide.data(), qd, nullptr, S, L, H, D, nullptr, order,
                          stream);
        attention_backward(*gemm, attn, dout_b.data(), layer_slice(probs_b, l, attn.probs_size()),
                           layer_slice(q_b, l, T * qd), layer_slice(k_b, l, T * kvd),
                           layer_slice(v_b, l, T * kvd), dq.data(), dk.data(), dv.data(),
                           dprobs.data(), dscores_b.data(), stream);
      } else {
        heads_from_tokens(heads.data(), dwide.data(), qd, nullptr, S, L, H, D, nullptr, order,
                          stream);
        attention_backward(*gemm, attn, heads.data(), layer_slice(probs, l, attn.probs_size()),
                           layer_slice(q, l, T * qd), layer_slice(k, l, T * kvd),
                           layer_slice(v, l, T * kvd), dq.data(), dk.data(), dv.data(),
                           dprobs.data(), stream);
      }
      tokens_from_heads(qkv.data(), nqkv, dq.data(), S, L, H, D, rope.data(), order, stream);
      tokens_from_heads(qkv.data() + qd, nqkv, dk.data(), S, L, Hkv, D, rope.data(), order, stream);
      tokens_from_heads(qkv.data() + qd + kvd, nqkv, dv.data(), S, L, Hkv, D, nullptr, order,
                        stream);
      if (config.qkv_bias)
        column_sums_add(g(lo.bqkv), qkv.data(), T, nqkv, nqkv, partials.data(), stream);
      linear_bwd(dxn.data(), in.attn_in(), {qkv.data(), nullptr}, lo.wqkv, T, E, nqkv);
      norm_backward(dx.data(), dxn.data(), layer_slice(x, l, TE), lo.attn_norm,
                    layer_slice(rstd1, l, T));
      if (download) downloads->layer_done(l, grads.data(), stream);
    }
    segment_sum_rows(g(layout.token_embd), dx.data(), dev_ints(b.emb_dest), dev_ints(b.emb_offsets),
                     dev_ints(b.emb_items), b.n_emb_segments, E, true, stream);
    if (download) downloads->embedding_done(grads.data(), stream);
  }

  // ---- The optimiser on the device.
  void enable_optimizer() {
    if (optimizer) return;
    use_device();
    optimizer = std::make_unique<DeviceAdamW>(layout, stream);
    zero_grads();
  }

  void zero_grads() {
    use_device();
    check_cuda(cudaMemsetAsync(grads.data(), 0, layout.total * sizeof(float), stream),
               "cudaMemsetAsync");
  }

  DeviceAdamW& device_optimizer() {
    if (!optimizer)
      fail("CUDA training: the optimiser is not on the device (enable_device_optimizer)");
    use_device();
    return *optimizer;
  }

  const ParamSlot& trainable_slot(const std::string& tensor_name) const {
    for (const ParamSlot& slot : layout.slots) {
      if (slot.tensor.name != tensor_name) continue;
      if (!slot.tensor.grad)
        fail("CUDA training: tensor {} is frozen: it has no moments", tensor_name);
      return slot;
    }
    fail("CUDA training: no tensor named {}", tensor_name);
  }

  // Device buffer → host tensors (values or gradients) through the staging buffer.
  void download_all(const DeviceArray<float>& from, bool gradients) {
    use_device();
    check_cuda(cudaMemcpyAsync(staging.data(), from.data(), layout.total * sizeof(float),
                               cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync (to host)");
    sync();
    for (const ParamSlot& slot : layout.slots) {
      float* dst = gradients ? slot.tensor.grad : slot.tensor.value;
      if (dst)
        std::copy(staging.data() + slot.offset, staging.data() + slot.offset + slot.count, dst);
    }
  }

  void check_targets(std::span<const int32_t> targets, std::span<const float> weights) const {
    if (static_cast<int64_t>(targets.size()) != T || static_cast<int64_t>(weights.size()) != T) {
      fail("CUDA training: {} targets and {} weights for {} input tokens", targets.size(),
           weights.size(), T);
    }
  }
};

CudaTrainEngine::CudaTrainEngine(const ModelConfig& config, std::vector<HostTensor> tensors,
                                 int device, MatmulPrecision precision)
    : impl_(std::make_unique<Impl>(config, std::move(tensors), device, precision)) {}

CudaTrainEngine::~CudaTrainEngine() = default;

const ModelConfig& CudaTrainEngine::config() const { return impl_->config; }
std::string CudaTrainEngine::device_name() const { return impl_->name; }
MatmulPrecision CudaTrainEngine::precision() const { return impl_->gemm->precision(); }
void CudaTrainEngine::set_precision(MatmulPrecision precision) {
  impl_->gemm->set_precision(precision);
}

void CudaTrainEngine::set_bf16_attention(bool on) { impl_->bf16_attention = on; }
bool CudaTrainEngine::bf16_attention() const { return impl_->bf16_attention; }

void CudaTrainEngine::upload_values() { impl_->upload(); }

double CudaTrainEngine::forward_backward(int64_t n_seq, int64_t seq_len,
                                         std::span<const int32_t> inputs,
                                         std::span<const int32_t> targets,
                                         std::span<const float> weights, float grad_scale,
                                         MaskMode mask, int64_t block_len) {
  Impl& m = *impl_;
  m.begin(n_seq, seq_len, inputs, mask, block_len);
  m.check_targets(targets, weights);
  const BatchIndex b = m.index_batch(inputs, targets, weights, false);
  if (b.n_head_rows == 0) return 0.0;  // nothing scored: no loss, no gradient
  m.reserve_backward();
  // With the optimiser on the device, gradients accumulate across calls until zero_gradients.
  if (!m.optimizer) {
    check_cuda(cudaMemsetAsync(m.grads.data(), 0, m.layout.total * sizeof(float), m.stream),
               "cudaMemsetAsync");
  }
  m.forward_layers(b);
  m.head_loss(b, &grad_scale);
  const bool download = m.downloads->any() && !m.optimizer;
  m.backward_layers(b, download);
  if (download) m.downloads->add_to_host(m.pool);
  m.sync();
  return m.scored_loss(b);
}

double CudaTrainEngine::forward_loss(int64_t n_seq, int64_t seq_len,
                                     std::span<const int32_t> inputs,
                                     std::span<const int32_t> targets,
                                     std::span<const float> weights, MaskMode mask,
                                     int64_t block_len) {
  Impl& m = *impl_;
  m.begin(n_seq, seq_len, inputs, mask, block_len);
  m.check_targets(targets, weights);
  const BatchIndex b = m.index_batch(inputs, targets, weights, false);
  if (b.n_head_rows == 0) return 0.0;
  m.forward_layers(b);
  m.head_loss(b, nullptr);
  m.sync();
  return m.scored_loss(b);
}

void CudaTrainEngine::forward_logits(std::span<const int32_t> tokens, int64_t n_seq, float* logits,
                                     MaskMode mask, int64_t block_len) {
  Impl& m = *impl_;
  if (!logits) fail("CUDA training: forward_logits needs an output buffer");
  if (n_seq < 1 || tokens.size() % static_cast<size_t>(n_seq) != 0) {
    fail("CUDA training: {} tokens do not split into {} sequences of equal length", tokens.size(),
         n_seq);
  }
  m.begin(n_seq, static_cast<int64_t>(tokens.size()) / n_seq, tokens, mask, block_len);
  const BatchIndex b = m.index_batch(tokens, {}, {}, true);
  m.forward_layers(b);
  const int64_t chunk = m.logits_chunk_rows();
  m.head_in.reserve(static_cast<size_t>(m.T * m.E));
  m.logits.reserve(static_cast<size_t>(std::min(chunk, m.T) * m.V));
  gather_rows(m.head_in.data(), m.xnf.data(), m.dev_ints(b.head_src), m.T, m.E, m.stream);
  m.head_input(m.T);
  for (int64_t r0 = 0; r0 < m.T; r0 += chunk) {
    const int64_t rows = std::min(chunk, m.T - r0);
    m.linear_fwd(m.logits.data(), m.head_rows(r0), m.layout.output, rows, m.E, m.V);
    check_cuda(cudaMemcpyAsync(logits + r0 * m.V, m.logits.data(),
                               static_cast<size_t>(rows * m.V) * sizeof(float),
                               cudaMemcpyDeviceToHost, m.stream),
               "cudaMemcpyAsync (logits to host)");
  }
  m.sync();
}

void CudaTrainEngine::enable_device_optimizer() { impl_->enable_optimizer(); }
bool CudaTrainEngine::device_optimizer() const { return impl_->optimizer != nullptr; }
void CudaTrainEngine::zero_gradients() { impl_->zero_grads(); }

double CudaTrainEngine::adamw_step(const AdamWStep& step) {
  Impl& m = *impl_;
  return m.device_optimizer().step(step, m.values.data(), m.values_b.data(), m.grads.data());
}

void CudaTrainEngine::set_moments(const std::string& name, const float* m, const float* v) {
  if (!m || !v) fail("CUDA training: set_moments({}) needs both moment arrays", name);
  impl_->device_optimizer().set_moments(impl_->trainable_slot(name), m, v);
}

void CudaTrainEngine::get_moments(const std::string& name, float* m, float* v) {
  if (!m || !v) fail("CUDA training: get_moments({}) needs both moment arrays", name);
  impl_->device_optimizer().get_moments(impl_->trainable_slot(name), m, v);
}

void CudaTrainEngine::download_values() { impl_->download_all(impl_->values, false); }
void CudaTrainEngine::download_gradients() { impl_->download_all(impl_->grads, true); }

float* CudaTrainEngine::device_gradients() { return impl_->grads.data(); }
size_t CudaTrainEngine::gradient_count() const { return impl_->layout.total; }
void* CudaTrainEngine::stream_handle() { return impl_->stream; }
int CudaTrainEngine::device_index() const { return impl_->device; }

size_t CudaTrainEngine::device_bytes() const {
  const Impl& m = *impl_;
  size_t total = m.values.bytes() + m.grads.bytes() + m.values_b.bytes() +
                 (m.optimizer ? m.optimizer->device_bytes() : 0);
  for (const DeviceArray<bf16>* a :
       {&m.xn1_b, &m.xn2_b, &m.att_b, &m.hid_b, &m.dy_b, &m.dgu_b, &m.head_in_b, &m.dlogits_b,
        &m.q_b, &m.k_b, &m.v_b, &m.probs_b, &m.dout_b, &m.dscores_b}) {
    total += a->bytes();
  }
  for (const DeviceArray<float>* a :
       {&m.x,         &m.xmid,   &m.xn1,         &m.xn2,    &m.rstd1,     &m.rstd2,    &m.q,
        &m.k,         &m.v,      &m.probs,       &m.att,    &m.gu,        &m.hid,      &m.xnf,
        &m.rstdf,     &m.qkv,    &m.heads,       &m.dprobs, &m.dq,        &m.dk,       &m.dv,
        &m.dx,        &m.dxn,    &m.dwide,       &m.dgu,    &m.norm_rows, &m.partials, &m.head_in,
        &m.d_head_in, &m.logits, &m.head_weights}) {
    total += a->bytes();
  }
  return total + m.row_loss.bytes() + m.ints.bytes() + m.rope.bytes();
}

}  // namespace ruvdllm::cuda
