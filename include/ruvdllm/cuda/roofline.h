#pragma once
// What a GPU can do at best, measured rather than read from a data sheet: the floor of a step is
// the larger of its FLOPs at the measured bf16 GEMM rate and its bytes at the measured copy rate.
// Plain C++, built only when RUVDLLM_HAVE_CUDA is defined.
namespace ruvdllm::cuda {

// The GEMM peak is measured on random operands: an H200 holds its 700 W limit by lowering its
// clock, and constant operands (few bits changing) draw less power, so they measured 866
// TFLOP/s against 786 for random ones over ten runs, and 774 against 668 after a few hundred
// (docs/PERFORMANCE.md). A step with a model's weights runs in the random, sustained state.
struct DevicePeaks {
  // cuBLAS bf16 × bf16 → f32, 8192³, random operands: median of 20 runs after `sustain_ms` of
  // such products (the card at its power limit), and median of the first 10 (from idle).
  double bf16_gemm_tflops = 0;
  double bf16_gemm_first_tflops = 0;
  double copy_gbps = 0;  // device-to-device copy of 2 GiB, bytes read + written per second
};

DevicePeaks measure_peaks(int device, double sustain_ms = 0);

}  // namespace ruvdllm::cuda
