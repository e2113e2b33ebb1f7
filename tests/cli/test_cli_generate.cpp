// End-to-end tests of `ruvdllm generate` on a tiny random LLaDA model: golden tokens for fixed
// seeds, --json output, determinism across thread counts, infilling, --visual and --chat on
// pipes, and one clear line for every kind of bad input.
//
// (Named test_cli_generate, not test_generate: tests/diffusion/test_generate.cpp already
// owns that program name.)
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/text/tokenizer.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using nlohmann::json;
using testing::run_command;
using testing::TempDir;

const std::string kCli = RUVDLLM_CLI_PATH;
const std::string kGolden = std::string(RUVDLLM_SOURCE_DIR) + "/tests/cli/golden/generate_llada_test.json";

// The golden tokens must not depend on the machine. Every weight matrix is Q8_0, so the
// matmuls are exact integer dot products and OpenBLAS is never used; what is left to differ
// between machines is the float work around them (norms, attention, softmax), whose rounding
// depends on the vector width of the SIMD target chosen at run time. RUVDLLM_TARGET=SCALAR
// pins that to Highway's portable scalar target, which every machine has and which computes
// the same IEEE operations in the same order everywhere.
const std::string kPinned = "RUVDLLM_TARGET=SCALAR " + kCli;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// LLaDA-8B-Instruct's tokenizer.chat_template.
constexpr const char* kLLaDAJinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
    "endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
constexpr int kStartHeader = 257, kEndHeader = 258, kEotId = 259;

// Copies a GGUF model with vocabulary changes: placeholder tokens renamed to control tokens,
// a chat template, and (see below) a merge when the tokenizer would refuse the file.
void write_patched_model(const std::string& from, const std::string& to, const std::map<int, std::string>& controls,
                         const std::string& chat_template) {
  const GgufFile in = GgufFile::open(from);
  GgufWriter out;
  out.set_alignment(in.alignment());
  for (const auto& [key, value] : in.metadata()) out.set(key, value);
  std::vector<std::string> tokens = in.find("tokenizer.ggml.tokens")->as_string_array();
  std::vector<int64_t> types = in.find("tokenizer.ggml.token_type")->as_int_array();
  for (const auto& [id, text] : controls) {
    tokens[static_cast<size_t>(id)] = text;
    types[static_cast<size_t>(id)] = 3;
  }
  out.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  out.set("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, types));
  if (!chat_template.empty()) out.set("tokenizer.chat_template", GgufValue::string(chat_template));
  for (const TensorView& t : in.tensors()) out.add_tensor(t);
  out.write(to);
}

struct CliRun {
  int code = 0;
  std::string out;  // stdout
  std::string err;  // stderr
};

class GenerateCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::string out;
    const std::string raw = path("raw.gguf");
    ASSERT_EQ(run_command(kCli + " init --arch llada --shape test --type q8_0 --seed 3 " + raw, &out), 0) << out;
    Tokenizer::from_gguf_file(raw);  // the random model's byte vocabulary must load as it is
    std::filesystem::copy_file(raw, model());
    write_patched_model(raw, instruct_model(),
                        {{kStartHeader, "<|start_header_id|>"}, {kEndHeader, "<|end_header_id|>"}, {kEotId, "<|eot_id|>"}},
                        kLLaDAJinja);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return dir_->file("tiny.gguf"); }
  // The same weights with LLaDA-Instruct's chat tokens and template.
  static std::string instruct_model() { return dir_->file("instruct.gguf"); }
  static std::string path(const std::string& name) { return dir_->file(name); }

  // Runs `ruvdllm generate -m MODEL ARGS` with stdout and stderr apart.
  static CliRun generate(const std::string& args, const std::string& cli = kPinned, const std::string& stdin_text = {},
                         const std::string& model_path = model()) {
    const std::string err = path("stderr.txt");
    std::string command = "(" + cli + " generate -m " + model_path + " " + args + " 2>" + err + ")";
    command = stdin_text.empty() ? command + " </dev/null" : "printf '%s' " + quote(stdin_text) + " | " + command;
    CliRun r;
    r.code = run_command(command, &r.out);
    r.err = read_file(err);
    return r;
  }
  static TempDir* dir_;
};
TempDir* GenerateCliTest::dir_ = nullptr;

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) lines.push_back(json::parse(line));
  return lines;
}

