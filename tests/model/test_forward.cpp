// The forward pass against the independent float64 reference, on random-weight models of each
// architecture written by write_random_model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/model/model.h"
#include "test_util.h"
// CMake builds one program per test_*.cpp, so the shared reference is compiled into each.
#include "model/reference_model.cpp"

namespace ruvdllm {
namespace {

using testing::ReferenceModel;
using testing::RefMask;
using testing::RefOptions;

// Larger than the 0.02 of real initialisations, so attention is sharp and every component
// (RoPE order, masks, norms, routing) moves the logits far more than the bounds below.
constexpr float kInitStd = 0.25f;
// Logits are O(1) with this init. F32 and F16 weights: both sides use the same weights
// (dequantized exactly), so the difference is float32 rounding in the fast path.
constexpr double kFloatBound = 1e-3;
// Quantized weights: the reference quantizes each activation row as matmul.h specifies (Q8_0
// blocks of 32), so most logits agree to 1e-6. But float32 rounding before that quantization
// sometimes puts one value on the other side of a rounding boundary, one 8-bit step (0.4% of
// its block's largest value) away, and two layers of sharp attention amplify that: measured up
// to 0.16 over 36 model/length/seed combinations, on logits of magnitude up to about 8. A
// wrong RoPE order, mask or shift moves logits by 5 to 10.
constexpr double kQuantBound = 0.4;

enum class Variant { LLaDA, Dream, MoE, MoENorm };

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::LLaDA:
      return "llada";
    case Variant::Dream:
      return "dream";
    case Variant::MoE:
      return "moe";
    case Variant::MoENorm:
      return "moe_norm";
  }
  return "?";
}

ModelConfig variant_config(Variant v) {
  switch (v) {
    case Variant::LLaDA:
      return shape_config(Arch::LLaDA, "test");
    case Variant::Dream:
      return shape_config(Arch::Dream, "test");
    case Variant::MoE:
      return shape_config(Arch::LLaDAMoE, "test");
    case Variant::MoENorm: {
      ModelConfig c = shape_config(Arch::LLaDAMoE, "test");
      c.expert_weights_norm = true;
      return c;
    }
  }
  return {};
}

// Models are written once per program into one temporary directory.
const std::string& model_path(Variant v, TensorType type) {
  static testing::TempDir dir;
  static std::map<std::pair<int, int>, std::string> paths;
  const auto key = std::make_pair(static_cast<int>(v), static_cast<int>(type));
  auto it = paths.find(key);
  if (it != paths.end()) return it->second;
  const std::string path = dir.file(std::string(variant_name(v)) + "-" + type_name(type) + ".gguf");
  InitOptions options;
  options.type = type;
  options.seed = 42 + static_cast<uint64_t>(v);
  options.init_std = kInitStd;
  write_random_model(variant_config(v), options, path);
  return paths.emplace(key, path).first->second;
}

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(n);
  for (auto& id : t) id = dist(rng);
  return t;
}

