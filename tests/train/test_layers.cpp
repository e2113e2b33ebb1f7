// Per-layer forward/backward passes of the trainer: every gradient against central differences
// in double, float against double on larger shapes, the runtime's kernels as the forward
// reference, and bitwise determinism across thread counts.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/ops.h"
#include "ruvdllm/train/layers.h"
#include "test_util.h"
#include "train/layers_internal.h"

namespace ruvdllm::train {
namespace {

using Vec = std::vector<double>;

Vec random_vec(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<float> to_float(const Vec& v) { return {v.begin(), v.end()}; }

double weighted_sum(const Vec& r, const Vec& out) {
  double s = 0;
  for (size_t i = 0; i < r.size(); ++i) s += r[i] * out[i];
  return s;
}

// Central differences with h = 1e-6 on a scalar loss of `input`. An element passes when
// |analytic − numeric| <= 1e-6·max(|analytic|, |numeric|) + 1e-8: rounding of a loss of order 1
// gives about 1e-10 of absolute noise at this h, and the floor covers exact zeros (masked keys,
// rows of weight 0).
constexpr double kStep = 1e-6, kRelTol = 1e-6, kAbsTol = 1e-8;

// Checks every element, or every `stride`-th one for larger inputs.
void expect_gradient(const std::string& name, Vec& input, const Vec& analytic,
                     const std::function<double()>& loss, size_t stride = 1) {
  ASSERT_EQ(input.size(), analytic.size()) << name;
  double worst = 0;
  for (size_t i = 0; i < input.size(); i += stride) {
    const double saved = input[i];
    input[i] = saved + kStep;
    const double up = loss();
    input[i] = saved - kStep;
    const double down = loss();
    input[i] = saved;
    const double numeric = (up - down) / (2 * kStep);
    const double err = std::fabs(analytic[i] - numeric);
    const double scale = std::max(std::fabs(analytic[i]), std::fabs(numeric));
    EXPECT_LE(err, kRelTol * scale + kAbsTol)
        << name << "[" << i << "]: analytic " << analytic[i] << ", numeric " << numeric;
    if (scale > 1e-3) worst = std::max(worst, err / scale);
  }
  ::testing::Test::RecordProperty(name + "_max_rel_error", fmt::format("{:.2e}", worst));
}

// Backward passes add: gradient buffers start from random values, and the gradient is what
// the pass added to them.
Vec added(const Vec& after, const Vec& before) {
  Vec d(after.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = after[i] - before[i];
  return d;
}

// Float result against the double one: |f − d| <= 1e-4·max(|d|, rms(d)) per element; the rms
// term keeps elements near zero from demanding absolute accuracy below float's resolution.
void expect_float_matches_double(const std::string& name, const std::vector<float>& f,
                                 const Vec& d) {
  ASSERT_EQ(f.size(), d.size()) << name;
  double sq = 0;
  for (double x : d) sq += x * x;
  const double rms = std::sqrt(sq / static_cast<double>(std::max<size_t>(d.size(), 1)));
  ASSERT_GT(rms, 0) << name << " is all zeros";
  for (size_t i = 0; i < f.size(); ++i) {
    ASSERT_LE(std::fabs(f[i] - d[i]), 1e-4 * std::max(std::fabs(d[i]), rms))
        << name << "[" << i << "]: float " << f[i] << ", double " << d[i];
  }
}

// ----------------------------------------------------------------------------- linear

TEST(Linear, GradientsMatchFiniteDifferences) {
  const int64_t n = 5, in = 7, out = 6;
  Vec x = random_vec(n * in, 1), w = random_vec(out * in, 2), b = random_vec(out, 3);
  const Vec r = random_vec(n * out, 4);
  auto loss = [&] {
    Vec y(n * out);
    linear_forward(y.data(), x.data(), w.data(), b.data(), n, in, out);
    return weighted_sum(r, y);
  };
  const Vec dx0 = random_vec(x.size(), 5), dw0 = random_vec(w.size(), 6), db0 = random_vec(out, 7);
  Vec dx = dx0, dw = dw0, db = db0;
  linear_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), n, in, out);
  expect_gradient("dx", x, added(dx, dx0), loss);
  expect_gradient("dw", w, added(dw, dw0), loss);
  expect_gradient("db", b, added(db, db0), loss);
}

TEST(Linear, WithoutBiasAndWithNullGradients) {
  const int64_t n = 3, in = 4, out = 5;
  const Vec x = random_vec(n * in, 8), w = random_vec(out * in, 9), dy = random_vec(n * out, 10);
  Vec y(n * out, 123.0);  // overwritten, not added to
  linear_forward(y.data(), x.data(), w.data(), static_cast<const double*>(nullptr), n, in, out);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t o = 0; o < out; ++o) {
      double expect = 0;
      for (int64_t j = 0; j < in; ++j) expect += x[i * in + j] * w[o * in + j];
      EXPECT_NEAR(y[i * out + o], expect, 1e-14);
    }
  }
  Vec dw(w.size(), 0.0);
  linear_backward(static_cast<double*>(nullptr), dw.data(), static_cast<double*>(nullptr),
                  dy.data(), x.data(), w.data(), n, in, out);
  EXPECT_NEAR(dw[0], dy[0] * x[0] + dy[out] * x[in] + dy[2 * out] * x[2 * in], 1e-14);
  EXPECT_THROW(linear_forward(y.data(), x.data(), w.data(), static_cast<const double*>(nullptr), -1,
                              in, out),
               Error);
}

