// `ruvdllm bench gpu-step`: one denoising step on a GPU against the device's floor, the larger
// of the step's FLOPs at the measured bf16 GEMM rate and its weight bytes at the measured copy
// rate (issue 5's yardstick).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/denoiser_select.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/timing.h"
#include "ruvdllm/model/model.h"
#ifdef RUVDLLM_HAVE_CUDA
#include "ruvdllm/cuda/device.h"
#include "ruvdllm/cuda/infer_engine.h"
#include "ruvdllm/cuda/roofline.h"
#endif

namespace ruvdllm::cli {
namespace {

struct BenchGpuArgs {
  std::string model;
  std::vector<int64_t> positions{256, 512};
  std::string device = "cuda";
  GpuSettings gpu;
  int repetitions = 10;
  int64_t cached = 0;  // positions already in the KV cache before each timed pass
  bool no_graph = false;
  bool profile = false;
  // Milliseconds of work before the GEMM peak and each step are timed, so both run at the power
  // limit, as a generation's steps do (roofline.h); 0 times both from an idle card.
  double sustain_ms = 2000;
};

#ifdef RUVDLLM_HAVE_CUDA
// Multiply-adds of one step: every linear layer (the head included, the embedding lookup not)
// on every position, plus attention's two products over all key positions.
double step_flops(const ModelConfig& c, int64_t n) {
  const double E = static_cast<double>(c.n_embd), D = static_cast<double>(c.head_dim);
  const double qkv = E * static_cast<double>(c.n_head + 2 * c.n_head_kv) * D;
  const double wo = static_cast<double>(c.n_head) * D * E;
  const double ffn = 3.0 * E * static_cast<double>(c.n_ff);
  const double per_layer_linear = qkv + wo + ffn;
  const double attention = 2.0 * static_cast<double>(n) * static_cast<double>(c.n_head) * D;
  const double head = E * static_cast<double>(c.vocab_size);
  return 2.0 * static_cast<double>(n) *
         (static_cast<double>(c.n_layer) * (per_layer_linear + attention) + head);
}

void run_bench_gpu(const BenchGpuArgs& args) {
  cuda::InferOptions options = infer_options(args.device, args.gpu);
  auto model = Model::load(args.model);
  const ModelConfig& c = model->config();
  options.cuda_graph = !args.no_graph;
  cuda::CudaInferEngine engine(c, model->weights(), options);
  const cuda::DevicePeaks peaks = cuda::measure_peaks(options.device, args.sustain_ms);
  // Bytes a step must read at least: the weights as the file stores them.
  const double weight_bytes = static_cast<double>(model->weight_bytes());
  std::printf("model %s | %s | %s %s weights on the GPU (%.2f GiB) | %s | CUDA graph %s\n",
              args.model.c_str(), arch_name(c.arch),
              engine.weight_mode() == cuda::WeightMode::Dense ? "dense" : "quantized",
              options.precision == cuda::Precision::F32 ? "f32" : "bf16",
              static_cast<double>(engine.weight_bytes()) / (1u << 30), engine.device_name().c_str(),
              args.no_graph ? "off" : "on");
  if (args.sustain_ms > 0) {
    std::printf(
        "measured peaks: bf16 GEMM %.0f TFLOP/s after %.1f s of products on random operands "
        "(%.0f in the first 10), copy %.0f GB/s; steps timed after %.1f s of steps\n",
        peaks.bf16_gemm_tflops, args.sustain_ms / 1e3, peaks.bf16_gemm_first_tflops,
        peaks.copy_gbps, args.sustain_ms / 1e3);
  } else {
    std::printf(
        "measured peaks: bf16 GEMM %.0f TFLOP/s (random operands, idle card), copy %.0f GB/s\n",
        peaks.bf16_gemm_tflops, peaks.copy_gbps);
  }
  std::printf("%9s %10s %10s %10s %8s %8s %7s\n", "positions", "step ms", "floor ms", "bound",
              "ratio", "TFLOP/s", "pos/s");
  std::mt19937 rng(1);
  for (const int64_t n : args.positions) {
    if (n <= 0 || n > c.context_length) {
      fail("--positions {}: must be in [1, {}] (the model's context)", n, c.context_length);
    }
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (auto& t : tokens) t = token(rng);
    ForwardOptions fo;
    fo.mask = c.causal ? MaskMode::Causal : MaskMode::Full;
    // As a cached generation's passes do: attend to `cached` earlier positions' keys and values,
    // without adding this pass's own.
    KVCache cache;
    if (args.cached > 0) {
      if (args.cached + n > c.context_length) {
        fail("--cached {} + {} positions exceed the model's context of {}", args.cached, n,
             c.context_length);
      }
      std::vector<int32_t> prefix(static_cast<size_t>(args.cached));
      for (auto& t : prefix) t = token(rng);
      ForwardOptions extend;
      extend.cache = &cache;
      extend.append_to_cache = true;
      engine.forward(prefix, extend);
      fo.cache = &cache;
    }
    for (int w = 0; w < 3; ++w) engine.forward(tokens, fo);  // warm-up, then graph capture
    repeat_for(Clock::now(), args.sustain_ms, [&] { engine.forward(tokens, fo); });
    std::vector<double> ms;
    for (int r = 0; r < args.repetitions; ++r) {
      const auto start = Clock::now();
      engine.forward(tokens, fo);
      ms.push_back(ms_since(start));
    }
    const double step = median(ms);
    const double flops = step_flops(c, n);
    const double compute_ms = flops / (peaks.bf16_gemm_tflops * 1e12) * 1e3;
    const double memory_ms = weight_bytes / (peaks.copy_gbps * 1e9) * 1e3;
    const double floor = std::max(compute_ms, memory_ms);
    std::printf("%9ld %10.2f %10.2f %10s %8.2f %8.0f %7.0f\n", static_cast<long>(n), step, floor,
                compute_ms >= memory_ms ? "compute" : "memory", step / floor,
                flops / (step * 1e-3) / 1e12, 1000.0 * static_cast<double>(n) / step);
    if (args.profile) {
      std::printf("  eager pass with events (slower than the graph):");
      for (const auto& [what, ms] : engine.profile(tokens, fo)) {
        std::printf("  %s %.2f ms", what.c_str(), ms);
      }
      std::printf("\n");
    }
  }
}
#endif

}  // namespace

void register_bench_gpu(CLI::App& bench) {
  auto args = std::make_shared<BenchGpuArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "gpu-step", "Time one denoising step on a GPU against the measured floor of the device");
  cmd->add_option("model", args->model, "Model file or directory")->required();
  cmd->add_option("--positions", args->positions, "Canvas lengths (e.g. 256 512)")->delimiter(',');
  cmd->add_option("--device", args->device, "cuda or cuda:N");
  add_gpu_options(cmd, &args->gpu);
  cmd->add_option("-r,--repetitions", args->repetitions, "Timed repetitions")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--cached", args->cached,
                  "Time passes that follow this many positions in the KV cache, as a generation "
                  "with --cache-blocks runs them (the floor still counts the pass alone)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_flag("--no-graph", args->no_graph, "Launch kernels one by one instead of a CUDA graph");
  cmd->add_flag("--profile", args->profile, "Also print where one eager pass spends its time");
  cmd->add_option("--sustain-ms", args->sustain_ms,
                  "Run GEMMs, then steps, this long before timing them, so both are measured at "
                  "the card's power limit as a generation runs (0: from an idle card)")
      ->check(CLI::Range(0.0, 600000.0));
  cmd->callback([args] {
#ifdef RUVDLLM_HAVE_CUDA
    run_bench_gpu(*args);
#else
    fail(
        "bench gpu-step: this build has no CUDA backend (rebuild where nvcc is installed, with "
        "-DRUVDLLM_CUDA=ON)");
#endif
  });
}

}  // namespace ruvdllm::cli
