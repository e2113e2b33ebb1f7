// cuBLAS and NCCL are opened when first used, not when the program starts
// (src/cuda/cuda_libraries.cpp): a CPU-only run of a CUDA build must not carry their ~150 MB of
// resident memory, nor fail to start where they are missing. These tests need no GPU; the
// order of the first two matters (nothing before them may use cuBLAS).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "cuda/cuda_libraries.h"
#include "ruvdllm/cuda/device.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

// Whether a library whose file name contains `name` is mapped into this process.
bool mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(name) != std::string::npos) return true;
  }
  return false;
}

TEST(CudaLibraries, NothingIsLoadedAtStartOrByAskingForAGpu) {
  EXPECT_FALSE(mapped("libcublas")) << "cuBLAS was loaded before anything used it";
  EXPECT_FALSE(mapped("libnccl"));
  std::string why;
  (void)cuda::cuda_available(&why);  // the CUDA runtime only
  EXPECT_FALSE(mapped("libcublas"));
}

TEST(CudaLibraries, CublasLoadsOnFirstUseOrSaysWhyNot) {
  std::string why;
  if (cuda::cublas_loadable(&why)) {
    EXPECT_TRUE(mapped("libcublas.so")) << "cublas_loadable said yes but nothing is mapped";
    EXPECT_TRUE(why.empty());
  } else {
    // A machine without the CUDA libraries: a message that names the library and the fix.
    EXPECT_NE(why.find("libcublas.so.13"), std::string::npos) << why;
    EXPECT_NE(why.find("LD_LIBRARY_PATH"), std::string::npos) << why;
  }
}

// A CPU command of a CUDA build runs without touching cuBLAS: the CLI's memory stays that of
// the model, and the program starts where the CUDA libraries are absent.
TEST(CudaLibraries, CpuGenerationDoesNotLoadCublas) {
  const std::string model = std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf";
  std::string output;
  const int status =
      testing::run_command(std::string("LD_DEBUG=libs ") + RUVDLLM_CLI_PATH + " generate -m " +
                               model + " -p 'The city' --gen-len 8 --steps 4 --device cpu",
                           &output);
  ASSERT_EQ(status, 0) << output.substr(0, 2000);
  EXPECT_EQ(output.find("libcublas"), std::string::npos) << "the CPU path loaded cuBLAS";
  EXPECT_NE(output.find("libopenblas"), std::string::npos)
      << "LD_DEBUG=libs printed no library loads, so the check above proves nothing";
}

}  // namespace
}  // namespace ruvdllm
