// The two ways to multiply by quantized weights on the GPU (issue 5 asks for whichever measures
// faster), at an 8B LLaDA step's products and the row counts a step runs: 32 (a cached
// 32-position block), 64, 128, 256 and 512 (uncached passes).
//   fused:      QuantGemm, blocks decoded into shared-memory tiles feeding mma.sync
//   dequantize: dequantize_to_bf16 into a scratch matrix, then cuBLAS (InferGemm)
//   bf16:       cuBLAS on weights already dense in bf16 (WeightMode::Dense; the baseline)
//   wgmma:      WgmmaGemm (H100/H200 only), blocks decoded into the tiles wgmma reads
// All three write bf16 outputs. Weights are cycled through copies filling 200 MB so they come
// from DRAM, not L2. Counters: TFLOP/s (2·rows·in·out) and the weight bytes read per second.
//   bench_cuda_quant_gemm --benchmark_min_time=0.2s
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/infer_gemm.h"
#include "cuda/infer_kernels.h"
#include "cuda/quant_gemm.h"
#include "cuda/wgmma_gemm.h"
#include "cuda_bench_main.h"
#include "cuda_gemm_shapes.h"
#include "cuda_random_blocks.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::cuda {
namespace {

// For gate|up only: wgmma_then_swiglu is WgmmaGemm's product followed by the element-wise
// SwiGLU kernel, wgmma_swiglu the same with SwiGLU applied to the tiles (what the engine runs).
enum class Way { Fused, Dequantize, Bf16, Wgmma, WgmmaThenSwiglu, WgmmaSwiglu };
constexpr const char* kWayNames[] = {"fused", "dequantize",        "bf16",
                                     "wgmma", "wgmma_then_swiglu", "wgmma_swiglu"};

void BM_QuantProduct(benchmark::State& state, TensorType type, GemmShape shape, Way way) {
  const int64_t rows = state.range(0);
  const bool dense = way == Way::Bf16;
  const size_t bytes = dense ? static_cast<size_t>(shape.out * shape.in) * 2
                             : row_bytes(type, shape.in) * static_cast<size_t>(shape.out);
  const size_t copies = std::max<size_t>(2, kMinCycledBytes / bytes + 1);
  // Made once per (type, shape) and kept: each row count runs this function again.
  static std::map<std::pair<std::string, std::string>, std::vector<DeviceArray<uint8_t>>> made;
  auto& weights = made[{dense ? "bf16" : type_name(type), shape.name}];
  if (weights.empty()) {
    const std::vector<uint8_t> host =
        dense ? std::vector<uint8_t>() : random_blocks(type, shape.out, shape.in, 7);
    for (size_t c = 0; c < copies; ++c) {
      weights.emplace_back(bytes);
      if (dense) {
        const auto w = random_bf16(static_cast<size_t>(shape.out * shape.in), 7 + c);
        check_cuda(cudaMemcpy(weights.back().data(), w.data(), bytes, cudaMemcpyHostToDevice),
                   "cudaMemcpy");
      } else {
        check_cuda(cudaMemcpy(weights.back().data(), host.data(), bytes, cudaMemcpyHostToDevice),
                   "cudaMemcpy");
      }
    }
  }
  const auto x_host = random_bf16(static_cast<size_t>(rows * shape.in), 3);
  const bool swiglu = way == Way::WgmmaThenSwiglu || way == Way::WgmmaSwiglu;
  DeviceArray<bf16> x(x_host.size()), y(static_cast<size_t>(rows * shape.out)),
      h(swiglu ? static_cast<size_t>(rows * shape.out / 2) : 0);
  check_cuda(cudaMemcpy(x.data(), x_host.data(), x_host.size() * 2, cudaMemcpyHostToDevice),
             "cudaMemcpy");
  DeviceArray<bf16> scratch(way == Way::Dequantize ? static_cast<size_t>(shape.out * shape.in) : 0);
  InferGemm gemm(nullptr);
  QuantGemm quant(nullptr);
  std::unique_ptr<WgmmaGemm> own;
  if (way >= Way::Wgmma) own = std::make_unique<WgmmaGemm>(nullptr);
  size_t copy = 0;
  time_launches(state, 4, [&] {
    const void* w = weights[copy].data();
    copy = (copy + 1) % copies;
    switch (way) {
      case Way::Fused:
        quant.linear(y.data(), shape.out, x.data(), w, type, rows, shape.in, shape.out);
        break;
      case Way::Dequantize:
        dequantize_to_bf16(scratch.data(), w, type, shape.out, shape.in, nullptr);
        gemm.linear(y.data(), x.data(), scratch.data(), rows, shape.in, shape.out);
        break;
      case Way::Bf16:
        gemm.linear(y.data(), x.data(), static_cast<const bf16*>(w), rows, shape.in, shape.out);
        break;
      case Way::Wgmma:
        own->linear_blocks(y.data(), shape.out, x.data(), w, type, rows, shape.in, shape.out);
        break;
      case Way::WgmmaThenSwiglu:
        own->linear_blocks(y.data(), shape.out, x.data(), w, type, rows, shape.in, shape.out);
        swiglu_rows(h.data(), y.data(), rows, shape.out / 2, nullptr, /*interleaved=*/true);
        break;
      case Way::WgmmaSwiglu:
        own->linear_blocks_swiglu(h.data(), shape.out / 2, x.data(), w, type, rows, shape.in,
                                  shape.out);
        break;
    }
  });
  const double flops = 2.0 * static_cast<double>(rows * shape.in * shape.out);
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight GB/s"] = benchmark::Counter(static_cast<double>(bytes) * 1e-9,
                                                     benchmark::Counter::kIsIterationInvariantRate);
  if (way == Way::Fused) state.counters["splits"] = quant.splits_for(rows, shape.in, shape.out);
}

void register_all() {
  for (const TensorType type :
       {TensorType::Q4_K, TensorType::Q8_0, TensorType::Q4_0, TensorType::Q5_K, TensorType::Q6_K}) {
    for (const GemmShape& shape : kEightBShapes) {
      for (const Way way : {Way::Fused, Way::Dequantize, Way::Bf16, Way::Wgmma,
                            Way::WgmmaThenSwiglu, Way::WgmmaSwiglu}) {
        if (way == Way::Bf16 && type != TensorType::Q4_K) continue;  // the same for any type
        if (way > Way::Wgmma && std::string_view(shape.name) != "gate_up") continue;
        if (way >= Way::Wgmma &&
            (!WgmmaGemm::available() || !WgmmaGemm::fits_blocks(type, 256, shape.in, shape.out))) {
          continue;
        }
        const std::string name = std::string("BM_QuantProduct/") +
                                 (way == Way::Bf16 ? "BF16" : type_name(type)) + "/" + shape.name +
                                 "/" + kWayNames[static_cast<int>(way)];
        auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
          BM_QuantProduct(state, type, shape, way);
        });
        b->Arg(32)->Arg(64)->Arg(128)->Arg(256)->Arg(512)->UseManualTime()->Unit(
            benchmark::kMicrosecond);
      }
    }
  }
}

}  // namespace
}  // namespace ruvdllm::cuda

int main(int argc, char** argv) {
  return ruvdllm::cuda::cuda_benchmark_main(argc, argv, ruvdllm::cuda::register_all);
}
