// Each GPU training kernel against the CPU pass of the same name (include/ruvdllm/train/
// layers.h) on random inputs. Bounds are on ‖gpu − cpu‖₂ / ‖cpu‖₂: f32 products differ from
// the CPU's only in summation order, TF32 and BF16 products round their inputs (bounds below,
// measured errors printed). Outputs the kernels write are poisoned with NaN first, so an
// element left unwritten fails the comparison.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "cuda/gemm.h"
#include "cuda/infer_kernels.h"
#include "cuda/train_kernels.h"
#include "cuda_test_util.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/train/layers.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using testing::CudaTest;
using testing::poisoned;
using testing::random_floats;
using testing::rel_error;
using testing::to_device;
using testing::to_host;

using cuda::MatmulPrecision;
constexpr MatmulPrecision kPrecisions[] = {MatmulPrecision::F32, MatmulPrecision::TF32,
                                           MatmulPrecision::BF16};

// A product's relative error: f32 differs from the CPU only in summation order; TF32 rounds
// its inputs to 11 significant bits and BF16 to 8 (about 3e-4 and 2e-3 typical).
double bound_for(MatmulPrecision p) {
  return p == MatmulPrecision::F32 ? 1e-5 : p == MatmulPrecision::TF32 ? 3e-3 : 2e-2;
}
// Attention chains two products and a softmax, which passes on the scores' absolute error.
double attention_bound(MatmulPrecision p) {
  return p == MatmulPrecision::F32 ? 1e-4 : p == MatmulPrecision::TF32 ? 2e-2 : 8e-2;
}
const char* name_of(MatmulPrecision p) {
  return p == MatmulPrecision::F32 ? "f32" : p == MatmulPrecision::TF32 ? "tf32" : "bf16";
}

// Prints what was measured, so each run documents the errors behind the bounds.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double bound,
                  const std::string& label) {
  const double e = rel_error(got, want);
  std::printf("  %-44s rel %.1e (bound %.0e)\n", label.c_str(), e, bound);
  EXPECT_LT(e, bound) << label;
}

std::vector<int32_t> random_ids(size_t n, int32_t limit, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, limit - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Token-major [n_seq·seq_len][n_head][head_dim] to head-major [n_seq][n_head][seq_len][head_dim].
std::vector<float> to_heads(const std::vector<float>& x, int64_t S, int64_t L, int64_t H,
                            int64_t D) {
  std::vector<float> out(x.size());
  for (int64_t s = 0; s < S; ++s)
    for (int64_t p = 0; p < L; ++p)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d)
          out[static_cast<size_t>(((s * H + h) * L + p) * D + d)] =
              x[static_cast<size_t>(((s * L + p) * H + h) * D + d)];
  return out;
}

std::vector<float> from_heads(const std::vector<float>& x, int64_t S, int64_t L, int64_t H,
                              int64_t D) {
  std::vector<float> out(x.size());
  for (int64_t s = 0; s < S; ++s)
    for (int64_t p = 0; p < L; ++p)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d)
          out[static_cast<size_t>(((s * L + p) * H + h) * D + d)] =
              x[static_cast<size_t>(((s * H + h) * L + p) * D + d)];
  return out;
}

using CudaOps = CudaTest;

