// Training throughput of the CUDA engine at the default model's shape (LLaDA, 384 wide,
// 6 layers, 6 heads of 64, FFN 1024, vocabulary 8192; 16 sequences of 512 with half the
// positions scored), and the cuBLAS products of that step in TF32, BF16 and F32 to show which
// precision pays at these shapes.
//   bench_cuda_train --benchmark_min_time=2x --benchmark_repetitions=3
//                    --benchmark_report_aggregates_only=true
// BM_DataParallelStep: whole steps on 1 and 2 GPUs (data parallel, same global batch), and
// BM_AllReduceGradients: the NCCL sum of a gradient-sized buffer alone.
// Step arguments: precision (0 f32, 1 tf32, 2 bf16: MatmulPrecision's order; 3 bf16 linear
// layers with attention in f32/TF32, set_bf16_attention(false)) and mode:
//   0  every tensor frozen: forward + backward, the device work alone, no optimiser;
//   1  gradients downloaded and added into host arrays (no optimiser step);
//   2  a whole training step with AdamW on the device (zero, forward + backward, clip, step);
//   3  a whole training step with AdamW on the host, as before the device optimiser: host
//      gradients, train::AdamW (clip + step on every core) and the upload of the weights.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/cuda/multi_gpu.h"
#include "ruvdllm/cuda/train_engine.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/train/optimizer.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::cuda {
namespace {

constexpr int64_t kSeqs = 16, kSeqLen = 512, kTokens = kSeqs * kSeqLen;

ModelConfig default_shape() { return shape_config(Arch::LLaDA, "default"); }

struct HostModel {
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::vector<float>> values, grads;

  void add(std::string name, std::vector<int64_t> shape, float stddev, float mean,
           std::mt19937_64& rng) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    names.push_back(std::move(name));
    shapes.push_back(std::move(shape));
    values.push_back(std::move(v));
    grads.emplace_back(n, 0.0f);
  }

  std::vector<HostTensor> tensors(bool with_grads) {
    std::vector<HostTensor> out;
    for (size_t i = 0; i < names.size(); ++i) {
      out.push_back({names[i], shapes[i], values[i].data(), with_grads ? grads[i].data() : nullptr,
                     shapes[i].size() > 1});
    }
    return out;
  }
};

HostModel& host_model() {
  static HostModel m = [] {
    const ModelConfig c = default_shape();
    HostModel h;
    std::mt19937_64 rng(1);
    const int64_t E = c.n_embd, F = c.n_ff, qd = c.n_head * c.head_dim,
                  kvd = c.n_head_kv * c.head_dim;
    h.add("token_embd.weight", {E, c.vocab_size}, 0.02f, 0.0f, rng);
    h.add("output_norm.weight", {E}, 0.1f, 1.0f, rng);
    h.add("output.weight", {E, c.vocab_size}, 0.02f, 0.0f, rng);
    for (int64_t l = 0; l < c.n_layer; ++l) {
      auto n = [l](const char* s) { return "blk." + std::to_string(l) + "." + s; };
      h.add(n("attn_norm.weight"), {E}, 0.1f, 1.0f, rng);
      h.add(n("attn_q.weight"), {E, qd}, 0.02f, 0.0f, rng);
      h.add(n("attn_k.weight"), {E, kvd}, 0.02f, 0.0f, rng);
      h.add(n("attn_v.weight"), {E, kvd}, 0.02f, 0.0f, rng);
      h.add(n("attn_output.weight"), {qd, E}, 0.02f, 0.0f, rng);
      h.add(n("ffn_norm.weight"), {E}, 0.1f, 1.0f, rng);
      h.add(n("ffn_gate.weight"), {E, F}, 0.02f, 0.0f, rng);
      h.add(n("ffn_up.weight"), {E, F}, 0.02f, 0.0f, rng);
      h.add(n("ffn_down.weight"), {F, E}, 0.02f, 0.0f, rng);
    }
    return h;
  }();
  return m;
}

struct BatchData {
  std::vector<int32_t> inputs, targets;
  std::vector<float> weights;
  int64_t scored = 0;
};

