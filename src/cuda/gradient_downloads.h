#pragma once
// The gradients' way back to the host tensors during a CUDA training step: the backward pass
// marks each segment of the parameter buffer final (a layer, then the head, then the token
// embeddings) and its copy to pinned memory starts at once on a second stream, so the copies
// and the host-side adds overlap the rest of the pass.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/param_layout.h"

namespace ruvdllm {
class ThreadPool;
}

namespace ruvdllm::cuda {

class GradientDownloads {
 public:
  // staging: pinned host memory of layout.total floats, which the copies land in.
  GradientDownloads(const ParamLayout& layout, int64_t n_layers, float* staging);
  ~GradientDownloads();
  GradientDownloads(const GradientDownloads&) = delete;
  GradientDownloads& operator=(const GradientDownloads&) = delete;

  // Whether any tensor takes gradients (with none, there is nothing to download).
  bool any() const { return any_grad_; }

  // The backward pass on `stream` has finished this part of `grads` (the device's parameter
  // buffer, laid out as `layout`): queue its copy to the host.
  void layer_done(int64_t layer, const float* grads, cudaStream_t stream);
  void head_done(const float* grads, cudaStream_t stream);
  void embedding_done(const float* grads, cudaStream_t stream);

  // Adds every downloaded segment into the host tensors' gradients, in the order the backward
  // pass finishes them (head, last layer … first, embeddings), each as soon as its copy lands.
  void add_to_host(ThreadPool& pool);

 private:
  // A run of one tensor's floats to add: dst += src (src in the staging buffer).
  struct Piece {
    float* dst;
    const float* src;
    size_t n;
  };
  struct Segment {
    size_t begin = 0, end = 0;
    cudaEvent_t ready = nullptr, done = nullptr;
    std::vector<Piece> pieces;
  };
  void enqueue(Segment& segment, const float* grads, cudaStream_t stream);
  Segment& head() { return segments_[static_cast<size_t>(n_layers_)]; }
  Segment& embedding() { return segments_[static_cast<size_t>(n_layers_ + 1)]; }

  int64_t n_layers_;
  float* staging_;
  cudaStream_t copy_stream_ = nullptr;
  std::vector<Segment> segments_;  // one per layer, then the head's, then the embeddings'
  bool any_grad_ = false;
};

}  // namespace ruvdllm::cuda