// Shapes cut into several chunks of x's rows (the first) and of W's rows (the second).
TEST(Linear, FloatMatchesDoubleAndThreadsDoNotChangeBits) {
  struct Shape {
    int64_t n, in, out;
  };
  for (const Shape& shape : {Shape{600, 96, 300}, Shape{70, 33, 700}}) {
    const int64_t n = shape.n, in = shape.in, out = shape.out;
    const Vec x = random_vec(n * in, 11), w = random_vec(out * in, 12, -0.2, 0.2);
    const Vec b = random_vec(out, 13), dy = random_vec(n * out, 14);
    Vec y(n * out), dx(x.size(), 0.0), dw(w.size(), 0.0), db(out, 0.0);
    linear_forward(y.data(), x.data(), w.data(), b.data(), n, in, out);
    linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), n, in, out);

    const auto xf = to_float(x), wf = to_float(w), bf = to_float(b), dyf = to_float(dy);
    std::vector<float> outputs[3][4];
    ThreadPool one(1), two(2);
    ThreadPool* pools[3] = {nullptr, &one, &two};
    for (int i = 0; i < 3; ++i) {
      auto& [yf, dxf, dwf, dbf] = outputs[i];
      yf.assign(y.size(), 0.0f);
      dxf.assign(dx.size(), 0.0f);
      dwf.assign(dw.size(), 0.0f);
      dbf.assign(db.size(), 0.0f);
      linear_forward(yf.data(), xf.data(), wf.data(), bf.data(), n, in, out, pools[i]);
      linear_backward(dxf.data(), dwf.data(), dbf.data(), dyf.data(), xf.data(), wf.data(), n, in,
                      out, pools[i]);
    }
    expect_float_matches_double("y", outputs[0][0], y);
    expect_float_matches_double("dx", outputs[0][1], dx);
    expect_float_matches_double("dw", outputs[0][2], dw);
    expect_float_matches_double("db", outputs[0][3], db);
    for (int i = 1; i < 3; ++i) {
      for (int j = 0; j < 4; ++j) EXPECT_EQ(outputs[i][j], outputs[0][j]) << "output " << j;
    }
  }
}

// -------------------------------------------------------------------------- embedding

TEST(Embedding, GradientsMatchFiniteDifferencesWithRepeatedTokens) {
  const int64_t vocab = 6, d = 7;
  const std::vector<int32_t> tokens = {3, 0, 3, 5, 3};
  const int64_t n = static_cast<int64_t>(tokens.size());
  Vec table = random_vec(vocab * d, 20);
  const Vec r = random_vec(n * d, 21);
  auto loss = [&] {
    Vec out(n * d);
    embedding_forward(out.data(), tokens.data(), table.data(), n, d);
    return weighted_sum(r, out);
  };
  const Vec dt0 = random_vec(table.size(), 22);
  Vec dt = dt0;
  embedding_backward(dt.data(), r.data(), tokens.data(), n, d);
  expect_gradient("dtable", table, added(dt, dt0), loss);
  for (int64_t j = 0; j < d; ++j) EXPECT_EQ(dt[1 * d + j], dt0[1 * d + j]);  // unused token
}

// ---------------------------------------------------------------------------- rmsnorm

TEST(RmsNorm, GradientsMatchFiniteDifferences) {
  const int64_t n = 5, d = 7;
  const double eps = 1e-5;
  Vec x = random_vec(n * d, 30), w = random_vec(d, 31, 0.5, 1.5);
  const Vec r = random_vec(n * d, 32);
  auto loss = [&] {
    Vec y(n * d), rstd(n);
    rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), n, d, eps);
    return weighted_sum(r, y);
  };
  Vec y(n * d), rstd(n);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), n, d, eps);
  const Vec dx0 = random_vec(x.size(), 33), dw0 = random_vec(d, 34);
  Vec dx = dx0, dw = dw0;
  rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), n, d);
  expect_gradient("dx", x, added(dx, dx0), loss);
  expect_gradient("dw", w, added(dw, dw0), loss);
}