// Fixed seeds over the samplers and schedules; tokens must match the committed golden file
// (RUVDLLM_UPDATE_GOLDEN=1 rewrites it).
TEST_F(GenerateCliTest, GoldenTokensForFixedSeeds) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"confidence_blocks", "-p 'The quick brown fox' --gen-len 24 --steps 12 --block-len 8 --seed 7"},
      {"entropy_sampled", "-p 'Once upon a time' --gen-len 20 --steps 10 --block-len 0 -a entropy --temp 0.8 --top-k 40 --seed 11"},
      {"margin_topp", "-p 'Hello, world.' --gen-len 16 --steps 8 -a margin --temp 1 --top-p 0.9 --seed 3"},
      {"origin_cosine", "-p 'abc' --gen-len 16 --steps 6 --block-len 0 -a origin --schedule cosine --temp 1 --seed 5"},
      {"random_cfg", "-p 'def f(x):' --gen-len 12 --steps 6 -a random --cfg 1.5 --seed 9"},
      {"infill", "-p 'def add(a, b):<mask:6> return a + b' --gen-len 0 --steps 3 --seed 1"},
  };
  const bool update = std::getenv("RUVDLLM_UPDATE_GOLDEN") && std::string(std::getenv("RUVDLLM_UPDATE_GOLDEN")) == "1";
  json golden = json::object();
  if (!update) {
    ASSERT_TRUE(std::filesystem::exists(kGolden)) << kGolden << " is missing; run with RUVDLLM_UPDATE_GOLDEN=1";
    golden = json::parse(read_file(kGolden));
  }
  json fresh = json::object();
  for (const auto& [name, args] : cases) {
    const CliRun r = generate(args + " --json --threads 2");
    ASSERT_EQ(r.code, 0) << name << "\n" << r.out << r.err;
    const std::vector<json> lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 1u) << r.out;
    fresh[name] = {{"args", args}, {"tokens", lines[0]["tokens"]}, {"steps", lines[0]["steps"]}};
    if (update) continue;
    ASSERT_TRUE(golden.contains(name)) << name << " is not in the golden file; run with RUVDLLM_UPDATE_GOLDEN=1";
    ASSERT_EQ(golden[name]["args"], args) << name << ": arguments changed; run with RUVDLLM_UPDATE_GOLDEN=1";
    EXPECT_EQ(lines[0]["tokens"], golden[name]["tokens"]) << name;
    EXPECT_EQ(lines[0]["steps"], golden[name]["steps"]) << name;
  }
  if (update) {
    // One line per case, so a change shows as a one-line diff.
    std::ofstream file(kGolden);
    file << "{\n";
    for (auto it = fresh.begin(); it != fresh.end(); ++it) {
      file << "  " << json(it.key()).dump() << ": " << it.value().dump() << (std::next(it) == fresh.end() ? "\n" : ",\n");
    }
    file << "}\n";
    GTEST_SKIP() << "rewrote " << kGolden;
  }
}

TEST_F(GenerateCliTest, JsonLinesHaveTheFields) {
  {
    std::ofstream(path("prompts.txt")) << "first prompt\n\nsecond prompt\r\n";
  }
  const CliRun r = generate("-f " + path("prompts.txt") + " --json --gen-len 10 --steps 5 --seed 4");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;  // the blank line is skipped
  EXPECT_EQ(lines[0]["prompt"], "first prompt");
  EXPECT_EQ(lines[1]["prompt"], "second prompt");
  for (const json& j : lines) {
    for (const char* field : {"text", "tokens", "prompt_tokens", "steps", "ms_per_step", "sampling_ms_per_step",
                              "tokens_per_second", "seed", "algorithm"}) {
      EXPECT_TRUE(j.contains(field)) << field << " missing from " << j.dump();
    }
    EXPECT_TRUE(j["text"].is_string());
    ASSERT_TRUE(j["tokens"].is_array());
    EXPECT_LE(j["tokens"].size(), 10u);
    for (const json& t : j["tokens"]) {
      EXPECT_TRUE(t.is_number_integer());
      EXPECT_GE(t.get<int>(), 0);
      EXPECT_LT(t.get<int>(), 300);
      EXPECT_NE(t.get<int>(), 299) << "a mask token was left in the answer";
    }
    // Byte-level and no merge applies: one token per byte.
    EXPECT_EQ(j["prompt_tokens"], j["prompt"].get<std::string>().size());
    EXPECT_EQ(j["steps"], 5);
    EXPECT_EQ(j["seed"], 4);
    EXPECT_EQ(j["algorithm"], "confidence");
    EXPECT_GT(j["ms_per_step"].get<double>(), 0.0);
    EXPECT_GE(j["sampling_ms_per_step"].get<double>(), 0.0);
    EXPECT_LE(j["sampling_ms_per_step"].get<double>(), j["ms_per_step"].get<double>());
    EXPECT_GT(j["tokens_per_second"].get<double>(), 0.0);
  }
  // Plain output: the answer on stdout, one timing line on stderr.
  const CliRun plain = generate("-p 'first prompt' --gen-len 10 --steps 5 --seed 4");
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_EQ(plain.out, lines[0]["text"].get<std::string>() + "\n");
  EXPECT_EQ(count_lines(plain.err), 1) << plain.err;
  EXPECT_NE(plain.err.find("ms/step"), std::string::npos) << plain.err;
  EXPECT_NE(plain.err.find("tok/s"), std::string::npos) << plain.err;
}

