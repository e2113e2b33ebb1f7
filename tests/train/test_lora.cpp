// LoRA on TrainModel: the adapters start as the identity, their gradients match finite
// differences through the frozen base, training touches only them, and the PEFT folder
// round-trips, merges and rejects malformed input with one-line errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/io/safetensors.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/train/lora.h"
#include "ruvdllm/train/optimizer.h"
#include "ruvdllm/train/train_model.h"
#include "test_util.h"

namespace ruvdllm::train {
namespace {

enum class Variant {
  LLaDA,      // interleaved RoPE rows (Q/K B rows reordered for PEFT), separate head
  Dream,      // q/k/v biases, shifted logits, NeoX RoPE, GQA, tied head
  LLaDANeoX,  // Hugging Face's RoPE pairing and q/k norms
};

ModelConfig tiny_config(Variant v) {
  ModelConfig c;
  c.arch = Arch::LLaDA;
  c.vocab_size = 61;
  c.n_embd = 32;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 4;
  c.head_dim = 8;
  c.n_ff = 48;
  c.context_length = 32;
  c.rope_base = 10000.0f;
  c.mask_token_id = 60;
  if (v == Variant::Dream) {
    c.arch = Arch::Dream;
    c.n_head_kv = 2;
    c.rope_order = RopeOrder::NeoX;
    c.qkv_bias = true;
    c.shift_logits = true;
    c.tied_output = true;
  } else if (v == Variant::LLaDANeoX) {
    c.rope_order = RopeOrder::NeoX;
    c.qk_norm = true;
  }
  return c;
}

const std::vector<LoraTarget> kAllTargets = {LoraTarget::AttnQ,    LoraTarget::AttnK,   LoraTarget::AttnV,
                                             LoraTarget::AttnOutput, LoraTarget::FfnGate, LoraTarget::FfnUp,
                                             LoraTarget::FfnDown};

LoraOptions all_targets(int64_t rank = 3, double alpha = 6) {
  LoraOptions o;
  o.rank = rank;
  o.alpha = alpha;
  o.targets = kAllTargets;
  o.seed = 5;
  return o;
}

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& id : t) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab - 1));
  return t;
}

std::unique_ptr<TrainModel> make_base(Variant v, uint64_t seed = 7) {
  auto model = TrainModel::create(tiny_config(v), seed + static_cast<uint64_t>(v), 0.2f);
  // Norms and biases off their 1/0 start, so mistakes in how they combine with LoRA show.
  for (Parameter& p : model->parameters()) {
    if (p.shape.size() != 1) continue;
    const auto noise = testing::random_normal(p.value.size(), seed++, 0.2f);
    for (size_t i = 0; i < p.value.size(); ++i) p.value[i] += noise[i];
  }
  return model;
}

// A second model with the same base values.
std::unique_ptr<TrainModel> copy_base(const TrainModel& from, Variant v) {
  auto model = TrainModel::create(tiny_config(v), 1, 0.2f);
  for (size_t i = 0; i < model->parameters().size(); ++i) {
    const Parameter& src = from.parameters()[i];
    std::copy(src.value.begin(), src.value.end(), model->parameters()[i].value.begin());
  }
  return model;
}

// B starts at zero; random B makes A's gradient and the delta's effect visible.
void randomize_lora(TrainModel& model, uint64_t seed) {
  for (Parameter& p : model.parameters()) {
    if (p.name.find(".lora_B.") == std::string::npos) continue;
    const auto noise = testing::random_normal(p.value.size(), seed++, 0.3f);
    std::copy(noise.begin(), noise.end(), p.value.begin());
  }
}

Batch make_batch(const ModelConfig& c, int64_t n_seq, int64_t seq_len, uint64_t seed) {
  Batch b;
  b.n_seq = n_seq;
  b.seq_len = seq_len;
  b.targets = random_tokens(static_cast<size_t>(n_seq * seq_len), c.vocab_size, seed);
  b.inputs = b.targets;
  b.weights.assign(b.targets.size(), 0.0f);
  std::mt19937_64 rng(seed + 1);
  for (size_t i = 0; i < b.targets.size(); ++i) {
    if (rng() % 2 == 0) continue;
    b.inputs[i] = static_cast<int32_t>(c.mask_token_id);
    b.weights[i] = 0.5f + static_cast<float>(rng() % 4) * 0.25f;
  }
  return b;
}

