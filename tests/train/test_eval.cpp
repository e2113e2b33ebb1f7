// Held-out NELBO: its value on a model that knows nothing, its determinism, its errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/train/eval.h"
#include "ruvdllm/train/token_shards.h"
#include "ruvdllm/train/train_model.h"
#include "test_util.h"

namespace ruvdllm::train {
namespace {

constexpr int64_t kVocab = 300;  // the "test" shape's vocabulary; mask 299

class EvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(4);
    TokenShardWriter writer(dir_.file("text"), static_cast<int32_t>(kVocab), 1000);
    std::vector<int32_t> tokens(2500);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % 290);
    writer.append(tokens);
    writer.finish();
    ModelConfig config = shape_config(Arch::LLaDA, "test");
    config.context_length = 64;
    model_ = TrainModel::create(config, 9, 0.02f);
  }
  std::vector<DomainNelbo> run(const EvalOptions& o, int threads = 2) {
    const TokenShards shards = TokenShards::open(dir_.file("text"));
    ThreadPool pool(threads);
    return evaluate_nelbo(*model_, {{"text", &shards}}, o, pool);
  }
  testing::TempDir dir_;
  std::unique_ptr<TrainModel> model_;
};

TEST_F(EvalTest, AnUntrainedModelScoresAboutTheUniformBound) {
  EvalOptions o;
  o.samples = 8;
  o.windows = 12;
  o.seq_len = 48;
  const auto r = run(o);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].name, "text");
  EXPECT_EQ(r[0].windows, 12);
  EXPECT_EQ(r[0].tokens, 12 * 48);
  // Near-uniform predictions cost ln V per masked token, and E[(1/t)·masked/L] = 1 − ε for the
  // linear schedule: the bound is about log2(V) bits.
  EXPECT_NEAR(r[0].bits_per_token, std::log2(static_cast<double>(kVocab)), 0.05 * std::log2(static_cast<double>(kVocab)));
  EXPECT_NEAR(r[0].bits_per_token, r[0].nats_per_token / std::log(2.0), 1e-12);
  EXPECT_NEAR(r[0].perplexity_bound, std::exp(r[0].nats_per_token), 1e-9 * r[0].perplexity_bound);
  EXPECT_GT(r[0].std_error_bits, 0.0);
  EXPECT_LT(r[0].std_error_bits, 0.5);
}

TEST_F(EvalTest, FixedDrawsGiveTheSameNumbersEveryTime) {
  EvalOptions o;
  o.samples = 5;
  o.windows = 6;
  o.seq_len = 40;
  o.batch = 2;  // the draws of one window span three forward passes
  const auto a = run(o);
  const auto b = run(o);
  EXPECT_EQ(a[0].nats_per_token, b[0].nats_per_token);
  const auto single = run(o, 1);
  EXPECT_NEAR(single[0].nats_per_token, a[0].nats_per_token, 1e-9 * a[0].nats_per_token);
  o.batch = 5;  // one pass per window: the same estimate up to float summation order
  EXPECT_NEAR(run(o)[0].nats_per_token, a[0].nats_per_token, 1e-5 * a[0].nats_per_token);
  o.seed = 77;
  EXPECT_NE(run(o)[0].nats_per_token, a[0].nats_per_token);
}

TEST_F(EvalTest, WindowsAreCappedByTheData) {
  EvalOptions o;
  o.samples = 1;
  o.windows = 1000;
  o.seq_len = 64;
  const auto r = run(o);
  EXPECT_EQ(r[0].windows, 2500 / 64);
}

TEST_F(EvalTest, BadInputsAreErrors) {
  EvalOptions o;
  o.seq_len = 4000;  // more than the shards hold
  EXPECT_THROW(run(o), Error);
  o.seq_len = 16;
  o.samples = 0;
  EXPECT_THROW(run(o), Error);
  o.samples = 2;
  // Shards whose ids do not fit the model's vocabulary.
  TokenShardWriter writer(dir_.file("wide"), 5000, 1000);
  writer.append(std::vector<int32_t>(100, 4000));
  writer.finish();
  const TokenShards wide = TokenShards::open(dir_.file("wide"));
  ThreadPool pool(1);
  EXPECT_THROW(evaluate_nelbo(*model_, {{"wide", &wide}}, o, pool), Error);
}

}  // namespace
}  // namespace ruvdllm::train
