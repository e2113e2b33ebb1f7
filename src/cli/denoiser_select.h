#pragma once
// `--device cpu|cuda[:N]` and the GPU's settings for the generation commands: the denoiser that
// runs the steps.
#include <memory>
#include <string>

#include "ruvdllm/diffusion/denoiser.h"

namespace CLI {
class App;
}

namespace ruvdllm::cli {

struct GpuSettings {
  // "quantized" (dequantize per product; the file's size in GPU memory), "dense" (dequantize
  // once at load; "bf16" is the same) or "auto" (dense when that takes at most half the free
  // memory).
  std::string weights = "auto";
  // "bf16" (tensor-core GEMMs) or "f32" (exact: follows the CPU within f32 rounding, slower).
  std::string precision = "bf16";
};

// Adds --gpu-weights and --gpu-precision to `cmd`.
void add_gpu_options(CLI::App* cmd, GpuSettings* gpu);

// Error for an unknown device, weight mode or precision, a build without CUDA, or no usable GPU.
std::unique_ptr<Denoiser> make_denoiser(Model& model, ThreadPool& pool, const std::string& device,
                                        const GpuSettings& gpu);

}  // namespace ruvdllm::cli

#ifdef RUVDLLM_HAVE_CUDA
#include "ruvdllm/cuda/infer_engine.h"
namespace ruvdllm::cli {
// The engine options `device` ("cuda" or "cuda:N") and `gpu` ask for (Error when invalid).
cuda::InferOptions infer_options(const std::string& device, const GpuSettings& gpu);
}  // namespace ruvdllm::cli
#endif
