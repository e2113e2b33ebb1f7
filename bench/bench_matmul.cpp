// Matmul throughput on the shapes of a 1B model (256 activation rows), the machine's int8 and
// fp32 multiply-add peaks to quote them against, and the matmuls of one 160m-model step.
//
//   bench_matmul --benchmark_min_time=0.2 [--benchmark_repetitions=3]
// GFLOP/s counts 2·m·n·k per matmul (one multiply-add = 2 operations), for every type.
// RUVDLLM_TARGET=AVX2 measures another Highway target's kernels; OpenBLAS may need
// OPENBLAS_CORETYPE (e.g. SkylakeX) on virtual machines whose CPU it does not recognise.
#include <benchmark/benchmark.h>
#include <hwy/targets.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstdio>
#include <cstdlib>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ruvdllm/core/half.h"
#include "ruvdllm/core/tensor.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/kernels/matmul.h"
#include "ruvdllm/kernels/quant.h"
#include "kernels/matmul_dot.h"

namespace ruvdllm {
namespace {

ThreadPool& pool(int threads) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

std::vector<float> normals(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Random weights, cached: quantizing large K-quant tensors takes a while.
const Tensor& weight(TensorType type, int64_t n, int64_t k) {
  static std::map<std::tuple<int, int64_t, int64_t>, std::unique_ptr<Tensor>> cache;
  auto& t = cache[{static_cast<int>(type), n, k}];
  if (!t) {
    t = std::make_unique<Tensor>("w", type, std::vector<int64_t>{k, n});
    // 16 distinct rows repeated: the kernels' speed does not depend on the values, and
    // quantizing K-quants takes a while.
    const auto values = normals(static_cast<size_t>(k) * 16, 7);
    const size_t stride = t->view().row_stride();
    std::vector<uint8_t> rows(stride * 16);
    for (int64_t r = 0; r < 16; ++r) quantize_row(type, values.data() + r * k, rows.data() + r * stride, k);
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(static_cast<uint8_t*>(t->data()) + r * stride, rows.data() + (r % 16) * stride, stride);
    }
  }
  return *t;
}

constexpr int64_t kRows = 256;

// Args: type, n, k, threads.
void BM_Matmul(benchmark::State& state) {
  const auto type = static_cast<TensorType>(state.range(0));
  const int64_t n = state.range(1), k = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const Tensor& w = weight(type, n, k);
  const auto x = normals(static_cast<size_t>(kRows * k), 3);
  std::vector<float> y(static_cast<size_t>(kRows * n));
  ThreadPool& p = pool(threads);
  for (auto _ : state) {
    matmul(w.view(), x.data(), kRows, y.data(), p);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * kRows * n * k * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(type_name(type)) + " " + simd_target_name());
}

void MatmulArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type", "n", "k", "threads"});
  for (TensorType type : {TensorType::Q8_0, TensorType::Q4_K, TensorType::F16, TensorType::Q4_0,
                          TensorType::Q6_K, TensorType::BF16, TensorType::F32}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{2048, 2048}, {5632, 2048}, {2048, 5632}}) {
      for (int threads : {1, 2}) b->Args({static_cast<int64_t>(type), n, k, threads});
    }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_Matmul)->Apply(MatmulArgs);