TEST_F(CudaOps, LinearForwardAndBackwardMatchCpu) {
  struct Shape {
    int64_t n, in, out;
  };
  for (const Shape sh :
       {Shape{37, 29, 53}, Shape{64, 128, 96}, Shape{1, 5, 7}, Shape{300, 384, 1152}}) {
    const auto x = random_floats(static_cast<size_t>(sh.n * sh.in), 1);
    const auto w = random_floats(static_cast<size_t>(sh.out * sh.in), 2);
    const auto dy = random_floats(static_cast<size_t>(sh.n * sh.out), 3);
    const auto dw0 = random_floats(static_cast<size_t>(sh.out * sh.in), 4);
    std::vector<float> y_ref(static_cast<size_t>(sh.n * sh.out));
    std::vector<float> dx_ref(static_cast<size_t>(sh.n * sh.in), 0.0f), dw_ref = dw0;
    train::linear_forward<float>(y_ref.data(), x.data(), w.data(), nullptr, sh.n, sh.in, sh.out);
    train::linear_backward<float>(dx_ref.data(), dw_ref.data(), nullptr, dy.data(), x.data(),
                                  w.data(), sh.n, sh.in, sh.out);
    std::vector<float> dw_delta_ref(dw_ref.size());
    for (size_t i = 0; i < dw_ref.size(); ++i) dw_delta_ref[i] = dw_ref[i] - dw0[i];

    auto dx_dev = to_device(x), dw_dev = to_device(w), ddy = to_device(dy);
    for (const MatmulPrecision precision : kPrecisions) {
      const std::string label = std::string("linear ") + name_of(precision) + " " +
                                std::to_string(sh.n) + "x" + std::to_string(sh.in) + "->" +
                                std::to_string(sh.out);
      cuda::Gemm gemm(nullptr, precision);
      auto y = poisoned<float>(y_ref.size());
      gemm.linear_forward(y.data(), dx_dev.data(), dw_dev.data(), sh.n, sh.in, sh.out);
      expect_close(to_host(y, y_ref.size()), y_ref, bound_for(precision), label + " y");
      auto dx = poisoned<float>(dx_ref.size());
      gemm.linear_backward_input(dx.data(), ddy.data(), dw_dev.data(), sh.n, sh.in, sh.out);
      expect_close(to_host(dx, dx_ref.size()), dx_ref, bound_for(precision), label + " dx");
      auto dwd = to_device(dw0);
      gemm.linear_backward_weight(dwd.data(), ddy.data(), dx_dev.data(), sh.n, sh.in, sh.out);
      std::vector<float> delta = to_host(dwd, dw0.size());
      for (size_t i = 0; i < delta.size(); ++i) delta[i] -= dw0[i];
      // dw is added to a random start, and subtracting it again loses a little more.
      expect_close(delta, dw_delta_ref, bound_for(precision) * 2, label + " dw");
    }
  }
}

std::vector<float> bf16_rounded(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = bf16_to_f32(f32_to_bf16(x[i]));
  return out;
}

std::vector<uint16_t> bits_of(const cuda::DeviceArray<cuda::bf16>& d, size_t n) {
  cuda::check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  std::vector<uint16_t> host(n);
  cuda::check_cuda(cudaMemcpy(host.data(), d.data(), n * 2, cudaMemcpyDeviceToHost), "cudaMemcpy");
  return host;
}

TEST_F(CudaOps, Bf16ConversionRoundsAsTheHostDoes) {
  std::vector<float> x = random_floats(10001, 31);
  for (float& v : x) v *= 1000.0f;
  // Ties (exactly half an ulp of bf16) both ways, and values near the top of the range.
  x.push_back(1.0f + 1.0f / 256.0f), x.push_back(1.0f + 3.0f / 256.0f);
  x.push_back(3.0e38f), x.push_back(-3.0e38f), x.push_back(0.0f), x.push_back(-1e-40f);
  const auto dx = to_device(x);
  cuda::DeviceArray<cuda::bf16> out(x.size());
  cuda::to_bf16(out.data(), dx.data(), static_cast<int64_t>(x.size()), nullptr);
  const std::vector<uint16_t> got = bits_of(out, x.size());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], f32_to_bf16(x[i])) << i << " " << x[i];
}

