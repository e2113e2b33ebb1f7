#include "cuda/train_optimizer.h"

#include <algorithm>
#include <cmath>

#include "cuda/cuda_check.h"
#include "ruvdllm/core/error.h"

namespace ruvdllm::cuda {

DeviceAdamW::DeviceAdamW(const ParamLayout& layout, cudaStream_t stream) : stream_(stream) {
  for (const ParamSlot& slot : layout.slots) {
    if (!slot.tensor.grad) continue;
    for (size_t at = 0; at < slot.count; at += kOptimizerChunk) {
      const size_t n = std::min(static_cast<size_t>(kOptimizerChunk), slot.count - at);
      chunks_.push_back({static_cast<int64_t>(slot.offset + at), static_cast<int32_t>(n),
                         slot.tensor.decay ? 1 : 0});
    }
  }
  m_.reserve(layout.total);
  v_.reserve(layout.total);
  check_cuda(cudaMemsetAsync(m_.data(), 0, layout.total * sizeof(float), stream_),
             "cudaMemsetAsync");
  check_cuda(cudaMemsetAsync(v_.data(), 0, layout.total * sizeof(float), stream_),
             "cudaMemsetAsync");
  chunks_dev_.reserve(std::max<size_t>(1, chunks_.size()));
  if (!chunks_.empty()) {
    check_cuda(cudaMemcpyAsync(chunks_dev_.data(), chunks_.data(),
                               chunks_.size() * sizeof(OptimizerChunk), cudaMemcpyHostToDevice,
                               stream_),
               "cudaMemcpyAsync (optimiser chunks)");
  }
  norm_partials_.reserve(std::max<size_t>(1, chunks_.size()));
  norm_.reserve(1);
  clip_scale_.reserve(1);
  norm_host_.reserve(1);
  // chunks_ is read by the copy above: keep it until the stream has it.
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

double DeviceAdamW::step(const AdamWStep& st, float* values, bf16* values_bf16,
                         const float* grads) {
  if (st.t < 1) fail("CUDA training: AdamW step number {} must be at least 1", st.t);
  const int64_t n = static_cast<int64_t>(chunks_.size());
  if (n == 0) return 0.0;
  gradient_square_sums(norm_partials_.data(), grads, chunks_dev_.data(), n, stream_);
  finish_gradient_norm(norm_.data(), clip_scale_.data(), norm_partials_.data(), n, st.max_norm,
                       stream_);
  // The constants exactly as train::AdamW::step computes them.
  const double t = static_cast<double>(st.t);
  AdamWConstants k;
  k.beta1 = static_cast<float>(st.beta1);
  k.beta2 = static_cast<float>(st.beta2);
  k.step_size = static_cast<float>(st.lr / (1.0 - std::pow(st.beta1, t)));
  k.v_correction = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(st.beta2, t)));
  k.eps = static_cast<float>(st.eps);
  k.keep = static_cast<float>(1.0 - st.lr * st.weight_decay);
  adamw_update(values, values_bf16, m_.data(), v_.data(), grads, clip_scale_.data(),
               chunks_dev_.data(), n, k, stream_);
  check_cuda(cudaMemcpyAsync(norm_host_.data(), norm_.data(), sizeof(double),
                             cudaMemcpyDeviceToHost, stream_),
             "cudaMemcpyAsync (gradient norm)");
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return norm_host_.data()[0];
}

void DeviceAdamW::set_moments(const ParamSlot& slot, const float* m, const float* v) {
  copy_moments(slot, m, v, nullptr, nullptr);
}

void DeviceAdamW::get_moments(const ParamSlot& slot, float* m, float* v) {
  copy_moments(slot, nullptr, nullptr, m, v);
}

void DeviceAdamW::copy_moments(const ParamSlot& slot, const float* m_in, const float* v_in,
                               float* m_out, float* v_out) {
  const size_t bytes = slot.count * sizeof(float);
  // Async on the engine's stream (then waited for), so the copies are ordered with its work.
  const auto copy = [&](void* dst, const void* src, cudaMemcpyKind kind) {
    check_cuda(cudaMemcpyAsync(dst, src, bytes, kind, stream_), "cudaMemcpyAsync (AdamW moments)");
  };
  if (m_in) {
    copy(m_.data() + slot.offset, m_in, cudaMemcpyHostToDevice);
    copy(v_.data() + slot.offset, v_in, cudaMemcpyHostToDevice);
  } else {
    copy(m_out, m_.data() + slot.offset, cudaMemcpyDeviceToHost);
    copy(v_out, v_.data() + slot.offset, cudaMemcpyDeviceToHost);
  }
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

size_t DeviceAdamW::device_bytes() const {
  return m_.bytes() + v_.bytes() + chunks_dev_.bytes() + norm_partials_.bytes() + norm_.bytes() +
         clip_scale_.bytes();
}

}  // namespace ruvdllm::cuda
