// The generation loop end to end, on a fake Model whose logits are a deterministic function of
// the canvas.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/diffusion/generate.h"
#include "ruvdllm/diffusion/rng.h"

namespace ruvdllm {
namespace {

// Fills the logits row of `position` given that position's sequence.
using LogitsFn =
    std::function<void(std::span<const int32_t> sequence, int64_t position, float* row)>;

class FakeModel final : public Model {
 public:
  FakeModel(int64_t vocab, int64_t mask_id, int64_t eos_id, LogitsFn fn, int64_t context = 512)
      : fn_(std::move(fn)) {
    config_.vocab_size = vocab;
    config_.mask_token_id = mask_id;
    config_.eos_token_id = eos_id;
    config_.context_length = context;
  }
  const ModelConfig& config() const override { return config_; }
  const ModelWeights& weights() const override { return weights_; }
  const VocabInfo& vocab() const override { return vocab_; }
  const std::string& format() const override { return format_; }
  std::vector<TensorView> all_tensors() const override { return {}; }
  size_t weight_bytes() const override { return 0; }
  size_t activation_bytes(int64_t) const override { return 0; }

  void forward(std::span<const int32_t> tokens, const ForwardOptions& options, float* logits,
               ThreadPool&) override {
    ++calls;
    last_n_seq = options.n_seq;
    last_tokens.assign(tokens.begin(), tokens.end());
    forward_lengths.push_back(static_cast<int64_t>(tokens.size()));
    if (options.cache) {
      // The cache is modelled by remembering its tokens: this pass sees them, then itself.
      if (options.cache->n_tokens == 0) cached_.clear();
      EXPECT_EQ(options.cache->n_tokens, static_cast<int64_t>(cached_.size()));
      std::vector<int32_t> visible = cached_;
      visible.insert(visible.end(), tokens.begin(), tokens.end());
      const auto offset = static_cast<int64_t>(cached_.size());
      const auto n = static_cast<int64_t>(tokens.size());
      const int64_t kept = options.append_to_cache ? n : options.extend_rows;
      // Rows that extend the cache see it and each other only.
      const std::span<const int32_t> extension =
          std::span<const int32_t>(visible).first(static_cast<size_t>(offset + kept));
      for (int64_t i = 0; i < n; ++i) {
        fn_(i < kept ? extension : std::span<const int32_t>(visible), offset + i,
            logits + i * config_.vocab_size);
      }
      cached_.assign(extension.begin(), extension.end());
      options.cache->n_tokens = static_cast<int64_t>(cached_.size());
      return;
    }
    const auto length = static_cast<int64_t>(tokens.size()) / options.n_seq;
    for (int64_t s = 0; s < options.n_seq; ++s) {
      const auto sequence =
          tokens.subspan(static_cast<size_t>(s * length), static_cast<size_t>(length));
      for (int64_t i = 0; i < length; ++i)
        fn_(sequence, i, logits + (s * length + i) * config_.vocab_size);
    }
  }

  ModelConfig config_;
  int calls = 0;
  int64_t last_n_seq = 0;
  std::vector<int32_t> last_tokens;
  std::vector<int64_t> forward_lengths;