TEST(RmsNorm, WithoutWeightGradientMatchesFiniteDifferences) {
  const int64_t n = 3, d = 9;
  Vec x = random_vec(n * d, 35);
  const Vec r = random_vec(n * d, 36);
  auto loss = [&] {
    Vec y(n * d), rstd(n);
    rmsnorm_forward(y.data(), rstd.data(), x.data(), static_cast<const double*>(nullptr), n, d,
                    1e-6);
    return weighted_sum(r, y);
  };
  Vec y(n * d), rstd(n);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), static_cast<const double*>(nullptr), n, d, 1e-6);
  Vec dx(x.size(), 0.0);
  rmsnorm_backward(dx.data(), static_cast<double*>(nullptr), r.data(), x.data(),
                   static_cast<const double*>(nullptr), rstd.data(), n, d);
  expect_gradient("dx", x, dx, loss);
}

TEST(RmsNorm, FloatMatchesRuntimeAndDouble) {
  const int64_t n = 33, d = 384;
  const Vec x = random_vec(n * d, 37, -3, 3), w = random_vec(d, 38, 0.5, 1.5);
  const Vec dy = random_vec(n * d, 39);
  const auto xf = to_float(x), wf = to_float(w), dyf = to_float(dy);
  std::vector<float> yf(x.size()), rstdf(n), expect(x.size());
  rmsnorm_forward(yf.data(), rstdf.data(), xf.data(), wf.data(), n, d, 1e-5f);
  rmsnorm_reference(xf.data(), wf.data(), expect.data(), n, d, 1e-5f);
  const auto diff = testing::compare(yf.data(), expect.data(), yf.size(), 1e-2);
  EXPECT_LT(diff.max_rel, 1e-6);

  Vec y(x.size()), rstd(n), dx(x.size(), 0.0), dw(d, 0.0);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), n, d, 1e-5);
  rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), n, d);
  std::vector<float> dxf(x.size(), 0.0f), dwf(d, 0.0f);
  rmsnorm_backward(dxf.data(), dwf.data(), dyf.data(), xf.data(), wf.data(), rstdf.data(), n, d);
  expect_float_matches_double("y", yf, y);
  expect_float_matches_double("dx", dxf, dx);
  expect_float_matches_double("dw", dwf, dw);
}

// ------------------------------------------------------------------------------- rope

TEST(Rope, GradientsMatchFiniteDifferencesInBothOrders) {
  const int64_t n = 5, heads = 3, head_dim = 6;
  const std::vector<int32_t> pos = {0, 7, 3, 7, 1000};
  for (RopeOrder order : {RopeOrder::Normal, RopeOrder::NeoX}) {
    Vec x = random_vec(n * heads * head_dim, 40);
    const Vec r = random_vec(x.size(), 41);
    auto loss = [&] {
      Vec y = x;
      rope_forward(y.data(), pos.data(), n, heads, head_dim, 10000.0f, order);
      return weighted_sum(r, y);
    };
    Vec dx = r;
    rope_backward(dx.data(), pos.data(), n, heads, head_dim, 10000.0f, order);
    expect_gradient(order == RopeOrder::Normal ? "dx_normal" : "dx_neox", x, dx, loss);
  }
}

TEST(Rope, FloatMatchesRuntimeReferenceAndBackwardInverts) {
  const int64_t n = 40, heads = 4;
  for (int64_t head_dim : {8, 64}) {
    for (float base : {10000.0f, 500000.0f}) {
      for (RopeOrder order : {RopeOrder::Normal, RopeOrder::NeoX}) {
        std::vector<int32_t> pos(n);
        for (int64_t t = 0; t < n; ++t) pos[t] = static_cast<int32_t>((t * 977) % 4096);
        const auto x = testing::random_floats(n * heads * head_dim, 42 + head_dim);
        auto ours = x, reference = x;
        rope_forward(ours.data(), pos.data(), n, heads, head_dim, base, order);
        rope_reference(reference.data(), n, heads, head_dim, head_dim, pos.data(), base, order);
        const auto diff = testing::compare(ours.data(), reference.data(), x.size(), 1e-1);
        EXPECT_LT(diff.max_abs, 1e-6) << "head_dim " << head_dim << " base " << base;
        rope_backward(ours.data(), pos.data(), n, heads, head_dim, base, order);
        EXPECT_LT(testing::compare(ours.data(), x.data(), x.size()).max_abs, 1e-6);
        Vec back(x.begin(), x.end());
        auto back_f = x;
        rope_backward(back.data(), pos.data(), n, heads, head_dim, base, order);
        rope_backward(back_f.data(), pos.data(), n, heads, head_dim, base, order);
        expect_float_matches_double("rope_backward", back_f, back);
      }
    }
  }
}

