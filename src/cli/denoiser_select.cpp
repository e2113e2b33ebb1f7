#include "cli/denoiser_select.h"

#include <CLI/CLI.hpp>

#include "ruvdllm/core/error.h"
#ifdef RUVDLLM_HAVE_CUDA
#include "ruvdllm/cuda/device.h"
#endif

namespace ruvdllm::cli {
namespace {

void validate(const GpuSettings& gpu) {
  if (gpu.weights != "auto" && gpu.weights != "quantized" && gpu.weights != "dense" &&
      gpu.weights != "bf16") {
    fail("--gpu-weights: unknown mode '{}' (auto, quantized or dense)", gpu.weights);
  }
  if (gpu.precision != "bf16" && gpu.precision != "f32") {
    fail("--gpu-precision: unknown precision '{}' (bf16 or f32)", gpu.precision);
  }
}

}  // namespace

void add_gpu_options(CLI::App* cmd, GpuSettings* gpu) {
  cmd->add_option("--gpu-weights", gpu->weights,
                  "Quantized weights on the GPU: auto (default), quantized (dequantize per "
                  "product, least memory) or dense (dequantize once, fastest)");
  cmd->add_option("--gpu-precision", gpu->precision,
                  "GPU arithmetic: bf16 (default, tensor cores) or f32 (exact: matches the CPU "
                  "within f32 rounding, slower)");
}

#ifdef RUVDLLM_HAVE_CUDA
cuda::InferOptions infer_options(const std::string& device, const GpuSettings& gpu) {
  validate(gpu);
  cuda::InferOptions options;
  options.device = cuda::parse_cuda_device(device);
  options.weights = gpu.weights == "dense" || gpu.weights == "bf16" ? cuda::WeightMode::Dense
                    : gpu.weights == "quantized"                    ? cuda::WeightMode::Quantized
                                                                    : cuda::WeightMode::Auto;
  options.precision = gpu.precision == "f32" ? cuda::Precision::F32 : cuda::Precision::Bf16;
  return options;
}
#endif

std::unique_ptr<Denoiser> make_denoiser(Model& model, ThreadPool& pool, const std::string& device,
                                        const GpuSettings& gpu) {
  validate(gpu);
  if (device == "cpu") return std::make_unique<ModelDenoiser>(model, pool);
  if (device != "cuda" && device.rfind("cuda:", 0) != 0) {
    fail("--device: unknown device '{}' (cpu, cuda or cuda:N)", device);
  }
#ifdef RUVDLLM_HAVE_CUDA
  return std::make_unique<cuda::CudaDenoiser>(model, infer_options(device, gpu));
#else
  (void)pool;
  fail("--device {}: this build has no CUDA backend (rebuild where nvcc is installed, with "
       "-DRUVDLLM_CUDA=ON)", device);
#endif
}

}  // namespace ruvdllm::cli
