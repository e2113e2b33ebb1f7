// Data-parallel training on several GPUs of one host (NCCL). Skips without two GPUs.
//
// - The all-reduce of random buffers equals the host sum exactly: with two ranks each element
//   is one f32 addition, a + b = b + a, so the bound is 0 (with more ranks, 1e-6 relative).
// - Training a tiny model with global batch B on 2 GPUs (B/2 sequences each) against 1 GPU
//   with the same B, f32 products: the two differ only in the order of the sums over rows in
//   the weight gradients (two partial sums plus the all-reduce instead of one), about 1e-7
//   relative per gradient. Bounds: per-step loss 1e-5 relative, final weights 1e-4 relative
//   (‖w₂ − w₁‖₂/‖w₁‖₂; AdamW's m/√v amplifies the last bits of near-zero gradients); each run
//   prints what it measured.
// - Both replicas hold bit-identical weights after the steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda_test_util.h"
#include "cuda_train_test_util.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/cuda/multi_gpu.h"
#include "ruvdllm/train/optimizer.h"
#include "ruvdllm/train/train_model.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using testing::rel_error;

class MultiGpu : public testing::CudaTest {
 protected:
  void SetUp() override {
    testing::CudaTest::SetUp();
    if (IsSkipped()) return;
    if (cuda::device_count() < 2)
      GTEST_SKIP() << "skipped, needs 2 GPUs, found " << cuda::device_count();
    std::string why;
    if (!cuda::nccl_available(&why)) GTEST_SKIP() << "skipped: " << why;
  }
};

TEST_F(MultiGpu, AllReduceOfRandomBuffersEqualsTheHostSum) {
  const int n_dev = cuda::device_count();
  std::vector<int> devices;
  for (int d = 0; d < n_dev; ++d) devices.push_back(d);
  cuda::NcclGroup group(devices);
  ASSERT_EQ(group.size(), n_dev);
  for (const size_t count : {size_t{1}, size_t{1001}, size_t{(1 << 20) + 3}}) {
    SCOPED_TRACE(count);
    std::vector<std::vector<float>> host;
    std::vector<cuda::DeviceArray<float>> dev;
    std::vector<float*> buffers;
    std::vector<void*> streams;
    std::vector<double> want(count, 0.0);
    for (int d = 0; d < n_dev; ++d) {
      host.push_back(testing::random_normal(count, 100 + d + count, 1.0f));
      for (size_t i = 0; i < count; ++i) want[i] += host.back()[i];
      cuda::check_cuda(cudaSetDevice(d), "cudaSetDevice");
      dev.push_back(testing::to_device(host.back()));
      buffers.push_back(dev.back().data());
      streams.push_back(nullptr);
    }
    group.all_reduce_sum(buffers, count, streams);
    const std::vector<float> want_f(want.begin(), want.end());
    for (int d = 0; d < n_dev; ++d) {
      cuda::check_cuda(cudaSetDevice(d), "cudaSetDevice");
      const std::vector<float> got = testing::to_host(dev[static_cast<size_t>(d)], count);
      const double err = rel_error(got, want_f);
      if (n_dev == 2) {
        EXPECT_EQ(err, 0.0) << "rank " << d;
      } else {
        EXPECT_LT(err, 1e-6) << "rank " << d;
      }
    }
  }
  cuda::check_cuda(cudaSetDevice(0), "cudaSetDevice");
}

TEST_F(MultiGpu, BadDeviceListsAreErrors) {
  EXPECT_THROW(cuda::validate_devices(std::vector<int>{}), Error);
  EXPECT_THROW(cuda::validate_devices(std::vector<int>{0, 0}), Error);
  EXPECT_THROW(cuda::validate_devices(std::vector<int>{0, cuda::device_count()}), Error);
  EXPECT_THROW(cuda::validate_devices(std::vector<int>{-1}), Error);
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.arch = Arch::LLaDA;
  c.vocab_size = 97;
  c.n_embd = 48;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 4;
  c.head_dim = 12;
  c.n_ff = 80;
  c.context_length = 64;
  c.mask_token_id = 96;
  return c;
}

train::Batch make_batch(const ModelConfig& c, int64_t n_seq, int64_t seq_len, uint64_t seed) {
  return testing::random_batch(c, n_seq, seq_len, seed, testing::BatchTargets::FromInputs);
}

std::vector<float> flat_values(const train::TrainModel& model) {
  std::vector<float> out;
  for (const train::Parameter& p : model.parameters())
    out.insert(out.end(), p.value.begin(), p.value.end());
  return out;
}

struct TrainRun {
  std::vector<double> losses, norms;
  std::vector<float> weights;
  std::vector<std::vector<float>> replicas;
};

