// TrainModel against the runtime (save_gguf → Model::load → Model::forward), its gradients
// against finite differences, and the properties a trainer relies on (only scored rows matter,
// SGD learns, results do not depend on the thread count).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/gguf_metadata.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/text/bpe_trainer.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/train_model.h"
#include "test_util.h"

namespace ruvdllm::train {
namespace {

enum class Variant {
  LLaDA,      // bidirectional, multi-head, separate output head
  Dream,      // q/k/v biases, shifted logits, NeoX RoPE, GQA, tied head
  Llama,      // causal, GQA with one K/V head
  LLaDANeoX,  // Hugging Face's RoPE pairing (save_gguf must permute Q/K) and q/k norms
};

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::LLaDA: return "llada";
    case Variant::Dream: return "dream";
    case Variant::Llama: return "llama";
    case Variant::LLaDANeoX: return "llada_neox";
  }
  return "?";
}

// Rows of 64 and 96 so every matrix also fits Q8_0 blocks; the vocabulary is odd on purpose.
ModelConfig tiny_config(Variant v) {
  ModelConfig c;
  c.arch = Arch::LLaDA;
  c.vocab_size = 101;
  c.n_embd = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 4;
  c.head_dim = 16;
  c.n_ff = 96;
  c.context_length = 64;
  c.rope_base = 10000.0f;
  c.mask_token_id = 100;
  switch (v) {
    case Variant::LLaDA:
      break;
    case Variant::Dream:
      c.arch = Arch::Dream;
      c.n_head_kv = 2;
      c.rope_order = RopeOrder::NeoX;
      c.qkv_bias = true;
      c.shift_logits = true;
      c.tied_output = true;
      break;
    case Variant::Llama:
      c.arch = Arch::Llama;
      c.n_head_kv = 1;
      c.causal = true;
      c.mask_token_id = -1;
      break;
    case Variant::LLaDANeoX:
      c.rope_order = RopeOrder::NeoX;
      c.qk_norm = true;
      break;
  }
  return c;
}

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(n);
  for (auto& id : t) id = dist(rng);
  return t;
}

// Biases and norms start at 0 and 1; random values make their gradients (and any mistake in
// how they are applied) visible.
void perturb_vectors(TrainModel& model, uint64_t seed) {
  for (Parameter& p : model.parameters()) {
    if (p.shape.size() != 1) continue;
    const auto noise = testing::random_normal(p.value.size(), seed++, 0.2f);
    for (size_t i = 0; i < p.value.size(); ++i) p.value[i] += noise[i];
  }
}

std::unique_ptr<TrainModel> make_model(Variant v, float init_std = 0.25f, uint64_t seed = 7) {
  auto model = TrainModel::create(tiny_config(v), seed + static_cast<uint64_t>(v), init_std);
  perturb_vectors(*model, seed * 31);
  return model;
}