TEST(Rope, RejectsBadShapesAndPositions) {
  std::vector<float> x(10);
  const int32_t pos[2] = {0, 1};
  EXPECT_THROW(rope_forward(x.data(), pos, 2, 1, 5, 10000.0f, RopeOrder::Normal), Error);
  EXPECT_THROW(rope_backward(x.data(), pos, 2, 1, 4, 0.0f, RopeOrder::Normal), Error);
  const int32_t negative[2] = {0, -3};
  EXPECT_THROW(rope_backward(x.data(), negative, 2, 1, 4, 1e4f, RopeOrder::Normal), Error);
}

// ----------------------------------------------------------------------------- swiglu

TEST(Swiglu, GradientsMatchFiniteDifferences) {
  const int64_t n = 13;
  Vec g = random_vec(n, 60, -6, 6), u = random_vec(n, 61);
  g[0] = -40;  // far negative: exp(−g) would overflow a naive sigmoid
  const Vec r = random_vec(n, 62);
  auto loss = [&] {
    Vec h(n);
    swiglu_forward(h.data(), g.data(), u.data(), n);
    return weighted_sum(r, h);
  };
  const Vec dg0 = random_vec(n, 63), du0 = random_vec(n, 64);
  Vec dg = dg0, du = du0;
  swiglu_backward(dg.data(), du.data(), r.data(), g.data(), u.data(), n);
  expect_gradient("dg", g, added(dg, dg0), loss);
  expect_gradient("du", u, added(du, du0), loss);
}

TEST(Swiglu, FloatMatchesRuntimeAndDouble) {
  const int64_t n = 1001;
  const Vec g = random_vec(n, 65, -8, 8), u = random_vec(n, 66), dh = random_vec(n, 67);
  const auto gf = to_float(g), uf = to_float(u), dhf = to_float(dh);
  std::vector<float> hf(n), expect(n), dgf(n, 0.0f), duf(n, 0.0f);
  swiglu_forward(hf.data(), gf.data(), uf.data(), n);
  swiglu_reference(gf.data(), uf.data(), expect.data(), n);
  EXPECT_LT(testing::compare(hf.data(), expect.data(), n, 1e-2).max_rel, 1e-5);
  Vec h(n), dg(n, 0.0), du(n, 0.0);
  swiglu_forward(h.data(), g.data(), u.data(), n);
  swiglu_backward(dg.data(), du.data(), dh.data(), g.data(), u.data(), n);
  swiglu_backward(dgf.data(), duf.data(), dhf.data(), gf.data(), uf.data(), n);
  expect_float_matches_double("h", hf, h);
  expect_float_matches_double("dg", dgf, dg);
  expect_float_matches_double("du", duf, du);
}

// -------------------------------------------------------------------------- attention

TrainAttentionShape tiny_attention(MaskMode mask) {
  TrainAttentionShape s;
  s.n_seq = 2;
  s.seq_len = 5;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim = 4;
  s.mask = mask;
  s.block_len = 2;
  return s;
}

int64_t q_size(const TrainAttentionShape& s) { return s.n_seq * s.seq_len * s.n_head * s.head_dim; }
int64_t kv_size(const TrainAttentionShape& s) {
  return s.n_seq * s.seq_len * s.n_head_kv * s.head_dim;
}
int64_t probs_size(const TrainAttentionShape& s) {
  return s.n_seq * s.n_head * s.seq_len * s.seq_len;
}

const char* mask_name(MaskMode m) {
  return m == MaskMode::Full ? "full" : m == MaskMode::Causal ? "causal" : "block_causal";
}

class AttentionMask : public ::testing::TestWithParam<MaskMode> {};

TEST_P(AttentionMask, GradientsMatchFiniteDifferences) {
  const TrainAttentionShape s = tiny_attention(GetParam());
  // Larger q and k than unit scale make the softmax far from uniform.
  Vec q = random_vec(q_size(s), 70, -2, 2), k = random_vec(kv_size(s), 71, -2, 2);
  Vec v = random_vec(kv_size(s), 72);
  const Vec r = random_vec(q_size(s), 73);
  auto loss = [&] {
    Vec out(q_size(s)), probs(probs_size(s));
    attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), s, nullptr);
    return weighted_sum(r, out);
  };
  Vec out(q_size(s)), probs(probs_size(s));
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), s, nullptr);
  const Vec dq0 = random_vec(q.size(), 74), dk0 = random_vec(k.size(), 75);
  const Vec dv0 = random_vec(v.size(), 76);
  Vec dq = dq0, dk = dk0, dv = dv0;
  attention_backward(dq.data(), dk.data(), dv.data(), r.data(), probs.data(), q.data(), k.data(),
                     v.data(), s, nullptr);
  const std::string m = mask_name(s.mask);
  expect_gradient("dq_" + m, q, added(dq, dq0), loss);
  expect_gradient("dk_" + m, k, added(dk, dk0), loss);
  expect_gradient("dv_" + m, v, added(dv, dv0), loss);

  // Saved probabilities: rows sum to 1 and masked keys hold exactly 0.
  const int64_t len = s.seq_len;
  for (int64_t row = 0; row < s.n_seq * s.n_head * len; ++row) {
    const int64_t i = row % len;
    double sum = 0;
    for (int64_t j = 0; j < len; ++j) {
      const double p = probs[row * len + j];
      sum += p;
      const bool visible = s.mask == MaskMode::Full || (s.mask == MaskMode::Causal && j <= i) ||
                           (s.mask == MaskMode::BlockCausal && j / s.block_len <= i / s.block_len);
      if (visible) {
        EXPECT_GT(p, 0.0) << "row " << row << " key " << j;
      } else {
        EXPECT_EQ(p, 0.0) << "row " << row << " key " << j;
      }
    }
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
}

