// `ruvdllm generate`: prompts in, answers out. Prompts come from -p, a file (-f), or stdin,
// one per line; --chat keeps a conversation going on stdin instead.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/generate_env.h"
#include "cli/generate_session.h"
#include "cli/generate_visual.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/text/prompt.h"

namespace ruvdllm::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  std::string file;
  std::string system;
  int64_t gen_len = 128;
  int64_t steps = 0;       // 0: half the tokens to fill
  int64_t block_len = -1;  // -1: the architecture's default
  std::string algorithm = "confidence";
  std::string schedule = "linear";
  float temperature = 0;
  int64_t top_k = 0;
  float top_p = 1;
  float cfg = 0;
  uint64_t seed = 0;
  int threads = 0;
  std::string device = "cpu";
  GpuSettings gpu;
  bool cache_blocks = false;
  bool visual = false;
  bool json = false;
  bool chat = false;
  bool raw = false;
  bool quiet = false;
  CLI::Option* prompt_option = nullptr;
  CLI::Option* file_option = nullptr;
  CLI::Option* steps_option = nullptr;
  CLI::Option* gen_len_option = nullptr;
};

// LLaDA was tuned with semi-autoregressive blocks of 32; Dream fills the whole answer at once.
int64_t default_block_len(Arch arch) { return arch == Arch::LLaDA || arch == Arch::LLaDAMoE ? 32 : 0; }

GenerationOptions base_options(const GenerateArgs& a, const ModelConfig& config) {
  GenerationOptions o;
  o.gen_len = a.gen_len;
  o.block_len = a.block_len >= 0 ? a.block_len : default_block_len(config.arch);
  o.algorithm = parse_unmasking(a.algorithm);
  o.schedule = parse_schedule(a.schedule);
  o.temperature = a.temperature;
  o.top_k = a.top_k;
  o.top_p = a.top_p;
  o.cfg_scale = a.cfg;
  o.seed = a.seed;
  o.cache_blocks = a.cache_blocks;
  return o;
}

// Flags that can be judged before a model is loaded, so a typo fails at once.
void check_flags(const GenerateArgs& a) {
  try {
    parse_unmasking(a.algorithm);
  } catch (const Error& e) {
    fail("--algorithm: {}", e.what());
  }
  try {
    parse_schedule(a.schedule);
  } catch (const Error& e) {
    fail("--schedule: {}", e.what());
  }
  if (a.cache_blocks && a.cfg > 0) fail("--cache-blocks cannot be combined with --cfg (guidance runs two sequences)");
  if (a.chat && (a.prompt_option->count() > 0 || a.file_option->count() > 0)) {
    fail("--chat reads the conversation from stdin; it takes no -p or -f");
  }
  if (!a.chat && !a.system.empty()) fail("--system applies to --chat only");
}

std::vector<std::string> read_lines(std::istream& in, const std::string& source) {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.empty()) fail("{}: no prompts (every line is empty)", source);
  return lines;
}

std::vector<std::string> read_prompts(const GenerateArgs& a) {
  if (a.prompt_option->count() > 0) return {a.prompt};
  if (a.file_option->count() > 0 && a.file != "-") {
    std::ifstream in(a.file);
    if (!in) fail("{}: cannot open prompt file", a.file);
    return read_lines(in, a.file);
  }
  if (a.file_option->count() == 0 && isatty(STDIN_FILENO)) {
    fail("no prompt: pass -p TEXT, -f FILE, pipe prompts on stdin, or use --chat");
  }
  return read_lines(std::cin, "stdin");
}

// Steps for one prompt: the flag, or half the tokens to fill. The generator clamps to one
// token per step at most and at least one step per block; say so when that changes the flag.
GenerationOptions options_for(const GenerateArgs& a, const GenerationOptions& base, int64_t to_fill) {
  GenerationOptions o = base;
  o.steps = a.steps_option->count() > 0 ? a.steps : std::max<int64_t>(1, to_fill / 2);
  return o;
}

