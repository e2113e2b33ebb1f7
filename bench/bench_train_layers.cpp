// Where a training step's time goes: forward and backward of each layer pass at the default
// model's shapes (384 wide, FFN 1024, 6 heads of 64, 4 sequences of 512, vocabulary 8192),
// at 1 and 2 threads.
//   bench_train_layers --benchmark_min_time=0.5 --benchmark_repetitions=3
//                      --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <vector>

#include "ruvdllm/train/layers.h"

namespace ruvdllm::train {
namespace {

constexpr int64_t kSeqs = 4, kSeqLen = 512, kTokens = kSeqs * kSeqLen;
constexpr int64_t kWidth = 384, kFfn = 1024, kHeads = 6, kHeadDim = 64, kVocab = 8192;

std::vector<float> bench_data(size_t n, uint32_t seed, float amplitude = 1.0f) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = (static_cast<float>(s >> 8) / static_cast<float>(1 << 24) * 2.0f - 1.0f) * amplitude;
  }
  return v;
}

void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * 1e-9 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

// ----------------------------------------------------------------------------- linear
// args: threads. The FFN up projection's shape: n = 2048 tokens, 384 → 1024.

struct LinearData {
  std::vector<float> x = bench_data(kTokens * kWidth, 1);
  std::vector<float> w = bench_data(kFfn * kWidth, 2, 0.05f);
  std::vector<float> b = bench_data(kFfn, 3);
  std::vector<float> y = std::vector<float>(kTokens * kFfn);
  std::vector<float> dy = bench_data(kTokens * kFfn, 4);
  std::vector<float> dx = std::vector<float>(kTokens * kWidth);
  std::vector<float> dw = std::vector<float>(kFfn * kWidth);
  std::vector<float> db = std::vector<float>(kFfn);
};

constexpr double kLinearFlops = 2.0 * kTokens * kWidth * kFfn;

void BM_LinearForward(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  LinearData d;
  for (auto _ : state) {
    linear_forward(d.y.data(), d.x.data(), d.w.data(), d.b.data(), kTokens, kWidth, kFfn, &pool);
    benchmark::DoNotOptimize(d.y.data());
  }
  set_flops(state, kLinearFlops);
}
BENCHMARK(BM_LinearForward)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime();

void BM_LinearBackward(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  LinearData d;
  for (auto _ : state) {
    linear_backward(d.dx.data(), d.dw.data(), d.db.data(), d.dy.data(), d.x.data(), d.w.data(),
                    kTokens, kWidth, kFfn, &pool);
    benchmark::DoNotOptimize(d.dw.data());
  }
  set_flops(state, 2 * kLinearFlops);
}
BENCHMARK(BM_LinearBackward)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime();

// The same three GEMMs as one call each with OpenBLAS's own threads: the ceiling that the
// sliced, pool-driven version above is measured against.
void BM_LinearOpenBlasThreads(benchmark::State& state) {
  openblas_set_num_threads(static_cast<int>(state.range(0)));
  LinearData d;
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kTokens, kFfn, kWidth, 1.0f, d.x.data(),
                kWidth, d.w.data(), kWidth, 0.0f, d.y.data(), kFfn);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kTokens, kWidth, kFfn, 1.0f, d.dy.data(),
                kFfn, d.w.data(), kWidth, 1.0f, d.dx.data(), kWidth);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kFfn, kWidth, kTokens, 1.0f, d.dy.data(),
                kFfn, d.x.data(), kWidth, 1.0f, d.dw.data(), kWidth);
    benchmark::DoNotOptimize(d.dw.data());
  }
  openblas_set_num_threads(1);  // what the layers use; keeps the other benchmarks honest
  set_flops(state, 3 * kLinearFlops);
}
BENCHMARK(BM_LinearOpenBlasThreads)->Arg(1)->Arg(2)->ArgName("blas_threads")->UseRealTime();

// -------------------------------------------------------------------------- attention
// args: threads. 4 sequences of 512, 6 heads of 64 (no GQA), bidirectional.

struct AttentionData {
  TrainAttentionShape s;
  std::vector<float> q, k, v, out, probs, dout, dq, dk, dv;
  AttentionData() {
    s.n_seq = kSeqs;
    s.seq_len = kSeqLen;
    s.n_head = s.n_head_kv = kHeads;
    s.head_dim = kHeadDim;
    const size_t n = kTokens * kHeads * kHeadDim;
    q = bench_data(n, 5);
    k = bench_data(n, 6);
    v = bench_data(n, 7);
    dout = bench_data(n, 8);
    out.resize(n);
    dq.resize(n);
    dk.resize(n);
    dv.resize(n);
    probs.resize(kSeqs * kHeads * kSeqLen * kSeqLen);
  }
};