// Sequences longer than one block of query rows (64), the last block partial, and a block
// length that does not divide the sequence.
TEST_P(AttentionMask, GradientsMatchFiniteDifferencesAcrossRowBlocks) {
  TrainAttentionShape s = tiny_attention(GetParam());
  s.n_seq = 1;
  s.seq_len = 150;
  s.block_len = 7;
  Vec q = random_vec(q_size(s), 140, -2, 2), k = random_vec(kv_size(s), 141, -2, 2);
  Vec v = random_vec(kv_size(s), 142);
  const Vec r = random_vec(q_size(s), 143);
  Vec out(q_size(s)), probs(probs_size(s));
  auto loss = [&] {
    attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), s, nullptr);
    return weighted_sum(r, out);
  };
  loss();
  Vec dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
  attention_backward(dq.data(), dk.data(), dv.data(), r.data(), probs.data(), q.data(), k.data(),
                     v.data(), s, nullptr);
  const std::string m = mask_name(s.mask);
  expect_gradient("dq_blocks_" + m, q, dq, loss, 37);
  expect_gradient("dk_blocks_" + m, k, dk, loss, 23);
  expect_gradient("dv_blocks_" + m, v, dv, loss, 23);
}

TEST_P(AttentionMask, FloatForwardMatchesRuntimeReference) {
  TrainAttentionShape s = tiny_attention(GetParam());
  s.seq_len = 150;
  s.head_dim = 8;
  s.block_len = 4;
  const auto q = testing::random_floats(q_size(s), 80, -2, 2);
  const auto k = testing::random_floats(kv_size(s), 81, -2, 2);
  const auto v = testing::random_floats(kv_size(s), 82);
  std::vector<float> out(q.size()), probs(probs_size(s)), expect(q.size());
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), s, nullptr);
  AttentionShape ref;
  ref.n_q = ref.n_kv = s.seq_len;
  ref.n_heads = s.n_head;
  ref.n_kv_heads = s.n_head_kv;
  ref.head_dim = s.head_dim;
  ref.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  ref.mask = s.mask;
  ref.block_len = s.block_len;
  const int64_t q_seq = s.seq_len * s.n_head * s.head_dim;
  const int64_t kv_seq = s.seq_len * s.n_head_kv * s.head_dim;
  for (int64_t b = 0; b < s.n_seq; ++b) {
    attention_reference(ref, q.data() + b * q_seq, k.data() + b * kv_seq, v.data() + b * kv_seq,
                        expect.data() + b * q_seq);
  }
  EXPECT_LT(testing::compare(out.data(), expect.data(), out.size()).max_abs, 2e-6);
}

TEST_P(AttentionMask, FloatMatchesDouble) {
  TrainAttentionShape s = tiny_attention(GetParam());
  s.seq_len = 150;
  s.head_dim = 16;
  s.block_len = 8;
  const Vec q = random_vec(q_size(s), 90, -1.5, 1.5), k = random_vec(kv_size(s), 91, -1.5, 1.5);
  const Vec v = random_vec(kv_size(s), 92), dout = random_vec(q_size(s), 93);
  Vec out(q.size()), probs(probs_size(s)), dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), s, nullptr);
  attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), q.data(), k.data(),
                     v.data(), s, nullptr);
  const auto qf = to_float(q), kf = to_float(k), vf = to_float(v), doutf = to_float(dout);
  std::vector<float> outf(q.size()), probsf(probs.size()), dqf(q.size(), 0.0f), dkf(k.size(), 0.0f),
      dvf(v.size(), 0.0f);
  ThreadPool pool(2);
  attention_forward(outf.data(), probsf.data(), qf.data(), kf.data(), vf.data(), s, &pool);
  attention_backward(dqf.data(), dkf.data(), dvf.data(), doutf.data(), probsf.data(), qf.data(),
                     kf.data(), vf.data(), s, &pool);
  expect_float_matches_double("out", outf, out);
  expect_float_matches_double("probs", probsf, probs);
  expect_float_matches_double("dq", dqf, dq);
  expect_float_matches_double("dk", dkf, dk);
  expect_float_matches_double("dv", dvf, dv);
}