TEST_F(GenerateCliTest, SameSeedSameOutputAtAnyThreadCount) {
  // The machine's own SIMD target here: thread counts must agree on every target.
  const std::string args = "-p 'Seeds and threads' --json -q --gen-len 32 --steps 16 --temp 0.9 --top-p 0.95 --seed 21";
  const CliRun one = generate(args + " --threads 1", kCli);
  const CliRun two = generate(args + " --threads 2", kCli);
  ASSERT_EQ(one.code, 0) << one.err;
  ASSERT_EQ(two.code, 0) << two.err;
  const json a = json::parse(one.out), b = json::parse(two.out);
  EXPECT_EQ(a["tokens"], b["tokens"]);
  EXPECT_EQ(a["text"], b["text"]);
  EXPECT_EQ(b["threads"], 2);
  // And the seed matters.
  const CliRun other = generate("-p 'Seeds and threads' --json -q --gen-len 32 --steps 16 --temp 0.9 --top-p 0.95 --seed 22", kCli);
  ASSERT_EQ(other.code, 0) << other.err;
  EXPECT_NE(json::parse(other.out)["tokens"], a["tokens"]);
}

TEST_F(GenerateCliTest, InfillingKeepsTheTextAround) {
  CliRun r = generate("-p 'abc<mask:5>xyz' --gen-len 0 --json -q");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  const std::string text = j["text"];
  EXPECT_TRUE(j["infill"].get<bool>());
  EXPECT_EQ(text.substr(0, 3), "abc") << text;
  EXPECT_EQ(text.substr(text.size() - 3), "xyz") << text;
  ASSERT_EQ(j["tokens"].size(), 11u);  // 3 + 5 filled + 3, the whole canvas
  for (const json& t : j["tokens"]) EXPECT_NE(t.get<int>(), 299);
  EXPECT_EQ(j["tokens"][0], 'a');
  EXPECT_EQ(j["tokens"][10], 'z');

  // Without --gen-len only the spans are filled.
  r = generate("-p 'abc<mask:5>xyz' --json -q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["tokens"].size(), 11u);
  EXPECT_EQ(json::parse(r.out)["gen_len"], 0);

  // Spans and an appended answer together: the prompt's text stays where it was.
  r = generate("-p 'Once<mask:4> upon<mask:2>.' --gen-len 6 --steps 6 --json -q");
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  const std::string both = j["text"];
  EXPECT_EQ(both.substr(0, 4), "Once") << both;
  EXPECT_NE(both.find(" upon"), std::string::npos) << both;
  EXPECT_EQ(j["prompt_tokens"], 4 + 4 + 5 + 2 + 1);
}

TEST_F(GenerateCliTest, VisualOnAPipeDoesNotCrash) {
  const CliRun r = generate("-p 'Watch this' --gen-len 8 --steps 4 --visual --seed 2");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(count_lines(r.out), 1) << r.out;  // stdout holds just the answer
  EXPECT_NE(r.err.find("step 1/4: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("step 4/4: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\xE2\x96\x91"), std::string::npos) << "no masked cell shown: " << r.err;
  EXPECT_EQ(r.err.find("\x1b["), std::string::npos) << "ANSI escapes on a pipe";
}

TEST_F(GenerateCliTest, ChatAnswersEveryLine) {
  CliRun r = generate("--chat --json --gen-len 8 --steps 4 -q", kPinned, "hello\nhow are you\n");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  std::vector<json> turns = json_lines(r.out);
  ASSERT_EQ(turns.size(), 2u) << r.out;
  EXPECT_EQ(turns[0]["prompt"], "hello");
  // The second turn carries the first: "User: hello\nAssistant: ...\nUser: how are you\nAssistant: ".
  const int first = turns[0]["prompt_tokens"];
  EXPECT_EQ(first, static_cast<int>(std::string("User: hello\nAssistant: ").size()));
  EXPECT_GT(turns[1]["prompt_tokens"].get<int>(), first + static_cast<int>(std::string("User: how are you\n").size()));

  // /reset forgets the history; blank lines are ignored.
  r = generate("--chat --json --gen-len 8 --steps 4 -q", kPinned, "hello\n\n/reset\nhello\n");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  turns = json_lines(r.out);
  ASSERT_EQ(turns.size(), 2u) << r.out;
  EXPECT_EQ(turns[0]["prompt_tokens"], turns[1]["prompt_tokens"]);
  EXPECT_EQ(turns[0]["tokens"], turns[1]["tokens"]);

  // Plain text output: one answer per line.
  r = generate("--chat --gen-len 8 --steps 4 -q", kPinned, "one\ntwo\nthree\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GE(count_lines(r.out), 3) << r.out;
}

TEST_F(GenerateCliTest, InstructModelsGetTheirChatTemplate) {
  // "<|endoftext|>" (the test shape's BOS) + header "user" + "\n\nhi" + <|eot_id|> + header "assistant" + "\n\n".
  const int templated = 1 + (1 + 4 + 1) + 2 + 2 + 1 + (1 + 9 + 1) + 2;
  CliRun r = generate("-p hi --json -q --gen-len 16 --steps 8", kPinned, {}, instruct_model());
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"], templated);
  // The answer ends at the first end of turn or EOS.
  for (const json& t : j["tokens"]) {
    EXPECT_NE(t.get<int>(), kEotId);
    EXPECT_NE(t.get<int>(), 298);
  }
  r = generate("-p hi --json -q --gen-len 16 --raw", kPinned, {}, instruct_model());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["prompt_tokens"], 2);
  // Infilling prompts are never wrapped.
  r = generate("-p 'h<mask:2>i' --json -q", kPinned, {}, instruct_model());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["prompt_tokens"], 4);
  // --chat uses the template too, and a system message opens the conversation.
  r = generate("--chat --json -q --gen-len 8 --steps 4", kPinned, "hi\n", instruct_model());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["prompt_tokens"], templated);
  r = generate("--chat --json -q --gen-len 8 --steps 4 --system 'Be brief.'", kPinned, "hi\n", instruct_model());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["prompt_tokens"], templated + (1 + 6 + 1) + 2 + 9 + 1);
}

