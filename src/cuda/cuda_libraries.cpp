// cuBLAS and NCCL are opened on first use instead of being linked. Loading libcublasLt alone
// costs about 150 MB of resident memory (its constructors register thousands of kernels),
// which every CPU-only run of a CUDA build used to pay, and a CUDA build could not even start
// on a machine without these libraries. The functions below carry the libraries' own names
// and signatures, so callers stay as they are: each forwards to the real function, looked up
// with dlsym on its first call. The CUDA runtime itself stays linked (statically).
#include "cuda/cuda_libraries.h"

#include <cublas_v2.h>
#include <dlfcn.h>

#include <string>

#include "ruvdllm/core/error.h"
#ifdef RUVDLLM_HAVE_NCCL
#include <nccl.h>
#endif

namespace ruvdllm::cuda {
namespace {

struct Library {
  void* handle = nullptr;
  std::string error;  // why it could not be opened
};

// The soname through the usual search (LD_LIBRARY_PATH, the loader cache), then the folder
// the build found the library in.
Library open_library(const char* soname, const char* build_dir, const char* what) {
  Library lib;
  lib.handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (lib.handle) return lib;
  const std::string first = dlerror();
  const std::string path = std::string(build_dir) + "/" + soname;
  lib.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib.handle) return lib;
  lib.error = std::string("cannot load ") + soname + " (" + what + "): " + first +
              "; add its folder to LD_LIBRARY_PATH";
  return lib;
}

const Library& cublas_library() {
  static const Library lib =
      open_library("libcublas.so.13", RUVDLLM_CUBLAS_DIR, "cuBLAS, from the CUDA 13 toolkit");
  return lib;
}

template <typename Fn>
Fn resolve(const Library& lib, const char* name) {
  if (!lib.handle) fail("CUDA: {}", lib.error);
  void* symbol = dlsym(lib.handle, name);
  if (!symbol) fail("CUDA: the loaded library has no {} (a different version?)", name);
  return reinterpret_cast<Fn>(symbol);
}

#ifdef RUVDLLM_HAVE_NCCL
const Library& nccl_library() {
  static const Library lib = open_library("libnccl.so.2", RUVDLLM_NCCL_DIR, "NCCL");
  return lib;
}
#endif

}  // namespace

bool cublas_loadable(std::string* why) {
  const Library& lib = cublas_library();
  if (!lib.handle && why) *why = lib.error;
  return lib.handle != nullptr;
}

bool nccl_loadable(std::string* why) {
#ifdef RUVDLLM_HAVE_NCCL
  const Library& lib = nccl_library();
  if (!lib.handle && why) *why = lib.error;
  return lib.handle != nullptr;
#else
  if (why) *why = "this build has no NCCL headers";
  return false;
#endif
}

}  // namespace ruvdllm::cuda

using ruvdllm::cuda::cublas_library;
using ruvdllm::cuda::resolve;
// Each forwarder looks its target up once (a thread-safe static) and calls it. Fn is the
// function's pointer type, spelled out where C++ overloads make decltype(&name) ambiguous.
#define RUVDLLM_FORWARD_AS(library, Fn, name, ...)        \
  static const auto real = resolve<Fn>(library(), #name); \
  return real(__VA_ARGS__)
#define RUVDLLM_FORWARD(library, name, ...) \
  RUVDLLM_FORWARD_AS(library, decltype(&name), name, __VA_ARGS__)

// cublas_api.h adds C++ overloads of these two with 64-bit sizes.
using GemmExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                    int, const void*, const void*, cudaDataType, int, const void*,
                                    cudaDataType, int, const void*, void*, cudaDataType, int,
                                    cublasComputeType_t, cublasGemmAlgo_t);
using GemmStridedBatchedExFn = cublasStatus_t (*)(
    cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*, const void*,
    cudaDataType, int, long long int, const void*, cudaDataType, int, long long int, const void*,
    void*, cudaDataType, int, long long int, int, cublasComputeType_t, cublasGemmAlgo_t);

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  RUVDLLM_FORWARD(cublas_library, cublasCreate_v2, handle);
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  RUVDLLM_FORWARD(cublas_library, cublasDestroy_v2, handle);
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  RUVDLLM_FORWARD(cublas_library, cublasSetStream_v2, handle, stream);
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t bytes) {
  RUVDLLM_FORWARD(cublas_library, cublasSetWorkspace_v2, handle, workspace, bytes);
}

const char* cublasGetStatusString(cublasStatus_t status) {
  RUVDLLM_FORWARD(cublas_library, cublasGetStatusString, status);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  RUVDLLM_FORWARD_AS(cublas_library, GemmExFn, cublasGemmEx, handle, transa, transb, m, n, k, alpha,
                     A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, computeType, algo);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType Atype,
                                          int lda, long long int strideA, const void* B,
                                          cudaDataType Btype, int ldb, long long int strideB,
                                          const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  RUVDLLM_FORWARD_AS(cublas_library, GemmStridedBatchedExFn, cublasGemmStridedBatchedEx, handle,
                     transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB,
                     beta, C, Ctype, ldc, strideC, batchCount, computeType, algo);
}

#ifdef RUVDLLM_HAVE_NCCL
using ruvdllm::cuda::nccl_library;

ncclResult_t ncclCommInitAll(ncclComm_t* comm, int ndev, const int* devlist) {
  RUVDLLM_FORWARD(nccl_library, ncclCommInitAll, comm, ndev, devlist);
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  RUVDLLM_FORWARD(nccl_library, ncclCommDestroy, comm);
}

const char* ncclGetErrorString(ncclResult_t result) {
  RUVDLLM_FORWARD(nccl_library, ncclGetErrorString, result);
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  RUVDLLM_FORWARD(nccl_library, ncclAllReduce, sendbuff, recvbuff, count, datatype, op, comm,
                  stream);
}

ncclResult_t ncclGroupStart() { RUVDLLM_FORWARD(nccl_library, ncclGroupStart); }

ncclResult_t ncclGroupEnd() { RUVDLLM_FORWARD(nccl_library, ncclGroupEnd); }
#endif

}  // extern "C"