// Half the positions scored, with varied weights; the others carry the clean token as input.
Batch make_batch(const ModelConfig& c, int64_t n_seq, int64_t seq_len, uint64_t seed) {
  Batch b;
  b.n_seq = n_seq;
  b.seq_len = seq_len;
  b.targets = random_tokens(static_cast<size_t>(n_seq * seq_len), c.vocab_size, seed);
  b.inputs = b.targets;
  b.weights.assign(b.targets.size(), 0.0f);
  std::mt19937_64 rng(seed + 1);
  const int32_t mask = c.mask_token_id >= 0 ? static_cast<int32_t>(c.mask_token_id) : 0;
  for (size_t i = 0; i < b.targets.size(); ++i) {
    if (rng() % 2 == 0) continue;
    b.inputs[i] = mask;
    b.weights[i] = 0.5f + static_cast<float>(rng() % 4) * 0.25f;
  }
  return b;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

std::vector<float> all_grads(const TrainModel& model) {
  std::vector<float> g;
  for (const Parameter& p : model.parameters()) g.insert(g.end(), p.grad.begin(), p.grad.end());
  return g;
}

class TrainModelVsRuntime : public ::testing::TestWithParam<Variant> {};

// The trained model's own forward pass and the runtime's, on the file save_gguf wrote, must
// agree: that is what makes a trained model usable by `generate` and other GGUF tools.
TEST_P(TrainModelVsRuntime, SavedF32ModelComputesTheSameLogits) {
  const Variant v = GetParam();
  testing::TempDir dir;
  auto model = make_model(v);
  const std::string path = dir.file("model.gguf");
  model->save_gguf(path, TensorType::F32, nullptr);
  auto loaded = Model::load(path);
  EXPECT_EQ(loaded->config().arch, model->config().arch);
  EXPECT_EQ(loaded->config().tied_output, model->config().tied_output);
  EXPECT_EQ(loaded->config().qk_norm, model->config().qk_norm);

  ThreadPool pool(2);
  const int64_t V = model->config().vocab_size;
  std::vector<MaskMode> masks = {model->config().causal ? MaskMode::Causal : MaskMode::Full};
  if (v == Variant::LLaDA) masks.push_back(MaskMode::BlockCausal);
  for (MaskMode mask : masks) {
    for (int64_t n_seq : {1, 3}) {
      const int64_t L = 17;
      const auto tokens = random_tokens(static_cast<size_t>(n_seq * L), V, 11 + n_seq);
      model->set_attention({mask, 4});
      std::vector<float> ours(tokens.size() * static_cast<size_t>(V));
      model->forward_logits(tokens, n_seq, ours.data(), pool);
      ForwardOptions options;
      options.n_seq = n_seq;
      options.mask = mask;
      options.block_len = 4;
      std::vector<float> theirs(ours.size());
      loaded->forward(tokens, options, theirs.data(), pool);
      const double scale = max_abs(theirs);
      ASSERT_GT(scale, 1.0) << "degenerate logits";
      const auto diff = testing::compare(ours.data(), theirs.data(), ours.size());
      EXPECT_LE(diff.max_abs, 1e-4 * scale) << variant_name(v) << " n_seq " << n_seq << " mask " << static_cast<int>(mask);
    }
  }
}

TEST_P(TrainModelVsRuntime, FromModelReadsTheParametersBack) {
  const Variant v = GetParam();
  testing::TempDir dir;
  auto model = make_model(v);
  const std::string path = dir.file("model.gguf");
  model->save_gguf(path, TensorType::F32, nullptr);
  auto loaded = Model::load(path);
  auto back = TrainModel::from_model(*loaded);
  ASSERT_EQ(back->parameters().size(), model->parameters().size());
  EXPECT_EQ(back->n_parameters(), model->n_parameters());
  // Q/K rows (and q/k norm weights) of the Hugging Face pairing were permuted into llama.cpp's
  // on the way out.
  const bool permuted = v == Variant::LLaDANeoX;
  for (size_t i = 0; i < model->parameters().size(); ++i) {
    const Parameter& a = model->parameters()[i];
    const Parameter& b = back->parameters()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.shape, b.shape);
    EXPECT_EQ(a.decay, b.decay) << a.name;
    const bool qk = a.name.find("attn_q") != std::string::npos || a.name.find("attn_k") != std::string::npos;
    const bool same = std::equal(a.value.begin(), a.value.end(), b.value.begin());
    EXPECT_EQ(same, !(permuted && qk)) << a.name;
  }
  if (permuted) {  // different rows, same function
    ThreadPool pool(1);
    const auto tokens = random_tokens(20, model->config().vocab_size, 5);
    std::vector<float> x(tokens.size() * 101), y(x.size());
    model->forward_logits(tokens, 1, x.data(), pool);
    back->forward_logits(tokens, 1, y.data(), pool);
    EXPECT_LE(testing::compare(x.data(), y.data(), x.size()).max_abs, 1e-4 * max_abs(y));
  }
}

