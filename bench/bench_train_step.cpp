// One training step (forward + backward, no optimizer) of the default model's likely shape: a
// LLaDA model 384 wide, 6 layers of 6 heads, FFN 1024, vocabulary 8192, on 4 sequences of 512
// tokens with half the positions scored, as the masked-diffusion objective scores them on
// average. Reports tokens/s (all positions, scored or not).
#include <benchmark/benchmark.h>

#include <random>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/train/train_model.h"

namespace {

using ruvdllm::Arch;
using ruvdllm::ModelConfig;
using ruvdllm::ThreadPool;
using ruvdllm::train::Batch;
using ruvdllm::train::TrainModel;

ModelConfig default_model_shape() { return shape_config(Arch::LLaDA, "default"); }

Batch half_masked_batch(int64_t n_seq, int64_t seq_len, int64_t vocab, int32_t mask_id) {
  Batch b;
  b.n_seq = n_seq;
  b.seq_len = seq_len;
  std::mt19937_64 rng(1);
  const size_t n = static_cast<size_t>(n_seq * seq_len);
  b.inputs.resize(n);
  b.targets.resize(n);
  b.weights.assign(n, 0.0f);
  for (size_t i = 0; i < n; ++i) {
    b.targets[i] = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab - 1));
    const bool masked = rng() % 2 == 0;
    b.inputs[i] = masked ? mask_id : b.targets[i];
    b.weights[i] = masked ? 1.0f / static_cast<float>(n) : 0.0f;
  }
  return b;
}

void BM_TrainStep(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const ModelConfig config = default_model_shape();
  auto model = TrainModel::create(config, 1);
  const Batch batch =
      half_masked_batch(4, 512, config.vocab_size, static_cast<int32_t>(config.mask_token_id));
  ThreadPool pool(threads);
  model->forward_backward(batch, 1.0f, pool);  // buffers grow once, outside the timing
  for (auto _ : state) {
    model->zero_grad();
    benchmark::DoNotOptimize(model->forward_backward(batch, 1.0f, pool));
  }
  const double tokens = static_cast<double>(batch.n_seq * batch.seq_len);
  const double steps = static_cast<double>(state.iterations());
  state.counters["tokens/s"] = benchmark::Counter(tokens * steps, benchmark::Counter::kIsRate);
  // Multiply-adds of one step: forward, plus twice that backward (input and weight gradients).
  const double E = static_cast<double>(config.n_embd), F = static_cast<double>(config.n_ff);
  const double q_dim = static_cast<double>(config.n_head * config.head_dim);
  const double kv_dim = static_cast<double>(config.n_head_kv * config.head_dim);
  const double L = static_cast<double>(batch.seq_len);
  double scored = 0;
  for (float w : batch.weights) scored += w > 0 ? 1 : 0;
  const double per_token = static_cast<double>(config.n_layer) *
                           (E * (2 * q_dim + 2 * kv_dim) + 3 * E * F + 2 * L * q_dim);
  const double macs =
      3 * (tokens * per_token + scored * E * static_cast<double>(config.vocab_size));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2 * macs * steps / 1e9, benchmark::Counter::kIsRate);
  state.counters["params_M"] = static_cast<double>(model->n_parameters()) / 1e6;
}
BENCHMARK(BM_TrainStep)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
