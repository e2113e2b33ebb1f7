// The CUDA training engine against the CPU TrainModel on tiny LLaDA (full attention), Llama
// (causal, grouped-query, tied head), Dream (q/k/v biases, shifted logits, NeoX RoPE) and
// block-causal configs: loss, every gradient tensor and the logits.
//
// Bounds on ‖gpu − cpu‖₂ / ‖cpu‖₂ per tensor (bounds_for): 1e-4 with f32 products (the two
// sides differ only in summation order; 1.1e-6 measured on an H100), 2e-2 with TF32 (1.8e-3
// measured) and 1e-1 with BF16 (bf16 weights and activations in every product, the softmax
// stored in bf16: 8 significant bits per operand; 1.2e-2 measured on an H100); each run prints
// the errors it measured.
//
// Then the optimiser on the device: one AdamW step against train::AdamW on the same gradients
// (1e-6 relative, the same float operations), training runs in f32 and bf16 whose losses fall
// alike, and an interrupted run that continues bit for bit from the host copies.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "cuda_train_test_util.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/cuda/train_engine.h"
#include "ruvdllm/train/optimizer.h"
#include "ruvdllm/train/train_config.h"
#include "ruvdllm/train/train_model.h"
#include "ruvdllm/train/trainer.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using cuda::CudaTrainEngine;
using cuda::MatmulPrecision;
using testing::CudaTest;
using testing::rel_error;

struct Bounds {
  double gradient, loss, logits;
};
Bounds bounds_for(MatmulPrecision p) {
  switch (p) {
    case MatmulPrecision::F32:
      return {1e-4, 1e-5, 1e-4};
    case MatmulPrecision::TF32:
      return {2e-2, 2e-3, 2e-2};
    default:
      return {1e-1, 1e-2, 5e-2};
  }
}

ModelConfig tiny_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 97;
  c.n_embd = 48;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 4;
  c.head_dim = 12;
  c.n_ff = 80;
  c.context_length = 64;
  c.rope_base = 10000.0f;
  c.mask_token_id = 96;
  switch (arch) {
    case Arch::Llama:
      c.causal = true;
      c.n_head_kv = 2;
      c.tied_output = true;
      break;
    case Arch::Dream:
      c.qkv_bias = true;
      c.shift_logits = true;
      c.rope_order = RopeOrder::NeoX;
      c.rope_base = 1000000.0f;
      break;
    default:
      break;
  }
  return c;
}

// A fresh model whose norms and biases are perturbed too, so their gradients are tested on
// values other than ones and zeros.
std::unique_ptr<train::TrainModel> make_model(const ModelConfig& c, uint64_t seed) {
  auto model = train::TrainModel::create(c, seed, 0.08f);
  uint64_t s = seed * 1000;
  for (train::Parameter& p : model->parameters()) {
    const bool is_vector = p.shape.size() == 1;
    if (!is_vector) continue;
    const bool bias = p.name.find(".bias") != std::string::npos;
    const auto noise = testing::random_normal(p.value.size(), ++s, bias ? 0.1f : 0.2f);
    for (size_t i = 0; i < p.value.size(); ++i) p.value[i] = (bias ? 0.0f : 1.0f) + noise[i];
  }
  return model;
}

std::vector<cuda::HostTensor> host_tensors(train::TrainModel& model) {
  std::vector<cuda::HostTensor> out;
  for (train::Parameter& p : model.parameters()) {
    out.push_back(
        {p.name, p.shape, p.value.data(), p.grad.empty() ? nullptr : p.grad.data(), p.decay});
  }
  return out;
}

train::Batch make_batch(const ModelConfig& c, int64_t n_seq, int64_t seq_len, uint64_t seed) {
  return testing::random_batch(c, n_seq, seq_len, seed, testing::BatchTargets::Random);
}

std::vector<std::vector<float>> snapshot_grads(train::TrainModel& model) {
  std::vector<std::vector<float>> out;
  for (train::Parameter& p : model.parameters()) out.emplace_back(p.grad.begin(), p.grad.end());
  return out;
}

struct Case {
  const char* name;
  Arch arch;
  MaskMode mask;
  int64_t block_len;
};

