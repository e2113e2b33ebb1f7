// The training loop end to end on a tiny model: config parsing, gradient accumulation, a
// 100-step run that learns, exact resumption from a checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ruvdllm/core/error.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/train/checkpoint.h"
#include "ruvdllm/train/data_sampler.h"
#include "ruvdllm/train/objective.h"
#include "ruvdllm/train/token_shards.h"
#include "ruvdllm/train/train_config.h"
#include "ruvdllm/train/train_model.h"
#include "ruvdllm/train/trainer.h"
#include "test_util.h"

namespace ruvdllm::train {
namespace {

using testing::TempDir;

constexpr int32_t kVocab = 64;
constexpr int32_t kEos = 62;
constexpr int32_t kMask = 63;
constexpr int32_t kSymbols = 60;

// Documents that count upward modulo 60 from a random start, joined by EOS: every token
// follows from its neighbours, so a model that learns the rule beats the uniform bound by far.
void write_counting_corpus(const std::string& folder, int64_t n_docs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  TokenShardWriter writer(folder, kVocab, 4096);
  for (int64_t d = 0; d < n_docs; ++d) {
    const int32_t start = static_cast<int32_t>(rng() % kSymbols);
    const int64_t length = 20 + static_cast<int64_t>(rng() % 40);
    std::vector<int32_t> doc;
    for (int64_t i = 0; i < length; ++i) doc.push_back(static_cast<int32_t>((start + i) % kSymbols));
    doc.push_back(kEos);
    writer.append(doc);
  }
  writer.add_source("synthetic counting documents");
  writer.finish();
}

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    write_counting_corpus(data_->file("train"), 400, 1);
    write_counting_corpus(data_->file("heldout"), 60, 2);
  }
  static void TearDownTestSuite() { delete data_; }

  // The tiny-model config, with extra TOML appended per test.
  static std::string config_text(const std::string& out_dir, int64_t steps, const std::string& extra_train = "") {
    std::string t = fmt::format(R"(
[model]
arch = "llada"
vocab_size = {}
mask_token_id = {}
eos_token_id = {}
n_embd = 64
n_layer = 2
n_head = 4
n_ff = 128

[data]
seq_len = 32
train = [{{ name = "count", path = "{}" }}]
heldout = [{{ name = "count", path = "{}" }}]

[train]
steps = {}
batch_size = 16
lr = 1e-2
min_lr = 1e-3
warmup_steps = 10
weight_decay = 0.01
seed = 7
threads = 2
{}

[eval]
samples = 4
windows = 16

[output]
dir = "{}"
type = "f32"
)",
                       kVocab, kMask, kEos, data_->file("train"), data_->file("heldout"), steps, extra_train, out_dir);
    return t;
  }

  static TempDir* data_;
};
TempDir* TrainerTest::data_ = nullptr;

