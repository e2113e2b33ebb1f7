// Host side of CudaRowSampler: argument checks (all before the device is touched), the rows'
// random draws from diffusion/rng.h, one upload of the jobs, the kernels (sampling.cu), and the
// proposals (all, or only the chosen ones) back through pinned memory.
#include "cuda/sampling.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cuda/cuda_check.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/rng.h"

namespace ruvdllm::cuda {
namespace detail {
// Defined in sampling.cu.
int64_t sampling_top_k_limit();
void launch_sample_rows(float* logits, const float* uncond, int64_t vocab, const void* jobs,
                        Proposal* out, int64_t count, const SamplingOptions& options,
                        int fixed_shift, cudaStream_t stream);
void launch_choose_top(const Proposal* proposals, const void* jobs, int64_t n, int64_t count,
                       float alg_temp, void* entries, int64_t* chosen_positions, Proposal* top,
                       cudaStream_t stream);
}  // namespace detail

namespace {

// A value that occurs twice in `values`, if any. The values are canvas rows and positions:
// when they span a range of at most 8 per value, a bitmap answers in one pass (a per-step
// check must not cost what the step's sampling does); otherwise a sorted copy does.
std::optional<int64_t> first_repeated(std::span<const int64_t> values) {
  if (values.size() < 2) return std::nullopt;
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  const auto range = static_cast<uint64_t>(*hi) - static_cast<uint64_t>(*lo);
  if (range < 8 * values.size()) {
    std::vector<bool> seen(range + 1, false);
    for (const int64_t v : values) {
      const auto at = static_cast<size_t>(static_cast<uint64_t>(v) - static_cast<uint64_t>(*lo));
      if (seen[at]) return v;
      seen[at] = true;
    }
    return std::nullopt;
  }
  std::vector<int64_t> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  const auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
  if (repeated != sorted.end()) return *repeated;
  return std::nullopt;
}

bool is_ranking(Unmasking rule) {
  return rule == Unmasking::Confidence || rule == Unmasking::Margin || rule == Unmasking::Entropy;
}

}  // namespace

CudaRowSampler::CudaRowSampler(int64_t vocab, cudaStream_t stream)
    : vocab_(vocab), stream_(stream), fixed_shift_(0) {
  if (vocab <= 0 || vocab > INT32_MAX) {
    fail("CUDA sampler: vocabulary size must be in [1, 2^31), got {}", vocab);
  }
  // Every weight is at most 1, so a row's fixed-point total stays below vocab·2^shift < 2^62.
  fixed_shift_ = 62 - static_cast<int>(std::bit_width(static_cast<uint64_t>(vocab)));
}

size_t CudaRowSampler::launch_rows(float* logits, const float* uncond, int64_t n_rows,
                                   std::span<const int64_t> rows,
                                   std::span<const int64_t> positions,
                                   const SamplingOptions& options, int64_t step,
                                   bool choice_noise) {
  static_assert(sizeof(RowJob) == 40 && offsetof(RowJob, position) == 8 &&
                    offsetof(RowJob, token_uniform) == 16 && offsetof(RowJob, gumbel_key) == 24 &&
                    offsetof(RowJob, choice_uniform) == 32,
                "RowJob's layout is KernelJob's (sampling_block.cuh)");
  if (rows.size() != positions.size()) {
    fail("CUDA sampler: {} rows and {} positions must be as many", rows.size(), positions.size());
  }
  if (n_rows < 0) fail("CUDA sampler: negative row count {}", n_rows);
  validate_sampling(options);
  const bool restrict_k = options.temperature > 0 && options.top_k > 0 && options.top_k < vocab_;
  if (restrict_k && options.top_k > detail::sampling_top_k_limit()) {
    fail("CUDA sampler: top_k {} is above the GPU limit of {}", options.top_k,
         detail::sampling_top_k_limit());
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= n_rows) {
      fail("CUDA sampler: row {} (entry {}) is outside [0, {})", rows[i], i, n_rows);
    }
  }
  if (const auto repeated = first_repeated(rows)) {
    fail(
        "CUDA sampler: row {} is asked for twice (rows must be distinct: each is modified in "
        "place)",
        *repeated);
  }
  if (rows.empty()) return 0;
  if (logits == nullptr) fail("CUDA sampler: logits pointer is null");
  if (rows.size() > static_cast<size_t>(INT_MAX)) {
    fail("CUDA sampler: too many rows in one call: {}", rows.size());
  }

