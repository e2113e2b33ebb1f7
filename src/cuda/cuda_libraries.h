#pragma once
// cuBLAS and NCCL are loaded when first used (cuda_libraries.cpp), not at program start.
#include <string>

namespace ruvdllm::cuda {

// Whether the library can be loaded; if not, `why` says what failed and what to do.
bool cublas_loadable(std::string* why);
bool nccl_loadable(std::string* why);

}  // namespace ruvdllm::cuda