TEST_P(TrainModelVsRuntime, SavedQ8ModelStaysClose) {
  const Variant v = GetParam();
  testing::TempDir dir;
  auto model = make_model(v, 0.1f);
  const std::string path = dir.file("model-q8.gguf");
  model->save_gguf(path, TensorType::Q8_0, nullptr);
  auto loaded = Model::load(path);
  EXPECT_EQ(loaded->weights().layers[0].wq.type, TensorType::Q8_0);
  EXPECT_EQ(loaded->weights().layers[0].attn_norm.type, TensorType::F32);
  ThreadPool pool(2);
  const auto tokens = random_tokens(24, 101, 3);
  std::vector<float> ours(tokens.size() * 101), theirs(ours.size());
  model->forward_logits(tokens, 2, ours.data(), pool);
  ForwardOptions options;
  options.n_seq = 2;
  options.mask = model->config().causal ? MaskMode::Causal : MaskMode::Full;
  loaded->forward(tokens, options, theirs.data(), pool);
  // 8-bit weights and activations (0.4% steps of each block's largest value) through two layers:
  // measured at most 1.2% of the logits' scale here.
  const double scale = max_abs(ours);
  ASSERT_GT(scale, 0.5);
  EXPECT_LE(testing::compare(ours.data(), theirs.data(), ours.size()).max_abs, 0.05 * scale) << variant_name(v);
}

TEST_P(TrainModelVsRuntime, ForwardLossIsTheLossForwardBackwardReturns) {
  const Variant v = GetParam();
  auto model = make_model(v);
  ThreadPool pool(2);
  const Batch batch = make_batch(model->config(), 2, 16, 21);
  const double loss = model->forward_loss(batch, pool);
  model->zero_grad();
  EXPECT_EQ(model->forward_backward(batch, 1.0f, pool), loss);
  // And it is the weighted cross entropy of the logits the model computes.
  const int64_t V = model->config().vocab_size;
  std::vector<float> logits(batch.inputs.size() * static_cast<size_t>(V));
  model->forward_logits(batch.inputs, batch.n_seq, logits.data(), pool);
  double expected = 0;
  for (size_t i = 0; i < batch.inputs.size(); ++i) {
    if (batch.weights[i] == 0) continue;
    const float* row = logits.data() + i * static_cast<size_t>(V);
    double top = row[0], sum = 0;
    for (int64_t j = 0; j < V; ++j) top = std::max(top, static_cast<double>(row[j]));
    for (int64_t j = 0; j < V; ++j) sum += std::exp(row[j] - top);
    expected += batch.weights[i] * (std::log(sum) + top - row[batch.targets[i]]);
  }
  EXPECT_NEAR(loss, expected, 1e-5 * expected);
}

// Central differences in float: each loss is a sum of float logits' cross entropies, exact to
// about 1e-6 relative, so with h = 1e-2 the difference quotient is good to about 1e-3 absolute;
// truncation (h² · third derivative) adds about as much on these weights.
TEST_P(TrainModelVsRuntime, GradientsMatchFiniteDifferences) {
  const Variant v = GetParam();
  auto model = make_model(v, 0.15f);
  ThreadPool pool(2);
  const Batch batch = make_batch(model->config(), 2, 12, 33);
  model->zero_grad();
  model->forward_backward(batch, 1.0f, pool);
  const float h = 1e-2f;
  std::mt19937_64 rng(77);
  int checked = 0, nonzero = 0;
  for (Parameter& p : model->parameters()) {
    // Entries with a gradient first (most of the embedding's rows are never read), plus a few
    // arbitrary ones, which must agree too.
    std::vector<size_t> with_grad;
    for (size_t i = 0; i < p.grad.size(); ++i) {
      if (p.grad[i] != 0.0f) with_grad.push_back(i);
    }
    std::vector<size_t> picks;
    for (int j = 0; j < 8 && !with_grad.empty(); ++j) picks.push_back(with_grad[rng() % with_grad.size()]);
    for (int j = 0; j < 2; ++j) picks.push_back(rng() % p.value.size());
    double grad_scale = 0;
    for (float g : p.grad) grad_scale = std::max(grad_scale, static_cast<double>(std::fabs(g)));
    for (size_t i : picks) {
      const float saved = p.value[i];
      p.value[i] = saved + h;
      const double up = model->forward_loss(batch, pool);
      p.value[i] = saved - h;
      const double down = model->forward_loss(batch, pool);
      p.value[i] = saved;
      const double fd = (up - down) / (2.0 * h);
      const double g = p.grad[i];
      EXPECT_NEAR(g, fd, 2e-3 + 2e-2 * std::fabs(fd)) << variant_name(v) << " " << p.name << "[" << i << "]";
      ++checked;
      if (std::fabs(g) > 1e-2) ++nonzero;
    }
    EXPECT_GT(grad_scale, 0.0) << p.name << " gets no gradient";
  }
  EXPECT_GT(nonzero, checked / 2) << "most checked gradients should be clearly nonzero";
}