  const size_t count = rows.size();
  h_jobs_.reserve(count);
  h_out_.reserve(count);
  d_jobs_.reserve(count);
  d_out_.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    RowJob& job = h_jobs_.data()[i];
    job.row = rows[i];
    job.position = positions[i];
    job.token_uniform =
        random_uniform(random_key(options.seed, step, positions[i], RandomStream::Token));
    job.gumbel_key = random_key(options.seed, step, positions[i], RandomStream::Gumbel);
    // The hashing stays on the host (rng.h is not device code); the logarithms of the noise
    // are taken on the device.
    job.choice_uniform = choice_noise ? random_uniform(random_key(options.seed, step, positions[i],
                                                                  RandomStream::PositionChoice))
                                      : 0.0;
  }
  check_cuda(cudaMemcpyAsync(d_jobs_.data(), h_jobs_.data(), count * sizeof(RowJob),
                             cudaMemcpyHostToDevice, stream_),
             "cudaMemcpyAsync");
  detail::launch_sample_rows(logits, uncond, vocab_, d_jobs_.data(), d_out_.data(),
                             static_cast<int64_t>(count), options, fixed_shift_, stream_);
  return count;
}

void CudaRowSampler::sample(float* logits, const float* uncond, int64_t n_rows,
                            std::span<const int64_t> rows, std::span<const int64_t> positions,
                            const SamplingOptions& options, int64_t step, std::span<Proposal> out) {
  if (rows.size() != positions.size() || rows.size() != out.size()) {
    fail("CUDA sampler: {} rows, {} positions and {} outputs must be as many", rows.size(),
         positions.size(), out.size());
  }
  const size_t count = launch_rows(logits, uncond, n_rows, rows, positions, options, step, false);
  if (count == 0) return;
  check_cuda(cudaMemcpyAsync(h_out_.data(), d_out_.data(), count * sizeof(Proposal),
                             cudaMemcpyDeviceToHost, stream_),
             "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  std::copy(h_out_.data(), h_out_.data() + count, out.begin());
}

void CudaRowSampler::sample_top(float* logits, const float* uncond, int64_t n_rows,
                                std::span<const int64_t> rows, std::span<const int64_t> positions,
                                const SamplingOptions& options, int64_t step, int64_t count,
                                std::vector<Proposal>* out) {
  static_assert(sizeof(ChoiceEntry) == 16 && offsetof(ChoiceEntry, position) == 8,
                "ChoiceEntry's layout is sampling.cu's");
  if (out == nullptr) fail("CUDA sampler: sample_top needs an output vector");
  if (!is_ranking(options.rule)) {
    fail(
        "CUDA sampler: choosing positions on the GPU needs a ranking rule (confidence, margin, "
        "entropy), got {}",
        unmasking_name(options.rule));
  }
  if (rows.size() != positions.size()) {
    fail("CUDA sampler: {} rows and {} positions must be as many", rows.size(), positions.size());
  }
  // Ties go to the lower position, so positions must tell candidates apart; the chosen ones
  // are marked by their position, with INT64_MAX meaning "not chosen".
  for (size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0 || positions[i] == INT64_MAX) {
      fail("CUDA sampler: position {} (entry {}) must be in [0, 2^63 - 1)", positions[i], i);
    }
  }
  if (const auto repeated = first_repeated(positions)) {
    fail("CUDA sampler: position {} is a candidate more than once", *repeated);
  }
  const size_t n =
      launch_rows(logits, uncond, n_rows, rows, positions, options, step, options.alg_temp > 0);
  out->clear();
  if (n == 0) return;
  const auto chosen = static_cast<size_t>(std::clamp<int64_t>(count, 0, static_cast<int64_t>(n)));
  if (chosen > 0) {
    d_choice_.reserve(n);
    d_chosen_positions_.reserve(n);
    d_top_.reserve(chosen);
    detail::launch_choose_top(d_out_.data(), d_jobs_.data(), static_cast<int64_t>(n),
                              static_cast<int64_t>(chosen), options.alg_temp, d_choice_.data(),
                              d_chosen_positions_.data(), d_top_.data(), stream_);
    check_cuda(cudaMemcpyAsync(h_out_.data(), d_top_.data(), chosen * sizeof(Proposal),
                               cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync");
  }
  // Also for nothing chosen: the rows' in-place changes are done when this returns, as with
  // sample(), and a fault in the row kernel surfaces here.
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  out->assign(h_out_.data(), h_out_.data() + chosen);
}

}  // namespace ruvdllm::cuda
