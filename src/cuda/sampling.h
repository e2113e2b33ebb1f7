#pragma once
// Token sampling on the GPU: for each candidate row of a step's logits (left on the device by
// the forward pass), the same proposal ruvdllm::sample_position makes on the CPU (token drawn
// from softmax(logits/τ) under top-k/top-p, or Gumbel-max; the rule's confidence, margin or
// entropy score), with the same counter-based random numbers (diffusion/rng.h). Only the
// proposals (position, token, confidence, score) come back to the host, or with sample_top only
// the committed ones; the rows × vocab logits never do.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>
#include <vector>

#include "cuda/device_buffer.h"
#include "ruvdllm/diffusion/sampler.h"

namespace ruvdllm::cuda {

class CudaRowSampler {
 public:
  CudaRowSampler(int64_t vocab, cudaStream_t stream);

  // logits: device f32 rows of `vocab`; row rows[i] is sampled for canvas position positions[i]
  // (the key of its random numbers). uncond: the unconditional rows in the same layout when
  // options.cfg_scale > 0 (else null). As on the CPU, each sampled row is modified in place:
  // guidance is combined into it and options.mask_id's logit set to −inf. Writes
  // out[i] = the proposal for positions[i] (out.size() == rows.size() == positions.size()),
  // synchronising the stream. Error for mismatched sizes or a row outside [0, n_rows).
  void sample(float* logits, const float* uncond, int64_t n_rows, std::span<const int64_t> rows,
              std::span<const int64_t> positions, const SamplingOptions& options, int64_t step,
              std::span<Proposal> out);

  // sample() followed by choose_top, both on the device, for the ranking rules (confidence,
  // margin, entropy): the proposals stay on the GPU and only the `count` committed ones come
  // back, written to *out ascending by position (count is clamped to [0, rows.size()], as
  // choose_top does). The choice is choose_top's: keys = score (NaN → −inf), with
  // options.alg_temp > 0 score/alg_temp + Gumbel noise keyed by (options.seed, step, position,
  // PositionChoice), ties to the lower position. Rows are modified in place as by sample().
  // The one place the result may differ from the host's: with alg_temp > 0 the noise's two
  // logarithms are the device's double log, which may differ from glibc's in the last bit, so
  // two keys within an ulp of each other could be ordered differently. Error, before the
  // device is touched, for Origin/Random, mismatched sizes, a row outside [0, n_rows),
  // repeated rows or positions, or a negative position.
  void sample_top(float* logits, const float* uncond, int64_t n_rows, std::span<const int64_t> rows,
                  std::span<const int64_t> positions, const SamplingOptions& options, int64_t step,
                  int64_t count, std::vector<Proposal>* out);

 private:
  // One sampled row as the kernel reads it; the row's random draws are made on the host from
  // diffusion/rng.h, so the device needs no copy of the key derivation.
  struct RowJob {
    int64_t row;
    int64_t position;
    double token_uniform;   // random_uniform(random_key(.., Token))
    uint64_t gumbel_key;    // random_key(.., Gumbel)
    double choice_uniform;  // random_uniform(random_key(.., PositionChoice)); sample_top only
  };
  // A candidate as the choice kernels compare it (sampling.cu's ChoiceEntry).
  struct ChoiceEntry {
    double key;
    int64_t position;
  };

  // Checks the arguments, draws the rows' random numbers, uploads the jobs and launches the row
  // kernel into d_out_ (nothing when rows is empty). Returns the number of rows.
  size_t launch_rows(float* logits, const float* uncond, int64_t n_rows,
                     std::span<const int64_t> rows, std::span<const int64_t> positions,
                     const SamplingOptions& options, int64_t step, bool choice_noise);

  int64_t vocab_;
  cudaStream_t stream_;
  int fixed_shift_;  // weights become integers e·2^shift, exact to add (see sampling.cu)
  DeviceArray<RowJob> d_jobs_;
  DeviceArray<Proposal> d_out_;
  DeviceArray<ChoiceEntry> d_choice_;
  DeviceArray<int64_t> d_chosen_positions_;
  DeviceArray<Proposal> d_top_;
  PinnedArray<RowJob> h_jobs_;
  PinnedArray<Proposal> h_out_;
};

}  // namespace ruvdllm::cuda
