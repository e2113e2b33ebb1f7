// BPE training: the exact first merges on a corpus whose pair counts are worked out by hand,
// tie-breaking, the special tokens, determinism, and round trips with the trained vocabulary.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/text/bpe_trainer.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/text/tokenizer_io.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using Merges = std::vector<std::pair<std::string, std::string>>;

std::string repeat(const std::string& word, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += word;
  return out;
}

// Words (GPT-2 split, "Ġ" is the space): Ġhug ×10, Ġpug ×5, Ġpun ×12, Ġbun ×4, Ġhugs ×5.
// Pair counts: u g 20, Ġ p 17, p u 17, u n 16, Ġ h 15, h u 15, g s 5, Ġ b 4, b u 4.
std::string hug_corpus() {
  return repeat(" hug", 10) + repeat(" pug", 5) + repeat(" pun", 12) + repeat(" bun", 4) + repeat(" hugs", 5);
}

// The merges worked out by hand, each step recounting the pairs:
//   u g (20); Ġ p (17, ties p u 17: Ġ=32 < p=112); u n (16); Ġ h (15, ties h ug 15: Ġ < h);
//   Ġh ug (15); Ġp un (12); Ġp ug (5, ties Ġhug s 5: Ġp=257 < Ġhug=260); Ġhug s (5);
//   Ġ b (4, ties b un 4); Ġb un (4). Then every word is one token.
const Merges kHugMerges = {{"u", "g"},   {"Ġ", "p"},  {"u", "n"},    {"Ġ", "h"}, {"Ġh", "ug"},
                           {"Ġp", "un"}, {"Ġp", "ug"}, {"Ġhug", "s"}, {"Ġ", "b"}, {"Ġb", "un"}};

Tokenizer train_on(const std::string& text, int32_t vocab_size, BpeTrainerOptions options = {}) {
  options.vocab_size = vocab_size;
  BpeTrainer trainer(options);
  trainer.add_text(text);
  return trainer.train();
}

// English-like text from a fixed seed: words from a small list, sentences, paragraphs, a little
// code and non-ASCII.
std::string generated_text(size_t bytes, uint64_t seed) {
  static const char* words[] = {"the", "model", "learns", "a", "masked", "token", "from", "its", "context", "and",
                                "every", "step", "unmasks", "more", "of", "canvas", "diffusion", "language", "is",
                                "quiet", "river", "north", "café", "naïve", "über", "1984", "42", "x_1", "def", "return"};
  static const char* syllables[] = {"ka", "lo", "mi", "tar", "en", "ro", "su", "vel", "di", "an", "qu", "is", "th"};
  std::mt19937_64 rng(seed);
  std::string out;
  while (out.size() < bytes) {
    const int sentence = 4 + static_cast<int>(rng() % 12);
    for (int w = 0; w < sentence; ++w) {
      std::string word;
      if (rng() % 3 == 0) {
        for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) word += syllables[rng() % std::size(syllables)];
      } else {
        word = words[rng() % std::size(words)];
      }
      if (w == 0) word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
      out += word;
      out += w + 1 == sentence ? ". " : (rng() % 9 == 0 ? ", " : " ");
    }
    if (rng() % 5 == 0) out += "\n\n";
    if (rng() % 17 == 0) out += "    if x_1 == 42:\n        return (x_1, \"token\")\n";
  }
  return out;
}

TEST(BpeTrainer, LearnsTheHandCountedMergesInOrder) {
  const Tokenizer tok = train_on(hug_corpus(), 1000);
  EXPECT_EQ(tok.merges(), kHugMerges);
  // 256 bytes, one token per merge, then <|endoftext|> and <|mdm_mask|>.
  EXPECT_EQ(tok.vocab_size(), 256 + static_cast<int>(kHugMerges.size()) + 2);
  EXPECT_EQ(tok.token_text(256), "ug");
  EXPECT_EQ(tok.token_text(259), "Ġh");
  EXPECT_EQ(tok.encode(" hug pun hugs bun", false), (std::vector<int32_t>{260, 261, 263, 265}));
}

TEST(BpeTrainer, StopsAtTheVocabularySizeAndTheMinimumCount) {
  const Tokenizer three = train_on(hug_corpus(), 256 + 3 + 2);
  EXPECT_EQ(three.merges(), Merges(kHugMerges.begin(), kHugMerges.begin() + 3));
  EXPECT_EQ(three.vocab_size(), 261);

  BpeTrainerOptions options;
  options.min_pair_count = 5;  // the pairs counted 4 times (Ġ b, b un) are left out
  const Tokenizer frequent = train_on(hug_corpus(), 1000, options);
  EXPECT_EQ(frequent.merges(), Merges(kHugMerges.begin(), kHugMerges.end() - 2));
}

