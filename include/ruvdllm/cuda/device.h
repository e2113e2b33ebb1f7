#pragma once
// Which CUDA devices this process can use. Plain C++: callers need no CUDA headers. Only built
// when RUVDLLM_HAVE_CUDA is defined; callers check the macro before using anything here.
#include <string>

namespace ruvdllm::cuda {

// True when the CUDA driver answers and at least one device is present. Otherwise false, and
// *why (when given) says what is missing, e.g. "no CUDA driver" or "no CUDA device".
bool cuda_available(std::string* why = nullptr);

// Number of CUDA devices (Error when the driver fails).
int device_count();

// Marketing name of device `index`, e.g. "NVIDIA H100 80GB HBM3" (Error for a bad index).
std::string device_name(int index);

// "cuda" → 0, "cuda:N" → N; Error naming the accepted forms (cpu, cuda, cuda:N) otherwise.
int parse_cuda_device(const std::string& device);

// Name, compute capability and memory of device `index` on one line, for logs and benchmarks.
std::string device_summary(int index);

}  // namespace ruvdllm::cuda
