// TrainModel on a GPU: the CUDA engine runs the forward and backward passes on a device copy
// of the weights. By default values, gradients and the optimiser stay on the host, so the
// trainer, checkpoints and evaluation work unchanged whichever device computes; with
// start_device_optimizer, AdamW and its state move to the device too, and the host copies are
// refreshed on request (sync_from_device).
#include <charconv>
#include <string>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/optimizer.h"
#include "train/train_model_impl.h"
#ifdef RUVDLLM_HAVE_CUDA
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/cuda/train_engine.h"
#endif

namespace ruvdllm::train {

#ifdef RUVDLLM_HAVE_CUDA
class DeviceEngine {
 public:
  DeviceEngine(const ModelConfig& config, std::vector<Parameter>& parameters, int device,
               DevicePrecision precision) {
    std::vector<cuda::HostTensor> tensors;
    tensors.reserve(parameters.size());
    for (Parameter& p : parameters) {
      tensors.push_back(
          {p.name, p.shape, p.value.data(), p.grad.empty() ? nullptr : p.grad.data(), p.decay});
    }
    engine_ = std::make_unique<cuda::CudaTrainEngine>(config, std::move(tensors), device,
                                                      matmul_precision(precision));
  }
  static cuda::MatmulPrecision matmul_precision(DevicePrecision p) {
    switch (p) {
      case DevicePrecision::F32:
        return cuda::MatmulPrecision::F32;
      case DevicePrecision::BF16:
        return cuda::MatmulPrecision::BF16;
      default:
        return cuda::MatmulPrecision::TF32;
    }
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

DevicePrecision parse_device_precision(const std::string& name) {
  if (name == "f32") return DevicePrecision::F32;
  if (name == "tf32") return DevicePrecision::TF32;
  if (name == "bf16") return DevicePrecision::BF16;
  fail("unknown precision '{}' (bf16, tf32 or f32)", name);
}

const char* device_precision_name(DevicePrecision precision) {
  switch (precision) {
    case DevicePrecision::F32:
      return "f32";
    case DevicePrecision::TF32:
      return "tf32";
    default:
      return "bf16";
  }
}

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
  if (m.device_optimizer) {
    sync_from_device();  // the device held the only current values and moments
    m.device_optimizer = nullptr;
  }
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
  m.engine = std::make_unique<DeviceEngine>(m.config, m.parameters, index, m.device_precision);
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

void TrainModel::set_device_precision(DevicePrecision precision) {
  impl_->device_precision = precision;
#ifdef RUVDLLM_HAVE_CUDA
  if (impl_->engine) impl_->engine->engine().set_precision(DeviceEngine::matmul_precision(precision));
#endif
}

DevicePrecision TrainModel::device_precision() const { return impl_->device_precision; }
bool TrainModel::device_optimizer_active() const { return impl_->device_optimizer != nullptr; }

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

bool TrainModel::start_device_optimizer(AdamW& optimizer) {
#ifdef RUVDLLM_HAVE_CUDA
  Impl& m = *impl_;
  cuda::CudaTrainEngine* engine = detail::fresh_engine(m);
  if (!engine) return false;
  engine->enable_device_optimizer();
  for (size_t i = 0; i < optimizer.n_states(); ++i) {
    engine->set_moments(optimizer.state_parameter(i).name, optimizer.first_moment(i).data(),
                        optimizer.second_moment(i).data());
  }
  m.device_optimizer = &optimizer;
  return true;
#else
  (void)optimizer;
  return false;
#endif
}

double TrainModel::device_optimizer_step(double lr, double max_norm) {
#ifdef RUVDLLM_HAVE_CUDA
  Impl& m = *impl_;
  if (!m.device_optimizer) fail("device_optimizer_step: the optimiser is not on the device");
  AdamW& opt = *m.device_optimizer;
  const AdamWOptions& o = opt.options();
  cuda::AdamWStep step;
  step.lr = lr;
  step.beta1 = o.beta1, step.beta2 = o.beta2, step.eps = o.eps, step.weight_decay = o.weight_decay;
  step.t = opt.steps_done() + 1;
  step.max_norm = max_norm;
  const double norm = detail::fresh_engine(m)->adamw_step(step);
  opt.set_steps_done(step.t);
  return norm;
#else
  (void)lr, (void)max_norm;
  fail("device_optimizer_step: this build has no CUDA backend");
#endif
}

void TrainModel::sync_from_device() {
#ifdef RUVDLLM_HAVE_CUDA
  Impl& m = *impl_;
  if (!m.device_optimizer || !m.engine) return;
  cuda::CudaTrainEngine& engine = m.engine->engine();
  engine.download_values();
  AdamW& opt = *m.device_optimizer;
  for (size_t i = 0; i < opt.n_states(); ++i) {
    engine.get_moments(opt.state_parameter(i).name, opt.first_moment(i).data(),
                       opt.second_moment(i).data());
  }
#endif
}

bool TrainModel::device_zero_grad() {
#ifdef RUVDLLM_HAVE_CUDA
  if (!impl_->device_optimizer || !impl_->engine) return false;
  impl_->engine->engine().zero_gradients();
  return true;
#else
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