std::string error_of(const std::string& toml) {
  try {
    parse_train_config(toml, "bad.toml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_F(TrainerTest, ConfigParsesEveryKey) {
  const TrainConfig c = parse_train_config(config_text("/tmp/x", 5, "grad_accum = 3\ngrad_clip = 0.5"), "t.toml");
  EXPECT_EQ(c.model.shape.n_embd, 64);
  EXPECT_EQ(c.model.shape.head_dim, 16);
  EXPECT_EQ(c.model.shape.n_head_kv, 4);
  EXPECT_EQ(c.model.shape.context_length, 32);  // defaults to seq_len
  EXPECT_EQ(c.model.shape.mask_token_id, kMask);
  EXPECT_EQ(c.train_data.size(), 1u);
  EXPECT_EQ(c.train_data[0].name, "count");
  EXPECT_EQ(c.heldout_data.size(), 1u);
  EXPECT_EQ(c.grad_accum, 3);
  EXPECT_DOUBLE_EQ(c.grad_clip, 0.5);
  EXPECT_DOUBLE_EQ(c.lr, 1e-2);
  EXPECT_EQ(c.export_type, TensorType::F32);
  EXPECT_EQ(c.tokens_per_step(), 3 * 16 * 32);
  EXPECT_EQ(c.t_sampling, TimeSampling::Stratified);
}

TEST_F(TrainerTest, BadConfigsNameTheKeyInOneLine) {
  const std::string good = config_text("/tmp/x", 5);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  const std::string kModel = "[model]\nn_embd = 64\nn_head = 4\nvocab_size = 10\nmask_token_id = 9\n";
  struct Case {
    std::string toml;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {good + "\n[objective]\nschedul = \"linear\"\n", "unknown key 'objective.schedul'"},
      {config_text("/tmp/x", 5, "learning_rate = 1e-3"), "unknown key 'train.learning_rate'"},
      {good + "\n[extra]\na = 1\n", "unknown key 'extra'"},
      {with("batch_size = 16", "batch_size = 0"), "train.batch_size must be positive"},
      {with("lr = 1e-2", "lr = \"fast\""), "train.lr must be a number"},
      {with("min_lr = 1e-3", "min_lr = 1.0"), "train.min_lr = 1 is outside"},
      {with("threads = 2", "threads = 1.5"), "train.threads must be an integer"},
      {with("type = \"f32\"", "type = \"q4_0\""), "output.type 'q4_0'"},
      {with("n_ff = 128", "n_ff = -1"), "model.n_ff must be positive"},
      {good + "\n[objective]\nschedule = \"zigzag\"\n", "objective.schedule: unknown schedule 'zigzag'"},
      {good + "\n[objective]\nt_sampling = \"sobol\"\n", "objective.t_sampling"},
      {"[model]\nn_embd = 64\nn_head = 4\nvocab_size = 10\nmask_token_id = 9\n[data]\nseq_len = 8\n",
       "data.train must list at least one domain"},
      {"[model]\nn_embd = 60\nn_head = 8\nvocab_size = 10\nmask_token_id = 9\n", "not a multiple of model.n_head"},
      {"[model]\nn_embd = 64\nn_head = 4\nvocab_size = 10\n", "model.mask_token_id is required"},
      {"[model]\ninit_from = \"a.gguf\"\nn_embd = 64\n", "model.n_embd conflicts with model.init_from"},
      {"[model]\narch = \"gpt9\"\n", "bad.toml: model.arch: "},
      {kModel + "[data]\nseq_len = 8\ntrain = [{ name = \"a\" }]\n", "data.train[0].path is required"},
      {kModel + "[data]\nseq_len = 8\ntrain = [{ name = \"a\", path = \"p\", wieght = 2 }]\n",
       "unknown key 'data.train[0].wieght'"},
      {kModel + "[data]\ntrain = [{ name = \"a\", path = \"p\" }, { name = \"a\", path = \"q\" }]\n",
       "domain 'a' appears twice"},
      {"[model\n", "bad.toml:1"},
  };
  for (const Case& c : cases) {
    const std::string message = error_of(c.toml);
    ASSERT_FALSE(message.empty()) << "no error for:\n" << c.toml;
    EXPECT_NE(message.find(c.expected), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  EXPECT_THROW(load_train_config("/nonexistent/config.toml"), Error);
}

TEST_F(TrainerTest, TwoHalfBatchesAccumulateToOneFullBatch) {
  const TrainConfig c = parse_train_config(config_text("/tmp/x", 5), "t.toml");
  ModelConfig shape = c.model.shape;
  shape.vocab_size = kVocab;
  auto model = TrainModel::create(shape, 3, 0.05f);
  std::vector<DataDomain> domains;
  domains.push_back({"count", TokenShards::open(data_->file("train")), 1.0});
  const DataSampler sampler(std::move(domains), 32, kVocab, 5);
  ObjectiveOptions o;
  o.mask_id = kMask;
  o.seed = 5;
  const int64_t n = 8, L = 32, step = 3;
  CleanBatch full;
  full.n_seq = n;
  full.seq_len = L;
  full.tokens.resize(n * L);
  for (int64_t s = 0; s < n; ++s) sampler.sample(step, s, std::span<int32_t>(full.tokens).subspan(s * L, L));
  ThreadPool pool(2);

  model->zero_grad();
  const double loss_full = model->forward_backward(make_diffusion_batch(full, o, step, 0, n).batch, 1.0f, pool);
  std::vector<std::vector<float>> grad_full;
  for (const Parameter& p : model->parameters()) grad_full.emplace_back(p.grad.begin(), p.grad.end());

  model->zero_grad();
  double loss_halves = 0;
  for (int64_t half = 0; half < 2; ++half) {
    CleanBatch part;
    part.n_seq = n / 2;
    part.seq_len = L;
    part.tokens.assign(full.tokens.begin() + half * (n / 2) * L, full.tokens.begin() + (half + 1) * (n / 2) * L);
    loss_halves += 0.5 * model->forward_backward(make_diffusion_batch(part, o, step, half * (n / 2), n).batch, 0.5f, pool);
  }
  EXPECT_NEAR(loss_halves, loss_full, 1e-5 * loss_full);
  double max_abs = 0, max_grad = 0;
  for (size_t i = 0; i < grad_full.size(); ++i) {
    const auto& g = model->parameters()[i].grad;
    const testing::Diff d = testing::compare(g.data(), grad_full[i].data(), g.size());
    max_abs = std::max(max_abs, d.max_abs);
    for (float x : grad_full[i]) max_grad = std::max(max_grad, static_cast<double>(std::fabs(x)));
  }
  EXPECT_GT(max_grad, 1e-3);  // the gradients are not trivially zero
  EXPECT_LE(max_abs, 1e-5 * max_grad) << "largest gradient " << max_grad;
}

TEST_F(TrainerTest, DataSamplerFollowsTheMixtureWeights) {
  TempDir other;
  {
    TokenShardWriter writer(other.file("sevens"), kVocab, 4096);
    writer.append(std::vector<int32_t>(100, 7));
    writer.finish();
  }
  std::vector<DataDomain> domains;
  domains.push_back({"count", TokenShards::open(data_->file("train")), 3.0});
  domains.push_back({"sevens", TokenShards::open(other.file("sevens")), 1.0});
  domains.push_back({"unused", TokenShards::open(other.file("sevens")), 0.0});
  const DataSampler sampler(std::move(domains), 16, kVocab, 11);
  const int n = 4000;
  int counting = 0;
  std::vector<int32_t> window(16);
  for (int i = 0; i < n; ++i) {
    const size_t d = sampler.domain_of(i / 8, i % 8);
    ASSERT_LT(d, 2u) << "a zero-weight domain was chosen";
    sampler.sample(i / 8, i % 8, window);
    if (d == 1) {
      EXPECT_EQ(window, std::vector<int32_t>(16, 7));
      continue;
    }
    ++counting;
    // A window of the counting corpus: consecutive tokens count up, except around EOS.
    for (size_t k = 1; k < window.size(); ++k) {
      if (window[k] != kEos && window[k - 1] != kEos) {
        ASSERT_EQ(window[k], (window[k - 1] + 1) % kSymbols) << "window " << i;
      }
    }
  }
  const double p = 0.75, sd = std::sqrt(p * (1 - p) / n);
  EXPECT_NEAR(static_cast<double>(counting) / n, p, 4 * sd);
  // Deterministic in (seed, step, index).
  std::vector<int32_t> again(16);
  sampler.sample(3, 5, window);
  sampler.sample(3, 5, again);
  EXPECT_EQ(window, again);

  std::vector<DataDomain> too_short;
  too_short.push_back({"sevens", TokenShards::open(other.file("sevens")), 1.0});
  EXPECT_THROW(DataSampler(std::move(too_short), 101, kVocab, 1), Error);
  std::vector<DataDomain> none;
  EXPECT_THROW(DataSampler(std::move(none), 16, kVocab, 1), Error);
  std::vector<DataDomain> small_vocab;
  small_vocab.push_back({"count", TokenShards::open(data_->file("train")), 1.0});
  EXPECT_THROW(DataSampler(std::move(small_vocab), 16, 40, 1), Error);
}

std::vector<nlohmann::json> read_log(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST_F(TrainerTest, HundredStepsLearnTheCountingRule) {
  TempDir out;
  const TrainConfig c = parse_train_config(config_text(out.path(), 100), "t.toml");
  RunOptions options;
  options.progress = false;
  std::vector<double> losses;
  options.on_step = [&](const StepStats& s) { losses.push_back(s.loss); };
  const RunResult r = run_training(c, options);
  ASSERT_TRUE(r.finished);
  ASSERT_EQ(losses.size(), 100u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) {
    first += losses[i] / 10;
    last += losses[90 + i] / 10;
  }
  // Start: about ln 64 = 4.16 nats (uniform), a little more from the forced mask of short
  // sequences. The counting rule leaves far less; 100 steps get well on the way (measured:
  // 4.65 -> 2.65 nats, held-out 3.4 bits per token).
  EXPECT_GT(first, 3.5);
  EXPECT_LT(last, first - 1.2) << "first 10 steps " << first << ", last 10 " << last;
  ASSERT_EQ(r.heldout.size(), 1u);
  EXPECT_LT(r.heldout[0].bits_per_token, 0.75 * std::log2(kVocab)) << r.heldout[0].bits_per_token;
  EXPECT_NEAR(r.heldout[0].perplexity_bound, std::exp(r.heldout[0].nats_per_token), 1e-9);

  const auto log = read_log(out.file("log.jsonl"));
  ASSERT_EQ(log.size(), 100u);
  EXPECT_EQ(log[0]["step"], 1);
  EXPECT_EQ(log[99]["step"], 100);
  EXPECT_EQ(log[99]["loss"].get<double>(), losses[99]);
  EXPECT_TRUE(log[99].contains("heldout"));
  EXPECT_GT(log[99]["tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(log[99]["tokens"], 100 * c.tokens_per_step());
  EXPECT_TRUE(std::filesystem::exists(out.file("ckpt")));
  EXPECT_FALSE(std::filesystem::exists(out.file("ckpt.tmp")));

  // The exported model loads in the runtime and agrees with the trained weights.
  auto runtime = Model::load(r.model_path);
  EXPECT_EQ(runtime->config().vocab_size, kVocab);
  EXPECT_EQ(runtime->config().mask_token_id, kMask);
  // A second run into the same folder must not clobber the checkpoint.
  EXPECT_THROW(run_training(c, options), Error);
}

TEST_F(TrainerTest, ResumeReproducesTheUninterruptedRunExactly) {
  TempDir straight, interrupted;
  const std::string accum = "grad_accum = 2";
  const TrainConfig a = parse_train_config(config_text(straight.path(), 12, accum), "a.toml");
  const TrainConfig b = parse_train_config(config_text(interrupted.path(), 12, accum), "b.toml");
  RunOptions options;
  options.progress = false;
  std::vector<double> reference, resumed;
  options.on_step = [&](const StepStats& s) { reference.push_back(s.loss); };
  ASSERT_TRUE(run_training(a, options).finished);

  options.stop_after = 5;
  options.on_step = [&](const StepStats& s) { resumed.push_back(s.loss); };
  const RunResult stopped = run_training(b, options);
  EXPECT_FALSE(stopped.finished);
  EXPECT_EQ(stopped.steps_done, 5);
  EXPECT_FALSE(std::filesystem::exists(interrupted.file("model.gguf")));
  options.stop_after = -1;
  options.resume = true;
  // Another thread count must not change a thing either.
  std::string one_thread = config_text(interrupted.path(), 12, accum);
  one_thread.replace(one_thread.find("threads = 2"), 11, "threads = 1");
  const RunResult finished = run_training(parse_train_config(one_thread, "b.toml"), options);
  ASSERT_TRUE(finished.finished);
  ASSERT_EQ(resumed.size(), 12u);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(resumed[i], reference[i]) << "step " << i + 1;  // bit for bit

  const auto log = read_log(interrupted.file("log.jsonl"));
  ASSERT_EQ(log.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(log[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(log[i]["loss"].get<double>(), reference[i]);
  }
  // Same weights at the end: the exported files are byte-identical.
  std::ifstream fa(straight.file("model.gguf"), std::ios::binary), fb(interrupted.file("model.gguf"), std::ios::binary);
  const std::string ba((std::istreambuf_iterator<char>(fa)), {}), bb((std::istreambuf_iterator<char>(fb)), {});
  EXPECT_GT(ba.size(), 0u);
  EXPECT_TRUE(ba == bb);
}

TEST_F(TrainerTest, ResumeRefusesAnotherRunsCheckpoint) {
  TempDir out;
  RunOptions options;
  options.progress = false;
  options.stop_after = 1;
  ASSERT_EQ(run_training(parse_train_config(config_text(out.path(), 4), "a.toml"), options).steps_done, 1);
  options.resume = true;
  options.stop_after = -1;
  std::string other = config_text(out.path(), 4);
  other.replace(other.find("seed = 7"), 8, "seed = 8");
  try {
    run_training(parse_train_config(other, "b.toml"), options);
    FAIL() << "resumed another run's checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.seed"), std::string::npos) << e.what();
  }
  // A missing checkpoint, and a file that is no checkpoint, are errors too.
  TempDir empty;
  EXPECT_THROW(run_training(parse_train_config(config_text(empty.path(), 4), "c.toml"), options), Error);
  std::ofstream(empty.file("ckpt")) << "not a checkpoint";
  EXPECT_THROW(run_training(parse_train_config(config_text(empty.path(), 4), "c.toml"), options), Error);
}

}  // namespace
}  // namespace ruvdllm::train