class CudaTrain : public CudaTest, public ::testing::WithParamInterface<Case> {
 protected:
  ThreadPool pool_{2};
};

TEST_P(CudaTrain, LossGradientsAndLogitsMatchCpu) {
  const Case& tc = GetParam();
  const ModelConfig c = tiny_config(tc.arch);
  auto model = make_model(c, 3);
  model->set_attention({tc.mask, tc.block_len});
  const train::Batch batch = make_batch(c, 3, 20, 4);
  const float grad_scale = 0.7f;

  model->zero_grad();
  const double cpu_loss = model->forward_backward(batch, grad_scale, pool_);
  const auto cpu_grads = snapshot_grads(*model);
  std::vector<float> cpu_logits(batch.inputs.size() * static_cast<size_t>(c.vocab_size));
  model->forward_logits(batch.inputs, batch.n_seq, cpu_logits.data(), pool_);

  CudaTrainEngine engine(c, host_tensors(*model), 0, MatmulPrecision::F32);
  struct Mode {
    MatmulPrecision precision;
    bool bf16_attention;
    const char* name;
  };
  for (const Mode mode :
       {Mode{MatmulPrecision::F32, false, "f32"}, Mode{MatmulPrecision::TF32, false, "tf32"},
        Mode{MatmulPrecision::BF16, false, "bf16-tf32-attn"},
        Mode{MatmulPrecision::BF16, true, "bf16"}}) {
    const MatmulPrecision precision = mode.precision;
    const Bounds bound = bounds_for(precision);
    SCOPED_TRACE(mode.name);
    engine.set_precision(precision);
    engine.set_bf16_attention(mode.bf16_attention);
    model->zero_grad();
    const double loss =
        engine.forward_backward(batch.n_seq, batch.seq_len, batch.inputs, batch.targets,
                                batch.weights, grad_scale, tc.mask, tc.block_len);
    const double loss_error = std::fabs(loss - cpu_loss) / std::fabs(cpu_loss);
    double worst = 0;
    std::string worst_name;
    const auto gpu_grads = snapshot_grads(*model);
    for (size_t i = 0; i < gpu_grads.size(); ++i) {
      const std::string& name = model->parameters()[i].name;
      const double e = rel_error(gpu_grads[i], cpu_grads[i]);
      EXPECT_LT(e, bound.gradient) << name;
      if (!(e <= worst)) worst = e, worst_name = name;
    }
    std::vector<float> logits(cpu_logits.size());
    engine.forward_logits(batch.inputs, batch.n_seq, logits.data(), tc.mask, tc.block_len);
    const double logit_error = rel_error(logits, cpu_logits);
    std::printf(
        "  %-12s %-14s loss %.6f vs cpu %.6f (rel %.1e); worst gradient %s rel %.1e; logits rel "
        "%.1e\n",
        tc.name, mode.name, loss, cpu_loss, loss_error, worst_name.c_str(), worst, logit_error);
    EXPECT_LT(loss_error, bound.loss);
    EXPECT_LT(logit_error, bound.logits);
    const double eval_loss =
        engine.forward_loss(batch.n_seq, batch.seq_len, batch.inputs, batch.targets, batch.weights,
                            tc.mask, tc.block_len);
    EXPECT_EQ(eval_loss, loss);  // the same kernels in the same order
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaTrain,
                         ::testing::Values(Case{"llada", Arch::LLaDA, MaskMode::Full, 0},
                                           Case{"llama-gqa", Arch::Llama, MaskMode::Causal, 0},
                                           Case{"dream", Arch::Dream, MaskMode::Full, 0},
                                           Case{"llada-block", Arch::LLaDA, MaskMode::BlockCausal,
                                                6}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string n = info.param.name;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

using CudaEngine = CudaTest;

TEST_F(CudaEngine, GradientsAddUpAndRunsAreBitwiseRepeatable) {
  const ModelConfig c = tiny_config(Arch::Dream);
  auto model = make_model(c, 5);
  const train::Batch b = make_batch(c, 2, 16, 6);
  CudaTrainEngine engine(c, host_tensors(*model));
  model->zero_grad();
  const double first = engine.forward_backward(b.n_seq, b.seq_len, b.inputs, b.targets, b.weights,
                                               1.0f, MaskMode::Full);
  const auto once = snapshot_grads(*model);
  const double second = engine.forward_backward(b.n_seq, b.seq_len, b.inputs, b.targets, b.weights,
                                                1.0f, MaskMode::Full);
  EXPECT_EQ(first, second);
  const auto twice = snapshot_grads(*model);
  for (size_t i = 0; i < once.size(); ++i) {
    for (size_t j = 0; j < once[i].size(); ++j)
      ASSERT_EQ(twice[i][j], once[i][j] + once[i][j]) << i << " " << j;
  }
}

TEST_F(CudaEngine, UploadValuesPicksUpHostChangesAndFrozenTensorsKeepTheirGradients) {
  const ModelConfig c = tiny_config(Arch::LLaDA);
  auto model = make_model(c, 7);
  ThreadPool pool(2);
  const train::Batch b = make_batch(c, 2, 12, 8);
  auto tensors = host_tensors(*model);
  float* frozen_grad = nullptr;
  for (auto& t : tensors) {
    if (t.name == "blk.1.ffn_up.weight") frozen_grad = t.grad, t.grad = nullptr;
  }
  ASSERT_NE(frozen_grad, nullptr);
  CudaTrainEngine engine(c, tensors, 0, MatmulPrecision::F32);
  const double before =
      engine.forward_loss(b.n_seq, b.seq_len, b.inputs, b.targets, b.weights, MaskMode::Full);
  for (train::Parameter& p : model->parameters()) {
    if (p.name == "output.weight")
      for (float& v : p.value) v *= 1.5f;
  }
  EXPECT_EQ(engine.forward_loss(b.n_seq, b.seq_len, b.inputs, b.targets, b.weights, MaskMode::Full),
            before);
  engine.upload_values();
  const double after =
      engine.forward_loss(b.n_seq, b.seq_len, b.inputs, b.targets, b.weights, MaskMode::Full);
  EXPECT_NE(after, before);
  EXPECT_NEAR(after, model->forward_loss(b, pool), 1e-5 * std::fabs(after));

  model->zero_grad();
  engine.forward_backward(b.n_seq, b.seq_len, b.inputs, b.targets, b.weights, 1.0f, MaskMode::Full);
  for (train::Parameter& p : model->parameters()) {
    const bool frozen = p.grad.data() == frozen_grad;
    double norm = 0;
    for (float g : p.grad) norm += std::fabs(g);
    if (frozen)
      EXPECT_EQ(norm, 0.0) << p.name;
    else
      EXPECT_GT(norm, 0.0) << p.name;
  }
}

TEST_F(CudaEngine, RejectsBadBatches) {
  const ModelConfig c = tiny_config(Arch::LLaDA);
  auto model = make_model(c, 9);
  CudaTrainEngine engine(c, host_tensors(*model));
  train::Batch b = make_batch(c, 2, 8, 10);
  auto run = [&](const train::Batch& x, MaskMode mask = MaskMode::Full, int64_t block = 0) {
    return engine.forward_backward(x.n_seq, x.seq_len, x.inputs, x.targets, x.weights, 1.0f, mask,
                                   block);
  };
  EXPECT_THROW(run(b, MaskMode::BlockCausal, 0), Error);
  train::Batch bad = b;
  bad.inputs[3] = static_cast<int32_t>(c.vocab_size);
  EXPECT_THROW(run(bad), Error);
  bad = b;
  bad.weights[1] = -1.0f;
  EXPECT_THROW(run(bad), Error);
  bad = b;
  bad.weights[1] = 1.0f, bad.targets[1] = -5;
  EXPECT_THROW(run(bad), Error);
  bad = b;
  bad.targets.pop_back();
  EXPECT_THROW(run(bad), Error);
  const train::Batch too_long = make_batch(c, 1, c.context_length + 1, 11);
  EXPECT_THROW(run(too_long), Error);
  std::vector<float> logits(10);
  EXPECT_THROW(engine.forward_logits(b.inputs, 3, logits.data(), MaskMode::Full), Error);
  // Nothing scored: no loss, and the engine still works afterwards.
  train::Batch unscored = b;
  std::fill(unscored.weights.begin(), unscored.weights.end(), 0.0f);
  EXPECT_EQ(run(unscored), 0.0);
  EXPECT_GT(run(b), 0.0);
}

// The tensor list is checked before any device is touched, so these run without a GPU too.
TEST(CudaEngineLayout, RejectsMissingUnknownAndMisshapenTensors) {
  const ModelConfig c = tiny_config(Arch::LLaDA);
  auto model = make_model(c, 12);
  auto tensors = host_tensors(*model);
  auto without = tensors;
  without.erase(without.begin() + 3);
  EXPECT_THROW(CudaTrainEngine(c, without), Error);
  auto unknown = tensors;
  unknown.push_back(unknown.front());
  unknown.back().name = "blk.9.attn_q.weight";
  EXPECT_THROW(CudaTrainEngine(c, unknown), Error);
  auto twice = tensors;
  twice.push_back(twice.front());
  EXPECT_THROW(CudaTrainEngine(c, twice), Error);
  auto misshapen = tensors;
  misshapen[0].shape = {misshapen[0].shape[1], misshapen[0].shape[0]};
  EXPECT_THROW(CudaTrainEngine(c, misshapen), Error);
  auto no_values = tensors;
  no_values[1].value = nullptr;
  EXPECT_THROW(CudaTrainEngine(c, no_values), Error);
  ModelConfig moe = c;
  moe.n_expert = 4, moe.n_expert_used = 2, moe.n_ff_expert = 16;
  EXPECT_THROW(CudaTrainEngine(moe, tensors), Error);
}

// ------------------------------------------------------------- the optimiser on the device

double max_rel(const std::vector<float>& got, std::span<const float> want) {
  return rel_error(got, std::vector<float>(want.begin(), want.end()));
}

TEST_F(CudaEngine, DeviceAdamWStepMatchesTheCpuOptimizer) {
  const ModelConfig c = tiny_config(Arch::Dream);  // biases and norms: decay off for some
  auto model = make_model(c, 21);
  ThreadPool pool(2);
  // The engine works on its own copies, so the CPU optimiser can step the model's arrays.
  std::vector<std::vector<float>> values, grads;
  for (train::Parameter& p : model->parameters()) {
    values.emplace_back(p.value.begin(), p.value.end());
    grads.emplace_back(p.grad.size(), 0.0f);
  }
  auto tensors = host_tensors(*model);
  for (size_t i = 0; i < tensors.size(); ++i) {
    tensors[i].value = values[i].data();
    tensors[i].grad = grads[i].data();
  }
  CudaTrainEngine engine(c, tensors, 0, MatmulPrecision::F32);
  engine.enable_device_optimizer();
  train::AdamWOptions options;
  options.weight_decay = 0.1;
  train::AdamW cpu(model->parameters(), options);
  const train::Batch b = make_batch(c, 2, 16, 22);
  // Step 2 clips (a bound far below the norm), steps 1 and 3 do not.
  const double max_norms[] = {0.0, 1e-3, 1e6};
  for (int64_t t = 1; t <= 3; ++t) {
    SCOPED_TRACE(t);
    engine.zero_gradients();
    engine.forward_backward(b.n_seq, b.seq_len, b.inputs, b.targets, b.weights, 0.5f,
                            MaskMode::Full);
    engine.forward_backward(b.n_seq, b.seq_len, b.inputs, b.targets, b.weights, 0.5f,
                            MaskMode::Full);  // accumulates on the device
    engine.download_gradients();
    for (size_t i = 0; i < grads.size(); ++i) {
      std::copy(grads[i].begin(), grads[i].end(), model->parameters()[i].grad.begin());
    }
    const double lr = 1e-2 * static_cast<double>(t);
    const double max_norm = max_norms[t - 1];
    const double cpu_norm = cpu.clip_gradients(max_norm, pool);
    cpu.step(lr, pool);
    train::AdamWOptions o = options;
    const double gpu_norm =
        engine.adamw_step({lr, o.beta1, o.beta2, o.eps, o.weight_decay, t, max_norm});
    EXPECT_NEAR(gpu_norm, cpu_norm, 1e-9 * cpu_norm);
    engine.download_values();
    double worst = 0;
    int64_t differing = 0, total = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      const train::Parameter& p = model->parameters()[i];
      std::vector<float> m(values[i].size()), v(values[i].size());
      engine.get_moments(p.name, m.data(), v.data());
      const double e = std::max({max_rel(values[i], p.value), max_rel(m, cpu.first_moment(i)),
                                 max_rel(v, cpu.second_moment(i))});
      EXPECT_LT(e, 1e-6) << p.name;
      worst = std::max(worst, e);
      for (size_t j = 0; j < values[i].size(); ++j) differing += values[i][j] != p.value[j];
      total += static_cast<int64_t>(values[i].size());
    }
    std::printf(
        "  AdamW step %ld (max_norm %g): norm %.9g vs cpu %.9g; worst rel %.1e; %ld of %ld "
        "values not bit-identical\n",
        static_cast<long>(t), max_norm, gpu_norm, cpu_norm, worst, static_cast<long>(differing),
        static_cast<long>(total));
  }
  // Misuse is an Error, not a crash.
  std::vector<float> m(4), v(4);
  EXPECT_THROW(engine.get_moments("no.such.tensor", m.data(), v.data()), Error);
}

// losses of `steps` full training steps (zero_grad, forward_backward, device AdamW) on a fixed
// set of batches.
std::vector<double> train_on_device(train::TrainModel& model, int64_t first, int64_t steps,
                                    const std::vector<train::Batch>& batches, ThreadPool& pool) {
  std::vector<double> losses;
  for (int64_t s = first; s < first + steps; ++s) {
    model.zero_grad();
    const train::Batch& b = batches[static_cast<size_t>(s) % batches.size()];
    double scored = 0;
    for (float w : b.weights) scored += w;
    losses.push_back(model.forward_backward(b, static_cast<float>(1.0 / scored), pool) / scored);
    model.device_optimizer_step(3e-3, 1.0);
  }
  return losses;
}

std::vector<train::Batch> fixed_batches(const ModelConfig& c) {
  // Learnable: the target at each position is a fixed function of the input there.
  std::vector<train::Batch> out;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    train::Batch b = make_batch(c, 4, 24, 100 + seed);
    for (size_t i = 0; i < b.inputs.size(); ++i) {
      b.targets[i] = static_cast<int32_t>((b.inputs[i] * 7 + 3) % c.vocab_size);
    }
    out.push_back(b);
  }
  return out;
}

TEST_F(CudaEngine, Bf16TrainingLowersTheLossLikeF32) {
  const ModelConfig c = tiny_config(Arch::LLaDA);
  const auto batches = fixed_batches(c);
  ThreadPool pool(2);
  std::vector<std::vector<double>> curves;
  for (const train::DevicePrecision precision :
       {train::DevicePrecision::F32, train::DevicePrecision::BF16}) {
    auto model = make_model(c, 31);
    model->set_device_precision(precision);
    model->set_device("cuda");
    train::AdamW opt(model->parameters(), {});
    ASSERT_TRUE(model->start_device_optimizer(opt));
    curves.push_back(train_on_device(*model, 0, 60, batches, pool));
    EXPECT_EQ(opt.steps_done(), 60);
  }
  auto tail_mean = [](const std::vector<double>& v) {
    double sum = 0;
    for (size_t i = v.size() - 8; i < v.size(); ++i) sum += v[i];
    return sum / 8;
  };
  auto head_mean = [](const std::vector<double>& v) { return (v[0] + v[1] + v[2] + v[3]) / 4; };
  const double f32_start = head_mean(curves[0]), f32_end = tail_mean(curves[0]);
  const double bf16_start = head_mean(curves[1]), bf16_end = tail_mean(curves[1]);
  std::printf("  loss over 60 steps: f32 %.4f -> %.4f, bf16 %.4f -> %.4f\n", f32_start, f32_end,
              bf16_start, bf16_end);
  EXPECT_LT(f32_end, 0.7 * f32_start);
  EXPECT_LT(bf16_end, 0.7 * bf16_start);
  EXPECT_NEAR(bf16_start, f32_start, 0.02 * f32_start);
  EXPECT_NEAR(bf16_end, f32_end, 0.05 * f32_start);
}

TEST_F(CudaEngine, DeviceOptimizerStateRoundTripsThroughTheHost) {
  const ModelConfig c = tiny_config(Arch::Llama);
  const auto batches = fixed_batches(c);
  ThreadPool pool(2);
  for (const train::DevicePrecision precision :
       {train::DevicePrecision::TF32, train::DevicePrecision::BF16}) {
    SCOPED_TRACE(train::device_precision_name(precision));
    auto straight = make_model(c, 41);
    straight->set_device_precision(precision);
    straight->set_device("cuda");
    train::AdamW straight_opt(straight->parameters(), {});
    ASSERT_TRUE(straight->start_device_optimizer(straight_opt));
    const auto want = train_on_device(*straight, 0, 6, batches, pool);

    // 3 steps, then everything through the host (as a checkpoint does) into a fresh model.
    auto first = make_model(c, 41);
    first->set_device_precision(precision);
    first->set_device("cuda");
    train::AdamW first_opt(first->parameters(), {});
    ASSERT_TRUE(first->start_device_optimizer(first_opt));
    auto got = train_on_device(*first, 0, 3, batches, pool);
    first->sync_from_device();
    auto second = make_model(c, 99);
    train::AdamW second_opt(second->parameters(), {});
    for (size_t i = 0; i < second->parameters().size(); ++i) {
      const auto& from = first->parameters()[i].value;
      std::copy(from.begin(), from.end(), second->parameters()[i].value.begin());
    }
    for (size_t i = 0; i < second_opt.n_states(); ++i) {
      std::copy(first_opt.first_moment(i).begin(), first_opt.first_moment(i).end(),
                second_opt.first_moment(i).begin());
      std::copy(first_opt.second_moment(i).begin(), first_opt.second_moment(i).end(),
                second_opt.second_moment(i).begin());
    }
    second_opt.set_steps_done(first_opt.steps_done());
    second->set_device_precision(precision);
    second->set_device("cuda");
    ASSERT_TRUE(second->start_device_optimizer(second_opt));
    const auto rest = train_on_device(*second, 3, 3, batches, pool);
    got.insert(got.end(), rest.begin(), rest.end());
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "step " << i + 1;
    // And the host copy after the last step matches the uninterrupted run's.
    straight->sync_from_device();
    second->sync_from_device();
    for (size_t i = 0; i < second->parameters().size(); ++i) {
      const auto& a = straight->parameters()[i].value;
      const auto& bv = second->parameters()[i].value;
      ASSERT_TRUE(std::equal(a.begin(), a.end(), bv.begin())) << straight->parameters()[i].name;
    }
  }
}

// train.precision and --precision: checked without a GPU.
TEST(TrainPrecision, ConfigKeyIsCheckedAndTheCpuRefusesReducedPrecision) {
  const std::string base = R"(
[model]
arch = "llada"
vocab_size = 97
mask_token_id = 96
n_embd = 48
n_layer = 2
n_head = 4
n_ff = 80
[data]
seq_len = 16
train = [{ name = "x", path = "/nonexistent/shards" }]
[train]
steps = 2
)";
  EXPECT_TRUE(train::parse_train_config(base, "t.toml").precision.empty());
  EXPECT_EQ(train::parse_train_config(base + "precision = \"tf32\"\n", "t.toml").precision, "tf32");
  try {
    train::parse_train_config(base + "precision = \"fp8\"\n", "t.toml");
    ADD_FAILURE() << "fp8 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.precision"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train::parse_device_precision("half"), Error);
  EXPECT_EQ(train::parse_device_precision("bf16"), train::DevicePrecision::BF16);
  // On the CPU: bf16 is an Error before any data is read (the shards above do not exist, so
  // an Error about them would mean the precision was not checked first).
  train::TrainConfig cpu = train::parse_train_config(base + "precision = \"bf16\"\n", "t.toml");
  cpu.out_dir = ::testing::TempDir() + "/precision-cpu";
  try {
    train::RunOptions options;
    options.progress = false;
    train::run_training(cpu, options);
    ADD_FAILURE() << "bf16 on the CPU accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a CUDA device"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ruvdllm