const BatchData& batch() {
  static BatchData b = [] {
    BatchData d;
    std::mt19937_64 rng(2);
    std::uniform_int_distribution<int32_t> token(0, 8190);
    for (int64_t i = 0; i < kTokens; ++i) {
      const int32_t t = token(rng);
      const bool scored = rng() % 2 == 0;
      d.inputs.push_back(scored ? 8191 : t);  // scored positions read the mask token
      d.targets.push_back(t);
      d.weights.push_back(scored ? 1.0f : 0.0f);
      d.scored += scored;
    }
    return d;
  }();
  return b;
}

// Matrix-product FLOPs of one forward pass: the layers' linears, attention's two products and
// the head on the scored rows. A training step does three times this.
double forward_flops(const ModelConfig& c, int64_t scored) {
  const double T = static_cast<double>(kTokens), E = static_cast<double>(c.n_embd);
  const double qd = static_cast<double>(c.n_head * c.head_dim),
               kvd = static_cast<double>(c.n_head_kv * c.head_dim);
  const double F = static_cast<double>(c.n_ff), L = static_cast<double>(kSeqLen);
  const double per_layer = 2 * T * E * (qd + 2 * kvd) + 2 * T * qd * E + 2 * T * E * 3 * F +
                           2 * 2 * T * L * qd;  // QKᵀ and P·V
  return per_layer * static_cast<double>(c.n_layer) +
         2 * static_cast<double>(scored) * E * static_cast<double>(c.vocab_size);
}

void report(benchmark::State& state, double flops_per_iteration) {
  const double it = static_cast<double>(state.iterations());
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(kTokens) * it, benchmark::Counter::kIsRate);
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops_per_iteration * 1e-12 * it, benchmark::Counter::kIsRate);
}