TEST_P(AttentionMask, BitwiseEqualAtAnyThreadCount) {
  TrainAttentionShape s;
  s.n_seq = 3;
  s.seq_len = 100;
  s.n_head = 6;
  s.n_head_kv = 2;
  s.head_dim = 16;
  s.mask = GetParam();
  s.block_len = 5;
  const auto q = testing::random_floats(q_size(s), 100),
             k = testing::random_floats(kv_size(s), 101);
  const auto v = testing::random_floats(kv_size(s), 102);
  const auto dout = testing::random_floats(q_size(s), 103);
  struct Result {
    std::vector<float> out, probs, dq, dk, dv;
  };
  auto run = [&](ThreadPool* pool) {
    Result r{std::vector<float>(q.size()), std::vector<float>(probs_size(s)),
             std::vector<float>(q.size(), 0.5f), std::vector<float>(k.size(), 0.5f),
             std::vector<float>(v.size(), 0.5f)};
    attention_forward(r.out.data(), r.probs.data(), q.data(), k.data(), v.data(), s, pool);
    attention_backward(r.dq.data(), r.dk.data(), r.dv.data(), dout.data(), r.probs.data(), q.data(),
                       k.data(), v.data(), s, pool);
    return r;
  };
  ThreadPool one(1), two(2), three(3);
  const Result base = run(nullptr);
  for (ThreadPool* pool : {&one, &two, &three}) {
    const Result r = run(pool);
    EXPECT_EQ(r.out, base.out) << pool->size() << " threads";
    EXPECT_EQ(r.probs, base.probs);
    EXPECT_EQ(r.dq, base.dq);
    EXPECT_EQ(r.dk, base.dk);
    EXPECT_EQ(r.dv, base.dv);
  }
}

INSTANTIATE_TEST_SUITE_P(Masks, AttentionMask,
                         ::testing::Values(MaskMode::Full, MaskMode::Causal, MaskMode::BlockCausal),
                         [](const auto& info) { return std::string(mask_name(info.param)); });

TEST(Attention, NullGradientsAreSkipped) {
  const TrainAttentionShape s = tiny_attention(MaskMode::Causal);
  const Vec q = random_vec(q_size(s), 110), k = random_vec(kv_size(s), 111);
  const Vec v = random_vec(kv_size(s), 112), dout = random_vec(q_size(s), 113);
  Vec out(q.size()), probs(probs_size(s)), dv_only(v.size(), 0.0), dk_only(k.size(), 0.0);
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), s, nullptr);
  Vec dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
  attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), q.data(), k.data(),
                     v.data(), s, nullptr);
  attention_backward<double>(nullptr, nullptr, dv_only.data(), dout.data(), probs.data(), q.data(),
                             k.data(), v.data(), s, nullptr);
  attention_backward<double>(nullptr, dk_only.data(), nullptr, dout.data(), probs.data(), q.data(),
                             k.data(), v.data(), s, nullptr);
  EXPECT_EQ(dv_only, dv);
  EXPECT_EQ(dk_only, dk);
}

TEST(Attention, RejectsBadShapes) {
  std::vector<float> buf(4096);
  TrainAttentionShape s = tiny_attention(MaskMode::Full);
  s.n_head = 3;  // not a multiple of 2 K/V heads
  EXPECT_THROW(
      attention_forward(buf.data(), buf.data(), buf.data(), buf.data(), buf.data(), s, nullptr),
      Error);
  s = tiny_attention(MaskMode::BlockCausal);
  s.block_len = 0;
  EXPECT_THROW(attention_backward(buf.data(), buf.data(), buf.data(), buf.data(), buf.data(),
                                  buf.data(), buf.data(), buf.data(), s, nullptr),
               Error);
  s = tiny_attention(MaskMode::Full);
  s.head_dim = 0;
  EXPECT_THROW(
      attention_forward(buf.data(), buf.data(), buf.data(), buf.data(), buf.data(), s, nullptr),
      Error);
}

// ---------------------------------------------------------------------- cross entropy

double direct_cross_entropy(const Vec& logits, const std::vector<int32_t>& targets,
                            const Vec& weights, int64_t vocab) {
  double total = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (weights[i] == 0) continue;
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(logits[i * vocab + j]);
    total += weights[i] * (std::log(sum) - logits[i * vocab + targets[i]]);
  }
  return total;
}

