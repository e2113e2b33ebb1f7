// TrainModel on a GPU: the CUDA engine runs the forward and backward passes on a device copy
// of the weights. By default values, gradients and the optimiser stay on the host, so the
// trainer, checkpoints and evaluation work unchanged whichever device computes; with
// start_device_optimizer, AdamW and its state move to the device too, and the host copies are
// refreshed on request (sync_from_device).
#include <charconv>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/optimizer.h"
#include "train/train_model_impl.h"
#ifdef RUVDLLM_HAVE_CUDA
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/cuda/multi_gpu.h"
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
class DeviceReplicas {
 public:
  std::vector<int> devices;
  std::vector<std::unique_ptr<DeviceEngine>> extra;  // replicas 1..N-1
  std::unique_ptr<cuda::NcclGroup> nccl;
};
#else
class DeviceEngine {};
class DeviceReplicas {};
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

#ifdef RUVDLLM_HAVE_CUDA
namespace detail {

// Every replica's engine, replica 0 first; empty on the CPU.
std::vector<cuda::CudaTrainEngine*> replica_engines(TrainModel::Impl& m) {
  std::vector<cuda::CudaTrainEngine*> out;
  if (!m.engine) return out;
  out.push_back(&m.engine->engine());
  if (m.replicas) {
    for (auto& e : m.replicas->extra) out.push_back(&e->engine());
  }
  return out;
}

// Runs work(i) for every replica at once: replica 0 on the calling thread, each other one on a
// thread of its own, because each engine waits for its GPU inside its calls; issued from one
// thread the GPUs would take turns. A thread per call costs tens of microseconds against a
// step of milliseconds. Rethrows the first replica's error once all have finished.
template <typename Work>
void on_every_replica(size_t n, Work&& work) {
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (size_t i = 1; i < n; ++i) {
    threads.emplace_back([&, i] {
      try {
        work(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  }
  try {
    work(0);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

// The batch's sequences split evenly across the replicas, in replica order. With the optimiser
// on the device each replica accumulates its share's gradients in its own buffer (summed in
// device_optimizer_step), so they run at once. Without it every replica adds into the same
// host arrays, so they take turns: that sum is the all-reduce.
double replicated_forward_backward(TrainModel::Impl& m, const Batch& batch, float grad_scale) {
  const std::vector<cuda::CudaTrainEngine*> engines = replica_engines(m);
  const auto n = static_cast<int64_t>(engines.size());
  if (batch.n_seq % n != 0) {
    fail("a batch of {} sequences does not split evenly across {} GPUs; make batch_size a "
         "multiple of the device count",
         batch.n_seq, n);
  }
  const int64_t share = batch.n_seq / n;
  const size_t len = static_cast<size_t>(share * batch.seq_len);
  std::vector<double> losses(engines.size(), 0.0);
  const auto run = [&](size_t i) {
    const size_t at = i * len;
    losses[i] = engines[i]->forward_backward(
        share, batch.seq_len, std::span<const int32_t>(batch.inputs).subspan(at, len),
        std::span<const int32_t>(batch.targets).subspan(at, len),
        std::span<const float>(batch.weights).subspan(at, len), grad_scale, m.attention.mask,
        m.attention.block_len);
  };
  if (m.device_optimizer) {
    on_every_replica(engines.size(), run);
  } else {
    for (size_t i = 0; i < engines.size(); ++i) run(i);
  }
  double loss = 0;
  for (double l : losses) loss += l;
  return loss;
}

cuda::CudaTrainEngine* fresh_engine(TrainModel::Impl& m) {
  if (!m.engine) return nullptr;
  if (m.device_values_stale) {
    for (cuda::CudaTrainEngine* e : replica_engines(m)) e->upload_values();
    m.device_values_stale = false;
  }
  return &m.engine->engine();
}

}  // namespace detail
#endif

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
  m.replicas.reset();
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

void TrainModel::set_devices(const std::vector<int>& devices) {
  Impl& m = *impl_;
  if (!m.lora.adapters.empty()) {
    fail("devices: the CUDA engine does not support LoRA; LoRA trains on the CPU (device = \"cpu\")");
  }
#ifdef RUVDLLM_HAVE_CUDA
  cuda::validate_devices(devices);
  std::string why;
  if (devices.size() > 1 && !cuda::nccl_available(&why)) {
    fail("devices {}: {}", fmt::join(devices, ","), why);
  }
  set_device(fmt::format("cuda:{}", devices[0]));  // replica 0; drops any earlier replicas
  if (devices.size() == 1) return;
  auto replicas = std::make_unique<DeviceReplicas>();
  replicas->devices = devices;
  for (size_t i = 1; i < devices.size(); ++i) {
    replicas->extra.push_back(
        std::make_unique<DeviceEngine>(m.config, m.parameters, devices[i], m.device_precision));
  }
  replicas->nccl = std::make_unique<cuda::NcclGroup>(devices);
  m.replicas = std::move(replicas);
#else
  if (devices.empty()) fail("devices: the list is empty; name at least one CUDA device index");
  fail("devices: this build has no CUDA backend (rebuild where nvcc is installed, with "
       "-DRUVDLLM_CUDA=ON)");
#endif
}

int64_t TrainModel::n_replicas() const {
#ifdef RUVDLLM_HAVE_CUDA
  if (impl_->replicas) return static_cast<int64_t>(impl_->replicas->devices.size());
#endif
  return 1;
}

std::vector<float> TrainModel::replica_values(int64_t replica) {
#ifdef RUVDLLM_HAVE_CUDA
  Impl& m = *impl_;
  const std::vector<cuda::CudaTrainEngine*> engines = detail::replica_engines(m);
  if (replica < 0 || replica >= static_cast<int64_t>(engines.size())) {
    fail("replica_values: replica {} does not exist ({} replica(s))", replica, engines.size());
  }
  detail::fresh_engine(m);
  engines[static_cast<size_t>(replica)]->download_values();
  std::vector<float> out;
  for (const Parameter& p : m.parameters) out.insert(out.end(), p.value.begin(), p.value.end());
  if (replica != 0) engines[0]->download_values();
  return out;
#else
  (void)replica;
  fail("replica_values: the model runs on the CPU, which holds no replicas");
#endif
}

const std::string& TrainModel::device() const { return impl_->device; }

std::string TrainModel::device_description() const {
#ifdef RUVDLLM_HAVE_CUDA
  if (impl_->replicas) {
    return fmt::format("cuda:{} ({} x {}, data parallel over NCCL)",
                       fmt::join(impl_->replicas->devices, ","), impl_->replicas->devices.size(),
                       impl_->engine->engine().device_name());
  }
  if (impl_->engine) return impl_->device + " (" + impl_->engine->engine().device_name() + ")";
#endif
  return impl_->device;
}

void TrainModel::values_changed() { impl_->device_values_stale = true; }

void TrainModel::set_device_precision(DevicePrecision precision) {
  impl_->device_precision = precision;
#ifdef RUVDLLM_HAVE_CUDA
  for (cuda::CudaTrainEngine* e : detail::replica_engines(*impl_)) {
    e->set_precision(DeviceEngine::matmul_precision(precision));
  }
#endif
}

DevicePrecision TrainModel::device_precision() const { return impl_->device_precision; }
bool TrainModel::device_optimizer_active() const { return impl_->device_optimizer != nullptr; }

bool TrainModel::device_forward_backward(const Batch& batch, float grad_scale, bool backward,
                                         double* loss) {
#ifdef RUVDLLM_HAVE_CUDA
  cuda::CudaTrainEngine* engine = detail::fresh_engine(*impl_);
  if (!engine) return false;
  const AttentionMode& a = impl_->attention;
  if (backward && impl_->replicas) {
    *loss = detail::replicated_forward_backward(*impl_, batch, grad_scale);
    return true;
  }
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
  for (cuda::CudaTrainEngine* e : detail::replica_engines(m)) {
    e->enable_device_optimizer();
    for (size_t i = 0; i < optimizer.n_states(); ++i) {
      e->set_moments(optimizer.state_parameter(i).name, optimizer.first_moment(i).data(),
                     optimizer.second_moment(i).data());
    }
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
  detail::fresh_engine(m);
  const std::vector<cuda::CudaTrainEngine*> engines = detail::replica_engines(m);
  // One sum over the flat gradient buffers; every replica then takes the same step from the
  // same summed gradients and the same state, so the replicas stay bit-identical.
  if (m.replicas) m.replicas->nccl->sum_gradients(engines);
  std::vector<double> norms(engines.size());
  detail::on_every_replica(engines.size(), [&](size_t i) { norms[i] = engines[i]->adamw_step(step); });
  opt.set_steps_done(step.t);
  return norms[0];
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
  for (cuda::CudaTrainEngine* e : detail::replica_engines(*impl_)) e->zero_gradients();
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