std::vector<float> logits_of(TrainModel& model, const std::vector<int32_t>& tokens, int64_t n_seq, ThreadPool& pool) {
  std::vector<float> out(tokens.size() * static_cast<size_t>(model.config().vocab_size));
  model.forward_logits(tokens, n_seq, out.data(), pool);
  return out;
}

std::vector<float> base_values(const TrainModel& model) {
  std::vector<float> v;
  for (const Parameter& p : model.parameters()) {
    if (p.name.find(".lora_") == std::string::npos) v.insert(v.end(), p.value.begin(), p.value.end());
  }
  return v;
}

class LoraVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(LoraVariants, StartsAsTheBaseAndFreezesIt) {
  ThreadPool pool(2);
  auto model = make_base(GetParam());
  const auto tokens = random_tokens(2 * 12, model->config().vocab_size, 3);
  const auto before = logits_of(*model, tokens, 2, pool);
  const size_t n_base = model->parameters().size();
  model->add_lora(all_targets());
  EXPECT_TRUE(model->has_lora());
  const auto after = logits_of(*model, tokens, 2, pool);
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(before[i], after[i]) << "logit " << i;

  const auto& params = model->parameters();
  ASSERT_EQ(params.size(), n_base + 2 * 7 * 2);  // A and B, 7 targets, 2 layers
  int64_t trainable = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (i < n_base) {
      EXPECT_TRUE(params[i].grad.empty()) << params[i].name;
    } else {
      EXPECT_EQ(params[i].grad.size(), params[i].value.size()) << params[i].name;
      trainable += static_cast<int64_t>(params[i].value.size());
    }
  }
  EXPECT_EQ(model->n_trainable(), trainable);
  const ModelConfig& c = model->config();
  const Parameter& qa = params[n_base];
  EXPECT_EQ(qa.name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(qa.shape, (std::vector<int64_t>{c.n_embd, 3}));
  // A ~ U(±1/√in), never all zero; B = 0.
  const float bound = 1.0f / std::sqrt(static_cast<float>(c.n_embd));
  EXPECT_LE(*std::max_element(qa.value.begin(), qa.value.end()), bound);
  EXPECT_GE(*std::min_element(qa.value.begin(), qa.value.end()), -bound);
  EXPECT_GT(*std::max_element(qa.value.begin(), qa.value.end()), bound / 2);
  const Parameter& qb = params[n_base + 1];
  EXPECT_EQ(qb.name, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  EXPECT_EQ(qb.shape, (std::vector<int64_t>{3, c.n_head * c.head_dim}));
  EXPECT_TRUE(std::all_of(qb.value.begin(), qb.value.end(), [](float x) { return x == 0.0f; }));
  EXPECT_EQ(params.back().name, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
}

// The five-point stencil: random B makes the loss curved enough in A that the central
// difference's h² error shows at h = 1e-2; this one's is h⁴, and float noise stays ~1e-3.
TEST_P(LoraVariants, GradientsMatchFiniteDifferences) {
  ThreadPool pool(2);
  auto model = make_base(GetParam());
  model->add_lora(all_targets());
  randomize_lora(*model, 91);
  const Batch batch = make_batch(model->config(), 2, 10, 33);
  model->zero_grad();
  model->forward_backward(batch, 1.0f, pool);
  const float h = 1e-2f;
  std::mt19937_64 rng(5);
  int checked = 0, nonzero = 0;
  for (Parameter& p : model->parameters()) {
    if (p.grad.empty()) continue;
    double largest = 0;
    for (float g : p.grad) largest = std::max(largest, static_cast<double>(std::fabs(g)));
    EXPECT_GT(largest, 0.0) << p.name << " gets no gradient";
    for (int j = 0; j < 5; ++j) {
      const size_t i = rng() % p.value.size();
      const float saved = p.value[i];
      auto loss_at = [&](float delta) {
        p.value[i] = saved + delta;
        return model->forward_loss(batch, pool);
      };
      const double fd = (8.0 * (loss_at(h) - loss_at(-h)) - (loss_at(2 * h) - loss_at(-2 * h))) / (12.0 * h);
      p.value[i] = saved;
      EXPECT_NEAR(p.grad[i], fd, 2e-3 + 2e-2 * std::fabs(fd)) << p.name << "[" << i << "]";
      ++checked;
      if (std::fabs(fd) > 1e-2) ++nonzero;
    }
  }
  EXPECT_EQ(checked, 28 * 5);
  EXPECT_GT(nonzero, checked / 2);
}

TEST_P(LoraVariants, PeftRoundTripGivesIdenticalLogits) {
  ThreadPool pool(2);
  testing::TempDir dir;
  auto model = make_base(GetParam());
  LoraOptions o = all_targets(4, 8);
  o.targets = {LoraTarget::FfnUp, LoraTarget::AttnQ, LoraTarget::AttnK};  // any order
  model->add_lora(o);
  randomize_lora(*model, 17);
  const std::string folder = dir.file("adapter");
  model->save_lora(folder, "org/base-model");

  auto loaded = copy_base(*model, GetParam());
  loaded->load_lora(folder);
  ASSERT_TRUE(loaded->has_lora());
  EXPECT_EQ(loaded->lora_options().rank, 4);
  EXPECT_EQ(loaded->lora_options().alpha, 8);
  const auto tokens = random_tokens(2 * 12, model->config().vocab_size, 8);
  const auto a = logits_of(*model, tokens, 2, pool);
  const auto b = logits_of(*loaded, tokens, 2, pool);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "logit " << i;
  // The adapter changed the model: the round trip is not trivially the base.
  auto base = copy_base(*model, GetParam());
  const auto c = logits_of(*base, tokens, 2, pool);
  EXPECT_GT(testing::compare(a.data(), c.data(), a.size()).max_abs, 1e-2);

  // Hugging Face orientation: A is [r, in], B is [out, r]; B's q rows in half-rotation order.
  const SafetensorsFile file = SafetensorsFile::open(lora_weights_path(folder));
  EXPECT_EQ(file.tensors().size(), 2u * 3 * 2);
  const ModelConfig& cfg = model->config();
  const TensorView* qb = file.find_tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight");
  ASSERT_NE(qb, nullptr);
  EXPECT_EQ(qb->type, TensorType::F32);
  EXPECT_EQ(qb->shape, (std::vector<int64_t>{4, cfg.n_head * cfg.head_dim}));  // GGUF order of [out, r]
  const TensorView* up_a = file.find_tensor("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight");
  ASSERT_NE(up_a, nullptr);
  EXPECT_EQ(up_a->shape, (std::vector<int64_t>{cfg.n_embd, 4}));
  const Parameter* internal_qb = nullptr;
  for (const Parameter& p : model->parameters()) {
    if (p.name == "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight") internal_qb = &p;
  }
  ASSERT_NE(internal_qb, nullptr);
  const float* stored = static_cast<const float*>(qb->data);
  const int64_t half = cfg.head_dim / 2;
  for (int64_t row = 0; row < cfg.n_head * cfg.head_dim; ++row) {
    const int64_t head = row / cfg.head_dim, j = row % cfg.head_dim;
    const int64_t internal_row = cfg.rope_order == RopeOrder::NeoX
                                     ? row
                                     : head * cfg.head_dim + (j < half ? 2 * j : 2 * (j - half) + 1);
    for (int64_t k = 0; k < 4; ++k) {
      ASSERT_EQ(stored[row * 4 + k], internal_qb->value[static_cast<size_t>(internal_row * 4 + k)]) << row;
    }
  }
}

// Merging folds the adapters into the base: the same logits up to float rounding, and the
// merged GGUF export computes them too.
TEST_P(LoraVariants, MergedModelMatchesBasePlusAdapter) {
  ThreadPool pool(2);
  testing::TempDir dir;
  auto model = make_base(GetParam());
  model->add_lora(all_targets());
  randomize_lora(*model, 23);
  const auto tokens = random_tokens(2 * 12, model->config().vocab_size, 4);
  const auto with_adapter = logits_of(*model, tokens, 2, pool);
  model->merge_lora();
  EXPECT_FALSE(model->has_lora());
  EXPECT_EQ(model->n_trainable(), 0);
  const auto merged = logits_of(*model, tokens, 2, pool);
  const testing::Diff d = testing::compare(merged.data(), with_adapter.data(), merged.size());
  EXPECT_LT(d.max_abs, 1e-4);

  model->save_gguf(dir.file("merged.gguf"), TensorType::F32, nullptr);
  const auto runtime = Model::load(dir.file("merged.gguf"));
  auto reloaded = TrainModel::from_model(*runtime);
  const auto exported = logits_of(*reloaded, tokens, 2, pool);
  EXPECT_LT(testing::compare(exported.data(), with_adapter.data(), exported.size()).max_abs, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Architectures, LoraVariants,
                         ::testing::Values(Variant::LLaDA, Variant::Dream, Variant::LLaDANeoX));

// QLoRA: a Q8_0 base, dequantized and frozen; AdamW on the adapters lowers the loss on a
// fixed batch and leaves every base weight bitwise as it was.
TEST(Lora, TrainingOnAQuantizedBaseChangesOnlyTheAdapters) {
  ThreadPool pool(2);
  testing::TempDir dir;
  auto fresh = make_base(Variant::LLaDA);
  fresh->save_gguf(dir.file("base.gguf"), TensorType::Q8_0, nullptr);
  const auto runtime = Model::load(dir.file("base.gguf"));
  auto model = TrainModel::from_model(*runtime);
  LoraOptions o = all_targets(4, 8);
  model->add_lora(o);
  const std::vector<float> base_before = base_values(*model);
  AdamWOptions adam;
  adam.weight_decay = 0.0;
  AdamW optimizer(model->parameters(), adam);
  EXPECT_EQ(optimizer.n_states(), 28u);
  const Batch batch = make_batch(model->config(), 3, 16, 12);
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    model->zero_grad();
    const double loss = model->forward_backward(batch, 1.0f, pool);
    if (step == 0) first = loss;
    last = loss;
    optimizer.step(1e-2, pool);
  }
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
  const std::vector<float> base_after = base_values(*model);
  ASSERT_EQ(base_before.size(), base_after.size());
  EXPECT_EQ(std::memcmp(base_before.data(), base_after.data(), base_before.size() * sizeof(float)), 0);
  bool b_moved = false;
  for (const Parameter& p : model->parameters()) {
    if (p.name.find(".lora_B.") == std::string::npos) continue;
    b_moved = b_moved || std::any_of(p.value.begin(), p.value.end(), [](float x) { return x != 0.0f; });
  }
  EXPECT_TRUE(b_moved);
}

// Adapters PEFT trained on LLaDA's own remote code name its modules model.transformer.blocks.N
// .{q_proj, attn_out, ff_proj, up_proj, ff_out}; they load as the Llama-style names do.
TEST(Lora, LoadsLLaDAModuleNames) {
  ThreadPool pool(2);
  testing::TempDir dir;
  auto model = make_base(Variant::LLaDA);
  LoraOptions o = all_targets(2, 4);
  o.targets = {LoraTarget::AttnQ, LoraTarget::AttnOutput, LoraTarget::FfnGate, LoraTarget::FfnDown};
  model->add_lora(o);
  randomize_lora(*model, 3);
  model->save_lora(dir.file("ours"), "");
  const SafetensorsFile ours = SafetensorsFile::open(lora_weights_path(dir.file("ours")));
  SafetensorsWriter renamed;
  for (int64_t layer = 0; layer < model->config().n_layer; ++layer) {
    for (LoraTarget t : o.targets) {
      for (bool b : {false, true}) {
        const TensorView* v = ours.find_tensor(lora_tensor_name(layer, t, b));
        ASSERT_NE(v, nullptr);
        renamed.add_tensor(lora_tensor_name_llada(layer, t, b), v->type, v->shape, v->data, v->nbytes);
      }
    }
  }
  std::filesystem::create_directories(dir.file("llada"));
  renamed.write(lora_weights_path(dir.file("llada")));
  std::ifstream in(lora_config_path(dir.file("ours")));
  nlohmann::json j = nlohmann::json::parse(in);
  j["target_modules"] = {"q_proj", "attn_out", "ff_proj", "ff_out"};
  std::ofstream(lora_config_path(dir.file("llada"))) << j.dump();

  auto loaded = copy_base(*model, Variant::LLaDA);
  loaded->load_lora(dir.file("llada"));
  const auto tokens = random_tokens(12, model->config().vocab_size, 2);
  const auto a = logits_of(*model, tokens, 1, pool);
  const auto b = logits_of(*loaded, tokens, 1, pool);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "logit " << i;
}

// Over 256 rows the LoRA passes split into row chunks; results must not depend on the pool.
TEST(Lora, ResultsAreBitwiseTheSameAtAnyThreadCount) {
  auto run = [](int threads) {
    ThreadPool pool(threads);
    ModelConfig c = tiny_config(Variant::LLaDA);
    c.context_length = 160;
    auto model = TrainModel::create(c, 3, 0.2f);
    model->add_lora(all_targets());
    randomize_lora(*model, 8);
    const Batch batch = make_batch(c, 3, 160, 21);
    model->zero_grad();
    const double loss = model->forward_backward(batch, 1.0f, pool);
    std::vector<float> grads{static_cast<float>(loss)};
    for (const Parameter& p : model->parameters()) grads.insert(grads.end(), p.grad.begin(), p.grad.end());
    return grads;
  };
  const auto one = run(1), two = run(2);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
}

TEST(Lora, AdapterConfigHasPeftFields) {
  testing::TempDir dir;
  auto model = make_base(Variant::LLaDA);
  LoraOptions o;
  o.rank = 2;
  o.alpha = 5;
  o.targets = {LoraTarget::FfnDown, LoraTarget::AttnV, LoraTarget::AttnQ};
  model->add_lora(o);
  model->save_lora(dir.path(), "GSAI-ML/LLaDA-8B-Base");
  std::ifstream in(lora_config_path(dir.path()));
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["r"], 2);
  EXPECT_EQ(j["lora_alpha"].get<double>(), 5.0);
  EXPECT_EQ(j["target_modules"], (nlohmann::json{"down_proj", "v_proj", "q_proj"}));
  EXPECT_EQ(j["base_model_name_or_path"], "GSAI-ML/LLaDA-8B-Base");
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["lora_dropout"].get<double>(), 0.0);
  EXPECT_EQ(j["use_dora"], false);
  const LoraAdapterConfig back = read_lora_config(dir.path());
  EXPECT_EQ(back.options.rank, 2);
  EXPECT_EQ(back.options.targets, o.targets);
  EXPECT_EQ(back.base_model, "GSAI-ML/LLaDA-8B-Base");
}