std::vector<float> run(Model& model, const std::vector<int32_t>& tokens,
                       const ForwardOptions& options, int threads = 2) {
  ThreadPool pool(threads);
  std::vector<float> logits(tokens.size() * static_cast<size_t>(model.config().vocab_size));
  model.forward(tokens, options, logits.data(), pool);
  return logits;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

RefMask ref_mask(MaskMode m) {
  return m == MaskMode::Full     ? RefMask::Full
         : m == MaskMode::Causal ? RefMask::Causal
                                 : RefMask::BlockCausal;
}

struct ForwardCase {
  Variant variant;
  TensorType type;
};

class ForwardVsReference : public ::testing::TestWithParam<ForwardCase> {};

TEST_P(ForwardVsReference, MatchesFloat64ReferenceAtSeveralLengths) {
  const auto [variant, type] = GetParam();
  const std::string& path = model_path(variant, type);
  auto model = Model::load(path);
  const ReferenceModel reference(path);
  const double bound = type_traits(type).quantized ? kQuantBound : kFloatBound;
  for (size_t n : {1u, 7u, 33u}) {
    const auto tokens = random_tokens(n, model->config().vocab_size, 100 + n);
    const auto logits = run(*model, tokens, ForwardOptions{});
    const auto expected = reference.forward(tokens, RefOptions{});
    ASSERT_GT(max_abs(expected), 0.3) << "degenerate logits";
    EXPECT_LE(max_abs_diff(logits, expected), bound)
        << variant_name(variant) << " " << type_name(type) << " n=" << n;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllArchitectures, ForwardVsReference,
    ::testing::Values(
        ForwardCase{Variant::LLaDA, TensorType::F32}, ForwardCase{Variant::LLaDA, TensorType::F16},
        ForwardCase{Variant::LLaDA, TensorType::Q8_0}, ForwardCase{Variant::Dream, TensorType::F32},
        ForwardCase{Variant::Dream, TensorType::F16}, ForwardCase{Variant::Dream, TensorType::Q8_0},
        ForwardCase{Variant::MoE, TensorType::F32}, ForwardCase{Variant::MoE, TensorType::F16},
        ForwardCase{Variant::MoE, TensorType::Q8_0}, ForwardCase{Variant::MoENorm, TensorType::F32},
        ForwardCase{Variant::LLaDA, TensorType::Q4_0}),
    [](const auto& info) {
      return std::string(variant_name(info.param.variant)) + "_" + type_name(info.param.type);
    });

TEST(Forward, ConfigOfEachArchitectureIsReadBack) {
  auto llada = Model::load(model_path(Variant::LLaDA, TensorType::F32));
  EXPECT_EQ(llada->config().arch, Arch::LLaDA);
  EXPECT_EQ(llada->config().rope_order, RopeOrder::Normal);
  EXPECT_FALSE(llada->config().shift_logits);
  EXPECT_EQ(llada->config().mask_token_id, 299);
  EXPECT_EQ(llada->vocab().tokens.at(299), "<|mdm_mask|>");
  EXPECT_EQ(llada->format(), "gguf");
  auto dream = Model::load(model_path(Variant::Dream, TensorType::F32));
  EXPECT_EQ(dream->config().rope_order, RopeOrder::NeoX);
  EXPECT_TRUE(dream->config().shift_logits);
  EXPECT_TRUE(dream->config().qkv_bias);
  EXPECT_EQ(dream->config().n_head_kv, 2);
  auto moe = Model::load(model_path(Variant::MoE, TensorType::Q8_0));
  EXPECT_TRUE(moe->config().qk_norm);
  EXPECT_EQ(moe->config().n_expert, 4);
  EXPECT_EQ(moe->config().n_expert_used, 2);
  EXPECT_EQ(moe->weights().layers[0].ffn_gate_inp.type, TensorType::F32);
  EXPECT_EQ(moe->weights().layers[0].ffn_up_exps.type, TensorType::Q8_0);
  EXPECT_GT(moe->weight_bytes(), 0u);
}

// Each deliberate mistake in the reference must move the logits far past the bound, or the
// comparison above would not notice that mistake in the fast path either.
TEST(Forward, ComparisonDetectsEachComponent) {
  struct Mistake {
    Variant variant;
    RefOptions options;
    const char* what;
  };
  std::vector<Mistake> mistakes;
  RefOptions flip;
  flip.flip_rope_order = true;
  RefOptions no_shift;
  no_shift.skip_shift = true;
  RefOptions no_qk_norm;
  no_qk_norm.skip_qk_norm = true;
  RefOptions no_renorm;
  no_renorm.skip_expert_renorm = true;
  RefOptions causal;
  causal.mask = RefMask::Causal;
  mistakes.push_back({Variant::LLaDA, flip, "RoPE order (llada)"});
  mistakes.push_back({Variant::Dream, flip, "RoPE order (dream)"});
  mistakes.push_back({Variant::MoE, flip, "RoPE order (llada-moe)"});
  mistakes.push_back({Variant::Dream, no_shift, "logit shift"});
  mistakes.push_back({Variant::MoE, no_qk_norm, "QK norm"});
  mistakes.push_back({Variant::MoENorm, no_renorm, "expert weight renormalisation"});
  mistakes.push_back({Variant::LLaDA, causal, "mask"});
  for (const Mistake& m : mistakes) {
    const std::string& path = model_path(m.variant, TensorType::F32);
    auto model = Model::load(path);
    const auto tokens = random_tokens(17, model->config().vocab_size, 5);
    const auto logits = run(*model, tokens, ForwardOptions{});
    EXPECT_GT(max_abs_diff(logits, ReferenceModel(path).forward(tokens, m.options)),
              20 * kFloatBound)
        << m.what;
  }
}

TEST(Forward, CausalAndBlockCausalMasksMatchReference) {
  for (Variant v : {Variant::LLaDA, Variant::Dream, Variant::MoE}) {
    const std::string& path = model_path(v, TensorType::F32);
    auto model = Model::load(path);
    const ReferenceModel reference(path);
    const auto tokens = random_tokens(33, model->config().vocab_size, 9);
    for (MaskMode mask : {MaskMode::Causal, MaskMode::BlockCausal}) {
      ForwardOptions options;
      options.mask = mask;
      options.block_len = 4;
      RefOptions ref;
      ref.mask = ref_mask(mask);
      ref.block_len = 4;
      const auto logits = run(*model, tokens, options);
      EXPECT_LE(max_abs_diff(logits, reference.forward(tokens, ref)), kFloatBound)
          << variant_name(v) << " mask " << static_cast<int>(mask);
      // And the mask matters: bidirectional logits differ.
      EXPECT_GT(max_abs_diff(logits, reference.forward(tokens, RefOptions{})), 20 * kFloatBound);
    }
  }
}

TEST(Forward, CausalArchitecturesMatchReference) {
  testing::TempDir dir;
  for (Arch arch : {Arch::Llama, Arch::Qwen2}) {
    const std::string path = dir.file(std::string(arch_name(arch)) + ".gguf");
    InitOptions o;
    o.type = TensorType::F32;
    o.init_std = kInitStd;
    write_random_model(shape_config(arch, "test"), o, path);
    auto model = Model::load(path);
    EXPECT_TRUE(model->config().causal);
    EXPECT_FALSE(model->config().shift_logits);
    EXPECT_EQ(model->config().rope_order,
              arch == Arch::Llama ? RopeOrder::Normal : RopeOrder::NeoX);
    ForwardOptions options;
    options.mask = MaskMode::Causal;
    RefOptions ref;
    ref.mask = RefMask::Causal;
    const auto tokens = random_tokens(19, model->config().vocab_size, 8);
    EXPECT_LE(max_abs_diff(run(*model, tokens, options), ReferenceModel(path).forward(tokens, ref)),
              kFloatBound)
        << arch_name(arch);
  }
}

TEST(Forward, TwoSequencesEqualTwoSinglePasses) {
  for (Variant v : {Variant::LLaDA, Variant::Dream, Variant::MoE}) {
    const std::string& path = model_path(v, TensorType::F32);
    auto model = Model::load(path);
    const int64_t V = model->config().vocab_size;
    const auto a = random_tokens(7, V, 1);
    const auto b = random_tokens(7, V, 2);
    std::vector<int32_t> both = a;
    both.insert(both.end(), b.begin(), b.end());
    ForwardOptions two;
    two.n_seq = 2;
    const auto joint = run(*model, both, two);
    auto separate = run(*model, a, ForwardOptions{});
    const auto second = run(*model, b, ForwardOptions{});
    separate.insert(separate.end(), second.begin(), second.end());
    const testing::Diff d = testing::compare(joint.data(), separate.data(), joint.size());
    EXPECT_LE(d.max_abs, 1e-5) << variant_name(v);
    RefOptions ref;
    ref.n_seq = 2;
    EXPECT_LE(max_abs_diff(joint, ReferenceModel(path).forward(both, ref)), kFloatBound);
  }
}

TEST(Forward, CachedPrefixGivesTheFullPassSuffixRows) {
  for (Variant v : {Variant::LLaDA, Variant::Dream, Variant::MoE}) {
    auto model = Model::load(model_path(v, TensorType::F32));
    const int64_t V = model->config().vocab_size;
    const auto tokens = random_tokens(20, V, 77);
    const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + 12);
    const std::vector<int32_t> suffix(tokens.begin() + 12, tokens.end());
    for (MaskMode mask : {MaskMode::Causal, MaskMode::BlockCausal}) {
      ForwardOptions options;
      options.mask = mask;
      options.block_len = 4;  // the prefix ends on a block boundary
      const auto full = run(*model, tokens, options);

      KVCache cache;
      ForwardOptions fill = options;
      fill.cache = &cache;
      fill.append_to_cache = true;
      const auto prefix_logits = run(*model, prefix, fill);
      ASSERT_EQ(cache.n_tokens, 12);
      ASSERT_EQ(cache.k.size(), static_cast<size_t>(model->config().n_layer));
      const std::vector<float> k_before = cache.k[1];

      ForwardOptions use = options;
      use.cache = &cache;
      for (int repeat = 0; repeat < 2;
           ++repeat) {  // a non-appending pass leaves the cache as it was
        const auto suffix_logits = run(*model, suffix, use);
        const size_t offset = prefix.size() * static_cast<size_t>(V);
        const testing::Diff d =
            testing::compare(suffix_logits.data(), full.data() + offset, suffix_logits.size());
        EXPECT_LE(d.max_abs, 1e-4)
            << variant_name(v) << " mask " << static_cast<int>(mask) << " repeat " << repeat;
        EXPECT_EQ(cache.n_tokens, 12);
        EXPECT_EQ(cache.k[1], k_before);
      }
      const testing::Diff d =
          testing::compare(prefix_logits.data(), full.data(), prefix_logits.size());
      EXPECT_LE(d.max_abs, 1e-4);

      // Appending the suffix too, then one more token, still follows the full pass.
      use.append_to_cache = true;
      run(*model, suffix, use);
      EXPECT_EQ(cache.n_tokens, 20);
      std::vector<int32_t> longer = tokens;
      longer.push_back(3);
      const auto full_longer = run(*model, longer, options);
      const auto last = run(*model, {3}, use);
      const testing::Diff dl =
          testing::compare(last.data(), full_longer.data() + 20 * V, static_cast<size_t>(V));
      EXPECT_LE(dl.max_abs, 1e-4) << variant_name(v);
      cache.clear();
      EXPECT_EQ(cache.n_tokens, 0);
      EXPECT_TRUE(cache.k.empty());
    }
  }
}

// A pass whose first rows extend the cache (extend_rows) gives what two passes give: those rows
// appended on their own, then the rest over the grown cache. Logits, keys, values and the last
// hidden state agree (exactly with quantized weights, whose products sum each row alone).
TEST(Forward, ExtendRowsMatchAnAppendingPassThenTheRest) {
  for (Variant v : {Variant::LLaDA, Variant::Dream, Variant::MoE}) {
    for (TensorType type : {TensorType::F32, TensorType::Q8_0}) {
      auto model = Model::load(model_path(v, type));
      const int64_t V = model->config().vocab_size;
      const auto tokens = random_tokens(20, V, 5);
      const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + 6);
      const std::vector<int32_t> extension(tokens.begin() + 6, tokens.begin() + 14);
      const std::vector<int32_t> block(tokens.begin() + 14, tokens.end());
      const std::vector<int32_t> both(tokens.begin() + 6, tokens.end());
      const float bound = type_traits(type).quantized ? 0.0f : 1e-5f;
      for (MaskMode mask : {MaskMode::Full, MaskMode::Causal}) {
        const std::string what = std::string(variant_name(v)) + " " + type_name(type) + " mask " +
                                 std::to_string(static_cast<int>(mask));
        ForwardOptions options;
        options.mask = mask;
        auto cache_of_prefix = [&](KVCache* cache) {
          ForwardOptions fill = options;
          fill.cache = cache;
          fill.append_to_cache = true;
          run(*model, prefix, fill);
        };
        KVCache two_passes, one_pass;
        cache_of_prefix(&two_passes);
        cache_of_prefix(&one_pass);

        ForwardOptions append = options;
        append.cache = &two_passes;
        append.append_to_cache = true;
        std::vector<float> want = run(*model, extension, append);
        ForwardOptions use = options;
        use.cache = &two_passes;
        const auto rest = run(*model, block, use);
        want.insert(want.end(), rest.begin(), rest.end());

        ForwardOptions extend = options;
        extend.cache = &one_pass;
        extend.extend_rows = static_cast<int64_t>(extension.size());
        const auto got = run(*model, both, extend);
        ASSERT_EQ(got.size(), want.size());
        EXPECT_LE(testing::compare(got.data(), want.data(), got.size()).max_abs, bound) << what;
        ASSERT_EQ(one_pass.n_tokens, 14) << what;
        for (size_t il = 0; il < one_pass.k.size(); ++il) {
          ASSERT_EQ(one_pass.k[il].size(), two_passes.k[il].size()) << what;
          EXPECT_LE(testing::compare(one_pass.k[il].data(), two_passes.k[il].data(),
                                     one_pass.k[il].size())
                        .max_abs,
                    bound)
              << what << " layer " << il;
          EXPECT_LE(testing::compare(one_pass.v[il].data(), two_passes.v[il].data(),
                                     one_pass.v[il].size())
                        .max_abs,
                    bound)
              << what << " layer " << il;
        }
        ASSERT_EQ(one_pass.last_hidden.size(), two_passes.last_hidden.size());
        EXPECT_LE(testing::compare(one_pass.last_hidden.data(), two_passes.last_hidden.data(),
                                   one_pass.last_hidden.size())
                      .max_abs,
                  bound)
            << what;

        // Extending by every row is appending them all.
        KVCache all_rows;
        cache_of_prefix(&all_rows);
        extend.cache = &all_rows;
        extend.extend_rows = static_cast<int64_t>(both.size());
        run(*model, both, extend);
        EXPECT_EQ(all_rows.n_tokens, 20) << what;
      }
    }
  }
}