constexpr double kAttentionGemmFlops = 2.0 * kSeqs * kHeads * kSeqLen * kSeqLen * kHeadDim;

void BM_AttentionForward(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  AttentionData d;
  for (auto _ : state) {
    attention_forward(d.out.data(), d.probs.data(), d.q.data(), d.k.data(), d.v.data(), d.s, &pool);
    benchmark::DoNotOptimize(d.out.data());
  }
  set_flops(state, 2 * kAttentionGemmFlops);
}
BENCHMARK(BM_AttentionForward)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime();

void BM_AttentionBackward(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  AttentionData d;
  attention_forward(d.out.data(), d.probs.data(), d.q.data(), d.k.data(), d.v.data(), d.s, &pool);
  for (auto _ : state) {
    attention_backward(d.dq.data(), d.dk.data(), d.dv.data(), d.dout.data(), d.probs.data(),
                       d.q.data(), d.k.data(), d.v.data(), d.s, &pool);
    benchmark::DoNotOptimize(d.dq.data());
  }
  set_flops(state, 4 * kAttentionGemmFlops);
}
BENCHMARK(BM_AttentionBackward)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime();

// ---------------------------------------------------------------------- cross entropy
// args: threads. 2048 rows of 8192 logits, every row weighted, gradient written.

void BM_CrossEntropy(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  const auto logits = bench_data(kTokens * kVocab, 9, 4.0f);
  std::vector<float> dlogits(logits.size()), weights(kTokens, 1.0f);
  std::vector<int32_t> targets(kTokens);
  for (int64_t i = 0; i < kTokens; ++i) targets[i] = static_cast<int32_t>((i * 7919) % kVocab);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cross_entropy_forward_backward(dlogits.data(), logits.data(),
                                                            targets.data(), weights.data(), kTokens,
                                                            kVocab, 1.0f, &pool));
  }
  state.SetItemsProcessed(state.iterations() * kTokens * kVocab);  // logits per second
}
BENCHMARK(BM_CrossEntropy)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime();

// -------------------------------------------- per-token layers (single-threaded passes)

void BM_RmsNormForwardBackward(benchmark::State& state) {
  const auto x = bench_data(kTokens * kWidth, 10), w = bench_data(kWidth, 11);
  const auto dy = bench_data(x.size(), 12);
  std::vector<float> y(x.size()), rstd(kTokens), dx(x.size()), dw(kWidth);
  for (auto _ : state) {
    rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), kTokens, kWidth, 1e-5f);
    rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), kTokens,
                     kWidth);
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetItemsProcessed(state.iterations() * kTokens);  // tokens per second
}
BENCHMARK(BM_RmsNormForwardBackward);

void BM_SwigluForwardBackward(benchmark::State& state) {
  const auto g = bench_data(kTokens * kFfn, 13, 4.0f), u = bench_data(g.size(), 14);
  const auto dh = bench_data(g.size(), 15);
  std::vector<float> h(g.size()), dg(g.size()), du(g.size());
  for (auto _ : state) {
    swiglu_forward(h.data(), g.data(), u.data(), kTokens * kFfn);
    swiglu_backward(dg.data(), du.data(), dh.data(), g.data(), u.data(), kTokens * kFfn);
    benchmark::DoNotOptimize(dg.data());
  }
  state.SetItemsProcessed(state.iterations() * kTokens);
}
BENCHMARK(BM_SwigluForwardBackward);

// Q and K of one layer: rotated forward, their gradients rotated back.
void BM_RopeForwardBackward(benchmark::State& state) {
  auto x = bench_data(kTokens * kHeads * kHeadDim, 16);
  std::vector<int32_t> pos(kTokens);
  for (int64_t i = 0; i < kTokens; ++i) pos[i] = static_cast<int32_t>(i % kSeqLen);
  for (auto _ : state) {
    for (int pass = 0; pass < 2; ++pass) {
      rope_forward(x.data(), pos.data(), kTokens, kHeads, kHeadDim, 10000.0f, RopeOrder::Normal);
      rope_backward(x.data(), pos.data(), kTokens, kHeads, kHeadDim, 10000.0f, RopeOrder::Normal);
    }
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * kTokens);
}
BENCHMARK(BM_RopeForwardBackward);

}  // namespace
}  // namespace ruvdllm::train

BENCHMARK_MAIN();