// The chosen inner kernel alone, one thread: 256 quantized activation rows times one unpacked
// panel of weight rows (the panel stays in L2), no unpacking or activation quantization. Its
// ratio to BM_Matmul on one thread is what those two stages cost. Args: type, k.
void BM_QuantKernel(benchmark::State& state) {
  const auto type = static_cast<TensorType>(state.range(0));
  const int64_t k = state.range(1);
  const matmul_detail::QuantKernels& kern = matmul_detail::best_quant_kernels();
  const int64_t cols = kern.panel_rows, g = kern.act_group_rows(type);
  const Tensor& w = weight(type, cols, k);
  std::vector<uint8_t> panel(kern.panel_bytes(type, k) + 64);
  uint8_t* aligned_panel = panel.data() + (64 - reinterpret_cast<uintptr_t>(panel.data()) % 64) % 64;
  kern.unpack(type, w.view().row(0), w.view().row_stride(), cols, k, aligned_panel);
  const matmul_detail::ActLayout layout = matmul_detail::act_layout(type, k, g);
  const int64_t groups = (kRows + g - 1) / g;
  std::vector<uint8_t> act(layout.group_bytes * static_cast<size_t>(groups) + 64);
  uint8_t* aligned_act = act.data() + (64 - reinterpret_cast<uintptr_t>(act.data()) % 64) % 64;
  const auto x = normals(static_cast<size_t>(kRows * k), 3);
  for (int64_t r = 0; r < kRows; ++r) {
    matmul_detail::quantize_activation_row(layout, kern.act_offset(type), x.data() + r * k,
                                           aligned_act + static_cast<size_t>(r / g) * layout.group_bytes, r % g);
  }
  std::vector<float> y(static_cast<size_t>(kRows * cols));
  for (auto _ : state) {
    kern.multiply(type, aligned_panel, layout, aligned_act, kRows, y.data(), cols, cols);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GOP/s"] = benchmark::Counter(2.0 * kRows * cols * k * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(type_name(type)) + " " + kern.name);
}
BENCHMARK(BM_QuantKernel)
    ->ArgNames({"type", "k"})
    ->Args({static_cast<int64_t>(TensorType::Q8_0), 2048})
    ->Args({static_cast<int64_t>(TensorType::Q8_0), 5632})
    ->Args({static_cast<int64_t>(TensorType::Q4_K), 2048})
    ->Unit(benchmark::kMicrosecond);

// The matmuls of one step of the 160m model (768 wide, 12 layers, FFN 2048, vocabulary
// 50258) over 256 positions: q, k, v, o, gate, up, down per layer, then the output head.
void BM_Step160m(benchmark::State& state) {
  const auto type = static_cast<TensorType>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  constexpr int64_t kWidth = 768, kFfn = 2048, kVocab = 50258, kLayers = 12;
  const Tensor& attn = weight(type, kWidth, kWidth);
  const Tensor& up = weight(type, kFfn, kWidth);
  const Tensor& down = weight(type, kWidth, kFfn);
  const Tensor& head = weight(type, kVocab, kWidth);
  const auto x = normals(static_cast<size_t>(kRows * kFfn), 5);
  std::vector<float> y(static_cast<size_t>(kRows * kVocab));
  ThreadPool& p = pool(threads);
  double flops = 0;
  for (auto _ : state) {
    flops = 0;
    for (int layer = 0; layer < kLayers; ++layer) {
      for (int i = 0; i < 4; ++i) matmul(attn.view(), x.data(), kRows, y.data(), p);
      for (int i = 0; i < 2; ++i) matmul(up.view(), x.data(), kRows, y.data(), p);
      matmul(down.view(), x.data(), kRows, y.data(), p);
      flops += 2.0 * kRows * (4 * kWidth * kWidth + 3 * kWidth * kFfn);
    }
    matmul(head.view(), x.data(), kRows, y.data(), p);
    flops += 2.0 * kRows * kWidth * kVocab;
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(type_name(type)) + " " + simd_target_name());
}
BENCHMARK(BM_Step160m)
    ->ArgNames({"type", "threads"})
    ->Args({static_cast<int64_t>(TensorType::Q8_0), 1})
    ->Args({static_cast<int64_t>(TensorType::Q8_0), 2})
    ->Args({static_cast<int64_t>(TensorType::Q4_K), 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ------------------------------ peaks ---------------------------------------------------
#if defined(__x86_64__)
// Register-only loops of independent multiply-adds, one core. GOP/s counts a multiply-add
// as 2 operations, like GFLOP/s above.

constexpr int64_t kPeakIters = 1 << 20;

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void vnni_loop(int64_t iters, int32_t* out) {
  __m512i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i);
  __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-5);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    __asm__ volatile("" : "+v"(a), "+v"(b));
  }
  for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_epi32(acc[0], acc[i]);
  alignas(64) int32_t tmp[16];
  _mm512_store_si512(tmp, acc[0]);
  *out = tmp[0];
}