// `steps` steps of global batch 4×24 on `devices`, f32 products, AdamW on the device.
TrainRun train_on(const std::vector<int>& devices, int64_t steps) {
  const ModelConfig c = tiny_config();
  auto model = train::TrainModel::create(c, 7, 0.08f);
  model->set_device_precision(train::DevicePrecision::F32);
  model->set_devices(devices);
  EXPECT_EQ(model->n_replicas(), static_cast<int64_t>(devices.size()));
  train::AdamW opt(model->parameters(), {});
  EXPECT_TRUE(model->start_device_optimizer(opt));
  ThreadPool pool(2);
  TrainRun run;
  for (int64_t s = 0; s < steps; ++s) {
    const train::Batch b = make_batch(c, 4, 24, 500 + static_cast<uint64_t>(s));
    double scored = 0;
    for (float w : b.weights) scored += w;
    model->zero_grad();
    run.losses.push_back(model->forward_backward(b, static_cast<float>(1.0 / scored), pool) /
                         scored);
    run.norms.push_back(model->device_optimizer_step(3e-3, 1.0));
  }
  EXPECT_EQ(opt.steps_done(), steps);
  for (int64_t r = 0; r < model->n_replicas(); ++r)
    run.replicas.push_back(model->replica_values(r));
  model->sync_from_device();
  run.weights = flat_values(*model);
  return run;
}

TEST_F(MultiGpu, TwoGpusTrainLikeOneWithTheSameGlobalBatch) {
  constexpr int64_t kSteps = 8;
  const TrainRun one = train_on({0}, kSteps);
  const TrainRun two = train_on({0, 1}, kSteps);
  ASSERT_EQ(one.losses.size(), two.losses.size());
  double worst_loss = 0, worst_norm = 0;
  for (size_t s = 0; s < one.losses.size(); ++s) {
    worst_loss =
        std::max(worst_loss, std::abs(two.losses[s] - one.losses[s]) / std::abs(one.losses[s]));
    worst_norm =
        std::max(worst_norm, std::abs(two.norms[s] - one.norms[s]) / std::abs(one.norms[s]));
  }
  const double weight_err = rel_error(two.weights, one.weights);
  std::printf("  2 vs 1 GPU over %ld steps: loss %.2e, grad norm %.2e, weights %.2e (relative)\n",
              static_cast<long>(kSteps), worst_loss, worst_norm, weight_err);
  EXPECT_LT(worst_loss, 1e-5);
  EXPECT_LT(worst_norm, 1e-4);
  EXPECT_LT(weight_err, 1e-4);
  EXPECT_LT(one.losses.back(), one.losses.front());  // it trained at all

  // The replicas are bit-identical, and replica 0 is what sync_from_device returns.
  ASSERT_EQ(two.replicas.size(), 2u);
  EXPECT_EQ(two.replicas[0], two.replicas[1]);
  EXPECT_EQ(two.replicas[0], two.weights);
}

TEST_F(MultiGpu, HostGradientsSumOverReplicasWithoutTheDeviceOptimizer) {
  const ModelConfig c = tiny_config();
  const train::Batch b = make_batch(c, 4, 16, 9);
  ThreadPool pool(2);
  std::vector<std::vector<float>> grads;
  std::vector<double> losses;
  for (const std::vector<int>& devices : {std::vector<int>{0}, std::vector<int>{0, 1}}) {
    auto model = train::TrainModel::create(c, 3, 0.08f);
    model->set_device_precision(train::DevicePrecision::F32);
    model->set_devices(devices);
    model->zero_grad();
    losses.push_back(model->forward_backward(b, 0.01f, pool));
    std::vector<float> g;
    for (const train::Parameter& p : model->parameters())
      g.insert(g.end(), p.grad.begin(), p.grad.end());
    grads.push_back(std::move(g));
  }
  std::printf("  host gradients, 2 vs 1 GPU: %.2e relative\n", rel_error(grads[1], grads[0]));
  EXPECT_LT(rel_error(grads[1], grads[0]), 1e-5);
  EXPECT_NEAR(losses[1], losses[0], 1e-5 * std::abs(losses[0]));
}

TEST_F(MultiGpu, BatchThatDoesNotSplitIsAnError) {
  const ModelConfig c = tiny_config();
  auto model = train::TrainModel::create(c, 3, 0.08f);
  model->set_devices({0, 1});
  ThreadPool pool(2);
  EXPECT_THROW(model->forward_backward(make_batch(c, 3, 8, 1), 1.0f, pool), Error);
  EXPECT_THROW(model->set_devices({0, 99}), Error);
  EXPECT_THROW(model->set_devices({1, 1}), Error);
}

}  // namespace
}  // namespace ruvdllm
