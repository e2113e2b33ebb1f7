// Uploading a model to the GPU engine: norms and biases as f32, each product's weight dense in
// the operand type or kept in its blocks (WeightMode), the embedding table and the RoPE table.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/infer_engine_impl.h"
#include "cuda/swiglu.cuh"
#include "cuda/train_kernels.h"
#include "ruvdllm/core/env_choice.h"
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

// RUVDLLM_CUDA_QUANT_GEMM=auto|fused|dequantize: the measured choice (-1), or either way for
// every row count (to compare them in one build).
int64_t fused_rows_setting() {
  return env_choice<int64_t>(
      "RUVDLLM_CUDA_QUANT_GEMM",
      {{"auto", -1}, {"fused", std::numeric_limits<int64_t>::max()}, {"dequantize", 0}});
}

// RUVDLLM_CUDA_GRAPHS=all|uncached|off: which pass shapes are captured (GraphPolicy).
GraphPolicy graph_policy_setting() {
  return env_choice<GraphPolicy>(
      "RUVDLLM_CUDA_GRAPHS",
      {{"all", GraphPolicy::All}, {"uncached", GraphPolicy::Uncached}, {"off", GraphPolicy::Off}});
}

// RUVDLLM_CUDA_ROW_PAD: values added to each normed hidden row (Impl::hidden_pitch says why).
int64_t hidden_row_pad() {
  const char* set = std::getenv("RUVDLLM_CUDA_ROW_PAD");
  if (!set) return 0;
  char* end = nullptr;
  const long pad = std::strtol(set, &end, 10);
  if (end == set || *end != '\0' || pad < 0 || pad > 4096 || pad % 8 != 0) {
    fail("RUVDLLM_CUDA_ROW_PAD must be a multiple of 8 from 0 to 4096, not '{}'", set);
  }
  return pad;
}

}  // namespace

void CudaInferEngine::Impl::upload_linear(Linear* lin,
                                          std::initializer_list<const TensorView*> parts,
                                          bool gate_up) {
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
  // A matrix of blocks, now on the device, as lin's part from row0.
  auto own_blocks = [&](DeviceArray<uint8_t> blocks, TensorType type, int64_t row0, int64_t rows) {
    lin->quantized.push_back({blocks.data(), type, row0, rows});
    weight_bytes += blocks.bytes();
    lin->owned.push_back(std::move(blocks));
  };
  // The parts in [first, last) uploaded back to back as one matrix of blocks from row0.
  auto keep_blocks = [&](auto first, auto last, int64_t row0) {
    size_t bytes = 0;
    int64_t rows = 0;
    for (auto t = first; t != last; ++t) {
      bytes += (*t)->nbytes;
      rows += (*t)->rows();
    }
    DeviceArray<uint8_t> blocks(bytes);
    size_t at = 0;
    for (auto t = first; t != last; ++t) {
      upload(blocks.data() + at, (*t)->data, (*t)->nbytes, stream);
      at += (*t)->nbytes;
    }
    own_blocks(std::move(blocks), (*first)->type, row0, rows);
  };
  // Parts of one block type (rows of the same stride) become one matrix, so a product over
  // q|k|v or gate|up is one launch, not one per part: WgmmaGemm's stream-K spreads 12288
  // outputs over the SMs far better than three launches of 4096.
  const TensorType first_type = (*parts.begin())->type;
  const bool one_type = std::all_of(parts.begin(), parts.end(),
                                    [&](const TensorView* t) { return t->type == first_type; });
  const TensorView* gate = *parts.begin();
  const TensorView* up = gate_up && parts.size() == 2 ? *std::next(parts.begin()) : nullptr;
  if (!dense && one_type && up && gate->rows() % kSwigluGroup == 0 && up->rows() == gate->rows()) {
    // Groups of 8 gate rows and 8 up rows alternate (two strided copies), so that each
    // accumulator thread of WgmmaGemm holds an output's gate and up values.
    const size_t group_bytes = gate->nbytes / static_cast<size_t>(gate->rows()) * kSwigluGroup;
    const auto groups = static_cast<size_t>(gate->rows() / kSwigluGroup);
    DeviceArray<uint8_t> blocks(gate->nbytes + up->nbytes);
    for (const auto& [t, offset] : {std::pair{gate, size_t{0}}, std::pair{up, group_bytes}}) {
      check_cuda(cudaMemcpy2DAsync(blocks.data() + offset, 2 * group_bytes, t->data, group_bytes,
                                   group_bytes, groups, cudaMemcpyHostToDevice, stream),
                 "cudaMemcpy2DAsync");
    }
    own_blocks(std::move(blocks), first_type, 0, lin->out);
    lin->swiglu_interleaved = true;
  } else if (!dense && one_type) {
    keep_blocks(parts.begin(), parts.end(), 0);
  } else {
    int64_t row0 = 0;
    for (auto t = parts.begin(); t != parts.end(); ++t) {
      if (dense) {
        DeviceArray<uint8_t> blocks((*t)->nbytes);
        upload(blocks.data(), (*t)->data, (*t)->nbytes, stream);
        with_operands([&](auto& o) {
          dequantize(dense_matrix(o).data() + row0 * lin->in, blocks.data(), (*t)->type,
                     (*t)->rows(), lin->in);
        });
        check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
      } else {
        keep_blocks(t, t + 1, row0);
      }
      row0 += (*t)->rows();
    }
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
CudaInferEngine::CudaInferEngine(const ModelConfig& config, const ModelWeights& weights,
                                 const InferOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = config;
  m.options = options;
  m.fused_rows = fused_rows_setting();
  m.swiglu_epilogue =
      env_choice<bool>("RUVDLLM_CUDA_SWIGLU", {{"epilogue", true}, {"kernel", false}});
  m.hidden_pitch = config.n_embd + hidden_row_pad();
  m.graph_policy = options.cuda_graph ? graph_policy_setting() : GraphPolicy::Off;
  m.trace = std::getenv("RUVDLLM_CUDA_TRACE") != nullptr;
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
  m.past_on_device.reserve(1);
  m.past_on_host.reserve(1);
  // Only products over blocks kept on the device (bf16 operands) use QuantGemm, or WgmmaGemm
  // unless RUVDLLM_CUDA_GEMM=wgmma; their split-K partials take tens of MB, which dense and
  // exact engines need not hold.
  const bool blocks = m.options.weights == WeightMode::Quantized && !m.exact();
  m.gemm = std::make_unique<InferGemm>(
      m.stream, blocks ? InferGemm::Engines::Any : InferGemm::Engines::DenseWeights);
  if (blocks) m.quant_gemm = std::make_unique<QuantGemm>(m.stream);
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
    m.upload_linear(&d.gate_up, {&lw.ffn_gate, &lw.ffn_up}, /*gate_up=*/true);
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

}  // namespace ruvdllm::cuda