void expect_clean_failure(const CliRun& r, const std::string& needle, int code = 1) {
  EXPECT_EQ(r.code, code) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find(needle), std::string::npos) << r.out << r.err;
  EXPECT_EQ(count_lines(r.out + r.err), 1) << r.out << r.err;
}

TEST_F(GenerateCliTest, BadInputGivesOneLineErrors) {
  expect_clean_failure(generate("-p ''"), "empty prompt");
  expect_clean_failure(generate("-p " + std::string(600, 'x')), "does not fit the model's context of 512");
  expect_clean_failure(generate("-p hi --gen-len 0"), "--gen-len must be at least 1");
  expect_clean_failure(generate("-p hi --gen-len 511"), "--gen-len 511 is too large");
  expect_clean_failure(generate("-p hi --gen-len -3"), "gen-len", 2);
  expect_clean_failure(generate("-p hi --steps 0"), "steps", 2);
  expect_clean_failure(generate("-p hi --algorithm bogus"), "--algorithm: ");
  expect_clean_failure(generate("-p hi --schedule nope"), "nope");
  expect_clean_failure(generate("-p hi --top-p 1.5"), "top-p", 2);
  expect_clean_failure(generate("-p 'a<mask:0>b'"), "<mask:0>");
  expect_clean_failure(generate("-p 'a<mask:x>b'"), "<mask:N>");
  expect_clean_failure(generate("-p hi -f " + path("prompts.txt")), "excludes", 2);
  expect_clean_failure(generate("-f " + path("no-such-file.txt")), "no-such-file.txt");
  expect_clean_failure(generate("--chat -p hi"), "--chat");
  expect_clean_failure(generate("-p hi --cache-blocks --cfg 1"), "--cache-blocks");
  expect_clean_failure(generate("-p hi", "RUVDLLM_TARGET=NEON9 " + kCli), "RUVDLLM_TARGET=NEON9");
  expect_clean_failure(generate("-p hi --device tpu"), "unknown device 'tpu'");
  expect_clean_failure(generate("-p hi --device cuda:x"), "cuda:x");
  expect_clean_failure(generate("-p hi --gpu-weights int3"), "--gpu-weights");
  expect_clean_failure(generate("-p hi --gpu-precision f16"), "--gpu-precision");
  // No GPU (CI), no CUDA backend, or no tenth GPU: one clear line in each case.
  expect_clean_failure(generate("-p hi --device cuda:9"), "cuda:9");
  {
    std::ofstream(path("blank.txt")) << "\n\n";
  }
  expect_clean_failure(generate("-f " + path("blank.txt")), "no prompts");
  expect_clean_failure(generate("", kPinned, "\n"), "stdin: no prompts");
  std::string out;
  EXPECT_EQ(run_command(kCli + " generate -m " + path("missing.gguf") + " -p hi", &out), 1);
  EXPECT_NE(out.find("missing.gguf"), std::string::npos) << out;
  EXPECT_EQ(count_lines(out), 1) << out;
}