TEST(Forward, BadExtendRowsThrowAndLeaveTheCache) {
  auto model = Model::load(model_path(Variant::LLaDA, TensorType::F32));
  const auto tokens = random_tokens(8, model->config().vocab_size, 9);
  KVCache cache;
  ForwardOptions fill;
  fill.cache = &cache;
  fill.append_to_cache = true;
  run(*model, tokens, fill);
  const std::vector<float> k_before = cache.k[0];
  auto expect_error = [&](ForwardOptions o, const std::string& fragment) {
    try {
      run(*model, tokens, o);
      ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_EQ(cache.n_tokens, 8);
    EXPECT_EQ(cache.k[0], k_before);
  };
  ForwardOptions o;
  o.cache = &cache;
  o.extend_rows = 9;
  expect_error(o, "extend_rows 9 is outside 0..8");
  o.extend_rows = -1;
  expect_error(o, "extend_rows -1 is outside");
  o.extend_rows = 2;
  o.append_to_cache = true;
  expect_error(o, "set one");
  o.append_to_cache = false;
  o.cache = nullptr;
  expect_error(o, "needs a KV cache");
}

// Asking for some rows' logits gives those rows of the full pass, for plain, shifted (Dream),
// two-sequence and cached passes: bit for bit with quantized weights (the matmul quantizes and
// sums each activation row alone), within f32 rounding with float weights (OpenBLAS may pick
// another kernel for fewer rows). An empty list writes nothing.
TEST(Forward, LogitRowsGiveThoseRowsOfTheFullPass) {
  constexpr float kUntouched = -12345.0f;
  const auto expect_same_row = [](const float* got, const float* want, size_t n, TensorType type) {
    if (type_traits(type).quantized) {
      EXPECT_EQ(std::memcmp(got, want, n * sizeof(float)), 0) << type_name(type);
    } else {
      EXPECT_LE(testing::compare(got, want, n).max_abs, 1e-5) << type_name(type);
    }
  };
  for (Variant v : {Variant::LLaDA, Variant::Dream, Variant::MoE}) {
    for (TensorType type : {TensorType::F32, TensorType::Q8_0}) {
      auto model = Model::load(model_path(v, type));
      const auto V = static_cast<size_t>(model->config().vocab_size);
      const auto tokens = random_tokens(26, static_cast<int64_t>(V), 21);
      ThreadPool pool(2);
      for (const int64_t n_seq : {1, 2}) {
        ForwardOptions options;
        options.n_seq = n_seq;
        const auto full = run(*model, tokens, options);
        const int64_t length = 26 / n_seq;
        for (const std::vector<int64_t>& rows :
             {std::vector<int64_t>{0}, std::vector<int64_t>{3, 4, 5, 9},
              std::vector<int64_t>{length - 1}, std::vector<int64_t>{}}) {
          ForwardOptions some = options;
          some.logit_rows = rows;
          std::vector<float> logits(full.size(), kUntouched);
          model->forward(tokens, some, logits.data(), pool);
          for (int64_t s = 0; s < n_seq; ++s) {
            for (int64_t r = 0; r < length; ++r) {
              const size_t at = static_cast<size_t>(s * length + r) * V;
              const bool wanted = std::find(rows.begin(), rows.end(), r) != rows.end();
              if (wanted) expect_same_row(logits.data() + at, full.data() + at, V, type);
              if (rows.empty()) {
                EXPECT_EQ(logits[at], kUntouched) << "row " << r << " was written";
              }
            }
          }
        }
      }
      // With a cache: the rows of a block that follows a cached prefix.
      KVCache cache;
      ForwardOptions fill;
      fill.cache = &cache;
      fill.append_to_cache = true;
      fill.logit_rows = std::span<const int64_t>{};  // a pass that only fills the cache
      std::vector<float> none(16 * V, kUntouched);
      model->forward(std::span<const int32_t>(tokens).first(16), fill, none.data(), pool);
      EXPECT_EQ(std::count(none.begin(), none.end(), kUntouched),
                static_cast<ptrdiff_t>(none.size()));
      ForwardOptions use;
      use.cache = &cache;
      const std::vector<int32_t> block(tokens.begin() + 16, tokens.end());
      const auto all_rows = run(*model, block, use);
      const std::vector<int64_t> rows{1, 2, 7};
      use.logit_rows = rows;
      std::vector<float> some(all_rows.size(), kUntouched);
      model->forward(block, use, some.data(), pool);
      for (const int64_t r : rows) {
        const size_t at = static_cast<size_t>(r) * V;
        expect_same_row(some.data() + at, all_rows.data() + at, V, type);
      }
    }
  }
}

TEST(Forward, ThreadCountDoesNotChangeLogits) {
  for (Variant v : {Variant::LLaDA, Variant::Dream, Variant::MoE}) {
    for (TensorType type : {TensorType::F32, TensorType::Q8_0}) {
      auto model = Model::load(model_path(v, type));
      const auto tokens = random_tokens(33, model->config().vocab_size, 11);
      const auto one = run(*model, tokens, ForwardOptions{}, 1);
      const auto two = run(*model, tokens, ForwardOptions{}, 2);
      const auto three = run(*model, tokens, ForwardOptions{}, 3);
      EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0)
          << variant_name(v);
      EXPECT_EQ(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)), 0)
          << variant_name(v);
    }
  }
}

