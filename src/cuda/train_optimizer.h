#pragma once
// AdamW on the device for CudaTrainEngine: the two moments of every trainable weight in
// buffers laid out like the engine's values (param_layout.h), the global gradient norm as a
// fixed-order device reduction, and one kernel that clips, steps and refreshes the bf16 copy.
// The arithmetic is train::AdamW's, operation for operation (train_kernels.h: adamw_update).
#include <cuda_runtime_api.h>

#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/param_layout.h"
#include "cuda/train_kernels.h"
#include "ruvdllm/cuda/train_engine.h"

namespace ruvdllm::cuda {

class DeviceAdamW {
 public:
  // Trainable: the layout's tensors with a gradient pointer. Moments start at zero.
  DeviceAdamW(const ParamLayout& layout, cudaStream_t stream);

  // Clips grads to step.max_norm and steps values (and values_bf16) in place, on the stream;
  // waits for it and returns the norm before clipping.
  double step(const AdamWStep& step, float* values, bf16* values_bf16, const float* grads);
  // One trainable tensor's moments (slot.count floats each), copied in stream order.
  void set_moments(const ParamSlot& slot, const float* m, const float* v);
  void get_moments(const ParamSlot& slot, float* m, float* v);
  size_t device_bytes() const;

 private:
  void copy_moments(const ParamSlot& slot, const float* m_in, const float* v_in, float* m_out,
                    float* v_out);
  cudaStream_t stream_;
  DeviceArray<float> m_, v_;
  std::vector<OptimizerChunk> chunks_;
  DeviceArray<OptimizerChunk> chunks_dev_;
  DeviceArray<double> norm_partials_, norm_;
  DeviceArray<float> clip_scale_;
  PinnedArray<double> norm_host_;
};

}  // namespace ruvdllm::cuda