TEST(BpeTrainer, SpecialTokensAreControlTokensAtTheEnd) {
  BpeTrainerOptions options;
  options.chat_tokens = true;
  const Tokenizer tok = train_on(generated_text(20000, 1), 400, options);
  ASSERT_EQ(tok.vocab_size(), 400);
  const auto specials = BpeTrainer::special_tokens(options);
  ASSERT_EQ(specials.size(), 5u);
  for (size_t i = 0; i < specials.size(); ++i) {
    const auto id = static_cast<int32_t>(400 - specials.size() + i);
    EXPECT_EQ(tok.token_text(id), specials[i]);
    EXPECT_EQ(tok.token_type(id), TokenType::Control) << specials[i];
  }
  EXPECT_EQ(tok.eos_id(), 395);
  EXPECT_EQ(tok.bos_id(), 395);
  EXPECT_EQ(tok.mask_id(), 396);
  EXPECT_EQ(tok.token_text(*tok.mask_id()), "<|mdm_mask|>");
  EXPECT_EQ(tok.find_token("<|eot_id|>"), 399);
  // Written in text they are one token each when parsed, and plain text otherwise.
  EXPECT_EQ(tok.encode("<|mdm_mask|>", false, true), std::vector<int32_t>{396});
  EXPECT_GT(tok.encode("<|mdm_mask|>", false, false).size(), 1u);
  EXPECT_EQ(tok.decode(tok.encode("a<|endoftext|>b", false, true)), "ab");
}

TEST(BpeTrainer, SpecialTokenTextInTheInputIsNotLearned) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "alpha beta<|endoftext|>\n<|mdm_mask|>gamma ";
  const Tokenizer tok = train_on(text, 300);
  for (int32_t id = 256; id < tok.vocab_size() - 2; ++id) {
    EXPECT_EQ(tok.token_to_piece(id).find('|'), std::string::npos) << tok.token_to_piece(id);
  }
}

TEST(BpeTrainer, RoundTripsArbitraryBytes) {
  const Tokenizer tok = train_on(generated_text(60000, 2), 600);
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string s(rng() % 200, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 256);  // invalid UTF-8 and NULs included
    EXPECT_EQ(tok.decode(tok.encode(s, false, false)), s);
  }
  const std::string text = generated_text(5000, 3);
  const auto ids = tok.encode(text, false);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_LT(ids.size(), text.size() / 2);  // the merges compress text like the training text
}

TEST(BpeTrainer, IsDeterministicAndIndependentOfHowTextArrives) {
  // Over 2 MiB, so counting splits the text in 1 MiB blocks, which must not change any word.
  const std::string text = generated_text(2300000, 4);
  BpeTrainerOptions options;
  options.vocab_size = 700;
  BpeTrainer whole(options);
  whole.add_text(text);
  const Tokenizer tok = whole.train();
  const std::string a = tokenizer_to_json(tok);
  EXPECT_EQ(whole.stats().input_bytes, static_cast<int64_t>(text.size()));
  EXPECT_EQ(whole.stats().tokens, static_cast<int64_t>(tok.encode(text, false, false).size()));

  // The same text through a file gives the same vocabulary.
  testing::TempDir dir;
  {
    std::ofstream out(dir.file("corpus.txt"), std::ios::binary);
    out << text;
  }
  BpeTrainer from_file(options);
  from_file.add_file(dir.file("corpus.txt"));
  EXPECT_EQ(tokenizer_to_json(from_file.train()), a);
  EXPECT_EQ(whole.stats().tokens, from_file.stats().tokens);

  BpeTrainer again(options);
  again.add_text(text);
  EXPECT_EQ(tokenizer_to_json(again.train()), a);
}

TEST(BpeTrainer, TrainingTokenCountMatchesEncoding) {
  for (const char* pre : {"gpt2", "qwen2"}) {
    SCOPED_TRACE(pre);
    const std::string text = generated_text(50000, 5);
    BpeTrainerOptions options;
    options.vocab_size = 500;
    options.pre_tokenizer = pre;
    BpeTrainer trainer(options);
    trainer.add_text(text);
    const int64_t words = trainer.stats().distinct_words;
    EXPECT_GT(words, 20);  // known before training
    const Tokenizer tok = trainer.train();
    EXPECT_EQ(trainer.stats().distinct_words, words);
    EXPECT_EQ(tok.pre_tokenizer(), pre);
    EXPECT_EQ(trainer.stats().tokens, static_cast<int64_t>(tok.encode(text, false, false).size()));
    EXPECT_EQ(trainer.stats().merges, 500 - 256 - 2);
    EXPECT_GT(trainer.stats().bytes_per_token(), 2.0);
  }
}

TEST(BpeTrainer, RejectsBadOptionsAndFiles) {
  BpeTrainerOptions small;
  small.vocab_size = 257;
  EXPECT_THROW(BpeTrainer{small}, Error);
  BpeTrainerOptions unknown;
  unknown.pre_tokenizer = "nonsense";
  EXPECT_THROW(BpeTrainer{unknown}, Error);
  BpeTrainer trainer{BpeTrainerOptions{}};
  try {
    trainer.add_file("/nonexistent/corpus.txt");
    ADD_FAILURE() << "no Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/corpus.txt"), std::string::npos) << e.what();
  }
  trainer.add_text("some text some text");
  trainer.train();
  EXPECT_THROW(trainer.train(), Error);
  EXPECT_THROW(trainer.add_text("more"), Error);
}

TEST(BpeTrainer, TextWithNothingToLearnIsAnError) {
  BpeTrainer empty{BpeTrainerOptions{}};
  EXPECT_THROW(empty.train(), Error);
  BpeTrainer unique{BpeTrainerOptions{}};
  unique.add_text("abcdefg");  // every pair occurs once, below the minimum count of 2
  EXPECT_THROW(unique.train(), Error);
}

}  // namespace
}  // namespace ruvdllm
