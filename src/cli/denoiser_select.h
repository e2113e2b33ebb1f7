#pragma once
// `--device cpu|cuda[:N]` for the generation commands: the denoiser that runs the steps.
#include <memory>
#include <string>

#include "ruvdllm/diffusion/denoiser.h"

namespace ruvdllm::cli {

// gpu_weights: "quantized" (dequantize per product; the file's size in GPU memory), "bf16"
// (dequantize once at load) or "auto" (bf16 when that takes at most half the free memory). Error for an unknown device or weight mode, a build without CUDA,
// or no usable GPU.
std::unique_ptr<Denoiser> make_denoiser(Model& model, ThreadPool& pool, const std::string& device,
                                        const std::string& gpu_weights);

}  // namespace ruvdllm::cli
