// Host side of CudaRowSampler: argument checks (all before the device is touched), the rows'
// random draws from diffusion/rng.h, one upload of the jobs, the kernel (sampling.cu), and the
// proposals back through pinned memory.
#include "cuda/sampling.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstddef>
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
}  // namespace detail

CudaRowSampler::CudaRowSampler(int64_t vocab, cudaStream_t stream)
    : vocab_(vocab), stream_(stream), fixed_shift_(0) {
  if (vocab <= 0 || vocab > INT32_MAX) {
    fail("CUDA sampler: vocabulary size must be in [1, 2^31), got {}", vocab);
  }
  // Every weight is at most 1, so a row's fixed-point total stays below vocab·2^shift < 2^62.
  fixed_shift_ = 62 - static_cast<int>(std::bit_width(static_cast<uint64_t>(vocab)));
}

void CudaRowSampler::sample(float* logits, const float* uncond, int64_t n_rows,
                            std::span<const int64_t> rows, std::span<const int64_t> positions,
                            const SamplingOptions& options, int64_t step, std::span<Proposal> out) {
  static_assert(sizeof(RowJob) == 32 && offsetof(RowJob, position) == 8 &&
                    offsetof(RowJob, token_uniform) == 16 && offsetof(RowJob, gumbel_key) == 24,
                "RowJob's layout is KernelJob's (sampling.cu)");
  if (rows.size() != positions.size() || rows.size() != out.size()) {
    fail("CUDA sampler: {} rows, {} positions and {} outputs must be as many", rows.size(),
         positions.size(), out.size());
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
  std::vector<int64_t> sorted(rows.begin(), rows.end());
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    fail("CUDA sampler: rows must be distinct (each is modified in place)");
  }
  if (rows.empty()) return;
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
  }
  check_cuda(cudaMemcpyAsync(d_jobs_.data(), h_jobs_.data(), count * sizeof(RowJob),
                             cudaMemcpyHostToDevice, stream_),
             "cudaMemcpyAsync");
  detail::launch_sample_rows(logits, uncond, vocab_, d_jobs_.data(), d_out_.data(),
                             static_cast<int64_t>(count), options, fixed_shift_, stream_);
  check_cuda(cudaMemcpyAsync(h_out_.data(), d_out_.data(), count * sizeof(Proposal),
                             cudaMemcpyDeviceToHost, stream_),
             "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  std::copy(h_out_.data(), h_out_.data() + count, out.begin());
}

}  // namespace ruvdllm::cuda
