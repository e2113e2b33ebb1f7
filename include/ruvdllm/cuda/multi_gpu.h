#pragma once
// Data parallelism across the GPUs of one host: one NCCL communicator per device, all created
// by one thread (ncclCommInitAll), and in-place sums across them. Plain C++ (no CUDA or NCCL
// headers); built only when RUVDLLM_HAVE_CUDA is defined. Without NCCL (RUVDLLM_HAVE_NCCL
// undefined) a group of more than one device is an Error naming the missing library.
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ruvdllm::cuda {

class CudaTrainEngine;

// True when this build links NCCL; otherwise false and *why names the missing library.
bool nccl_available(std::string* why = nullptr);

// Checks a list of CUDA device indices for data-parallel work: at least one, none negative or
// past the devices present, no duplicates. Error with a one-line reason otherwise.
void validate_devices(std::span<const int> devices);

class NcclGroup {
 public:
  // One communicator per device, rank i on devices[i]. Error for an invalid list (see
  // validate_devices), a build without NCCL, or an NCCL failure (with NCCL's message).
  explicit NcclGroup(std::vector<int> devices);
  ~NcclGroup();
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int size() const;
  const std::vector<int>& devices() const;

  // buffers[i]: count floats on devices()[i]; streams[i]: a cudaStream_t of that device
  // (null: its legacy default stream). Every buffer becomes the element-wise sum of all of
  // them: one ncclAllReduce per rank inside one NCCL group, enqueued on the streams; returns
  // without waiting (later work on those streams sees the sums).
  void all_reduce_sum(std::span<float* const> buffers, size_t count,
                      std::span<void* const> streams);
  // The same over the engines' flat gradient buffers (engine i on devices()[i]).
  void sum_gradients(std::span<CudaTrainEngine* const> engines);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvdllm::cuda