TEST(Lora, TargetNamesParseBothConventions) {
  EXPECT_EQ(parse_lora_target("attn_output"), LoraTarget::AttnOutput);
  EXPECT_EQ(parse_lora_target("o_proj"), LoraTarget::AttnOutput);
  EXPECT_EQ(parse_lora_target("gate_proj"), LoraTarget::FfnGate);
  EXPECT_THROW(parse_lora_target("qkv"), Error);
  EXPECT_EQ(lora_tensor_name(3, LoraTarget::FfnGate, true), "base_model.model.model.layers.3.mlp.gate_proj.lora_B.weight");
}

// Every failure is an Error with one line that names the offending file.
void expect_one_line_error(const std::function<void()>& fn, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning " << fragment;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(fragment), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(Lora, BadAdapterFoldersAreOneLineErrors) {
  testing::TempDir dir;
  auto model = make_base(Variant::LLaDA);
  LoraOptions o;
  o.rank = 2;
  o.targets = {LoraTarget::AttnQ, LoraTarget::AttnV};
  model->add_lora(o);
  const std::string good = dir.file("good");
  model->save_lora(good, "");
  auto fresh = [] { return make_base(Variant::LLaDA); };
  auto write = [](const std::string& path, const std::string& text) { std::ofstream(path) << text; };
  auto copy_folder = [&](const std::string& name) {
    const std::string to = dir.file(name);
    std::filesystem::create_directories(to);
    std::filesystem::copy(good, to, std::filesystem::copy_options::recursive);
    return to;
  };
  auto edit_config = [&](const std::string& folder, const std::function<void(nlohmann::json&)>& edit) {
    std::ifstream in(lora_config_path(folder));
    nlohmann::json j = nlohmann::json::parse(in);
    in.close();
    edit(j);
    write(lora_config_path(folder), j.dump());
  };

  expect_one_line_error([&] { fresh()->load_lora(dir.file("nowhere")); }, "nowhere");
  const std::string no_config = copy_folder("no_config");
  std::filesystem::remove(lora_config_path(no_config));
  expect_one_line_error([&] { fresh()->load_lora(no_config); }, "adapter_config.json");
  const std::string no_weights = copy_folder("no_weights");
  std::filesystem::remove(lora_weights_path(no_weights));
  expect_one_line_error([&] { fresh()->load_lora(no_weights); }, "adapter_model.safetensors");
  const std::string bad_json = copy_folder("bad_json");
  write(lora_config_path(bad_json), "{\"peft_type\": ");
  expect_one_line_error([&] { fresh()->load_lora(bad_json); }, "not a JSON object");
  const std::string ia3 = copy_folder("ia3");
  edit_config(ia3, [](nlohmann::json& j) { j["peft_type"] = "IA3"; });
  expect_one_line_error([&] { fresh()->load_lora(ia3); }, "peft_type");
  const std::string no_r = copy_folder("no_r");
  edit_config(no_r, [](nlohmann::json& j) { j.erase("r"); });
  expect_one_line_error([&] { fresh()->load_lora(no_r); }, "lacks 'r'");
  const std::string dora = copy_folder("dora");
  edit_config(dora, [](nlohmann::json& j) { j["use_dora"] = true; });
  expect_one_line_error([&] { fresh()->load_lora(dora); }, "use_dora");
  const std::string unknown = copy_folder("unknown");
  edit_config(unknown, [](nlohmann::json& j) { j["target_modules"] = {"q_proj", "qkv_proj"}; });
  expect_one_line_error([&] { fresh()->load_lora(unknown); }, "qkv_proj");
  const std::string regex = copy_folder("regex");
  edit_config(regex, [](nlohmann::json& j) { j["target_modules"] = ".*proj"; });
  expect_one_line_error([&] { fresh()->load_lora(regex); }, "target_modules");
  // Config and weights disagree: another rank, another target list.
  const std::string rank = copy_folder("rank");
  edit_config(rank, [](nlohmann::json& j) { j["r"] = 3; });
  expect_one_line_error([&] { fresh()->load_lora(rank); }, "has shape");
  const std::string swapped = copy_folder("swapped");
  edit_config(swapped, [](nlohmann::json& j) { j["target_modules"] = {"q_proj", "k_proj"}; });
  expect_one_line_error([&] { fresh()->load_lora(swapped); }, "has no tensor");
  const std::string more = copy_folder("more");
  edit_config(more, [](nlohmann::json& j) { j["target_modules"] = {"q_proj", "k_proj", "v_proj"}; });
  expect_one_line_error([&] { fresh()->load_lora(more); }, "tensors");
  const std::string torn = copy_folder("torn");
  std::filesystem::resize_file(lora_weights_path(torn), 100);
  expect_one_line_error([&] { fresh()->load_lora(torn); }, "adapter_model.safetensors");
  // Adapters already attached with other options.
  auto other = fresh();
  LoraOptions o4 = o;
  o4.rank = 4;
  other->add_lora(o4);
  expect_one_line_error([&] { other->load_lora(good); }, "differ");
}

TEST(Lora, MisuseIsAnError) {
  auto model = make_base(Variant::LLaDA);
  expect_one_line_error([&] { model->merge_lora(); }, "no LoRA");
  expect_one_line_error([&] { model->save_lora("/tmp/x", ""); }, "no LoRA");
  LoraOptions bad;
  bad.rank = 0;
  expect_one_line_error([&] { model->add_lora(bad); }, "rank");
  bad.rank = 2;
  bad.targets = {LoraTarget::AttnQ, LoraTarget::AttnQ};
  expect_one_line_error([&] { model->add_lora(bad); }, "twice");
  model->add_lora(LoraOptions{});
  expect_one_line_error([&] { model->add_lora(LoraOptions{}); }, "already");
  expect_one_line_error([&] { model->set_device("cuda"); }, "LoRA");
  model->set_device("cpu");
}

}  // namespace
}  // namespace ruvdllm::train