TEST(CrossEntropy, GradientMatchesFiniteDifferences) {
  const int64_t n = 5, vocab = 7;
  Vec logits = random_vec(n * vocab, 120, -3, 3);
  const std::vector<int32_t> targets = {2, 6, -1, 0, 2};  // row 2 has weight 0: any target
  const Vec weights = {1.0, 0.5, 0.0, 2.0, 1.0 / 3};
  const double grad_scale = 0.7;
  auto loss = [&] {
    return cross_entropy_forward_backward<double>(nullptr, logits.data(), targets.data(),
                                                  weights.data(), n, vocab, 1.0, nullptr);
  };
  EXPECT_NEAR(loss(), direct_cross_entropy(logits, targets, weights, vocab), 1e-12);
  Vec dlogits = random_vec(logits.size(), 121);  // written, not added to
  const double l = cross_entropy_forward_backward(dlogits.data(), logits.data(), targets.data(),
                                                  weights.data(), n, vocab, grad_scale, nullptr);
  EXPECT_NEAR(l, loss(), 1e-14);
  for (int64_t j = 0; j < vocab; ++j) EXPECT_EQ(dlogits[2 * vocab + j], 0.0);
  Vec per_unit(dlogits.size());
  for (size_t i = 0; i < dlogits.size(); ++i) per_unit[i] = dlogits[i] / grad_scale;
  expect_gradient("dlogits", logits, per_unit, loss);
}