// bf16 operands in memory: against the CPU on the same bf16-rounded inputs only the summation
// order differs (f32 bound), and against the unrounded f32 product the rounding of the inputs
// shows (BF16 bound).
TEST_F(CudaOps, LinearOnBf16OperandsMatchesCpu) {
  struct Shape {
    int64_t n, in, out;
  };
  for (const Shape sh :
       {Shape{37, 29, 53}, Shape{64, 128, 96}, Shape{1, 5, 7}, Shape{300, 384, 1152}}) {
    const auto x = random_floats(static_cast<size_t>(sh.n * sh.in), 11);
    const auto w = random_floats(static_cast<size_t>(sh.out * sh.in), 12);
    const auto dy = random_floats(static_cast<size_t>(sh.n * sh.out), 13);
    const std::string label = "linear bf16-operands " + std::to_string(sh.n) + "x" +
                              std::to_string(sh.in) + "->" + std::to_string(sh.out);
    auto to_b = [](const std::vector<float>& v) {
      const auto d = to_device(v);
      cuda::DeviceArray<cuda::bf16> b(v.size());
      cuda::to_bf16(b.data(), d.data(), static_cast<int64_t>(v.size()), nullptr);
      cuda::check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
      return b;
    };
    const auto xb = to_b(x), wb = to_b(w), dyb = to_b(dy);
    cuda::Gemm gemm(nullptr, MatmulPrecision::BF16);
    auto y = poisoned<float>(static_cast<size_t>(sh.n * sh.out));
    gemm.linear_forward(y.data(), xb.data(), wb.data(), sh.n, sh.in, sh.out);
    auto dx = poisoned<float>(x.size());
    gemm.linear_backward_input(dx.data(), dyb.data(), wb.data(), sh.n, sh.in, sh.out);
    auto dw = to_device(std::vector<float>(w.size(), 0.0f));
    gemm.linear_backward_weight(dw.data(), dyb.data(), xb.data(), sh.n, sh.in, sh.out);
    const auto y_got = to_host(y, static_cast<size_t>(sh.n * sh.out));
    const auto dx_got = to_host(dx, x.size());
    const auto dw_got = to_host(dw, w.size());

    for (const bool rounded : {true, false}) {
      const auto xr = rounded ? bf16_rounded(x) : x, wr = rounded ? bf16_rounded(w) : w,
                 dyr = rounded ? bf16_rounded(dy) : dy;
      std::vector<float> y_ref(y_got.size()), dx_ref(x.size(), 0.0f), dw_ref(w.size(), 0.0f);
      train::linear_forward<float>(y_ref.data(), xr.data(), wr.data(), nullptr, sh.n, sh.in,
                                   sh.out);
      train::linear_backward<float>(dx_ref.data(), dw_ref.data(), nullptr, dyr.data(), xr.data(),
                                    wr.data(), sh.n, sh.in, sh.out);
      const double bound = rounded ? bound_for(MatmulPrecision::F32) : bound_for(MatmulPrecision::BF16);
      const std::string what = label + (rounded ? " (rounded in)" : " (f32 in)");
      expect_close(y_got, y_ref, bound, what + " y");
      expect_close(dx_got, dx_ref, bound, what + " dx");
      expect_close(dw_got, dw_ref, bound, what + " dw");
    }
  }
}

TEST_F(CudaOps, EmbeddingGatherAndGroupedBackwardMatchCpu) {
  const int64_t n = 211, d = 37, vocab = 13;
  const auto table = random_floats(static_cast<size_t>(vocab * d), 5);
  const auto tokens = random_ids(static_cast<size_t>(n), static_cast<int32_t>(vocab), 6);
  std::vector<float> ref(static_cast<size_t>(n * d));
  train::embedding_forward<float>(ref.data(), tokens.data(), table.data(), n, d);
  auto dtable = to_device(table);
  auto dtok = to_device(tokens);
  auto out = poisoned<float>(ref.size());
  cuda::gather_rows(out.data(), dtable.data(), dtok.data(), n, d, nullptr);
  EXPECT_EQ(to_host(out, ref.size()), ref);  // a copy: bit for bit

  const auto dout = random_floats(static_cast<size_t>(n * d), 7);
  const auto g0 = random_floats(static_cast<size_t>(vocab * d), 8);
  std::vector<float> gref = g0;
  train::embedding_backward<float>(gref.data(), dout.data(), tokens.data(), n, d);
  const cuda::RowGroups groups = cuda::group_rows(tokens);
  ASSERT_EQ(groups.offsets.back(), n);
  auto ddest = to_device(groups.dest), doff = to_device(groups.offsets),
       ditems = to_device(groups.items);
  auto ddout = to_device(dout);
  auto grad = to_device(g0);
  cuda::segment_sum_rows(grad.data(), ddout.data(), ddest.data(), doff.data(), ditems.data(),
                         static_cast<int64_t>(groups.dest.size()), d, true, nullptr);
  EXPECT_LT(rel_error(to_host(grad, g0.size()), gref), 1e-6);
}