void BM_TrainStep(benchmark::State& state) {
  const bool tf32_attention = state.range(0) == 3;
  const auto precision =
      tf32_attention ? MatmulPrecision::BF16 : static_cast<MatmulPrecision>(state.range(0));
  const int64_t mode = state.range(1);
  const ModelConfig c = default_shape();
  HostModel& host = host_model();
  CudaTrainEngine engine(c, host.tensors(mode != 0), 0, precision);
  engine.set_bf16_attention(!tf32_attention);
  // Mode 3's optimiser over the host arrays (norms undecayed, as in training).
  std::vector<train::Parameter> params;
  for (size_t i = 0; i < host.names.size(); ++i) {
    params.push_back(
        {host.names[i], host.shapes[i], host.values[i], host.grads[i], host.shapes[i].size() > 1});
  }
  train::AdamW host_opt(params, {});
  ThreadPool pool(ThreadPool::physical_cores());
  if (mode == 2) engine.enable_device_optimizer();
  const BatchData& b = batch();
  const float scale = 1.0f / static_cast<float>(b.scored);
  int64_t t = 0;
  for (auto _ : state) {
    ++t;
    if (mode == 2) {
      engine.zero_gradients();
      benchmark::DoNotOptimize(engine.forward_backward(kSeqs, kSeqLen, b.inputs, b.targets,
                                                       b.weights, scale, MaskMode::Full));
      benchmark::DoNotOptimize(engine.adamw_step({1e-5, 0.9, 0.95, 1e-8, 0.1, t, 1.0}));
    } else if (mode == 3) {
      for (auto& g : host.grads) std::fill(g.begin(), g.end(), 0.0f);
      benchmark::DoNotOptimize(engine.forward_backward(kSeqs, kSeqLen, b.inputs, b.targets,
                                                       b.weights, scale, MaskMode::Full));
      host_opt.clip_gradients(1.0, pool);
      host_opt.step(1e-5, pool);
      engine.upload_values();
    } else {
      benchmark::DoNotOptimize(engine.forward_backward(kSeqs, kSeqLen, b.inputs, b.targets,
                                                       b.weights, scale, MaskMode::Full));
    }
  }
  report(state, 3 * forward_flops(c, b.scored));
  state.counters["device_GiB"] = static_cast<double>(engine.device_bytes()) / (1u << 30);
}
BENCHMARK(BM_TrainStep)
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1, 2, 3}})
    ->ArgNames({"precision", "mode"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Data parallelism: whole training steps (bf16, AdamW on the device) through TrainModel on
// 1, 2, ... GPUs with the same global batch of 16 × 512, split evenly; the NCCL all-reduce of
// the gradients included. Scaling efficiency = tokens/s on N GPUs ÷ (N × tokens/s on 1).
void BM_DataParallelStep(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  if (cuda::device_count() < n) {
    state.SkipWithError("not enough GPUs");
    return;
  }
  const ModelConfig c = default_shape();
  auto model = train::TrainModel::create(c, 5);
  model->set_device_precision(train::DevicePrecision::BF16);
  std::vector<int> devices;
  for (int d = 0; d < n; ++d) devices.push_back(d);
  model->set_devices(devices);
  train::AdamW opt(model->parameters(), {});
  model->start_device_optimizer(opt);
  const BatchData& b = batch();
  train::Batch tb;
  tb.n_seq = kSeqs;
  tb.seq_len = kSeqLen;
  tb.inputs = b.inputs;
  tb.targets = b.targets;
  tb.weights = b.weights;
  ThreadPool pool(1);
  const float scale = 1.0f / static_cast<float>(b.scored);
  // Where the time goes: the passes (every replica at once) and the optimiser step (the NCCL
  // all-reduce, then AdamW on every replica); each call waits for its GPUs.
  using Clock = std::chrono::steady_clock;
  double passes_s = 0, optimizer_s = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    model->zero_grad();
    benchmark::DoNotOptimize(model->forward_backward(tb, scale, pool));
    const auto t1 = Clock::now();
    benchmark::DoNotOptimize(model->device_optimizer_step(1e-5, 1.0));
    passes_s += std::chrono::duration<double>(t1 - t0).count();
    optimizer_s += std::chrono::duration<double>(Clock::now() - t1).count();
  }
  report(state, 3 * forward_flops(c, b.scored));
  const double it = static_cast<double>(std::max<int64_t>(1, state.iterations()));
  state.counters["gpus"] = n;
  state.counters["passes_ms"] = 1e3 * passes_s / it;
  state.counters["optimizer_ms"] = 1e3 * optimizer_s / it;
}

// The NCCL all-reduce alone over a buffer the size of the default model's gradients (16.9M
// floats, 68 MB), on every GPU present: the floor of the optimiser step's extra cost.
void BM_AllReduceGradients(benchmark::State& state) {
  const int n = cuda::device_count();
  if (n < 2) {
    state.SkipWithError("needs 2 GPUs");
    return;
  }
  std::vector<int> devices;
  for (int d = 0; d < n; ++d) devices.push_back(d);
  NcclGroup group(devices);
  const size_t count = static_cast<size_t>(state.range(0));
  std::vector<DeviceArray<float>> buffers;
  std::vector<float*> pointers;
  std::vector<void*> streams(static_cast<size_t>(n), nullptr);
  buffers.reserve(static_cast<size_t>(n));
  for (int d = 0; d < n; ++d) {
    check_cuda(cudaSetDevice(d), "cudaSetDevice");
    buffers.emplace_back(count);
    check_cuda(cudaMemset(buffers.back().data(), 0, count * sizeof(float)), "cudaMemset");
    pointers.push_back(buffers.back().data());
  }
  const auto sync_all = [&] {
    for (int d = 0; d < n; ++d) {
      check_cuda(cudaSetDevice(d), "cudaSetDevice");
      check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    }
  };
  group.all_reduce_sum(pointers, count, streams);  // NCCL connects its peers on first use
  sync_all();
  for (auto _ : state) {
    group.all_reduce_sum(pointers, count, streams);
    sync_all();
  }
  const double bytes = static_cast<double>(count * sizeof(float));
  // NCCL's "bus bandwidth": what each GPU's links carry, 2(n−1)/n of the buffer.
  state.counters["bus_GB/s"] =
      benchmark::Counter(bytes * 2.0 * (n - 1) / n * 1e-9 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  check_cuda(cudaSetDevice(0), "cudaSetDevice");
}
BENCHMARK(BM_AllReduceGradients)->Arg(16913280)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_DataParallelStep)
    ->DenseRange(1, 2)
    ->ArgName("gpus")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_ForwardLoss(benchmark::State& state) {
  const ModelConfig c = default_shape();
  CudaTrainEngine engine(c, host_model().tensors(false), 0,
                         static_cast<MatmulPrecision>(state.range(0)));
  const BatchData& b = batch();
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        engine.forward_loss(kSeqs, kSeqLen, b.inputs, b.targets, b.weights, MaskMode::Full));
  }
  report(state, forward_flops(c, b.scored));
}
BENCHMARK(BM_ForwardLoss)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("precision")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ----------------------------------------------------------------------- single products
// args: m, n, k (row-major C[m×n] = A[m×k]·B[k×n]), type (0 f32, 1 tf32, 2 bf16 operands in
// memory, 3 f32 operands rounded to bf16 inside cuBLAS, as MatmulPrecision::BF16 does).
void BM_Gemm(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  const int type = static_cast<int>(state.range(3));
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(m) * k), bm(static_cast<size_t>(k) * n);
  for (float& x : a) x = dist(rng);
  for (float& x : bm) x = dist(rng);
  const bool bf16 = type == 2;
  const size_t elem = bf16 ? 2 : 4;
  DeviceArray<char> da(a.size() * elem), db(bm.size() * elem);
  DeviceArray<float> dc(static_cast<size_t>(m) * n);
  if (bf16) {
    std::vector<uint16_t> ha(a.size()), hb(bm.size());
    for (size_t i = 0; i < a.size(); ++i) ha[i] = f32_to_bf16(a[i]);
    for (size_t i = 0; i < bm.size(); ++i) hb[i] = f32_to_bf16(bm[i]);
    check_cuda(cudaMemcpy(da.data(), ha.data(), ha.size() * 2, cudaMemcpyHostToDevice),
               "cudaMemcpy");
    check_cuda(cudaMemcpy(db.data(), hb.data(), hb.size() * 2, cudaMemcpyHostToDevice),
               "cudaMemcpy");
  } else {
    check_cuda(cudaMemcpy(da.data(), a.data(), a.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    check_cuda(cudaMemcpy(db.data(), bm.data(), bm.size() * 4, cudaMemcpyHostToDevice),
               "cudaMemcpy");
  }
  cublasHandle_t handle;
  check_cublas(cublasCreate(&handle), "cublasCreate");
  const cudaDataType_t in_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute = type == 1   ? CUBLAS_COMPUTE_32F_FAST_TF32
                                      : type == 3 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                  : CUBLAS_COMPUTE_32F;
  const float alpha = 1.0f, beta = 0.0f;
  auto gemm = [&] {  // row-major C = A·B as column-major Cᵀ = Bᵀ·Aᵀ
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, db.data(), in_type,
                              n, da.data(), in_type, k, &beta, dc.data(), CUDA_R_32F, n, compute,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  };
  gemm();
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  constexpr int kRepeat = 10;  // products per timed iteration; the time reported is per product
  for (auto _ : state) {
    check_cuda(cudaEventRecord(start), "cudaEventRecord");
    for (int r = 0; r < kRepeat; ++r) gemm();
    check_cuda(cudaEventRecord(stop), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms * 1e-3 / kRepeat);
  }
  state.counters["TFLOP/s"] =
      benchmark::Counter(2.0 * m * n * k * 1e-12 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cublasDestroy(handle);
}
// The step's shapes: q|k|v, gate|up and down projections, the head on 4096 scored rows, and a
// weight gradient (K = all 8192 tokens).
BENCHMARK(BM_Gemm)
    ->ArgsProduct({{8192}, {1152}, {384}, {0, 1, 2, 3}})
    ->ArgsProduct({{8192}, {2048}, {384}, {0, 1, 2, 3}})
    ->ArgsProduct({{8192}, {384}, {1024}, {0, 1, 2, 3}})
    ->ArgsProduct({{4096}, {8192}, {384}, {0, 1, 2, 3}})
    ->ArgsProduct({{2048}, {384}, {8192}, {0, 1, 2, 3}})
    ->ArgNames({"m", "n", "k", "type"})
    ->Iterations(30)  // fixed: manual time counts one product of each iteration's ten
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ruvdllm::cuda

int main(int argc, char** argv) {
  std::string why;
  if (!ruvdllm::cuda::cuda_available(&why)) {
    std::fprintf(stderr, "bench_cuda_train: no GPU: %s\n", why.c_str());
    return 0;
  }
  benchmark::AddCustomContext("device", ruvdllm::cuda::device_summary(0));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
