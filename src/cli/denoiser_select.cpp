#include "cli/denoiser_select.h"

#include "ruvdllm/core/error.h"
#ifdef RUVDLLM_HAVE_CUDA
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/cuda/infer_engine.h"
#endif

namespace ruvdllm::cli {

std::unique_ptr<Denoiser> make_denoiser(Model& model, ThreadPool& pool, const std::string& device,
                                        const std::string& gpu_weights) {
  if (gpu_weights != "auto" && gpu_weights != "quantized" && gpu_weights != "bf16") {
    fail("--gpu-weights: unknown mode '{}' (auto, quantized or bf16)", gpu_weights);
  }
  if (device == "cpu") return std::make_unique<ModelDenoiser>(model, pool);
  if (device != "cuda" && device.rfind("cuda:", 0) != 0) {
    fail("--device: unknown device '{}' (cpu, cuda or cuda:N)", device);
  }
#ifdef RUVDLLM_HAVE_CUDA
  cuda::InferOptions options;
  options.device = cuda::parse_cuda_device(device);
  options.weights = gpu_weights == "bf16"        ? cuda::WeightMode::Bf16
                    : gpu_weights == "quantized" ? cuda::WeightMode::Quantized
                                                 : cuda::WeightMode::Auto;
  return std::make_unique<cuda::CudaDenoiser>(model, options);
#else
  (void)pool;
  fail("--device {}: this build has no CUDA backend (rebuild where nvcc is installed, with "
       "-DRUVDLLM_CUDA=ON)", device);
#endif
}

}  // namespace ruvdllm::cli