void BM_PeakVnniInt8(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512vnni")) {
    state.SkipWithError("no AVX-512 VNNI on this CPU");
    return;
  }
  int32_t out = 0;
  for (auto _ : state) vnni_loop(kPeakIters, &out);
  benchmark::DoNotOptimize(out);
  // 12 vpdpbusd of 64 u8×s8 multiply-adds each.
  state.counters["GOP/s"] = benchmark::Counter(kPeakIters * 12.0 * 64 * 2 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PeakVnniInt8);

// The same loop on every thread of the matmul's pool at once: the machine's peak for the
// 2-thread matmuls (two vCPUs need not give twice one).
void BM_PeakVnniInt8Pool(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512vnni")) {
    state.SkipWithError("no AVX-512 VNNI on this CPU");
    return;
  }
  const int threads = static_cast<int>(state.range(0));
  ThreadPool& p = pool(threads);
  std::vector<int32_t> out(static_cast<size_t>(threads) * 16);
  for (auto _ : state) {
    p.parallel_for(threads, [&](int64_t t, int) { vnni_loop(kPeakIters, &out[static_cast<size_t>(t) * 16]); });
  }
  benchmark::DoNotOptimize(out.data());
  state.counters["GOP/s"] = benchmark::Counter(threads * kPeakIters * 12.0 * 64 * 2 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PeakVnniInt8Pool)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();

__attribute__((target("avx512f,avx512bf16"))) void bf16_loop(int64_t iters, float* out) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3f80)), b = a;
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __asm__ volatile("" : "+v"(a), "+v"(b));
  }
  for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  alignas(64) float tmp[16];
  _mm512_store_ps(tmp, acc[0]);
  *out = tmp[0];
}

// vdpbf16ps: 32 bf16 products summed in pairs into 16 floats, the direct BF16 kernel's op.
void BM_PeakBf16Dot(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512bf16")) {
    state.SkipWithError("no AVX-512 BF16 on this CPU");
    return;
  }
  float out = 0;
  for (auto _ : state) bf16_loop(kPeakIters, &out);
  benchmark::DoNotOptimize(out);
  state.counters["GFLOP/s"] = benchmark::Counter(kPeakIters * 12.0 * 32 * 2 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PeakBf16Dot);

// AVX2 has no int8 dot-product instruction: vpmaddubsw (u8×s8 pairs into int16) plus
// vpmaddwd (pairs into int32) is the int8 → int32 dot product the AVX2 kernels build on.
__attribute__((target("avx2"))) void avx2_int8_loop(int64_t iters, int32_t* out) {
  __m256i acc[6];
  for (int i = 0; i < 6; ++i) acc[i] = _mm256_set1_epi32(i);
  __m256i w0 = _mm256_set1_epi8(3), w1 = _mm256_set1_epi8(7), x0 = _mm256_set1_epi8(5), x1 = _mm256_set1_epi8(-6),
          x2 = _mm256_set1_epi8(9);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t it = 0; it < iters; ++it) {
    const __m256i w[2] = {w0, w1}, x[3] = {x0, x1, x2};
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(w[i & 1], x[i >> 1]), ones));
    }
    __asm__ volatile("" : "+x"(w0), "+x"(w1), "+x"(x0), "+x"(x1), "+x"(x2));
  }
  for (int i = 1; i < 6; ++i) acc[0] = _mm256_add_epi32(acc[0], acc[i]);
  *out = _mm256_extract_epi32(acc[0], 0);
}