void print_answer(const GenerateArgs& a, const GenerateSession& session, const Answer& answer,
                  const GenerationOptions& o) {
  const GenerationResult& r = answer.result;
  const double total_ms = r.forward_ms + r.sampling_ms;
  const double steps = static_cast<double>(std::max<int64_t>(1, r.steps_run));
  const double tokens_per_second = total_ms > 0 ? static_cast<double>(answer.filled) * 1000.0 / total_ms : 0.0;
  if (a.json) {
    const nlohmann::ordered_json j = {
        {"text", answer.text},
        {"tokens", answer.tokens},
        {"prompt", answer.prompt},
        {"prompt_tokens", answer.prompt_tokens},
        {"gen_len", o.gen_len},
        {"filled", answer.filled},
        {"infill", answer.infill},
        {"steps", r.steps_run},
        {"block_len", o.block_len},
        {"ms_per_step", total_ms / steps},
        {"forward_ms_per_step", r.forward_ms / steps},
        {"sampling_ms_per_step", r.sampling_ms / steps},
        {"tokens_per_second", tokens_per_second},
        {"seed", o.seed},
        {"algorithm", unmasking_name(o.algorithm)},
        {"schedule", schedule_name(o.schedule)},
        {"temperature", o.temperature},
        {"threads", session.threads()},
        {"device", session.device_description()},
    };
    // Generated bytes need not be valid UTF-8; JSON must be.
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s\n", answer.text.c_str());
  }
  std::fflush(stdout);
  if (a.quiet) return;
  if (o.steps != r.steps_planned) {
    std::fprintf(stderr, "note: ran %ld steps for --steps %ld: a step fills at least one token, every block gets one\n",
                 static_cast<long>(r.steps_planned), static_cast<long>(o.steps));
  }
  std::fprintf(stderr, "%ld steps, %.1f ms/step (sampling %.2f ms/step), %ld tokens in %.2f s, %.1f tok/s\n",
               static_cast<long>(r.steps_run), total_ms / steps, r.sampling_ms / steps,
               static_cast<long>(answer.filled), total_ms / 1000.0, tokens_per_second);
}

Answer run_one(const GenerateArgs& a, GenerateSession& session, const GenerationOptions& base,
               const std::string& prompt_text, const std::vector<int32_t>& ids, bool infill) {
  GenerationOptions o = base;
  // Spans to fill are usually the whole job: append an answer only when asked to.
  if (infill && a.gen_len_option->count() == 0) o.gen_len = 0;
  session.check_fits(static_cast<int64_t>(ids.size()), o.gen_len, infill);
  const int64_t prompt_masks = std::count(ids.begin(), ids.end(), session.mask_id());
  o = options_for(a, o, prompt_masks + o.gen_len);
  std::optional<CanvasView> view;
  if (a.visual) {
    view.emplace(session.tokenizer(), session.mask_id(), infill ? 0 : static_cast<int64_t>(ids.size()),
                 isatty(STDERR_FILENO) != 0);
  }
  StepCallback on_step;
  if (view) on_step = [&view](const StepInfo& step) { return view->on_step(step); };
  Answer answer = session.generate(prompt_text, ids, o, on_step);
  if (view) view->finish();
  print_answer(a, session, answer, o);
  return answer;
}

void run_prompts(const GenerateArgs& a) {
  const std::vector<std::string> prompts = read_prompts(a);
  GenerateSession session(resolve_model_path(a.model), a.threads, a.device, a.gpu);
  const GenerationOptions base = base_options(a, session.config());
  for (const std::string& prompt : prompts) {
    const bool infill = has_mask_spans(prompt);
    // Infilling prompts are text to complete in place, never a question for the chat template.
    const bool templated = session.is_instruct() && !a.raw && !infill;
    run_one(a, session, base, prompt, session.encode(prompt, templated), infill);
  }
}

// Drops the oldest exchange (after a leading system message) while the conversation and the
// answer do not fit the context; the newest user turn always stays.
std::vector<int32_t> fit_conversation(GenerateSession& session, std::vector<ChatMessage>& history, int64_t gen_len,
                                      bool quiet) {
  const int64_t context = session.config().context_length;
  std::vector<int32_t> ids = session.encode_chat(history);
  const size_t first = !history.empty() && history.front().role == "system" ? 1 : 0;
  while (context > 0 && static_cast<int64_t>(ids.size()) + gen_len > context && history.size() > first + 1) {
    history.erase(history.begin() + static_cast<std::ptrdiff_t>(first));
    if (history.size() > first + 1 && history[first].role == "assistant") {
      history.erase(history.begin() + static_cast<std::ptrdiff_t>(first));
    }
    if (!quiet) std::fprintf(stderr, "(dropped the oldest turn to fit the context of %ld tokens)\n", static_cast<long>(context));
    ids = session.encode_chat(history);
  }
  return ids;
}