INSTANTIATE_TEST_SUITE_P(Architectures, TrainModelVsRuntime,
                         ::testing::Values(Variant::LLaDA, Variant::Dream, Variant::Llama, Variant::LLaDANeoX),
                         [](const auto& info) { return std::string(variant_name(info.param)); });

TEST(TrainModel, GradScaleScalesAndGradientsAccumulate) {
  auto model = make_model(Variant::Dream);
  ThreadPool pool(2);
  const Batch batch = make_batch(model->config(), 2, 16, 5);
  model->zero_grad();
  model->forward_backward(batch, 1.0f, pool);
  const auto g1 = all_grads(*model);
  // Powers of two scale every float exactly, so these are bitwise relations.
  model->zero_grad();
  model->forward_backward(batch, 0.25f, pool);
  const auto g_quarter = all_grads(*model);
  ASSERT_GT(max_abs(g1), 0.0);
  for (size_t i = 0; i < g1.size(); ++i) ASSERT_EQ(g_quarter[i], 0.25f * g1[i]) << i;
  // A second call adds; tensors with several contributions per pass (the tied embedding, the
  // norms summed over row chunks) then round their sums in a different order.
  model->forward_backward(batch, 0.25f, pool);
  const auto g_half = all_grads(*model);
  for (size_t i = 0; i < g1.size(); ++i) ASSERT_NEAR(g_half[i], 0.5f * g1[i], 1e-6 * (1 + std::fabs(g1[i]))) << i;
  model->zero_grad();
  model->forward_backward(batch, 3.0f, pool);
  const auto g3 = all_grads(*model);
  // Other scales round differently along the way: entries that are sums of cancelling terms
  // move by float rounding of the terms, so the bound is relative to the largest gradient.
  const double bound = 1e-5 * max_abs(g3);
  for (size_t i = 0; i < g1.size(); ++i) ASSERT_NEAR(g3[i], 3.0f * g1[i], bound) << i;
  model->zero_grad();
  EXPECT_EQ(max_abs(all_grads(*model)), 0.0);
}

TEST(TrainModel, OnlyScoredRowsReachTheHead) {
  for (Variant v : {Variant::LLaDA, Variant::Dream}) {
    auto model = make_model(v);
    ThreadPool pool(2);
    Batch batch = make_batch(model->config(), 2, 16, 9);
    model->zero_grad();
    const double loss = model->forward_backward(batch, 1.0f, pool);
    const auto grads = all_grads(*model);
    size_t changed = 0;
    for (size_t i = 0; i < batch.targets.size(); ++i) {
      if (batch.weights[i] > 0) continue;
      batch.targets[i] = (batch.targets[i] + 1 + static_cast<int32_t>(i)) % 101;
      ++changed;
    }
    batch.targets[0] = batch.weights[0] > 0 ? batch.targets[0] : -5;  // never read: any value goes
    ASSERT_GT(changed, 4u);
    model->zero_grad();
    EXPECT_EQ(model->forward_backward(batch, 1.0f, pool), loss) << variant_name(v);
    EXPECT_EQ(all_grads(*model), grads) << variant_name(v);
    // A scored row's target does matter.
    for (size_t i = 0; i < batch.targets.size(); ++i) {
      if (batch.weights[i] == 0) continue;
      batch.targets[i] = (batch.targets[i] + 1) % 101;
      break;
    }
    EXPECT_NE(model->forward_loss(batch, pool), loss);
  }
}