// vpmaddubsw alone, accumulating in int16: the ceiling when several products can share one
// widening (the Q4 kernels do this).
__attribute__((target("avx2"))) void avx2_maddubs_loop(int64_t iters, int32_t* out) {
  __m256i acc[6];
  for (int i = 0; i < 6; ++i) acc[i] = _mm256_set1_epi16(static_cast<int16_t>(i));
  __m256i w0 = _mm256_set1_epi8(3), w1 = _mm256_set1_epi8(7), x0 = _mm256_set1_epi8(5), x1 = _mm256_set1_epi8(-6),
          x2 = _mm256_set1_epi8(9);
  for (int64_t it = 0; it < iters; ++it) {
    const __m256i w[2] = {w0, w1}, x[3] = {x0, x1, x2};
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) acc[i] = _mm256_add_epi16(acc[i], _mm256_maddubs_epi16(w[i & 1], x[i >> 1]));
    __asm__ volatile("" : "+x"(w0), "+x"(w1), "+x"(x0), "+x"(x1), "+x"(x2));
  }
  for (int i = 1; i < 6; ++i) acc[0] = _mm256_add_epi16(acc[0], acc[i]);
  *out = _mm256_extract_epi32(acc[0], 0);
}

void BM_PeakAvx2Int8(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx2")) {
    state.SkipWithError("no AVX2 on this CPU");
    return;
  }
  const bool widen = state.range(0) != 0;
  int32_t out = 0;
  for (auto _ : state) widen ? avx2_int8_loop(kPeakIters, &out) : avx2_maddubs_loop(kPeakIters, &out);
  benchmark::DoNotOptimize(out);
  state.counters["GOP/s"] = benchmark::Counter(kPeakIters * 6.0 * 32 * 2 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(widen ? "maddubs+madd+add (int32)" : "maddubs+add (int16)");
}
BENCHMARK(BM_PeakAvx2Int8)->ArgName("int32")->Arg(1)->Arg(0);

template <int kBits>
__attribute__((target("avx512f,fma"))) void fma_loop(int64_t iters, float* out) {
  if constexpr (kBits == 512) {
    __m512 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
    __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.999f);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
      __asm__ volatile("" : "+v"(a), "+v"(b));
    }
    for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    alignas(64) float tmp[16];
    _mm512_store_ps(tmp, acc[0]);
    *out = tmp[0];
  } else {
    __m256 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
    __m256 a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.999f);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
      __asm__ volatile("" : "+x"(a), "+x"(b));
    }
    for (int i = 1; i < 12; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, acc[0]);
    *out = tmp[0];
  }
}

void BM_PeakFp32Fma(benchmark::State& state) {
  const int bits = static_cast<int>(state.range(0));
  if (bits == 512 ? !__builtin_cpu_supports("avx512f") : !__builtin_cpu_supports("fma")) {
    state.SkipWithError("no such FMA on this CPU");
    return;
  }
  float out = 0;
  for (auto _ : state) bits == 512 ? fma_loop<512>(kPeakIters, &out) : fma_loop<256>(kPeakIters, &out);
  benchmark::DoNotOptimize(out);
  state.counters["GFLOP/s"] = benchmark::Counter(kPeakIters * 12.0 * (bits / 32) * 2 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PeakFp32Fma)->ArgName("bits")->Arg(256)->Arg(512);
#endif  // __x86_64__

}  // namespace
}  // namespace ruvdllm

// RUVDLLM_TARGET=AVX2 (any Highway target name) measures that target's kernels instead of
// the best one, e.g. the AVX2 path on an AVX-512 machine.
int main(int argc, char** argv) {
  if (const char* want = std::getenv("RUVDLLM_TARGET")) {
    bool found = false;
    for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
      if (std::string(hwy::TargetName(target)) == want) {
        hwy::SetSupportedTargetsForTest(target);
        hwy::GetChosenTarget().Update(hwy::SupportedTargets());
        found = true;
      }
    }
    if (!found) {
      std::fprintf(stderr, "RUVDLLM_TARGET=%s is not a supported target here\n", want);
      return 1;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
