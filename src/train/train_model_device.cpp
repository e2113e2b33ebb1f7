// TrainModel on a GPU: the CUDA engine runs the forward and backward passes on a device copy
// of the weights, while values, gradients and the optimiser stay on the host, so the trainer,
// checkpoints and evaluation work unchanged whichever device computes.
#include <charconv>
#include <string>

#include "ruvdllm/core/error.h"
#include "train/train_model_impl.h"
#ifdef RUVDLLM_HAVE_CUDA
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/cuda/train_engine.h"
#endif

namespace ruvdllm::train {

#ifdef RUVDLLM_HAVE_CUDA
class DeviceEngine {
 public:
  DeviceEngine(const ModelConfig& config, std::vector<Parameter>& parameters, int device) {
    std::vector<cuda::HostTensor> tensors;
    tensors.reserve(parameters.size());
    for (Parameter& p : parameters) {
      tensors.push_back({p.name, p.shape, p.value.data(), p.grad.empty() ? nullptr : p.grad.data()});
    }
    engine_ = std::make_unique<cuda::CudaTrainEngine>(config, std::move(tensors), device);
  }
  cuda::CudaTrainEngine& engine() { return *engine_; }

 private:
  std::unique_ptr<cuda::CudaTrainEngine> engine_;
};
#else
class DeviceEngine {};
#endif

TrainModel::Impl::Impl() = default;
TrainModel::Impl::~Impl() = default;

namespace {

// "cuda" → 0, "cuda:N" → N; anything else is an error naming the accepted forms.
int parse_cuda_index(const std::string& device) {
  if (device == "cuda") return 0;
  int index = -1;
  const char* first = device.data() + 5;
  const char* last = device.data() + device.size();
  if (device.rfind("cuda:", 0) != 0 || first == last ||
      std::from_chars(first, last, index).ptr != last || index < 0) {
    fail("unknown device '{}' (cpu, cuda or cuda:N)", device);
  }
  return index;
}

}  // namespace

void TrainModel::set_device(const std::string& device) {
  Impl& m = *impl_;
  if (device == "cpu") {
    m.engine.reset();
    m.device = device;
    return;
  }
  const int index = parse_cuda_index(device);
  if (!m.lora.adapters.empty()) {
    fail("device '{}': the CUDA engine does not support LoRA; LoRA trains on the CPU (device = \"cpu\")", device);
  }
#ifdef RUVDLLM_HAVE_CUDA
  std::string why;
  if (!cuda::cuda_available(&why)) fail("device '{}': {}", device, why);
  m.engine = std::make_unique<DeviceEngine>(m.config, m.parameters, index);
  m.device = device;
  m.device_values_stale = false;  // the engine uploaded the values it was built with
#else
  (void)index;
  fail("device '{}': this build has no CUDA backend (rebuild where nvcc is installed, with "
       "-DRUVDLLM_CUDA=ON)", device);
#endif
}

const std::string& TrainModel::device() const { return impl_->device; }

std::string TrainModel::device_description() const {
#ifdef RUVDLLM_HAVE_CUDA
  if (impl_->engine) return impl_->device + " (" + impl_->engine->engine().device_name() + ")";
#endif
  return impl_->device;
}

void TrainModel::values_changed() { impl_->device_values_stale = true; }

#ifdef RUVDLLM_HAVE_CUDA
namespace detail {

cuda::CudaTrainEngine* fresh_engine(TrainModel::Impl& m) {
  if (!m.engine) return nullptr;
  if (m.device_values_stale) {
    m.engine->engine().upload_values();
    m.device_values_stale = false;
  }
  return &m.engine->engine();
}

}  // namespace detail
#endif

bool TrainModel::device_forward_backward(const Batch& batch, float grad_scale, bool backward,
                                         double* loss) {
#ifdef RUVDLLM_HAVE_CUDA
  cuda::CudaTrainEngine* engine = detail::fresh_engine(*impl_);
  if (!engine) return false;
  const AttentionMode& a = impl_->attention;
  *loss = backward ? engine->forward_backward(batch.n_seq, batch.seq_len, batch.inputs, batch.targets,
                                              batch.weights, grad_scale, a.mask, a.block_len)
                   : engine->forward_loss(batch.n_seq, batch.seq_len, batch.inputs, batch.targets,
                                          batch.weights, a.mask, a.block_len);
  return true;
#else
  (void)batch, (void)grad_scale, (void)backward, (void)loss;
  return false;
#endif
}

bool TrainModel::device_forward_logits(std::span<const int32_t> tokens, int64_t n_seq, float* logits) {
#ifdef RUVDLLM_HAVE_CUDA
  cuda::CudaTrainEngine* engine = detail::fresh_engine(*impl_);
  if (!engine) return false;
  engine->forward_logits(tokens, n_seq, logits, impl_->attention.mask, impl_->attention.block_len);
  return true;
#else
  (void)tokens, (void)n_seq, (void)logits;
  return false;
#endif
}

}  // namespace ruvdllm::train