void run_chat(const GenerateArgs& a) {
  GenerateSession session(resolve_model_path(a.model), a.threads, a.device, a.gpu);
  const GenerationOptions base = base_options(a, session.config());
  const int64_t context = session.config().context_length;
  if (context > 0 && base.gen_len >= context) {
    fail("--gen-len {} leaves no room for the conversation in the model's context of {} tokens", base.gen_len, context);
  }
  const bool interactive = isatty(STDIN_FILENO) != 0;
  if (interactive) {
    std::fprintf(stderr, "chat with %s (template %s); /reset clears the history, Ctrl-D exits\n",
                 session.model_path().c_str(), session.chat_template().name());
  }
  const std::vector<ChatMessage> start =
      a.system.empty() ? std::vector<ChatMessage>{} : std::vector<ChatMessage>{{"system", a.system}};
  std::vector<ChatMessage> history = start;
  int turns = 0, failed = 0;
  std::string line;
  while (true) {
    if (interactive) std::fputs("> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/reset") {
      history = start;
      if (!a.quiet) std::fprintf(stderr, "(history cleared)\n");
      continue;
    }
    if (line == "/exit" || line == "/quit") break;
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    ++turns;
    history.push_back({"user", line});
    try {
      const std::vector<int32_t> ids = fit_conversation(session, history, base.gen_len, a.quiet);
      Answer answer = run_one(a, session, base, line, ids, /*infill=*/false);
      std::string reply = answer.text;
      // Without chat tokens nothing marks the end of a turn; a model that goes on to write
      // the user's next line has finished its own.
      if (session.chat_template().format() == ChatFormat::Plain) reply = reply.substr(0, reply.find("\nUser:"));
      history.push_back({"assistant", reply});
    } catch (const Error& e) {
      std::fprintf(stderr, "ruvdllm: error: %s\n", e.what());
      history.pop_back();
      ++failed;
    }
  }
  if (interactive) std::fputc('\n', stderr);
  if (failed > 0) fail("{} of {} chat turns failed", failed, turns);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text: answer prompts, fill <mask:N> spans, or chat");
  cmd->footer(
      "Prompts: -p TEXT, -f FILE (one per line, blank lines skipped; - is stdin), or lines piped on stdin.\n"
      "A prompt may hold <mask:N> spans (N mask tokens) to fill in place; it then prints whole, infilled,\n"
      "and is never wrapped in the chat template. Only the spans are filled unless --gen-len is given.\n"
      "Models that carry a chat template get each prompt as a user turn unless --raw.\n"
      "--steps larger than the tokens to fill runs one step per token; fewer steps than blocks runs one\n"
      "per block (a note on stderr says so). The model defaults to $RUVDLLM_MODEL, then\n"
      "models/default.gguf beside the executable. RUVDLLM_TARGET=SCALAR|AVX2|... pins the SIMD target.");
  cmd->add_option("-m,--model", args->model, "Model .gguf, .safetensors or Hugging Face directory");
  args->prompt_option = cmd->add_option("-p,--prompt", args->prompt, "Prompt text");
  args->file_option = cmd->add_option("-f,--file", args->file, "File of prompts, one per line (- for stdin)");
  args->prompt_option->excludes(args->file_option);
  args->gen_len_option = cmd->add_option("-n,--gen-len", args->gen_len, "Tokens to generate after the prompt (default 128)");
  args->gen_len_option->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  args->steps_option = cmd->add_option("-s,--steps", args->steps, "Denoising steps (default: half the tokens)")
                           ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("-b,--block-len", args->block_len,
                  "Semi-autoregressive block length, 0 = none (default: 32 for LLaDA, 0 for Dream)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("-a,--algorithm", args->algorithm, "Unmasking order: origin, confidence, margin, entropy, random");
  cmd->add_option("--schedule", args->schedule, "Noise schedule: linear, cosine, sqrt");
  cmd->add_option("--temp", args->temperature, "Sampling temperature (0 = argmax)")->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-k", args->top_k, "Keep the k most likely tokens (0 = off)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  cmd->add_option("--top-p", args->top_p, "Nucleus sampling mass (1 = off)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--cfg", args->cfg, "Classifier-free guidance scale (0 = off)")->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--seed", args->seed, "Random seed (same seed, same output at any thread count)");
  cmd->add_option("-t,--threads", args->threads, "Threads (default: physical cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--device", args->device, "Where the steps run: cpu, cuda or cuda:N (default cpu)");
  add_gpu_options(cmd, &args->gpu);
  cmd->add_flag("--cache-blocks", args->cache_blocks, "Cache keys/values of finished blocks (faster, approximate)");
  cmd->add_flag("--visual", args->visual, "Show the canvas filling in (on stderr)");
  cmd->add_flag("--json", args->json, "One JSON object per line and prompt");
  cmd->add_flag("--chat", args->chat, "Multi-turn chat on stdin (/reset clears the history)");
  cmd->add_option("--system", args->system, "System message opening the --chat conversation");
  cmd->add_flag("--raw,--no-chat-template", args->raw, "Feed prompts as written, without the chat template");
  cmd->add_flag("-q,--quiet", args->quiet, "No timing summary or notes on stderr");
  cmd->callback([args] {
    check_flags(*args);
    if (args->chat) {
      run_chat(*args);
    } else {
      run_prompts(*args);
    }
  });
}

}  // namespace ruvdllm::cli
