#include "cuda/gradient_downloads.h"

#include <algorithm>

#include "cuda/cuda_check.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"

namespace ruvdllm::cuda {
namespace {
// Gradient floats one host task adds (1 MB).
constexpr size_t kHostAddChunk = size_t{1} << 18;
}  // namespace

GradientDownloads::GradientDownloads(const ParamLayout& layout, int64_t n_layers, float* staging)
    : n_layers_(n_layers), staging_(staging) {
  check_cuda(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking),
             "cudaStreamCreateWithFlags");
  segments_.resize(static_cast<size_t>(n_layers + 2));
  for (int64_t l = 0; l < n_layers; ++l) {
    segments_[static_cast<size_t>(l)].begin = layout.layer_begin[static_cast<size_t>(l)];
    segments_[static_cast<size_t>(l)].end = layout.layer_begin[static_cast<size_t>(l + 1)];
  }
  head().begin = layout.output_norm;  // output_norm, then output unless tied
  head().end = layout.total;
  embedding().begin = layout.token_embd;
  embedding().end = layout.output_norm;
  for (Segment& seg : segments_) {
    check_cuda(cudaEventCreateWithFlags(&seg.ready, cudaEventDisableTiming),
               "cudaEventCreateWithFlags");
    check_cuda(cudaEventCreateWithFlags(&seg.done, cudaEventDisableTiming),
               "cudaEventCreateWithFlags");
  }
  for (const ParamSlot& slot : layout.slots) {
    if (!slot.tensor.grad) continue;
    any_grad_ = true;
    Segment* owner = nullptr;
    for (Segment& seg : segments_) {
      if (slot.offset >= seg.begin && slot.offset + slot.count <= seg.end) owner = &seg;
    }
    if (!owner)
      fail("CUDA training: tensor {} lies outside every download segment", slot.tensor.name);
    for (size_t at = 0; at < slot.count; at += kHostAddChunk) {
      owner->pieces.push_back({slot.tensor.grad + at, staging_ + slot.offset + at,
                               std::min(kHostAddChunk, slot.count - at)});
    }
  }
}

GradientDownloads::~GradientDownloads() {
  for (Segment& seg : segments_) {
    if (seg.ready) cudaEventDestroy(seg.ready);
    if (seg.done) cudaEventDestroy(seg.done);
  }
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
}

void GradientDownloads::layer_done(int64_t layer, const float* grads, cudaStream_t stream) {
  enqueue(segments_.at(static_cast<size_t>(layer)), grads, stream);
}
void GradientDownloads::head_done(const float* grads, cudaStream_t stream) {
  enqueue(head(), grads, stream);
}
void GradientDownloads::embedding_done(const float* grads, cudaStream_t stream) {
  enqueue(embedding(), grads, stream);
}

void GradientDownloads::enqueue(Segment& seg, const float* grads, cudaStream_t stream) {
  check_cuda(cudaEventRecord(seg.ready, stream), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(copy_stream_, seg.ready, 0), "cudaStreamWaitEvent");
  check_cuda(
      cudaMemcpyAsync(staging_ + seg.begin, grads + seg.begin,
                      (seg.end - seg.begin) * sizeof(float), cudaMemcpyDeviceToHost, copy_stream_),
      "cudaMemcpyAsync (gradients to host)");
  check_cuda(cudaEventRecord(seg.done, copy_stream_), "cudaEventRecord");
}

void GradientDownloads::add_to_host(ThreadPool& pool) {
  std::vector<const Segment*> order{&head()};
  for (int64_t l = n_layers_ - 1; l >= 0; --l) order.push_back(&segments_[static_cast<size_t>(l)]);
  order.push_back(&embedding());
  for (const Segment* seg : order) {
    check_cuda(cudaEventSynchronize(seg->done), "cudaEventSynchronize");
    pool.parallel_for(static_cast<int64_t>(seg->pieces.size()), [&](int64_t task, int) {
      const Piece& p = seg->pieces[static_cast<size_t>(task)];
      for (size_t i = 0; i < p.n; ++i) p.dst[i] += p.src[i];
    });
  }
}

}  // namespace ruvdllm::cuda
