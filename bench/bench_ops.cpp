// Throughput of the transformer ops and of tiled attention, fast versus scalar reference.
// Shapes are the "160m" model's: 768 wide, FFN 2048, 12 heads of 64.
//   bench_ops --benchmark_min_time=0.2 --benchmark_filter=Attention
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ruvdllm/kernels/ops.h"

namespace ruvdllm {
namespace {

constexpr int64_t kHeads = 12, kHeadDim = 64;

std::vector<float> bench_data(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(s >> 8) / static_cast<float>(1 << 24) * 2.0f - 1.0f;
  }
  return v;
}

AttentionShape full_shape(int64_t n) {
  AttentionShape s;
  s.n_q = s.n_kv = n;
  s.n_heads = s.n_kv_heads = kHeads;
  s.head_dim = kHeadDim;
  s.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  s.mask = MaskMode::Full;
  return s;
}

void set_attention_counters(benchmark::State& state, int64_t n) {
  const double flops = 4.0 * static_cast<double>(n) * static_cast<double>(n) * kHeadDim * kHeads;
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// args: n, threads
void BM_Attention(benchmark::State& state) {
  const int64_t n = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  const AttentionShape s = full_shape(n);
  const auto q = bench_data(static_cast<size_t>(n * kHeads * kHeadDim), 1);
  const auto k = bench_data(q.size(), 2), v = bench_data(q.size(), 3);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    attention(s, q.data(), k.data(), v.data(), out.data(), pool);
    benchmark::DoNotOptimize(out.data());
  }
  set_attention_counters(state, n);
}
BENCHMARK(BM_Attention)
    ->ArgsProduct({{256, 1024, 4096}, {1, 2}})
    ->ArgNames({"n", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_AttentionCausal(benchmark::State& state) {
  const int64_t n = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  AttentionShape s = full_shape(n);
  s.mask = MaskMode::Causal;
  const auto q = bench_data(static_cast<size_t>(n * kHeads * kHeadDim), 1);
  const auto k = bench_data(q.size(), 2), v = bench_data(q.size(), 3);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    attention(s, q.data(), k.data(), v.data(), out.data(), pool);
    benchmark::DoNotOptimize(out.data());
  }
  set_attention_counters(state, n);  // as if full: the rate shows what skipping tiles saves
}
BENCHMARK(BM_AttentionCausal)
    ->ArgsProduct({{1024}, {1, 2}})
    ->ArgNames({"n", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_AttentionReference(benchmark::State& state) {
  const int64_t n = state.range(0);
  const AttentionShape s = full_shape(n);
  const auto q = bench_data(static_cast<size_t>(n * kHeads * kHeadDim), 1);
  const auto k = bench_data(q.size(), 2), v = bench_data(q.size(), 3);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    attention_reference(s, q.data(), k.data(), v.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  set_attention_counters(state, n);
}
BENCHMARK(BM_AttentionReference)
    ->Arg(256)
    ->Arg(1024)
    ->ArgName("n")
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

// The alternative design, measured to choose between them: OpenBLAS sgemm for the two tile
// products (64 queries × 256 keys per call). Only the products are timed, without any
// softmax, so this is a lower bound on an sgemm-based attention.
void BM_AttentionSgemmProductsOnly(benchmark::State& state) {
  const int64_t n = state.range(0);
  openblas_set_num_threads(1);
  const int64_t row = kHeads * kHeadDim, q_tile = 64, k_tile = 256;
  const auto q = bench_data(static_cast<size_t>(n * row), 1);
  const auto k = bench_data(q.size(), 2), v = bench_data(q.size(), 3);
  std::vector<float> scores(static_cast<size_t>(q_tile * k_tile), 0.01f);
  std::vector<float> acc(static_cast<size_t>(q_tile * kHeadDim));
  for (auto _ : state) {
    for (int64_t h = 0; h < kHeads; ++h) {
      for (int64_t i0 = 0; i0 < n; i0 += q_tile) {
        const int64_t rows = std::min(q_tile, n - i0);
        for (int64_t j0 = 0; j0 < n; j0 += k_tile) {
          const int64_t keys = std::min(k_tile, n - j0);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
                      static_cast<int>(keys), kHeadDim, 0.125f, q.data() + i0 * row + h * kHeadDim,
                      static_cast<int>(row), k.data() + j0 * row + h * kHeadDim,
                      static_cast<int>(row), 0.0f, scores.data(), static_cast<int>(keys));
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), kHeadDim,
                      static_cast<int>(keys), 1.0f, scores.data(), static_cast<int>(keys),
                      v.data() + j0 * row + h * kHeadDim, static_cast<int>(row), 1.0f, acc.data(),
                      kHeadDim);
        }
      }
    }
    benchmark::DoNotOptimize(acc.data());
  }
  set_attention_counters(state, n);
}
BENCHMARK(BM_AttentionSgemmProductsOnly)
    ->Arg(256)
    ->Arg(1024)
    ->ArgName("n")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Row-wise ops on 256 rows of `width`; rate is elements processed per second.
template <bool kFast>
void BM_RmsNorm(benchmark::State& state) {
  const int64_t rows = 256, width = state.range(0);
  const auto x = bench_data(static_cast<size_t>(rows * width), 4);
  const auto w = bench_data(static_cast<size_t>(width), 5);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    if (kFast) {
      rmsnorm(x.data(), w.data(), y.data(), rows, width, 1e-5f);
    } else {
      rmsnorm_reference(x.data(), w.data(), y.data(), rows, width, 1e-5f);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * rows * width);
}
BENCHMARK(BM_RmsNorm<true>)->Arg(768)->Arg(2048)->ArgName("width");
BENCHMARK(BM_RmsNorm<false>)->Arg(768)->Arg(2048)->ArgName("width");

template <bool kFast>
void BM_Softmax(benchmark::State& state) {
  const int64_t rows = 256, width = state.range(0);
  // Repeated in place: the rows stay distributions, so every pass does the same work.
  auto y = bench_data(static_cast<size_t>(rows * width), 6);
  for (auto _ : state) {
    if (kFast) {
      softmax(y.data(), rows, width);
    } else {
      softmax_reference(y.data(), rows, width);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * rows * width);
}
BENCHMARK(BM_Softmax<true>)->Arg(768)->Arg(2048)->ArgName("width");
BENCHMARK(BM_Softmax<false>)->Arg(768)->Arg(2048)->ArgName("width");

template <bool kFast>
void BM_Swiglu(benchmark::State& state) {
  const int64_t n = 256 * state.range(0);
  const auto g = bench_data(static_cast<size_t>(n), 7), u = bench_data(static_cast<size_t>(n), 8);
  std::vector<float> out(g.size());
  for (auto _ : state) {
    if (kFast) {
      swiglu(g.data(), u.data(), out.data(), n);
    } else {
      swiglu_reference(g.data(), u.data(), out.data(), n);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Swiglu<true>)->Arg(768)->Arg(2048)->ArgName("width");
BENCHMARK(BM_Swiglu<false>)->Arg(768)->Arg(2048)->ArgName("width");

// 256 tokens of width/64 heads, full rotation, positions 1000..1255 (LLaDA's base).
template <bool kFast>
void BM_Rope(benchmark::State& state) {
  const int64_t tokens = 256, width = state.range(0), heads = width / kHeadDim;
  const RopeOrder order = state.range(1) ? RopeOrder::NeoX : RopeOrder::Normal;
  // Repeated in place: rotations keep the values bounded.
  auto y = bench_data(static_cast<size_t>(tokens * width), 9);
  std::vector<int32_t> positions(static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t)
    positions[static_cast<size_t>(t)] = static_cast<int32_t>(1000 + t);
  for (auto _ : state) {
    if (kFast) {
      rope(y.data(), tokens, heads, kHeadDim, kHeadDim, positions.data(), 500000.0f, order);
    } else {
      rope_reference(y.data(), tokens, heads, kHeadDim, kHeadDim, positions.data(), 500000.0f,
                     order);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * tokens * width);
}
BENCHMARK(BM_Rope<true>)->ArgsProduct({{768, 2048}, {0, 1}})->ArgNames({"width", "neox"});
BENCHMARK(BM_Rope<false>)->ArgsProduct({{768, 2048}, {0, 1}})->ArgNames({"width", "neox"});

}  // namespace
}  // namespace ruvdllm

BENCHMARK_MAIN();
