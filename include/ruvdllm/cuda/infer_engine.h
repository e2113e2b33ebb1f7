#pragma once
// Inference on one CUDA device: the denoising step's forward pass with bf16 tensor-core GEMMs
// (f32 accumulation, f32 residual stream), fused element-wise kernels and flash attention,
// the whole pass replayed from a CUDA graph, and on-GPU sampling of the step's proposals. The
// logits stay on the device; only token ids and scores come back.
//
// Weights: any tensor type the runtime loads. F32/F16/BF16 become bf16 on the device. Quantized
// matrices (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K) either stay quantized and are dequantized into a bf16
// scratch matrix just before each product (WeightMode::Quantized: the model's own size in GPU
// memory) or are dequantized once at load (WeightMode::Dense: twice an 8B model's bytes, but
// every step runs at bf16 speed).
//
// Precision::F32 is the exact mode: f32 weights and operands, f32 GEMMs (never TF32) and an f32
// attention, so logits follow the CPU's within f32 rounding and tokens match it except at
// near-exact ties. Several times slower than bf16 on large models; meant for checking.
//
// Plain C++ (no CUDA headers), built only when RUVDLLM_HAVE_CUDA is defined.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ruvdllm/diffusion/denoiser.h"
#include "ruvdllm/model/model.h"

namespace ruvdllm::cuda {

// Auto: Dense when the dequantized matrices take at most half the GPU's free memory, else
// Quantized (an 8B Q4_K model runs about 1.9× faster per step dequantized once on an H100).
enum class WeightMode { Auto, Quantized, Dense };

// The GEMMs' operand type (accumulation and the residual stream are f32 in both).
enum class Precision { Bf16, F32 };

struct InferOptions {
  int device = 0;
  WeightMode weights = WeightMode::Auto;
  Precision precision = Precision::Bf16;
  bool cuda_graph = true;  // replay each pass shape from a captured graph
};

class CudaInferEngine {
 public:
  // Uploads the weights. Error for a model the backend cannot run yet (mixture of experts), an
  // unsupported tensor type, a bad device index or a CUDA failure (out of memory included).
  CudaInferEngine(const ModelConfig& config, const ModelWeights& weights,
                  const InferOptions& options = {});
  ~CudaInferEngine();
  CudaInferEngine(const CudaInferEngine&) = delete;
  CudaInferEngine& operator=(const CudaInferEngine&) = delete;

  const ModelConfig& config() const;
  std::string device_name() const;
  size_t weight_bytes() const;     // device bytes of the weights
  WeightMode weight_mode() const;  // as chosen (never Auto)
  size_t device_bytes() const;     // everything the engine holds now

  // One pass (same contract as Model::forward); the logits stay on the device until the next
  // pass. Returns after the pass has finished on the GPU. A KV cache lives on the device: the
  // host KVCache only counts its tokens and carries the engine's fill stamp (device_fill), so a
  // cache must start empty and be filled by this engine (Error otherwise). With logit_rows the
  // output head runs for those rows only (padded to a multiple of 64 rows per sequence), and
  // proposing a position outside them is an Error.
  void forward(std::span<const int32_t> tokens, const ForwardOptions& options);
  // Copies the last pass's logits (tokens × vocab floats) to the host, for tests. After a pass
  // with ForwardOptions::logit_rows, the rows it did not compute are NaN.
  void copy_logits(float* host) const;
  // On-GPU sampling of the last pass (see Denoiser::propose).
  void propose(std::span<const int64_t> positions, int64_t first_row,
               const SamplingOptions& options, int64_t step, std::vector<Proposal>* out);
  // Proposals and the choice of the `count` to commit, both on the GPU (see
  // Denoiser::propose_top); only the chosen ones come back. False for the rules whose choice
  // does not rank proposals (origin, random).
  bool propose_top(std::span<const int64_t> candidates, int64_t first_row,
                   const SamplingOptions& options, int64_t step, int64_t count,
                   std::vector<Proposal>* out);

  // Runs one pass eagerly with events between its operations and returns the milliseconds
  // spent per kind of operation (gemm, dequantize, attention, ...), in pass order.
  std::vector<std::pair<std::string, double>> profile(std::span<const int32_t> tokens,
                                                      const ForwardOptions& options);

  // CUDA graphs kept for replay: one per distinct pass shape, at most the 16 used last.
  int64_t graphs_captured() const;

  // One throw-away pass of min(256, context) positions, so that the kernels it needs (cuBLAS
  // loads each on first use) are loaded before the first real step, as llama.cpp's warm-up run
  // does. It leaves no logits behind: propose() needs a real pass first.
  void warm_up();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The GPU denoiser `generate` runs on.
class CudaDenoiser final : public Denoiser {
 public:
  // Loads the weights and runs the engine's warm-up pass.
  CudaDenoiser(const Model& model, const InferOptions& options = {});
  const ModelConfig& config() const override { return engine_.config(); }
  std::string description() const override;
  void forward(std::span<const int32_t> tokens, const ForwardOptions& options) override {
    engine_.forward(tokens, options);
  }
  void propose(std::span<const int64_t> positions, int64_t first_row,
               const SamplingOptions& options, int64_t step, std::vector<Proposal>* out) override {
    engine_.propose(positions, first_row, options, step, out);
  }
  bool propose_top(std::span<const int64_t> candidates, int64_t first_row,
                   const SamplingOptions& options, int64_t step, int64_t count,
                   std::vector<Proposal>* out) override {
    return engine_.propose_top(candidates, first_row, options, step, count, out);
  }
  CudaInferEngine& engine() { return engine_; }

 private:
  CudaInferEngine engine_;
  int device_;
};

}  // namespace ruvdllm::cuda