TEST(Forward, ScratchIsReusedAcrossLengths) {
  // Long pass, then a short one, then long again: buffers sized on first use must not leak
  // stale rows into a later call.
  auto model = Model::load(model_path(Variant::Dream, TensorType::F32));
  const int64_t V = model->config().vocab_size;
  const auto long_tokens = random_tokens(33, V, 3);
  const auto short_tokens = random_tokens(5, V, 4);
  const auto first = run(*model, long_tokens, ForwardOptions{});
  const auto short_logits = run(*model, short_tokens, ForwardOptions{});
  const auto again = run(*model, long_tokens, ForwardOptions{});
  EXPECT_EQ(first, again);
  const ReferenceModel reference(model_path(Variant::Dream, TensorType::F32));
  EXPECT_LE(max_abs_diff(short_logits, reference.forward(short_tokens, RefOptions{})), kFloatBound);
}

TEST(Forward, BadRequestsThrow) {
  auto model = Model::load(model_path(Variant::LLaDA, TensorType::F32));
  ThreadPool pool(1);
  const int64_t V = model->config().vocab_size;
  std::vector<float> logits(64 * static_cast<size_t>(V));
  auto forward = [&](std::vector<int32_t> tokens, ForwardOptions options) {
    model->forward(tokens, options, logits.data(), pool);
  };
  EXPECT_THROW(forward({1, static_cast<int32_t>(V)}, {}), Error);
  EXPECT_THROW(forward({-1}, {}), Error);
  EXPECT_THROW(forward({}, {}), Error);
  ForwardOptions two;
  two.n_seq = 2;
  EXPECT_THROW(forward({1, 2, 3}, two), Error);
  ForwardOptions block;
  block.mask = MaskMode::BlockCausal;
  EXPECT_THROW(forward({1, 2}, block), Error);
  KVCache cache;
  ForwardOptions cached = two;
  cached.cache = &cache;
  EXPECT_THROW(forward({1, 2}, cached), Error);
  KVCache bad;
  bad.n_tokens = 3;  // claims tokens it does not hold
  ForwardOptions use_bad;
  use_bad.cache = &bad;
  EXPECT_THROW(forward({1}, use_bad), Error);
  try {
    forward({1, 5000}, {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5000"), std::string::npos) << e.what();
  }
  ForwardOptions unordered;
  const std::vector<int64_t> backwards{2, 1};
  unordered.logit_rows = backwards;
  EXPECT_THROW(forward({1, 2, 3}, unordered), Error);
  const std::vector<int64_t> past_the_end{3};
  unordered.logit_rows = past_the_end;
  EXPECT_THROW(forward({1, 2, 3}, unordered), Error);
  std::vector<float> big(600 * static_cast<size_t>(V));
  std::vector<int32_t> too_long(600, 1);  // context is 512
  EXPECT_THROW(model->forward(too_long, {}, big.data(), pool), Error);
}

TEST(Init, SameSeedGivesTheSameFile) {
  testing::TempDir dir;
  auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  const ModelConfig c = shape_config(Arch::LLaDA, "test");
  InitOptions o;
  o.type = TensorType::Q8_0;
  o.seed = 7;
  write_random_model(c, o, dir.file("a.gguf"));
  write_random_model(c, o, dir.file("b.gguf"));
  o.seed = 8;
  write_random_model(c, o, dir.file("c.gguf"));
  EXPECT_EQ(bytes(dir.file("a.gguf")), bytes(dir.file("b.gguf")));
  EXPECT_NE(bytes(dir.file("a.gguf")), bytes(dir.file("c.gguf")));
}

TEST(Init, NamedShapes) {
  const ModelConfig m160 = shape_config(Arch::LLaDA, "160m");
  EXPECT_EQ(m160.n_embd, 768);
  EXPECT_EQ(m160.vocab_size, 50258);
  EXPECT_EQ(m160.mask_token_id, 50257);
  const ModelConfig b8 = shape_config(Arch::LLaDA, "8b");
  EXPECT_EQ(b8.n_ff, 12288);
  EXPECT_EQ(b8.mask_token_id, 126336);
  const ModelConfig d1 = shape_config(Arch::Dream, "1b");
  EXPECT_EQ(d1.n_head_kv, 4);
  EXPECT_TRUE(d1.qkv_bias);
  EXPECT_TRUE(d1.shift_logits);
  EXPECT_NO_THROW(m160.validate());
  EXPECT_NO_THROW(b8.validate());
  EXPECT_THROW(shape_config(Arch::LLaDA, "7t"), Error);
  EXPECT_THROW(shape_config(Arch::LLaDAMoE, "8b"), Error);
  // The 160m model's parameter count is what the machine notes quote (about 162M).
  const double params = static_cast<double>(m160.vocab_size * m160.n_embd * 2) +
                        static_cast<double>(m160.n_layer) * (4.0 * 768 * 768 + 3.0 * 768 * 2048);
  EXPECT_NEAR(params / 1e6, 162, 2);
}

// "default" is the shipped model's shape, field for field.
TEST(Init, DefaultShapeIsTheShippedModel) {
  const ModelConfig want =
      Model::load(std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf")->config();
  const ModelConfig got = shape_config(Arch::LLaDA, "default");
  EXPECT_EQ(got.vocab_size, want.vocab_size);
  EXPECT_EQ(got.n_embd, want.n_embd);
  EXPECT_EQ(got.n_layer, want.n_layer);
  EXPECT_EQ(got.n_head, want.n_head);
  EXPECT_EQ(got.n_head_kv, want.n_head_kv);
  EXPECT_EQ(got.head_dim, want.head_dim);
  EXPECT_EQ(got.n_ff, want.n_ff);
  EXPECT_EQ(got.context_length, want.context_length);
  EXPECT_EQ(got.rope_base, want.rope_base);
  EXPECT_EQ(got.mask_token_id, want.mask_token_id);
  EXPECT_EQ(got.eos_token_id, want.eos_token_id);
}

TEST(Init, ActivationBytesCoverScratchAndLogits) {
  auto model = Model::load(model_path(Variant::MoE, TensorType::F32));
  const ModelConfig& c = model->config();
  EXPECT_GE(model->activation_bytes(256),
            256u * static_cast<size_t>(c.vocab_size + 3 * c.n_embd) * sizeof(float));
  EXPECT_LT(model->activation_bytes(16), model->activation_bytes(256));
}

}  // namespace
}  // namespace ruvdllm