TEST_F(CudaOps, ColumnSumsMatchCpu) {
  const int64_t rows = 1000, cols = 77, ld = 80;
  const auto m = random_floats(static_cast<size_t>(rows * ld), 9);
  const auto base = random_floats(static_cast<size_t>(cols), 10);
  std::vector<float> ref = base;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      ref[static_cast<size_t>(c)] += m[static_cast<size_t>(r * ld + c)];
  auto dm = to_device(m), out = to_device(base);
  auto partials = poisoned<float>(static_cast<size_t>(cuda::column_sum_scratch(rows, cols)));
  cuda::column_sums_add(out.data(), dm.data(), rows, cols, ld, partials.data(), nullptr);
  EXPECT_LT(rel_error(to_host(out, ref.size()), ref), 1e-6);
}

TEST_F(CudaOps, RmsNormForwardAndBackwardMatchCpu) {
  for (const int64_t d : {7, 93, 384}) {
    SCOPED_TRACE(d);
    const int64_t n = 37;
    const float eps = 1e-5f;
    const auto x = random_floats(static_cast<size_t>(n * d), 11, -2.0f, 2.0f);
    const auto w = random_floats(static_cast<size_t>(d), 12, 0.5f, 1.5f);
    const auto dy = random_floats(static_cast<size_t>(n * d), 13);
    const auto dx0 = random_floats(static_cast<size_t>(n * d), 14);
    const auto dw0 = random_floats(static_cast<size_t>(d), 15);
    std::vector<float> y_ref(x.size()), rstd_ref(static_cast<size_t>(n)), dx_ref = dx0,
                                                                          dw_ref = dw0;
    train::rmsnorm_forward<float>(y_ref.data(), rstd_ref.data(), x.data(), w.data(), n, d, eps);
    train::rmsnorm_backward<float>(dx_ref.data(), dw_ref.data(), dy.data(), x.data(), w.data(),
                                   rstd_ref.data(), n, d);

    auto dx_in = to_device(x), dw_in = to_device(w), ddy = to_device(dy);
    auto y = poisoned<float>(x.size());
    auto rstd = poisoned<float>(static_cast<size_t>(n));
    cuda::rmsnorm_forward(y.data(), rstd.data(), dx_in.data(), dw_in.data(), n, d, eps, nullptr);
    EXPECT_LT(rel_error(to_host(y, x.size()), y_ref), 1e-6);
    EXPECT_LT(rel_error(to_host(rstd, rstd_ref.size()), rstd_ref), 1e-6);

    auto dx = to_device(dx0), dw = to_device(dw0);
    auto rows = poisoned<float>(x.size());
    auto partials = poisoned<float>(static_cast<size_t>(cuda::column_sum_scratch(n, d)));
    cuda::rmsnorm_backward(dx.data(), rows.data(), ddy.data(), dx_in.data(), dw_in.data(),
                           rstd.data(), n, d, nullptr);
    cuda::column_sums_add(dw.data(), rows.data(), n, d, d, partials.data(), nullptr);
    EXPECT_LT(rel_error(to_host(dx, x.size()), dx_ref), 1e-6);
    EXPECT_LT(rel_error(to_host(dw, dw0.size()), dw_ref), 1e-6);
  }
}

