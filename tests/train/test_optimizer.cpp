// AdamW, the learning-rate schedule and gradient clipping, against numbers worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/train/optimizer.h"
#include "test_util.h"

namespace ruvdllm::train {
namespace {

// Parameters over caller-owned arrays, as TrainModel hands them out.
struct Params {
  std::vector<std::vector<float>> values, grads;
  std::vector<Parameter> list;
  void add(const std::string& name, std::vector<float> v, std::vector<float> g, bool decay = true) {
    values.push_back(std::move(v));
    grads.push_back(std::move(g));
    list.push_back({name, {static_cast<int64_t>(values.back().size())}, {}, {}, decay});
  }
  // Spans are bound once every array is in place (vectors of vectors move on growth).
  std::vector<Parameter>& bind() {
    for (size_t i = 0; i < list.size(); ++i) {
      list[i].value = values[i];
      list[i].grad = grads[i].empty() ? std::span<float>() : std::span<float>(grads[i]);
    }
    return list;
  }
};

// PyTorch's AdamW, step t, written out in double for one scalar.
struct ScalarAdamW {
  double w, m = 0, v = 0;
  int t = 0;
  void step(double g, double lr, double wd, double b1, double b2, double eps) {
    ++t;
    w *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double m_hat = m / (1 - std::pow(b1, t));
    const double v_hat = v / (1 - std::pow(b2, t));
    w -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
};

TEST(AdamW, FirstStepsMatchHandComputedValues) {
  Params p;
  p.add("w", {1.0f, -2.0f, 0.5f}, {0, 0, 0});
  p.add("norm", {0.75f, 1.25f}, {0, 0}, /*decay=*/false);
  AdamWOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.999;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  ThreadPool pool(2);
  AdamW adam(p.bind(), o);
  // Step 1 by hand: m̂ = g and v̂ = g², so the update is lr·g/(|g| + eps) ≈ lr·sign(g), after the
  // decay w·(1 − lr·wd) = w·0.999 at lr 0.01.
  // Written element by element: the spans point into these arrays.
  p.grads[0][0] = 0.1f, p.grads[0][1] = -0.2f, p.grads[0][2] = 0.3f;
  p.grads[1][0] = 0.05f, p.grads[1][1] = -0.5f;
  adam.step(0.01, pool);
  EXPECT_NEAR(p.values[0][0], 1.0 * 0.999 - 0.01, 1e-6);
  EXPECT_NEAR(p.values[0][1], -2.0 * 0.999 + 0.01, 1e-6);
  EXPECT_NEAR(p.values[0][2], 0.5 * 0.999 - 0.01, 1e-6);
  EXPECT_NEAR(p.values[1][0], 0.75 - 0.01, 1e-6);  // no decay on norms
  EXPECT_NEAR(p.values[1][1], 1.25 + 0.01, 1e-6);
  // Two more steps against the scalar reference, with changing gradients and lr.
  std::vector<ScalarAdamW> ref = {{1.0}, {-2.0}, {0.5}};
  const std::vector<std::vector<double>> g = {{0.1, -0.2, 0.3}, {-0.4, 0.1, 0.05}, {0.2, 0.2, -0.7}};
  const double lrs[] = {0.01, 0.005, 0.002};
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 3; ++i) ref[i].step(g[s][i], lrs[s], 0.1, 0.9, 0.999, 1e-8);
  }
  for (int s = 1; s < 3; ++s) {
    for (int i = 0; i < 3; ++i) p.grads[0][i] = static_cast<float>(g[s][i]);
    adam.step(lrs[s], pool);
  }
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(p.values[0][i], ref[i].w, 2e-6) << i;
  EXPECT_EQ(adam.steps_done(), 3);
}

TEST(AdamW, FrozenParametersAreLeftAlone) {
  Params p;
  p.add("frozen", {1.0f, 2.0f}, {});
  p.add("trained", {1.0f, 2.0f}, {1.0f, 1.0f});
  ThreadPool pool(1);
  AdamW adam(p.bind(), {});
  EXPECT_EQ(adam.n_states(), 1u);
  EXPECT_EQ(adam.state_parameter(0).name, "trained");
  adam.step(0.1, pool);
  EXPECT_EQ(p.values[0], (std::vector<float>{1.0f, 2.0f}));
  EXPECT_LT(p.values[1][0], 1.0f);
}

TEST(AdamW, BadOptionsAreErrors) {
  Params p;
  p.add("w", {1.0f}, {0.0f});
  AdamWOptions o;
  o.beta2 = 1.0;
  EXPECT_THROW(AdamW(p.bind(), o), Error);
  o = {};
  o.eps = 0;
  EXPECT_THROW(AdamW(p.bind(), o), Error);
}

TEST(LrSchedule, WarmupThenCosineToTheFloor) {
  const LrSchedule s{1e-3, 1e-4, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);  // (0 + 1)/10 of the peak
  EXPECT_DOUBLE_EQ(s.at(4), 5e-4);
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);  // decay starts at the peak
  EXPECT_NEAR(s.at(60), 5.5e-4, 1e-15);  // halfway: the midpoint of peak and floor
  EXPECT_NEAR(s.at(35), 1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25)), 1e-15);
  EXPECT_DOUBLE_EQ(s.at(110), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(500), 1e-4);
  for (int64_t i = 11; i < 110; ++i) EXPECT_LT(s.at(i), s.at(i - 1));
  const LrSchedule no_warmup{2e-3, 0, 0, 4};
  EXPECT_DOUBLE_EQ(no_warmup.at(0), 2e-3);
  EXPECT_NEAR(no_warmup.at(2), 1e-3, 1e-15);
}

TEST(Clipping, ScalesToTheMaximumGlobalNorm) {
  Params p;
  p.add("a", {0, 0}, {3.0f, 0.0f});
  p.add("b", {0}, {4.0f});
  ThreadPool pool(2);
  AdamW adam(p.bind(), {});
  EXPECT_DOUBLE_EQ(adam.clip_gradients(10.0, pool), 5.0);  // below the limit: untouched
  EXPECT_EQ(p.grads[0][0], 3.0f);
  EXPECT_DOUBLE_EQ(adam.clip_gradients(0.0, pool), 5.0);  // 0: clipping off
  EXPECT_EQ(p.grads[1][0], 4.0f);
  EXPECT_DOUBLE_EQ(adam.clip_gradients(1.0, pool), 5.0);
  EXPECT_FLOAT_EQ(p.grads[0][0], 0.6f);
  EXPECT_FLOAT_EQ(p.grads[1][0], 0.8f);
  EXPECT_NEAR(adam.gradient_norm(pool), 1.0, 1e-6);
}

TEST(Clipping, NormIsTheSameOnAnyThreadCount) {
  Params p;
  p.add("big", std::vector<float>(300001, 0.0f), testing::random_floats(300001, 5));
  p.add("small", std::vector<float>(77, 0.0f), testing::random_floats(77, 6));
  double reference = 0;
  for (auto& g : p.grads) {
    for (float x : g) reference += static_cast<double>(x) * x;
  }
  reference = std::sqrt(reference);
  std::vector<double> norms;
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    AdamW adam(p.bind(), {});
    norms.push_back(adam.gradient_norm(pool));
  }
  EXPECT_NEAR(norms[0], reference, 1e-9 * reference);
  EXPECT_EQ(norms[0], norms[1]);
  EXPECT_EQ(norms[0], norms[2]);
}

}  // namespace
}  // namespace ruvdllm::train