// Plain gradient descent, with the step clipped to a gradient norm of 0.5 as trainers do: at
// init the loss surface is sharp enough (RMSNorm divides by the 0.02-scale embeddings) that
// unclipped steps large enough to learn quickly spike now and then.
TEST(TrainModel, SgdLowersTheLossOnAFixedBatch) {
  for (Variant v : {Variant::LLaDA, Variant::Dream, Variant::Llama}) {
    auto model = TrainModel::create(tiny_config(v), 3, 0.02f);
    ThreadPool pool(2);
    const Batch batch = make_batch(model->config(), 2, 32, 13);
    double weight_sum = 0;
    for (float w : batch.weights) weight_sum += w;
    const float scale = static_cast<float>(1.0 / weight_sum);
    double first = 0, last = 0;
    for (int step = 0; step < 40; ++step) {
      model->zero_grad();
      const double loss = model->forward_backward(batch, scale, pool) / weight_sum;
      if (step == 0) first = loss;
      last = loss;
      double norm2 = 0;
      for (const Parameter& p : model->parameters()) {
        for (float g : p.grad) norm2 += static_cast<double>(g) * g;
      }
      const float lr = 0.2f * static_cast<float>(std::min(1.0, 0.5 / std::sqrt(norm2)));
      for (Parameter& p : model->parameters()) {
        for (size_t i = 0; i < p.value.size(); ++i) p.value[i] -= lr * p.grad[i];
      }
    }
    // Starts at about log(101) = 4.6; measured after 40 steps: 3.41 (llada), 2.76 (dream),
    // 3.45 (llama).
    EXPECT_NEAR(first, std::log(101.0), 0.15) << variant_name(v);
    EXPECT_LT(last, first - 0.9) << variant_name(v);
  }
}

TEST(TrainModel, ResultsAreBitwiseTheSameAtAnyThreadCount) {
  for (Variant v : {Variant::LLaDA, Variant::Dream, Variant::Llama}) {
    auto model = make_model(v);
    // Enough rows that every pass splits its work into several chunks.
    const Batch batch = make_batch(model->config(), 4, 64, 17);
    ThreadPool one(1), two(2), three(3);
    model->zero_grad();
    const double loss1 = model->forward_backward(batch, 1.0f, one);
    const auto grads1 = all_grads(*model);
    for (ThreadPool* pool : {&two, &three}) {
      model->zero_grad();
      EXPECT_EQ(model->forward_backward(batch, 1.0f, *pool), loss1) << variant_name(v);
      EXPECT_EQ(all_grads(*model), grads1) << variant_name(v) << " at " << pool->size() << " threads";
    }
  }
}

TEST(TrainModel, FromModelDequantizesARandomF16Model) {
  testing::TempDir dir;
  const std::string path = dir.file("random.gguf");
  InitOptions options;
  options.type = TensorType::F16;
  options.init_std = 0.25f;
  const ModelConfig config = shape_config(Arch::Dream, "test");
  write_random_model(config, options, path);
  auto loaded = Model::load(path);
  auto model = TrainModel::from_model(*loaded);
  EXPECT_EQ(model->config().n_layer, config.n_layer);
  ThreadPool pool(2);
  const auto tokens = random_tokens(30, config.vocab_size, 8);
  std::vector<float> ours(tokens.size() * static_cast<size_t>(config.vocab_size)), theirs(ours.size());
  model->forward_logits(tokens, 2, ours.data(), pool);
  ForwardOptions fo;
  fo.n_seq = 2;
  loaded->forward(tokens, fo, theirs.data(), pool);
  const double scale = max_abs(theirs);
  ASSERT_GT(scale, 1.0);
  EXPECT_LE(testing::compare(ours.data(), theirs.data(), ours.size()).max_abs, 1e-4 * scale);
}

