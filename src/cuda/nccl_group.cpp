// NcclGroup: the communicators come from ncclCommInitAll in the calling thread, and every
// collective is issued by one thread for all ranks inside ncclGroupStart/End. One thread is
// enough because a grouped call only enqueues work on each rank's stream; the per-GPU compute
// threads (train_model_device.cpp) have already finished their passes when the sum starts.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <set>

#include "cuda/cuda_check.h"
#include "cuda/cuda_libraries.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/cuda/multi_gpu.h"
#include "ruvdllm/cuda/train_engine.h"
#ifdef RUVDLLM_HAVE_NCCL
#include <nccl.h>
#endif

namespace ruvdllm::cuda {

namespace {
constexpr const char* kNoNccl =
    "this build has no NCCL (libnccl.so was not found when it was configured), so it trains on "
    "one GPU only; rebuild with NCCL installed, or pass one device";

#ifdef RUVDLLM_HAVE_NCCL
void check_nccl(ncclResult_t result, const char* what) {
  if (result != ncclSuccess) fail("NCCL: {} failed: {}", what, ncclGetErrorString(result));
}
#endif
}  // namespace

bool nccl_available(std::string* why) {
#ifdef RUVDLLM_HAVE_NCCL
  return nccl_loadable(why);  // libnccl is opened at run time (cuda_libraries.cpp)
#else
  if (why) *why = kNoNccl;
  return false;
#endif
}

void validate_devices(std::span<const int> devices) {
  if (devices.empty()) fail("devices: the list is empty; name at least one CUDA device index");
  std::set<int> seen;
  for (int d : devices) {
    if (!seen.insert(d).second) fail("devices: CUDA device {} is listed twice", d);
  }
  std::string why;
  if (!cuda_available(&why)) fail("devices: {}", why);
  const int count = device_count();
  for (int d : devices) {
    if (d < 0 || d >= count) {
      fail("devices: CUDA device {} does not exist ({} device(s) present: 0 to {})", d, count,
           count - 1);
    }
  }
}

struct NcclGroup::Impl {
  std::vector<int> devices;
#ifdef RUVDLLM_HAVE_NCCL
  std::vector<ncclComm_t> comms;
#endif
};

NcclGroup::NcclGroup(std::vector<int> devices) : impl_(std::make_unique<Impl>()) {
  validate_devices(devices);
  impl_->devices = std::move(devices);
#ifdef RUVDLLM_HAVE_NCCL
  impl_->comms.assign(impl_->devices.size(), nullptr);
  check_nccl(ncclCommInitAll(impl_->comms.data(), static_cast<int>(impl_->devices.size()),
                             impl_->devices.data()),
             "ncclCommInitAll");
#else
  if (impl_->devices.size() > 1) fail("devices: {}", kNoNccl);
#endif
}

NcclGroup::~NcclGroup() {
#ifdef RUVDLLM_HAVE_NCCL
  for (ncclComm_t comm : impl_->comms) {
    if (comm) ncclCommDestroy(comm);  // a destructor cannot report; the process keeps going
  }
#endif
}

int NcclGroup::size() const { return static_cast<int>(impl_->devices.size()); }
const std::vector<int>& NcclGroup::devices() const { return impl_->devices; }

void NcclGroup::all_reduce_sum(std::span<float* const> buffers, size_t count,
                               std::span<void* const> streams) {
  const size_t n = impl_->devices.size();
  if (buffers.size() != n || streams.size() != n) {
    fail("NCCL: all_reduce_sum got {} buffers and {} streams for {} devices", buffers.size(),
         streams.size(), n);
  }
  if (count == 0) return;
#ifdef RUVDLLM_HAVE_NCCL
  check_nccl(ncclGroupStart(), "ncclGroupStart");
  for (size_t i = 0; i < n; ++i) {
    check_cuda(cudaSetDevice(impl_->devices[i]), "cudaSetDevice");
    const ncclResult_t r = ncclAllReduce(buffers[i], buffers[i], count, ncclFloat32, ncclSum,
                                         impl_->comms[i], static_cast<cudaStream_t>(streams[i]));
    if (r != ncclSuccess) {
      ncclGroupEnd();  // close the group before reporting, so NCCL stays usable
      check_nccl(r, "ncclAllReduce");
    }
  }
  check_nccl(ncclGroupEnd(), "ncclGroupEnd (all-reduce)");
#else
  (void)buffers, (void)streams;  // a group of one device: the sum is the buffer itself
#endif
}

void NcclGroup::sum_gradients(std::span<CudaTrainEngine* const> engines) {
  const size_t n = impl_->devices.size();
  if (engines.size() != n) fail("NCCL: {} engines for {} devices", engines.size(), n);
  if (n < 2) return;
  std::vector<float*> buffers;
  std::vector<void*> streams;
  for (size_t i = 0; i < n; ++i) {
    CudaTrainEngine& e = *engines[i];
    if (e.device_index() != impl_->devices[i]) {
      fail("NCCL: engine {} runs on CUDA device {}, but rank {} is device {}", i, e.device_index(),
           i, impl_->devices[i]);
    }
    if (e.gradient_count() != engines[0]->gradient_count()) {
      fail("NCCL: the replicas' gradient buffers differ in size ({} and {} floats)",
           engines[0]->gradient_count(), e.gradient_count());
    }
    buffers.push_back(e.device_gradients());
    streams.push_back(e.stream_handle());
  }
  all_reduce_sum(buffers, engines[0]->gradient_count(), streams);
}

}  // namespace ruvdllm::cuda
