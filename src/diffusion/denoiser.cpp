// The CPU denoiser: Model::forward into a host logits buffer, rows sampled in parallel.
#include "ruvdllm/diffusion/denoiser.h"

#include "ruvdllm/core/error.h"

namespace ruvdllm {

bool Denoiser::propose_top(std::span<const int64_t>, int64_t, const SamplingOptions&, int64_t,
                           int64_t, std::vector<Proposal>*) {
  return false;
}

std::string ModelDenoiser::description() const {
  return "cpu, " + std::to_string(pool_.size()) + (pool_.size() == 1 ? " thread" : " threads");
}

void ModelDenoiser::forward(std::span<const int32_t> tokens, const ForwardOptions& options) {
  const auto vocab = static_cast<size_t>(model_.config().vocab_size);
  if (logits_.size() < tokens.size() * vocab) logits_.resize(tokens.size() * vocab);
  model_.forward(tokens, options, logits_.data(), pool_);
  n_seq_ = options.n_seq;
  rows_per_seq_ = static_cast<int64_t>(tokens.size()) / options.n_seq;
}

void ModelDenoiser::propose(std::span<const int64_t> positions, int64_t first_row,
                            const SamplingOptions& options, int64_t step,
                            std::vector<Proposal>* out) {
  const int64_t vocab = model_.config().vocab_size;
  for (int64_t p : positions) {
    if (p - first_row < 0 || p - first_row >= rows_per_seq_) {
      fail("denoiser: position {} is outside the last pass's rows [{}, {})", p, first_row,
           first_row + rows_per_seq_);
    }
  }
  const float* uncond = n_seq_ == 2 && options.cfg_scale > 0
                            ? logits_.data() + rows_per_seq_ * vocab
                            : nullptr;
  sample_rows(logits_.data(), uncond, vocab, positions, first_row, options, step, pool_,
              &scratch_, out);
}

}  // namespace ruvdllm