 private:
  LogitsFn fn_;
  std::vector<int32_t> cached_;
  ModelWeights weights_;
  VocabInfo vocab_;
  std::string format_ = "fake";
};

// Pseudo-random logits that depend on the position and on every committed token, so a token
// choice changes what later steps see. The mask token gets no special treatment: the sampler
// must never commit it.
LogitsFn hashed_logits(int64_t vocab) {
  return [vocab](std::span<const int32_t> sequence, int64_t position, float* row) {
    uint64_t context = 0;
    for (int32_t t : sequence) context = mix64(context ^ static_cast<uint64_t>(t));
    for (int64_t v = 0; v < vocab; ++v) {
      const uint64_t h = mix64(
          context ^ mix64(static_cast<uint64_t>(position) * 1000003 + static_cast<uint64_t>(v)));
      row[v] = static_cast<float>(static_cast<double>(h >> 11) * 0x1p-53 * 6.0 - 3.0);
    }
  };
}

struct Recorded {
  std::vector<std::vector<int64_t>> positions;
  std::vector<int64_t> blocks;
  std::vector<std::vector<int64_t>> eos_filled;
};

StepCallback recorder(Recorded* r) {
  return [r](const StepInfo& info) {
    r->positions.emplace_back(info.positions.begin(), info.positions.end());
    r->blocks.push_back(info.block);
    r->eos_filled.emplace_back(info.eos_filled.begin(), info.eos_filled.end());
    EXPECT_EQ(info.positions.size(), info.confidences.size());
    for (float c : info.confidences) {
      EXPECT_GT(c, 0.0f);
      EXPECT_LE(c, 1.0f);
    }
    return true;
  };
}

constexpr int32_t kMask = 31;
const std::vector<int32_t> kPrompt = {3, 1, 4, 1, 5};

TEST(Generate, EveryStepCountAddsUpAndTheCanvasEndsUnmasked) {
  const int64_t vocab = 32;
  FakeModel model(vocab, kMask, -1, hashed_logits(vocab));
  ThreadPool pool(1);
  Generator generator(model, pool);
  for (auto rule : {Unmasking::Confidence, Unmasking::Margin, Unmasking::Entropy, Unmasking::Random,
                    Unmasking::Origin}) {
    for (auto schedule : {NoiseSchedule::Linear, NoiseSchedule::Cosine, NoiseSchedule::Sqrt}) {
      for (int64_t gen : {1, 5, 16, 33}) {
        for (int64_t block_len : {0, 1, 4, 7, 16, 40}) {
          for (int64_t steps : {1, 2, 3, 8, 17, 64}) {
            GenerationOptions o;
            o.gen_len = gen;
            o.block_len = block_len;
            o.steps = steps;
            o.algorithm = rule;
            o.schedule = schedule;
            o.temperature = rule == Unmasking::Random ? 0.0f : 0.9f;
            o.seed = static_cast<uint64_t>(gen * 100 + steps);
            Recorded rec;
            const auto result = generator.run(kPrompt, o, recorder(&rec));
            const std::string what = std::string(unmasking_name(rule)) + " " +
                                     schedule_name(schedule) + " gen=" + std::to_string(gen) +
                                     " block=" + std::to_string(block_len) +
                                     " steps=" + std::to_string(steps);
            ASSERT_EQ(result.tokens.size(), kPrompt.size() + static_cast<size_t>(gen)) << what;
            EXPECT_TRUE(std::equal(kPrompt.begin(), kPrompt.end(), result.tokens.begin())) << what;
            EXPECT_EQ(std::count(result.tokens.begin(), result.tokens.end(), kMask), 0) << what;
            std::vector<int> hits(result.tokens.size(), 0);
            size_t committed = 0;
            for (const auto& step : rec.positions) {
              committed += step.size();
              for (int64_t p : step) hits[static_cast<size_t>(p)]++;
            }
            EXPECT_EQ(committed, static_cast<size_t>(gen)) << what;
            for (size_t p = kPrompt.size(); p < hits.size(); ++p)
              EXPECT_EQ(hits[p], 1) << what << " position " << p;
            const int64_t n_blocks = block_len > 0 ? (gen + block_len - 1) / block_len : 1;
            EXPECT_EQ(result.steps_planned, std::clamp(steps, n_blocks, gen)) << what;
            EXPECT_LE(result.steps_run, result.steps_planned) << what;
            if (rule != Unmasking::Origin) {
              EXPECT_EQ(result.steps_run, result.steps_planned) << what;
            }
            EXPECT_EQ(model.last_n_seq, 1);
            // Blocks finish in order: a step only touches its own block.
            for (size_t s = 0; s < rec.positions.size(); ++s) {
              const int64_t begin = 5 + rec.blocks[s] * (block_len > 0 ? block_len : gen);
              for (int64_t p : rec.positions[s]) {
                EXPECT_GE(p, begin) << what;
                EXPECT_LT(p, begin + (block_len > 0 ? block_len : gen)) << what;
              }
              if (s > 0) {
                EXPECT_GE(rec.blocks[s], rec.blocks[s - 1]) << what;
              }
            }
          }
        }
      }
    }
  }
}

TEST(Generate, CountsFollowLladaInBlocksAndDreamWithout) {
  const int64_t vocab = 32;
  FakeModel model(vocab, kMask, -1, hashed_logits(vocab));
  ThreadPool pool(1);
  GenerationOptions o;
  o.gen_len = 12;
  o.block_len = 4;
  o.steps = 6;  // 2 per block, 2 tokens per step
  Recorded rec;
  generate(model, kPrompt, o, pool, recorder(&rec));
  ASSERT_EQ(rec.positions.size(), 6u);
  for (const auto& step : rec.positions) EXPECT_EQ(step.size(), 2u);
  EXPECT_EQ(rec.blocks, (std::vector<int64_t>{0, 0, 1, 1, 2, 2}));

  // Dream: 10 masks, 4 steps, eps 0 commit 2, 2, 3, 3.
  o.gen_len = 10;
  o.block_len = 0;
  o.steps = 4;
  o.eps = 0;
  rec = {};
  generate(model, kPrompt, o, pool, recorder(&rec));
  ASSERT_EQ(rec.positions.size(), 4u);
  const size_t want[] = {2, 2, 3, 3};
  for (size_t s = 0; s < 4; ++s) EXPECT_EQ(rec.positions[s].size(), want[s]);
}

TEST(Generate, InfillingFillsOnlyMasksAndUsesTextOnBothSides) {
  // The model copies the token to the right of a position when it is text (surely), else
  // weakly prefers token 7: spans therefore fill right to left with the text that follows them.
  const int64_t vocab = 32;
  FakeModel model(vocab, kMask, -1, [](std::span<const int32_t> seq, int64_t i, float* row) {
    std::fill(row, row + 32, 0.0f);
    const bool right_is_text =
        i + 1 < static_cast<int64_t>(seq.size()) && seq[static_cast<size_t>(i + 1)] != kMask;
    if (right_is_text) {
      row[seq[static_cast<size_t>(i + 1)]] = 8.0f;
    } else {
      row[7] = 1.0f;
    }
  });
  ThreadPool pool(2);
  const std::vector<int32_t> prompt = {1, 2, kMask, kMask, kMask, 3, 4, kMask, kMask, 9, 10};
  for (int64_t gen : {0, 3}) {
    GenerationOptions o;
    o.gen_len = gen;
    o.steps = 16;      // clamped to the masks: one token per step, the surest first
    o.block_len = 64;  // one block with LLaDA's even split
    Recorded rec;
    const auto result = generate(model, prompt, o, pool, recorder(&rec));
    for (size_t i = 0; i < prompt.size(); ++i) {
      if (prompt[i] != kMask) {
        EXPECT_EQ(result.tokens[i], prompt[i]) << "text at " << i << " changed";
      }
    }
    for (const auto& step : rec.positions) {
      for (int64_t p : step) {
        EXPECT_TRUE(p >= static_cast<int64_t>(prompt.size()) ||
                    prompt[static_cast<size_t>(p)] == kMask)
            << p;
      }
    }
    const std::vector<int32_t> want_prompt = {1, 2, 3, 3, 3, 3, 4, 9, 9, 9, 10};
    EXPECT_EQ(std::vector<int32_t>(result.tokens.begin(), result.tokens.begin() + 11), want_prompt);
    EXPECT_EQ(std::count(result.tokens.begin(), result.tokens.end(), kMask), 0);
    EXPECT_EQ(result.answer().size(), static_cast<size_t>(gen));
  }
}

TEST(Generate, SameSeedSameTokensAtAnyThreadCountAndSeedsDiffer) {
  const int64_t vocab = 500;
  FakeModel model(vocab, 499, -1, hashed_logits(vocab));
  GenerationOptions o;
  o.gen_len = 24;
  o.steps = 8;
  o.block_len = 8;
  o.temperature = 1.0f;
  o.top_p = 0.95f;
  o.seed = 1;
  std::vector<std::vector<int32_t>> outputs;
  for (auto rule : {Unmasking::Confidence, Unmasking::Entropy, Unmasking::Origin}) {
    o.algorithm = rule;
    o.seed = 1;
    ThreadPool one(1), two(2);
    const auto a = generate(model, kPrompt, o, one).tokens;
    const auto b = generate(model, kPrompt, o, two).tokens;
    EXPECT_EQ(a, b) << unmasking_name(rule);
    o.seed = 2;
    const auto c = generate(model, kPrompt, o, two).tokens;
    EXPECT_NE(a, c) << unmasking_name(rule);
  }
  o.gumbel = true;
  o.seed = 1;
  ThreadPool one(1), two(2);
  EXPECT_EQ(generate(model, kPrompt, o, one).tokens, generate(model, kPrompt, o, two).tokens);
}

TEST(Generate, EosFillEndsTheAnswer) {
  // Answer position 3 is EOS with p ≈ 0.99; answer position 6 is token 7 with p ≈ 0.999
  // (committed first); everything else prefers token 5 weakly.
  const int64_t vocab = 16, eos = 2, mask = 15, prompt_len = 5;
  FakeModel model(vocab, mask, eos, [&](std::span<const int32_t>, int64_t i, float* row) {
    std::fill(row, row + vocab, 0.0f);
    if (i == prompt_len + 3) {
      row[eos] = 7.0f;
    } else if (i == prompt_len + 6) {
      row[7] = 9.0f;
    } else {
      row[5] = 1.0f;
    }
  });
  ThreadPool pool(1);
  GenerationOptions o;
  o.gen_len = 8;
  o.steps = 8;
  o.block_len = 8;  // LLaDA's even split: one token per step
  Recorded rec;
  auto result = generate(model, kPrompt, o, pool, recorder(&rec));
  const std::vector<int32_t> want = {5, 5, 5, eos, eos, eos, eos, eos};
  EXPECT_EQ(std::vector<int32_t>(result.answer().begin(), result.answer().end()), want);
  ASSERT_GE(rec.positions.size(), 2u);
  EXPECT_EQ(rec.positions[0], std::vector<int64_t>{prompt_len + 6});
  EXPECT_EQ(rec.positions[1], std::vector<int64_t>{prompt_len + 3});
  // The committed token 7 at answer position 6 is overwritten too.
  EXPECT_EQ(rec.eos_filled[1],
            (std::vector<int64_t>{prompt_len + 4, prompt_len + 5, prompt_len + 6, prompt_len + 7}));
  EXPECT_EQ(result.steps_run, 5);  // 2 steps, then the 3 masks left before the EOS
  EXPECT_EQ(result.steps_planned, 8);

  o.eos_fill = false;
  result = generate(model, kPrompt, o, pool);
  const std::vector<int32_t> unfilled = {5, 5, 5, eos, 5, 5, 7, 5};
  EXPECT_EQ(std::vector<int32_t>(result.answer().begin(), result.answer().end()), unfilled);
  EXPECT_EQ(result.steps_run, 8);
}

TEST(Generate, ClassifierFreeGuidanceRunsAMaskedPromptSequence) {
  // Conditional rows prefer token 1 weakly against token 0; unconditional rows (prompt masked)
  // even less, so guidance w = 1 flips the choice to 1.
  const int64_t vocab = 8, mask = 7;
  FakeModel model(vocab, mask, -1, [&](std::span<const int32_t> seq, int64_t, float* row) {
    std::fill(row, row + vocab, -2.0f);
    const bool unconditional = seq[0] == mask;
    row[0] = 1.0f;
    row[1] = unconditional ? 0.5f : 0.9f;
  });
  ThreadPool pool(1);
  GenerationOptions o;
  o.gen_len = 4;
  o.steps = 2;
  auto plain = generate(model, kPrompt, o, pool);
  EXPECT_EQ(std::vector<int32_t>(plain.answer().begin(), plain.answer().end()),
            (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(model.last_n_seq, 1);
  o.cfg_scale = 1.0f;
  auto guided = generate(model, kPrompt, o, pool);
  EXPECT_EQ(std::vector<int32_t>(guided.answer().begin(), guided.answer().end()),
            (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(model.last_n_seq, 2);
  // Second sequence: the prompt masked, the answer as in the first.
  ASSERT_EQ(model.last_tokens.size(), 18u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(model.last_tokens[i], kPrompt[i]);
    EXPECT_EQ(model.last_tokens[9 + i], mask);
  }
  for (size_t i = 5; i < 9; ++i) EXPECT_EQ(model.last_tokens[i], model.last_tokens[9 + i]);
}

TEST(Generate, CallbackCanStopAndTimingsAreReported) {
  const int64_t vocab = 32;
  FakeModel model(vocab, kMask, -1, hashed_logits(vocab));
  ThreadPool pool(1);
  GenerationOptions o;
  o.gen_len = 16;
  o.steps = 8;
  o.block_len = 16;  // two tokens per step
  int calls = 0;
  auto result = generate(model, kPrompt, o, pool, [&](const StepInfo& info) {
    EXPECT_EQ(info.step, calls);
    EXPECT_EQ(info.total_steps, 8);
    EXPECT_EQ(info.canvas.size(), 21u);
    return ++calls < 2;
  });
  EXPECT_TRUE(result.stopped);
  EXPECT_EQ(result.steps_run, 2);
  EXPECT_EQ(std::count(result.tokens.begin(), result.tokens.end(), kMask), 12);

  result = generate(model, kPrompt, o, pool);
  EXPECT_FALSE(result.stopped);
  ASSERT_EQ(result.timings.size(), 8u);
  double forward = 0, sampling = 0;
  for (const auto& t : result.timings) {
    EXPECT_GE(t.forward_ms, 0.0);
    EXPECT_GE(t.sampling_ms, 0.0);
    forward += t.forward_ms;
    sampling += t.sampling_ms;
  }
  EXPECT_DOUBLE_EQ(result.forward_ms, forward);
  EXPECT_DOUBLE_EQ(result.sampling_ms, sampling);
}

TEST(Generate, CachedBlocksMatchAnUncachedRunOfABlockCausalModel) {
  // A block-causal model: position i sees the canvas up to the end of its own block only. Run
  // over the whole canvas or block by block over the cache, it must then give the same tokens.
  const int64_t vocab = 64, prompt_len = 5, block = 8;
  const auto hashed = hashed_logits(vocab);
  auto block_causal = [&](std::span<const int32_t> seq, int64_t i, float* row) {
    const int64_t end =
        i < prompt_len ? prompt_len : prompt_len + ((i - prompt_len) / block + 1) * block;
    hashed(seq.first(static_cast<size_t>(std::min<int64_t>(end, static_cast<int64_t>(seq.size())))),
           i, row);
  };
  FakeModel model(vocab, 63, -1, block_causal);
  ThreadPool pool(2);
  for (auto rule : {Unmasking::Confidence, Unmasking::Origin, Unmasking::Random}) {
    GenerationOptions o;
    o.gen_len = 20;  // blocks of 8, 8, 4
    o.block_len = block;
    o.steps = 10;
    o.temperature = 1.0f;
    o.algorithm = rule;
    o.seed = 11;
    const auto full = generate(model, kPrompt, o, pool);
    EXPECT_EQ(full.tokens.size(), 25u);
    o.cache_blocks = true;
    model.forward_lengths.clear();
    const auto cached = generate(model, kPrompt, o, pool);
    EXPECT_EQ(cached.tokens, full.tokens) << unmasking_name(rule);
    EXPECT_EQ(std::count(cached.tokens.begin(), cached.tokens.end(), 63), 0);
    // One pass per step: a block's first step also carries what goes into the cache before it
    // (the prompt, then the block finished before), the others the block alone.
    ASSERT_EQ(static_cast<int64_t>(model.forward_lengths.size()), cached.steps_run);
    EXPECT_EQ(model.forward_lengths.front(), prompt_len + 8);
    int64_t block_firsts = 0;
    for (size_t i = 1; i < model.forward_lengths.size(); ++i) {
      const int64_t n = model.forward_lengths[i];
      EXPECT_TRUE(n == 8 || n == 4 || n == 16 || n == 12) << n;
      block_firsts += n > 8;
    }
    EXPECT_EQ(block_firsts, 2) << "blocks of 8, 8, 4: two start after a finished block";
  }
  GenerationOptions bad;
  bad.cache_blocks = true;
  bad.cfg_scale = 1;
  EXPECT_THROW(generate(model, kPrompt, bad, pool), Error);
}

void expect_error(const std::function<void()>& fn, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Generate, BadOptionsThrowClearErrors) {
  const int64_t vocab = 32;
  FakeModel model(vocab, kMask, -1, hashed_logits(vocab), /*context=*/64);
  ThreadPool pool(1);
  auto run = [&](auto change, std::vector<int32_t> prompt = kPrompt) {
    return [&model, &pool, change, prompt] {
      GenerationOptions o;
      o.gen_len = 8;
      o.steps = 4;
      change(o);
      generate(model, prompt, o, pool);
    };
  };
  expect_error(run([](auto& o) { o.gen_len = 0; }), "gen_len");
  expect_error(run([](auto& o) { o.gen_len = -3; }), "gen_len");
  expect_error(run([](auto& o) { o.gen_len = 60; }), "context of 64");
  expect_error(run([](auto& o) { o.steps = 0; }), "steps");
  expect_error(run([](auto& o) { o.block_len = -1; }), "block_len");
  expect_error(run([](auto& o) { o.eps = 1.0; }), "eps");
  expect_error(run([](auto& o) { o.top_p = 0; }), "top_p");
  expect_error(run([](auto& o) { o.temperature = -1; }), "temperature");
  expect_error(run([](auto& o) { o.mask_id = 40; }), "mask id 40");
  expect_error(run([](auto&) {}, {1, 2, 32}), "prompt token 32 at position 2");
  expect_error(run([](auto&) {}, {-1}), "prompt token -1");
  expect_error([] { parse_unmasking("fastest"); }, "unknown unmasking algorithm 'fastest'");
  expect_error([] { parse_schedule("square"); }, "unknown schedule 'square'");
  FakeModel no_mask(vocab, -1, -1, hashed_logits(vocab));
  expect_error([&] { generate(no_mask, kPrompt, GenerationOptions{}, pool); }, "no mask token");
  // An explicit mask id makes the same model usable.
  GenerationOptions o;
  o.gen_len = 4;
  o.steps = 2;
  o.mask_id = 30;
  EXPECT_EQ(generate(no_mask, kPrompt, o, pool).steps_run, 2);
  // Infilling needs no appended answer.
  o.gen_len = 0;
  EXPECT_EQ(generate(no_mask, std::vector<int32_t>{1, 30, 2}, o, pool).tokens.size(), 3u);
}

}  // namespace
}  // namespace ruvdllm
