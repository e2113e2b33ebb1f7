#pragma once
// What a generation step asks of the model: one forward pass over the canvas, then a token
// proposal for some rows of that pass's logits. Where the logits live is the implementation's
// business: ModelDenoiser keeps them in host memory and samples them on the CPU; the CUDA
// backend (include/ruvdllm/cuda/denoiser.h) keeps them on the GPU and hands back only the
// proposals.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/diffusion/sampler.h"
#include "ruvdllm/model/model.h"

namespace ruvdllm {

class Denoiser {
 public:
  virtual ~Denoiser() = default;
  virtual const ModelConfig& config() const = 0;
  // "cpu, 2 threads", "cuda:0, NVIDIA H100 80GB HBM3", ...
  virtual std::string description() const = 0;

  // One forward pass, as Model::forward computes it; the logits stay inside until the next.
  virtual void forward(std::span<const int32_t> tokens, const ForwardOptions& options) = 0;
  // Proposals for canvas positions `positions` of the last pass: row p − first_row of its first
  // sequence, and with options.cfg_scale > 0 on a two-sequence pass the same row of the second
  // sequence as the unconditional logits. out[i] is sample_position's proposal for positions[i]
  // (guidance and the mask token's −inf applied first).
  virtual void propose(std::span<const int64_t> positions, int64_t first_row,
                       const SamplingOptions& options, int64_t step,
                       std::vector<Proposal>* out) = 0;
  // For the ranking rules: propose for `candidates` as above, then choose as choose_top does
  // (count = how many, options.alg_temp and options.seed its noise), writing only the `count`
  // committed proposals to out, ascending by position. Returns false, leaving out untouched,
  // where the implementation has no faster way than propose + choose_top on the host (the
  // caller then does that).
  virtual bool propose_top(std::span<const int64_t> candidates, int64_t first_row,
                           const SamplingOptions& options, int64_t step, int64_t count,
                           std::vector<Proposal>* out);
};

// The CPU implementation over any Model.
class ModelDenoiser final : public Denoiser {
 public:
  ModelDenoiser(Model& model, ThreadPool& pool) : model_(model), pool_(pool) {}
  const ModelConfig& config() const override { return model_.config(); }
  std::string description() const override;
  void forward(std::span<const int32_t> tokens, const ForwardOptions& options) override;
  void propose(std::span<const int64_t> positions, int64_t first_row,
               const SamplingOptions& options, int64_t step, std::vector<Proposal>* out) override;

 private:
  Model& model_;
  ThreadPool& pool_;
  std::vector<float> logits_;
  int64_t rows_per_seq_ = 0;
  int64_t n_seq_ = 0;
  std::vector<RowScratch> scratch_;
};

}  // namespace ruvdllm
