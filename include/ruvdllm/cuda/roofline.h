#pragma once
// What a GPU can do at best, measured rather than read from a data sheet: the floor of a step is
// the larger of its FLOPs at the measured bf16 GEMM rate and its bytes at the measured copy rate.
// Plain C++, built only when RUVDLLM_HAVE_CUDA is defined.
namespace ruvdllm::cuda {

struct DevicePeaks {
  double bf16_gemm_tflops = 0;  // cuBLAS bf16 × bf16 → f32, 8192³, median of several runs
  double copy_gbps = 0;         // device-to-device copy of 2 GiB, bytes read + written per second
};

DevicePeaks measure_peaks(int device);

}  // namespace ruvdllm::cuda
