#pragma once
// Every CUDA runtime and cuBLAS call goes through these, so a failure becomes a ruvdllm::Error
// that names the call and the driver's own words.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace ruvdllm::cuda {

void check_cuda(cudaError_t status, const char* call);
void check_cublas(cublasStatus_t status, const char* call);
// A size cuBLAS takes as an int: error (naming `what`) when it is negative or does not fit.
int cublas_int(int64_t value, const char* what);
// After a kernel launch: reports a bad launch configuration (the kernel itself runs later).
void check_launch(const char* kernel);
// Throws ruvdllm::Error(message), for .cu files, which cannot include fmt (error.h).
[[noreturn]] void throw_error(const std::string& message);

}  // namespace ruvdllm::cuda