TEST(TrainModel, SavesTheTokenizersVocabulary) {
  BpeTrainerOptions options;
  options.vocab_size = 300;
  BpeTrainer trainer(options);
  std::string text;
  for (int i = 0; i < 2000; ++i) text += " the model unmasks the canvas, step " + std::to_string(i % 17) + ".";
  trainer.add_text(text);
  const Tokenizer tokenizer = trainer.train();
  ASSERT_TRUE(tokenizer.mask_id().has_value());

  ModelConfig config = tiny_config(Variant::LLaDA);
  config.vocab_size = tokenizer.vocab_size() + 3;  // padded beyond the vocabulary, as LLaDA's is
  config.mask_token_id = *tokenizer.mask_id();
  auto model = TrainModel::create(config, 1);
  testing::TempDir dir;
  const std::string path = dir.file("trained.gguf");
  model->save_gguf(path, TensorType::F16, &tokenizer);
  auto loaded = Model::load(path);
  EXPECT_EQ(loaded->config().vocab_size, config.vocab_size);
  EXPECT_EQ(loaded->config().mask_token_id, config.mask_token_id);
  EXPECT_EQ(loaded->weights().token_embd.type, TensorType::F16);
  EXPECT_EQ(loaded->vocab().tokens.size(), static_cast<size_t>(tokenizer.vocab_size()));
  const Tokenizer back = Tokenizer::from_gguf_file(path);
  const std::string sample = "the canvas unmasks, step 42.";
  EXPECT_EQ(back.encode(sample), tokenizer.encode(sample));
  EXPECT_EQ(back.mask_id(), tokenizer.mask_id());

  // A vocabulary larger than the model's, or a different mask token, cannot go with it.
  auto small = make_model(Variant::LLaDA);
  EXPECT_THROW(small->save_gguf(dir.file("small.gguf"), TensorType::F32, &tokenizer), Error);
  config.mask_token_id = 0;
  EXPECT_THROW(TrainModel::create(config, 1)->save_gguf(dir.file("mask.gguf"), TensorType::F32, &tokenizer), Error);
}

TEST(TrainModel, CreateIsSeededAndInitialisesByRole) {
  const ModelConfig c = tiny_config(Variant::Dream);
  auto a = TrainModel::create(c, 1, 0.02f);
  auto b = TrainModel::create(c, 1, 0.02f);
  auto other = TrainModel::create(c, 2, 0.02f);
  EXPECT_EQ(a->parameters().size(), model_tensor_specs(c).size());
  int64_t total = 0;
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    const Parameter& p = a->parameters()[i];
    total += static_cast<int64_t>(p.value.size());
    EXPECT_EQ(p.grad.size(), p.value.size());
    EXPECT_TRUE(std::equal(p.value.begin(), p.value.end(), b->parameters()[i].value.begin())) << p.name;
    double sum2 = 0;
    for (float x : p.value) sum2 += static_cast<double>(x) * x;
    const double rms = std::sqrt(sum2 / static_cast<double>(p.value.size()));
    if (p.name.ends_with("norm.weight")) {
      EXPECT_EQ(rms, 1.0) << p.name;
      EXPECT_FALSE(p.decay);
    } else if (p.name.ends_with(".bias")) {
      EXPECT_EQ(rms, 0.0) << p.name;
      EXPECT_FALSE(p.decay);
    } else {
      EXPECT_TRUE(p.decay) << p.name;
      const bool residual = p.name.ends_with("attn_output.weight") || p.name.ends_with("ffn_down.weight");
      const double expected = residual ? 0.02 / std::sqrt(2.0 * c.n_layer) : 0.02;
      EXPECT_NEAR(rms, expected, 0.15 * expected) << p.name;
      EXPECT_FALSE(std::equal(p.value.begin(), p.value.end(), other->parameters()[i].value.begin())) << p.name;
    }
  }
  EXPECT_EQ(a->n_parameters(), total);
  EXPECT_EQ(a->parameters()[0].name, "token_embd.weight");
  EXPECT_EQ(a->parameters()[0].shape, (std::vector<int64_t>{64, 101}));
}