TEST(CrossEntropy, StableForExtremeLogits) {
  const int64_t vocab = 4;
  const Vec logits = {1000.0, -1000.0, 0.0, 999.0};
  const std::vector<int32_t> targets = {1};
  const Vec weights = {1.0};
  Vec d(vocab);
  const double l = cross_entropy_forward_backward(d.data(), logits.data(), targets.data(),
                                                  weights.data(), 1, vocab, 1.0, nullptr);
  EXPECT_NEAR(l, 2000.0 + std::log1p(std::exp(-1.0)), 1e-9);
  const auto lf = to_float(logits);
  std::vector<float> df(vocab), wf = {1.0f};
  const double loss_f = cross_entropy_forward_backward(df.data(), lf.data(), targets.data(),
                                                       wf.data(), 1, vocab, 1.0f, nullptr);
  EXPECT_NEAR(loss_f, l, 1e-3);
  EXPECT_NEAR(df[1], -1.0f, 1e-6);
  EXPECT_NEAR(df[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
}

TEST(CrossEntropy, FloatMatchesDoubleAndThreadsDoNotChangeBits) {
  const int64_t n = 33, vocab = 1000;
  const Vec logits = random_vec(n * vocab, 130, -8, 8);
  std::vector<int32_t> targets(n);
  Vec weights(n);
  for (int64_t i = 0; i < n; ++i) {
    targets[i] = static_cast<int32_t>((i * 7919) % vocab);
    weights[i] = i % 5 == 0 ? 0.0 : 0.25 * static_cast<double>(i % 4 + 1);
  }
  Vec d(logits.size());
  const double l = cross_entropy_forward_backward(d.data(), logits.data(), targets.data(),
                                                  weights.data(), n, vocab, 0.01, nullptr);
  const auto lf = to_float(logits), wf = to_float(weights);
  std::vector<float> dfs[3];
  double losses[3];
  ThreadPool one(1), two(2);
  ThreadPool* pools[3] = {nullptr, &one, &two};
  for (int i = 0; i < 3; ++i) {
    dfs[i].assign(logits.size(), 9.0f);
    losses[i] = cross_entropy_forward_backward(dfs[i].data(), lf.data(), targets.data(), wf.data(),
                                               n, vocab, 0.01f, pools[i]);
  }
  EXPECT_LT(std::fabs(losses[0] - l), 1e-4 * std::fabs(l));
  expect_float_matches_double("dlogits", dfs[0], d);
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(losses[i], losses[0]);
    EXPECT_EQ(dfs[i], dfs[0]);
  }
  const double no_grad = cross_entropy_forward_backward<float>(nullptr, lf.data(), targets.data(),
                                                               wf.data(), n, vocab, 0.01f, &two);
  EXPECT_EQ(no_grad, losses[0]);
}

TEST(CrossEntropy, RejectsTargetOutsideVocabulary) {
  const std::vector<float> logits(6, 0.5f), weights = {1.0f, 1.0f};
  const std::vector<int32_t> targets = {1, 3};
  std::vector<float> d(6);
  ThreadPool pool(2);
  EXPECT_THROW(cross_entropy_forward_backward(d.data(), logits.data(), targets.data(),
                                              weights.data(), 2, 3, 1.0f, &pool),
               Error);
  EXPECT_THROW(cross_entropy_forward_backward(d.data(), logits.data(), targets.data(),
                                              weights.data(), 2, 0, 1.0f, nullptr),
               Error);
}

// ------------------------------------------------- vector row kernels vs scalar references

const int64_t kRowLengths[] = {1, 3, 8, 17, 64, 1000, 8191};

TEST(RowKernels, SwigluBackwardMatchesScalar) {
  for (int64_t n : kRowLengths) {
    const auto g = testing::random_floats(n, 200 + n, -12, 12), u = testing::random_floats(n, 201);
    const auto dh = testing::random_floats(n, 202);
    const auto start = testing::random_floats(n, 203);
    auto dg = start, du = start, dg_ref = start, du_ref = start;
    detail::swiglu_backward_simd(dg.data(), du.data(), dh.data(), g.data(), u.data(), n);
    detail::swiglu_backward_scalar(dg_ref.data(), du_ref.data(), dh.data(), g.data(), u.data(), n);
    // exp within a few ulp: the difference is a few float roundings of terms of order 1.
    EXPECT_LT(testing::compare(dg.data(), dg_ref.data(), n, 1.0).max_rel, 2e-6) << "n " << n;
    EXPECT_LT(testing::compare(du.data(), du_ref.data(), n, 1.0).max_rel, 2e-6) << "n " << n;
    auto du_only = start;  // a null output is skipped
    detail::swiglu_backward_simd(nullptr, du_only.data(), dh.data(), g.data(), u.data(), n);
    EXPECT_EQ(du_only, du);
  }
}

TEST(RowKernels, SoftmaxBackwardRowMatchesScalar) {
  for (int64_t n : kRowLengths) {
    auto p = testing::random_floats(n, 210 + n, 0.0f, 1.0f);
    float sum = 0;
    for (float x : p) sum += x;
    for (float& x : p) x /= sum;
    const auto grad = testing::random_floats(n, 211, -3, 3);
    auto ours = grad, reference = grad;
    detail::softmax_backward_row_simd(ours.data(), p.data(), n);
    detail::softmax_backward_row_scalar(reference.data(), p.data(), n);
    // The two sum Σ grad·p in different orders: error of order n·eps·max|grad|, relative to
    // the entries' scale (p·max|grad|).
    double scale = 0;
    for (int64_t i = 0; i < n; ++i) scale = std::max(scale, std::fabs(double(reference[i])));
    EXPECT_LT(testing::compare(ours.data(), reference.data(), n).max_abs, 1e-5 * (scale + 1e-3))
        << "n " << n;
  }
}

TEST(RowKernels, LogSoftmaxRowMatchesScalar) {
  for (int64_t n : kRowLengths) {
    const auto x = testing::random_floats(n, 220 + n, -20, 20);
    std::vector<float> probs(n), reference(n);
    const double lse = detail::log_softmax_row_simd(x.data(), n, probs.data(), 0.5f);
    const double lse_ref = detail::log_softmax_row_scalar(x.data(), n, reference.data(), 0.5f);
    EXPECT_NEAR(lse, lse_ref, 1e-5 * std::max(1.0, std::fabs(lse_ref))) << "n " << n;
    EXPECT_LT(testing::compare(probs.data(), reference.data(), n, 1e-6).max_rel, 1e-5) << n;
    EXPECT_EQ(detail::log_softmax_row_simd(x.data(), n, nullptr, 0.5f), lse);
    double sum = 0;
    for (float p : probs) sum += p;
    EXPECT_NEAR(sum, 0.5, 1e-5) << "n " << n;
  }
}

TEST(RowKernels, RmsNormMatchesScalar) {
  for (int64_t n : kRowLengths) {
    const auto x = testing::random_floats(n, 230 + n, -3, 3), w = testing::random_floats(n, 231);
    const auto dy = testing::random_floats(n, 232), start = testing::random_floats(n, 233);
    for (const float* weight : {w.data(), static_cast<const float*>(nullptr)}) {
      std::vector<float> y(n), y_ref(n);
      const float rstd = detail::rmsnorm_forward_row_simd(y.data(), x.data(), weight, n, 1e-5f);
      const float rstd_ref =
          detail::rmsnorm_forward_row_scalar(y_ref.data(), x.data(), weight, n, 1e-5f);
      EXPECT_NEAR(rstd, rstd_ref, 1e-6 * rstd_ref) << "n " << n;
      EXPECT_LT(testing::compare(y.data(), y_ref.data(), n, 1e-2).max_rel, 2e-6) << "n " << n;
      auto dx = start, dw = start, dx_ref = start, dw_ref = start;
      detail::rmsnorm_backward_row_simd(dx.data(), dw.data(), dy.data(), x.data(), weight, rstd, n);
      detail::rmsnorm_backward_row_scalar(dx_ref.data(), dw_ref.data(), dy.data(), x.data(), weight,
                                          rstd, n);
      // The reductions run in different orders: errors of order n·eps relative to the terms.
      EXPECT_LT(testing::compare(dx.data(), dx_ref.data(), n, 1.0).max_rel, 1e-5) << "n " << n;
      EXPECT_LT(testing::compare(dw.data(), dw_ref.data(), n, 1.0).max_rel, 1e-6) << "n " << n;
    }
  }
}

}  // namespace
}  // namespace ruvdllm::train
