// SFT data: JSONL examples tokenized into prompt + response + EOS padding, the trainer's draws,
// and the prompt held clean by the objective. Chat "messages" lines: test_sft_chat.cpp.
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/objective.h"
#include "ruvdllm/train/sft_data.h"
#include "ruvdllm/train/train_config.h"
#include "test_util.h"

namespace {

using namespace ruvdllm;
using namespace ruvdllm::train;
using ruvdllm::testing::TempDir;
using ruvdllm::testing::write_file;

const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::load(std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf");
  return tok;
}
int32_t eos() { return *tokenizer().eos_id(); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(SftExample, PadsWithEosAfterTheResponse) {
  SftExample e;
  bool truncated = true;
  ASSERT_TRUE(make_sft_example({5, 6, 7}, {8, 9}, 2, 8, e, &truncated));
  EXPECT_FALSE(truncated);
  EXPECT_EQ(e.prompt_len, 3);
  EXPECT_EQ(e.tokens, (std::vector<int32_t>{5, 6, 7, 8, 9, 2, 2, 2}));
}

TEST(SftExample, ExactFitStillEndsWithEos) {
  SftExample e;
  bool truncated = false;
  ASSERT_TRUE(make_sft_example({5, 6}, {8, 9, 10}, 2, 6, e, &truncated));
  EXPECT_FALSE(truncated);
  EXPECT_EQ(e.tokens, (std::vector<int32_t>{5, 6, 8, 9, 10, 2}));
}

TEST(SftExample, TruncatesTheResponseEnd) {
  SftExample e;
  bool truncated = false;
  ASSERT_TRUE(make_sft_example({5, 6}, {8, 9, 10, 11, 12}, 2, 5, e, &truncated));
  EXPECT_TRUE(truncated);
  EXPECT_EQ(e.prompt_len, 2);
  EXPECT_EQ(e.tokens, (std::vector<int32_t>{5, 6, 8, 9, 10}));
}

TEST(SftExample, SkipsAPromptThatFillsSeqLen) {
  SftExample e;
  EXPECT_FALSE(make_sft_example({1, 2, 3, 4}, {5}, 2, 4, e, nullptr));
  EXPECT_FALSE(make_sft_example({1, 2, 3, 4, 5}, {5}, 2, 4, e, nullptr));
  EXPECT_TRUE(make_sft_example({1, 2, 3}, {5}, 2, 4, e, nullptr));
}

TEST(SftData, TokenizesPromptThenResponseThenEos) {
  TempDir dir;
  const std::string path = dir.file("a.jsonl");
  write_file(path, "{\"prompt\": \"What is two plus two?\", \"response\": \"Four.\"}\n\n"
                   "{\"prompt\": \"Name a colour.\", \"response\": \"Blue\"}\r\n");
  const SftDataset data = load_sft_jsonl(path, "qa", tokenizer(), eos(), 32);
  ASSERT_EQ(data.examples.size(), 2u);
  EXPECT_EQ(data.truncated, 0);
  EXPECT_EQ(data.skipped, 0);
  std::vector<int32_t> expected = tokenizer().encode("What is two plus two?", false);
  const auto prompt_len = static_cast<int32_t>(expected.size());
  const std::vector<int32_t> response = tokenizer().encode("Four.", false);
  expected.insert(expected.end(), response.begin(), response.end());
  expected.resize(32, eos());
  EXPECT_EQ(data.examples[0].prompt_len, prompt_len);
  EXPECT_EQ(data.examples[0].tokens, expected);
  EXPECT_EQ(data.examples[1].tokens.size(), 32u);
  EXPECT_EQ(data.examples[1].tokens.back(), eos());
}

TEST(SftData, CountsTruncatedAndSkippedExamples) {
  TempDir dir;
  const std::string path = dir.file("a.jsonl");
  const std::string long_text(400, 'x');
  write_file(path, "{\"prompt\": \"short\", \"response\": \"" + std::string(200, 'y') + " " + long_text + "\"}\n" +
                       "{\"prompt\": \"" + long_text + " a b c d e f g h i j k l m n o p\", \"response\": \"r\"}\n" +
                       "{\"prompt\": \"ok\", \"response\": \"fine\"}\n");
  const SftDataset data = load_sft_jsonl(path, "qa", tokenizer(), eos(), 16);
  EXPECT_EQ(data.examples.size(), 2u);
  EXPECT_EQ(data.truncated, 1);
  EXPECT_EQ(data.skipped, 1);
  for (const SftExample& e : data.examples) EXPECT_EQ(e.tokens.size(), 16u);
}

TEST(SftData, MalformedLinesNameFileAndLine) {
  TempDir dir;
  const std::string path = dir.file("bad.jsonl");
  const std::string good = "{\"prompt\": \"p\", \"response\": \"r\"}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good + good + "{not json\n", ":3: not valid JSON"},
      {good + "[1, 2]\n", ":2: expected a JSON object"},
      {good + "{\"prompt\": \"p\"}\n", ":2: missing \"response\""},
      {"{\"prompt\": 3, \"response\": \"r\"}\n", ":1: \"prompt\" must be a string"},
  };
  for (const auto& [text, message] : cases) {
    write_file(path, text);
    const std::string error = error_of([&] { load_sft_jsonl(path, "qa", tokenizer(), eos(), 16); });
    EXPECT_NE(error.find(path + message), std::string::npos) << error;
  }
  write_file(path, "\n\n");
  EXPECT_NE(error_of([&] { load_sft_jsonl(path, "qa", tokenizer(), eos(), 16); }).find("no usable example"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_sft_jsonl(dir.file("missing.jsonl"), "qa", tokenizer(), eos(), 16); })
                .find("missing.jsonl: cannot open"),
            std::string::npos);
}

SftDataset synthetic(int n, int64_t seq_len) {
  SftDataset d;
  d.name = "syn";
  for (int i = 0; i < n; ++i) {
    SftExample e;
    std::vector<int32_t> prompt;
    for (int k = 0; k < 3 + i % 5; ++k) prompt.push_back(10 + (i * 7 + k) % 50);
    EXPECT_TRUE(make_sft_example(prompt, {100 + i % 20, 101 + i % 20}, 2, seq_len, e, nullptr));
    d.examples.push_back(e);
  }
  return d;
}

TEST(SftSampler, DrawsAreAPureFunctionOfStepAndIndex) {
  const SftSampler a({{synthetic(40, 16), 1.0}}, 16, 7);
  const SftSampler b({{synthetic(40, 16), 1.0}}, 16, 7);
  const SftSampler c({{synthetic(40, 16), 1.0}}, 16, 8);
  std::set<const SftExample*> seen;
  int differ = 0;
  for (int64_t i = 0; i < 64; ++i) {
    EXPECT_EQ(a.pick(3, i).tokens, b.pick(3, i).tokens);
    differ += a.pick(3, i).tokens != c.pick(3, i).tokens;
    seen.insert(&a.pick(3, i));
  }
  EXPECT_GT(differ, 32);
  EXPECT_GT(seen.size(), 20u);  // draws spread over the examples
}

TEST(SftSampler, ZeroWeightDomainIsNeverDrawn) {
  SftDataset other = synthetic(5, 16);
  other.name = "other";
  for (SftExample& e : other.examples) e.tokens[0] = 999;
  const SftSampler s({{synthetic(10, 16), 1.0}, {other, 0.0}}, 16, 1);
  for (int64_t i = 0; i < 200; ++i) EXPECT_NE(s.pick(0, i).tokens[0], 999);
}

TEST(SftSampler, RejectsExamplesOfAnotherLength) {
  EXPECT_NE(error_of([] { SftSampler({{synthetic(4, 12), 1.0}}, 16, 1); }).find("expected seq_len 16"),
            std::string::npos);
}

// The trainer's path: sampler fills the clean batch, the objective noises it. Prompt positions
// must come through unmasked with zero weight; the answer (EOS padding included) gets masked.
TEST(SftSampler, PromptIsNeverMaskedInTrainerBatches) {
  const int64_t B = 8;
  const int64_t L = 16;
  const SftSampler sampler({{synthetic(40, L), 1.0}}, L, 11);
  ObjectiveOptions objective;
  objective.mask_id = 3;
  objective.seed = 11;
  int64_t padding_masked = 0;
  for (int64_t step = 0; step < 20; ++step) {
    CleanBatch clean;
    clean.n_seq = B;
    clean.seq_len = L;
    clean.tokens.resize(static_cast<size_t>(B * L));
    clean.prompt_len.assign(static_cast<size_t>(B), 0);
    for (int64_t s = 0; s < B; ++s) sampler.fill(step, s, clean, s);
    const DiffusionBatch noised = make_diffusion_batch(clean, objective, step, 0, B);
    int64_t answer = 0;
    for (int64_t s = 0; s < B; ++s) {
      const int32_t prompt = clean.prompt_len[static_cast<size_t>(s)];
      ASSERT_GE(prompt, 3);
      answer += L - prompt;
      for (int64_t i = 0; i < L; ++i) {
        const size_t p = static_cast<size_t>(s * L + i);
        if (i < prompt) {
          ASSERT_EQ(noised.batch.inputs[p], clean.tokens[p]) << "step " << step << " seq " << s << " pos " << i;
          ASSERT_EQ(noised.batch.weights[p], 0.0f);
        } else if (noised.batch.inputs[p] == 3) {
          EXPECT_GT(noised.batch.weights[p], 0.0f);
          padding_masked += clean.tokens[p] == 2;
        }
      }
    }
    EXPECT_EQ(noised.n_scored, answer);
  }
  EXPECT_GT(padding_masked, 0);
}

TEST(SftConfig, FormatKey) {
  const std::string base = R"([model]
vocab_size = 64
mask_token_id = 3
[data]
seq_len = 16
train = [{ name = "qa", path = "x.jsonl" }]
)";
  EXPECT_FALSE(parse_train_config(base, "a.toml").sft);
  std::string sft = base;
  sft.insert(sft.find("seq_len"), "format = \"sft\"\n");
  EXPECT_TRUE(parse_train_config(sft, "a.toml").sft);
  std::string bad = base;
  bad.insert(bad.find("seq_len"), "format = \"chat\"\n");
  EXPECT_NE(error_of([&] { parse_train_config(bad, "a.toml"); }).find("a.toml: data.format 'chat'"), std::string::npos);
}

}  // namespace
