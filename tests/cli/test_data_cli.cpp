// `ruvdllm tokenizer train` and `ruvdllm pack` end to end: train a vocabulary on generated
// text, pack the text into shards, and read the documents back out of the shards.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/token_shards.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using testing::run_command;
using testing::TempDir;

const std::string kCli = RUVDLLM_CLI_PATH;

// Documents of generated English-like prose and Python-like code, as make_corpus.sh lays them
// out: each followed by a line holding only <|endoftext|>.
std::vector<std::string> make_documents(int n, uint64_t seed, bool code) {
  static const char* words[] = {"the", "river", "runs", "north", "through", "a", "quiet", "valley", "and", "every",
                                "morning", "mist", "rises", "over", "fields", "of", "barley", "where", "farmers", "walk"};
  std::mt19937_64 rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < n; ++d) {
    std::string doc;
    const int paragraphs = 1 + static_cast<int>(rng() % 4);
    for (int p = 0; p < paragraphs; ++p) {
      if (code) {
        doc += "def f_" + std::to_string(rng() % 50) + "(x, y):\n    if x > " + std::to_string(rng() % 100) +
               ":\n        return x + y\n    return " + words[rng() % std::size(words)] + "\n\n";
        continue;
      }
      const int sentences = 1 + static_cast<int>(rng() % 5);
      for (int s = 0; s < sentences; ++s) {
        const int n_words = 5 + static_cast<int>(rng() % 10);
        for (int w = 0; w < n_words; ++w) {
          std::string word = words[rng() % std::size(words)];
          if (w == 0) word[0] = static_cast<char>(word[0] - 'a' + 'A');
          doc += (w ? " " : "") + word;
        }
        doc += ". ";
      }
      doc += "\n\n";
    }
    docs.push_back(doc);
  }
  return docs;
}

std::string write_corpus(const std::string& path, const std::vector<std::string>& docs) {
  std::ofstream out(path, std::ios::binary);
  for (const auto& d : docs) out << d << "<|endoftext|>\n";
  return path;
}

TEST(DataCli, TrainTokenizerThenPackAndReadDocumentsBack) {
  TempDir dir;
  const auto prose = make_documents(60, 1, false);
  const auto code = make_documents(40, 2, true);
  const std::string prose_file = write_corpus(dir.file("prose.txt"), prose);
  const std::string code_file = write_corpus(dir.file("code.txt"), code);

  std::string out;
  ASSERT_EQ(run_command(kCli + " tokenizer train --vocab-size 400 -o " + dir.file("tok.json") + " " + prose_file + " " +
                            code_file,
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("merges/s"), std::string::npos) << out;
  EXPECT_NE(out.find("bytes/token"), std::string::npos) << out;
  const Tokenizer tok = Tokenizer::from_tokenizer_json(dir.file("tok.json"));
  EXPECT_EQ(tok.vocab_size(), 400);
  ASSERT_TRUE(tok.eos_id());
  ASSERT_TRUE(tok.mask_id());
  EXPECT_EQ(tok.token_text(*tok.mask_id()), "<|mdm_mask|>");

  ASSERT_EQ(run_command(kCli + " pack --tokenizer " + dir.file("tok.json") + " -o " + dir.file("shards") +
                            " --shard-tokens 500 " + prose_file + " " + code_file,
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("packed 100 documents"), std::string::npos) << out;
  EXPECT_NE(out.find("bytes/token"), std::string::npos) << out;

  const train::TokenShards shards = train::TokenShards::open(dir.file("shards"));
  EXPECT_EQ(shards.vocab_size(), 400);
  std::vector<int32_t> ids(static_cast<size_t>(shards.n_tokens()));
  shards.read(0, ids);
  EXPECT_TRUE(std::filesystem::exists(dir.file("shards/shard-00001.tok")));  // more than one shard

  // Split the stream at EOS: the documents come back in order, byte for byte.
  std::vector<std::string> expected = prose;
  expected.insert(expected.end(), code.begin(), code.end());
  std::vector<std::string> got;
  std::vector<int32_t> current;
  for (int32_t id : ids) {
    if (id == *tok.eos_id()) {
      got.push_back(tok.decode(current));
      current.clear();
    } else {
      current.push_back(id);
    }
  }
  EXPECT_TRUE(current.empty());  // the stream ends with EOS
  EXPECT_EQ(got, expected);
}

TEST(DataCli, OneDocumentPerFileWithoutSeparator) {
  TempDir dir;
  const auto docs = make_documents(30, 3, false);
  std::string all;
  for (const auto& d : docs) all += d;
  write_corpus(dir.file("train.txt"), docs);
  std::string out;
  ASSERT_EQ(run_command(kCli + " tokenizer train --vocab-size 300 -o " + dir.file("tok.json") + " " + dir.file("train.txt"), &out), 0)
      << out;
  {
    std::ofstream(dir.file("a.txt"), std::ios::binary) << all;
    std::ofstream(dir.file("b.txt"), std::ios::binary) << "second <|endoftext|> file\n";
  }
  ASSERT_EQ(run_command(kCli + " pack --separator '' --tokenizer " + dir.file("tok.json") + " -o " + dir.file("s") + " " +
                            dir.file("a.txt") + " " + dir.file("b.txt"),
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("packed 2 documents"), std::string::npos) << out;
  const Tokenizer tok = Tokenizer::from_tokenizer_json(dir.file("tok.json"));
  const train::TokenShards shards = train::TokenShards::open(dir.file("s"));
  std::vector<int32_t> ids(static_cast<size_t>(shards.n_tokens()));
  shards.read(0, ids);
  // The special-token spelling inside a document stays text; only the added EOS ends it.
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tok.eos_id()), 2);
  EXPECT_EQ(tok.decode(ids, /*render_special=*/true), all + "<|endoftext|>second <|endoftext|> file\n<|endoftext|>");
}

TEST(DataCli, BadInputsFailWithOneLine) {
  TempDir dir;
  std::string out;
  write_corpus(dir.file("t.txt"), make_documents(5, 4, false));
  EXPECT_EQ(run_command(kCli + " tokenizer train --vocab-size 100 -o " + dir.file("x.json") + " " + dir.file("t.txt"), &out), 2)
      << out;
  EXPECT_NE(out.find("vocab-size"), std::string::npos) << out;
  EXPECT_NE(run_command(kCli + " tokenizer train -o " + dir.file("x.json") + " " + dir.file("missing.txt"), &out), 0);
  EXPECT_NE(out.find("missing.txt"), std::string::npos) << out;
  EXPECT_NE(run_command(kCli + " tokenizer train --pre nonsense -o " + dir.file("x.json") + " " + dir.file("t.txt"), &out), 0);
  EXPECT_NE(out.find("nonsense"), std::string::npos) << out;

  std::ofstream(dir.file("bad.json")) << "{ not json";
  EXPECT_EQ(run_command(kCli + " pack --tokenizer " + dir.file("bad.json") + " -o " + dir.file("s") + " " + dir.file("t.txt"), &out), 1)
      << out;
  EXPECT_NE(out.find("bad.json"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("s/index.json")));
}

}  // namespace
}  // namespace ruvdllm