TEST_F(GenerateCliTest, MoreStepsThanTokensRunsOnePerToken) {
  const CliRun r = generate("-p hi --gen-len 8 --steps 100 --block-len 0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["steps"], 8);
  EXPECT_NE(r.err.find("note: ran 8 steps for --steps 100"), std::string::npos) << r.err;
}

TEST_F(GenerateCliTest, DefaultModelBesideTheExecutable) {
  // A copy of the binary in DIR/bin finds DIR/models/default.gguf, and says where it looked
  // when there is none.
  const std::string bin = path("install/bin"), models = path("install/models");
  std::filesystem::create_directories(bin);
  std::filesystem::copy_file(kCli, bin + "/ruvdllm");
  std::filesystem::permissions(bin + "/ruvdllm", std::filesystem::perms::owner_exec, std::filesystem::perm_options::add);
  const std::string cli = "env -u RUVDLLM_MODEL RUVDLLM_TARGET=SCALAR " + bin + "/ruvdllm";
  std::string out;
  EXPECT_EQ(run_command(cli + " generate -p hi </dev/null", &out), 1);
  EXPECT_NE(out.find("no default model found"), std::string::npos) << out;
  EXPECT_NE(out.find(models + "/default.gguf"), std::string::npos) << out;
  EXPECT_NE(out.find("pass -m MODEL"), std::string::npos) << out;
  EXPECT_EQ(count_lines(out), 1) << out;

  std::filesystem::create_directories(models);
  std::filesystem::copy_file(model(), models + "/default.gguf");
  EXPECT_EQ(run_command(cli + " generate -p hi --gen-len 4 -q </dev/null", &out), 0) << out;
  // $RUVDLLM_MODEL wins over the file beside the executable.
  EXPECT_EQ(run_command("RUVDLLM_MODEL=" + path("nowhere.gguf") + " " + bin + "/ruvdllm generate -p hi", &out), 1);
  EXPECT_NE(out.find("nowhere.gguf"), std::string::npos) << out;
}

// The shipped model (models/default.gguf, found beside the build's executable as a user's
// `ruvdllm generate` finds it) must answer an English prompt with English: most of what it
// writes is letters and spaces, and the commonest function words turn up.
TEST(ShippedModel, WritesRecognisableEnglish) {
  const std::string shipped = std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf";
  ASSERT_TRUE(std::filesystem::exists(shipped)) << shipped;
  std::string out;
  ASSERT_EQ(run_command("RUVDLLM_MODEL=" + shipped + " " + kCli +
                            " generate -p 'The history of the city' --gen-len 48 --steps 24 --seed 1 -q",
                        &out),
            0)
      << out;
  size_t letters = 0;
  for (char c : out) letters += std::isalpha(static_cast<unsigned char>(c)) || c == ' ' || c == ',' || c == '.';
  EXPECT_GT(out.size(), 100u) << out;
  EXPECT_GT(static_cast<double>(letters), 0.9 * static_cast<double>(out.size())) << out;
  int function_words = 0;
  for (const char* w : {" the ", " of ", " and ", " to ", " in "}) {
    for (size_t at = out.find(w); at != std::string::npos; at = out.find(w, at + 1)) ++function_words;
  }
  EXPECT_GE(function_words, 4) << out;
}

}  // namespace
}  // namespace ruvdllm