TEST(TrainModel, BadInputsThrow) {
  ModelConfig moe = shape_config(Arch::LLaDAMoE, "test");
  EXPECT_THROW(TrainModel::create(moe, 1), Error);
  ModelConfig bad = tiny_config(Variant::LLaDA);
  bad.n_head_kv = 3;
  EXPECT_THROW(TrainModel::create(bad, 1), Error);
  EXPECT_THROW(TrainModel::create(tiny_config(Variant::LLaDA), 1, 0.0f), Error);

  auto model = make_model(Variant::LLaDA);
  ThreadPool pool(1);
  const Batch good = make_batch(model->config(), 2, 8, 1);
  auto expect_bad = [&](Batch b, const char* what) {
    EXPECT_THROW(model->forward_backward(b, 1.0f, pool), Error) << what;
    EXPECT_THROW(model->forward_loss(b, pool), Error) << what;
  };
  Batch b = good;
  b.inputs.pop_back();
  expect_bad(b, "short inputs");
  b = good;
  b.inputs[3] = 101;
  expect_bad(b, "input out of range");
  b = good;
  for (size_t i = 0; i < b.weights.size(); ++i) {
    if (b.weights[i] > 0) {
      b.targets[i] = -1;
      break;
    }
  }
  expect_bad(b, "scored target out of range");
  b = good;
  b.weights[2] = -1.0f;
  expect_bad(b, "negative weight");
  b = good;
  b.weights[2] = NAN;
  expect_bad(b, "NaN weight");
  b = good;
  b.n_seq = 0;
  expect_bad(b, "no sequences");
  b = make_batch(model->config(), 1, 65, 1);
  expect_bad(b, "longer than the context");

  std::vector<float> logits(10 * 101);
  std::vector<int32_t> tokens(10, 1);
  EXPECT_THROW(model->forward_logits(tokens, 3, logits.data(), pool), Error);
  tokens[4] = -2;
  EXPECT_THROW(model->forward_logits(tokens, 1, logits.data(), pool), Error);
  EXPECT_THROW(model->set_attention({MaskMode::BlockCausal, 0}), Error);

  testing::TempDir dir;
  EXPECT_THROW(model->save_gguf(dir.file("x.gguf"), TensorType::Q8_K, nullptr), Error);
  EXPECT_THROW(model->save_gguf(dir.file("missing/dir/x.gguf"), TensorType::F32, nullptr), Error);
  EXPECT_THROW(Model::load(dir.file("x.gguf")), Error);  // nothing was left behind
}

TEST(TrainModel, BatchWithoutScoredRowsHasNoLossAndNoGradient) {
  auto model = make_model(Variant::LLaDA);
  ThreadPool pool(1);
  Batch b = make_batch(model->config(), 1, 8, 2);
  std::fill(b.weights.begin(), b.weights.end(), 0.0f);
  model->zero_grad();
  EXPECT_EQ(model->forward_backward(b, 1.0f, pool), 0.0);
  EXPECT_EQ(model->forward_loss(b, pool), 0.0);
  EXPECT_EQ(max_abs(all_grads(*model)), 0.0);
}

}  // namespace
}  // namespace ruvdllm::train