TEST_F(CudaOps, RopeLayoutChangesMatchCpuInBothOrders) {
  const int64_t S = 2, L = 40, H = 3;
  for (const RopeOrder order : {RopeOrder::Normal, RopeOrder::NeoX}) {
    for (const int64_t D : {6, 64}) {
      for (const float base : {10000.0f, 500000.0f}) {
        SCOPED_TRACE(::testing::Message()
                     << "order " << static_cast<int>(order) << " D " << D << " base " << base);
        const int64_t T = S * L, width = H * D, ld = width + 5, col0 = 3;
        const auto wide = random_floats(static_cast<size_t>(T * ld), 16);
        const auto bias = random_floats(static_cast<size_t>(width), 17);
        std::vector<int32_t> pos(static_cast<size_t>(T));
        for (int64_t t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(t % L);
        // CPU: the token-major block plus bias, rotated in place.
        std::vector<float> x(static_cast<size_t>(T * width));
        for (int64_t t = 0; t < T; ++t)
          for (int64_t c = 0; c < width; ++c)
            x[static_cast<size_t>(t * width + c)] =
                wide[static_cast<size_t>(t * ld + col0 + c)] + bias[static_cast<size_t>(c)];
        train::rope_forward<float>(x.data(), pos.data(), T, H, D, base, order);

        const std::vector<float2> table = cuda::rope_table(L, D, base);
        auto dtable = to_device(table);
        auto dwide = to_device(wide), dbias = to_device(bias);
        auto heads = poisoned<float>(x.size());
        cuda::heads_from_tokens(heads.data(), dwide.data() + col0, ld, dbias.data(), S, L, H, D,
                                dtable.data(), order, nullptr);
        EXPECT_LT(rel_error(from_heads(to_host(heads, x.size()), S, L, H, D), x), 1e-6);

        // Backward: head-major gradient back to token-major rows, rotated by −θ.
        const auto dy_heads = random_floats(x.size(), 18);
        std::vector<float> dx_ref = from_heads(dy_heads, S, L, H, D);
        train::rope_backward<float>(dx_ref.data(), pos.data(), T, H, D, base, order);
        auto ddy = to_device(dy_heads);
        auto out = poisoned<float>(static_cast<size_t>(T * ld));
        cuda::tokens_from_heads(out.data() + col0, ld, ddy.data(), S, L, H, D, dtable.data(), order,
                                nullptr);
        const std::vector<float> got_wide = to_host(out, static_cast<size_t>(T * ld));
        std::vector<float> got(x.size());
        for (int64_t t = 0; t < T; ++t)
          for (int64_t c = 0; c < width; ++c)
            got[static_cast<size_t>(t * width + c)] =
                got_wide[static_cast<size_t>(t * ld + col0 + c)];
        EXPECT_LT(rel_error(got, dx_ref), 1e-6);

        // Without angles or bias the two layout changes are exact inverses.
        auto plain = poisoned<float>(x.size());
        cuda::heads_from_tokens(plain.data(), ddy.data(), width, nullptr, S, L, H, D, nullptr,
                                order, nullptr);
        EXPECT_EQ(to_host(plain, x.size()), to_heads(dy_heads, S, L, H, D));
      }
    }
  }
}

struct MaskCase {
  MaskMode mask;
  int64_t block_len;
};

class CudaAttention : public CudaTest, public ::testing::WithParamInterface<MaskCase> {};

TEST_P(CudaAttention, ForwardAndBackwardMatchCpuWithGqa) {
  struct Shape {
    int64_t S, L, H, Hkv, D;
  };
  // Lengths reach each softmax variant: rows held in registers (up to 128, 256, 512 and 1024
  // keys) and the two-pass kernel beyond.
  for (const Shape sh : {Shape{2, 13, 4, 2, 8}, Shape{1, 70, 6, 6, 64}, Shape{3, 33, 4, 1, 16},
                         Shape{1, 200, 2, 1, 8}, Shape{1, 300, 2, 2, 8}, Shape{1, 1000, 1, 1, 8},
                         Shape{1, 1100, 1, 1, 8}}) {
    train::TrainAttentionShape cpu;
    cpu.n_seq = sh.S, cpu.seq_len = sh.L, cpu.n_head = sh.H, cpu.n_head_kv = sh.Hkv,
    cpu.head_dim = sh.D;
    cpu.mask = GetParam().mask, cpu.block_len = GetParam().block_len;
    const int64_t T = sh.S * sh.L;
    const size_t nq = static_cast<size_t>(T * sh.H * sh.D),
                 nkv = static_cast<size_t>(T * sh.Hkv * sh.D);
    const size_t np = static_cast<size_t>(sh.S * sh.H * sh.L * sh.L);
    const auto q = random_floats(nq, 19, -2.0f, 2.0f), k = random_floats(nkv, 20, -2.0f, 2.0f);
    const auto v = random_floats(nkv, 21), dout = random_floats(nq, 22);
    std::vector<float> out_ref(nq), probs_ref(np);
    train::attention_forward<float>(out_ref.data(), probs_ref.data(), q.data(), k.data(), v.data(),
                                    cpu, nullptr);
    std::vector<float> dq_ref(nq, 0.0f), dk_ref(nkv, 0.0f), dv_ref(nkv, 0.0f);
    train::attention_backward<float>(dq_ref.data(), dk_ref.data(), dv_ref.data(), dout.data(),
                                     probs_ref.data(), q.data(), k.data(), v.data(), cpu, nullptr);

    cuda::AttentionDims dims{sh.S, sh.L, sh.H, sh.Hkv, sh.D, cpu.mask, cpu.block_len};
    auto dq_in = to_device(to_heads(q, sh.S, sh.L, sh.H, sh.D));
    auto dk_in = to_device(to_heads(k, sh.S, sh.L, sh.Hkv, sh.D));
    auto dv_in = to_device(to_heads(v, sh.S, sh.L, sh.Hkv, sh.D));
    auto ddout = to_device(to_heads(dout, sh.S, sh.L, sh.H, sh.D));
    for (const MatmulPrecision precision : kPrecisions) {
      const std::string label = std::string("attention ") + name_of(precision) + " mask " +
                                std::to_string(static_cast<int>(cpu.mask)) + " L" +
                                std::to_string(sh.L) + " H" + std::to_string(sh.H) + "/" +
                                std::to_string(sh.Hkv) + " D" + std::to_string(sh.D);
      cuda::Gemm gemm(nullptr, precision);
      auto probs = poisoned<float>(np);
      auto out = poisoned<float>(nq);
      cuda::attention_forward(gemm, dims, dq_in.data(), dk_in.data(), dv_in.data(), probs.data(),
                              out.data(), nullptr);
      const double bound = attention_bound(precision);
      expect_close(to_host(probs, np), probs_ref, bound, label + " probs");
      expect_close(from_heads(to_host(out, nq), sh.S, sh.L, sh.H, sh.D), out_ref, bound,
                   label + " out");

      auto dq = poisoned<float>(nq), dk = poisoned<float>(nkv), dv = poisoned<float>(nkv),
           dprobs = poisoned<float>(np);
      cuda::attention_backward(gemm, dims, ddout.data(), probs.data(), dq_in.data(), dk_in.data(),
                               dv_in.data(), dq.data(), dk.data(), dv.data(), dprobs.data(),
                               nullptr);
      expect_close(from_heads(to_host(dq, nq), sh.S, sh.L, sh.H, sh.D), dq_ref, bound,
                   label + " dq");
      expect_close(from_heads(to_host(dk, nkv), sh.S, sh.L, sh.Hkv, sh.D), dk_ref, bound,
                   label + " dk");
      expect_close(from_heads(to_host(dv, nkv), sh.S, sh.L, sh.Hkv, sh.D), dv_ref, bound,
                   label + " dv");
    }

    // bf16 operands and a bf16 softmax (the engine's BF16 mode).
    const std::string label = std::string("attention bf16-operands mask ") +
                              std::to_string(static_cast<int>(cpu.mask)) + " L" +
                              std::to_string(sh.L) + " H" + std::to_string(sh.H) + "/" +
                              std::to_string(sh.Hkv) + " D" + std::to_string(sh.D);
    const auto to_b = [](const cuda::DeviceArray<float>& f, size_t n) {
      cuda::DeviceArray<cuda::bf16> b(n);
      cuda::to_bf16(b.data(), f.data(), static_cast<int64_t>(n), nullptr);
      return b;
    };
    const auto bits_to_floats = [](const std::vector<uint16_t>& bits) {
      std::vector<float> out(bits.size());
      for (size_t i = 0; i < bits.size(); ++i) out[i] = bf16_to_f32(bits[i]);
      return out;
    };
    const auto qb = to_b(dq_in, nq), kb = to_b(dk_in, nkv), vb = to_b(dv_in, nkv),
               doutb = to_b(ddout, nq);
    cuda::Gemm gemm(nullptr, MatmulPrecision::BF16);
    auto scores = poisoned<float>(np);
    auto probs_b = poisoned<cuda::bf16>(np);
    auto out = poisoned<float>(nq);
    cuda::attention_forward(gemm, dims, qb.data(), kb.data(), vb.data(), scores.data(),
                            probs_b.data(), out.data(), nullptr);
    const double bound = attention_bound(MatmulPrecision::BF16);
    expect_close(bits_to_floats(bits_of(probs_b, np)), probs_ref, bound, label + " probs");
    expect_close(from_heads(to_host(out, nq), sh.S, sh.L, sh.H, sh.D), out_ref, bound,
                 label + " out");
    auto dq = poisoned<float>(nq), dk = poisoned<float>(nkv), dv = poisoned<float>(nkv),
         dprobs = poisoned<float>(np);
    auto dscores = poisoned<cuda::bf16>(np);
    cuda::attention_backward(gemm, dims, doutb.data(), probs_b.data(), qb.data(), kb.data(),
                             vb.data(), dq.data(), dk.data(), dv.data(), dprobs.data(),
                             dscores.data(), nullptr);
    expect_close(from_heads(to_host(dq, nq), sh.S, sh.L, sh.H, sh.D), dq_ref, bound, label + " dq");
    expect_close(from_heads(to_host(dk, nkv), sh.S, sh.L, sh.Hkv, sh.D), dk_ref, bound,
                 label + " dk");
    expect_close(from_heads(to_host(dv, nkv), sh.S, sh.L, sh.Hkv, sh.D), dv_ref, bound,
                 label + " dv");
  }
}

INSTANTIATE_TEST_SUITE_P(Masks, CudaAttention,
                         ::testing::Values(MaskCase{MaskMode::Full, 0},
                                           MaskCase{MaskMode::Causal, 0},
                                           MaskCase{MaskMode::BlockCausal, 4},
                                           MaskCase{MaskMode::BlockCausal, 32}));

TEST_F(CudaOps, SwigluForwardAndBackwardMatchCpu) {
  const int64_t rows = 7, width = 33, n = rows * width;
  auto g = random_floats(static_cast<size_t>(n), 23, -8.0f, 8.0f);
  g[3] = 40.0f, g[10] = -40.0f;  // saturated gates must not overflow
  const auto u = random_floats(static_cast<size_t>(n), 24),
             dh = random_floats(static_cast<size_t>(n), 25);
  std::vector<float> h_ref(static_cast<size_t>(n)), dg_ref(static_cast<size_t>(n), 0.0f),
      du_ref(static_cast<size_t>(n), 0.0f);
  train::swiglu_forward<float>(h_ref.data(), g.data(), u.data(), n);
  train::swiglu_backward<float>(dg_ref.data(), du_ref.data(), dh.data(), g.data(), u.data(), n);
  std::vector<float> gate_up(static_cast<size_t>(2 * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < width; ++j) {
      gate_up[static_cast<size_t>(r * 2 * width + j)] = g[static_cast<size_t>(r * width + j)];
      gate_up[static_cast<size_t>(r * 2 * width + width + j)] =
          u[static_cast<size_t>(r * width + j)];
    }
  auto dgu_in = to_device(gate_up), ddh = to_device(dh);
  auto h = poisoned<float>(static_cast<size_t>(n));
  cuda::swiglu_forward(h.data(), dgu_in.data(), rows, width, nullptr);
  EXPECT_LT(rel_error(to_host(h, static_cast<size_t>(n)), h_ref), 1e-6);
  auto dgu = poisoned<float>(static_cast<size_t>(2 * n));
  cuda::swiglu_backward(dgu.data(), ddh.data(), dgu_in.data(), rows, width, nullptr);
  const auto got = to_host(dgu, static_cast<size_t>(2 * n));
  std::vector<float> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < width; ++j) {
      dg[static_cast<size_t>(r * width + j)] = got[static_cast<size_t>(r * 2 * width + j)];
      du[static_cast<size_t>(r * width + j)] = got[static_cast<size_t>(r * 2 * width + width + j)];
    }
  EXPECT_LT(rel_error(dg, dg_ref), 1e-6);
  EXPECT_LT(rel_error(du, du_ref), 1e-6);
}

TEST_F(CudaOps, CrossEntropyMatchesCpu) {
  for (const int64_t vocab : {1001, 8192}) {
    SCOPED_TRACE(vocab);
    const int64_t rows = 9;
    const float grad_scale = 0.37f;
    const auto logits = random_floats(static_cast<size_t>(rows * vocab), 26, -6.0f, 6.0f);
    const auto targets = random_ids(static_cast<size_t>(rows), static_cast<int32_t>(vocab), 27);
    auto weights = random_floats(static_cast<size_t>(rows), 28, 0.5f, 2.0f);
    weights[2] = 0.0f;
    std::vector<float> dref(logits.size());
    const double loss_ref = train::cross_entropy_forward_backward<float>(
        dref.data(), logits.data(), targets.data(), weights.data(), rows, vocab, grad_scale,
        nullptr);

    auto dlogits = to_device(logits), dweights = to_device(weights);
    auto dtargets = to_device(targets);
    auto row_loss = poisoned<double>(static_cast<size_t>(rows));
    cuda::cross_entropy(dlogits.data(), row_loss.data(), dtargets.data(), dweights.data(), rows,
                        vocab, grad_scale, false, nullptr);
    EXPECT_EQ(to_host(dlogits, logits.size()), logits);  // untouched without gradients
    cuda::cross_entropy(dlogits.data(), row_loss.data(), dtargets.data(), dweights.data(), rows,
                        vocab, grad_scale, true, nullptr);
    double loss = 0;
    for (double l : to_host(row_loss, static_cast<size_t>(rows))) loss += l;
    EXPECT_NEAR(loss, loss_ref, 1e-6 * std::fabs(loss_ref));
    EXPECT_LT(rel_error(to_host(dlogits, logits.size()), dref), 1e-6);
  }
}

TEST_F(CudaOps, BlockCausalWithoutBlockLengthIsAnError) {
  cuda::DeviceArray<float> scores(16);
  EXPECT_THROW(
      cuda::attention_softmax_forward(scores.data(), 4, 4, MaskMode::BlockCausal, 0, nullptr),
      Error);
}

}  // namespace
}  // namespace ruvdllm
