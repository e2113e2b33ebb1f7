#include "ruvdllm/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/text/chat_template.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/train/checkpoint.h"
#include "ruvdllm/train/data_sampler.h"
#include "ruvdllm/train/lora.h"
#include "ruvdllm/train/objective.h"
#include "ruvdllm/train/optimizer.h"
#include "ruvdllm/train/sft_data.h"
#include "ruvdllm/train/token_shards.h"
#include "ruvdllm/train/train_model.h"

namespace ruvdllm::train {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string format_rate(double per_s) {
  if (per_s >= 1e6) return fmt::format("{:.2f}M", per_s / 1e6);
  if (per_s >= 1e3) return fmt::format("{:.1f}k", per_s / 1e3);
  return fmt::format("{:.0f}", per_s);
}

std::string describe_heldout(const std::vector<DomainNelbo>& heldout) {
  std::string out;
  for (const DomainNelbo& d : heldout) {
    out += fmt::format("{}{} {:.3f} bits/token (ppl <= {:.1f})", out.empty() ? "" : ", ", d.name,
                       d.bits_per_token, d.perplexity_bound);
  }
  return out;
}

// One line on stderr, redrawn in place on a terminal; on a pipe, a line every few seconds.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled), tty_(isatty(STDERR_FILENO) != 0) {}
  void update(const StepStats& s, bool force) {
    if (!enabled_) return;
    const auto now = Clock::now();
    const auto interval = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(3000);
    if (!force && drawn_ && now - last_ < interval) return;
    last_ = now;
    drawn_ = true;
    const std::string line =
        fmt::format("step {}/{}  loss {:.4f}  lr {:.2e}  |g| {:.3f}  {} tok/s  ETA {}", s.step, s.total,
                    s.loss, s.lr, s.grad_norm, format_rate(s.tokens_per_s), format_duration(s.eta_s));
    std::fprintf(stderr, tty_ ? "\r%-90s" : "%s\n", line.c_str());
    std::fflush(stderr);
  }
  // A message on its own line, below the progress line.
  void message(const std::string& text) {
    if (!enabled_) return;
    if (tty_ && drawn_) std::fputc('\n', stderr);
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
    // On a terminal the progress line was pushed up: draw it again at the next step.
    if (tty_) drawn_ = false;
  }
  void finish() {
    if (enabled_ && tty_ && drawn_) std::fputc('\n', stderr);
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool tty_;
  bool drawn_ = false;
  Clock::time_point last_{};
};

struct LoadedModel {
  std::unique_ptr<TrainModel> model;
  std::optional<Tokenizer> tokenizer;
  // The template `generate --chat` uses for the base model, so SFT chats are laid out the same.
  std::optional<ChatTemplate> chat_template;
};

LoadedModel load_model(const TrainConfig& config) {
  const ModelSpec& spec = config.model;
  LoadedModel out;
  if (!spec.tokenizer.empty()) out.tokenizer = Tokenizer::load(spec.tokenizer);
  if (!spec.init_from.empty()) {
    const std::unique_ptr<Model> source = Model::load(spec.init_from);
    out.model = TrainModel::from_model(*source);
    if (!out.tokenizer && source->format() == "gguf" && !source->vocab().tokens.empty()) {
      out.tokenizer = Tokenizer::load(spec.init_from);
    }
    if (out.tokenizer) {
      out.chat_template = ChatTemplate::for_model(source->vocab().chat_template,
                                                  arch_name(source->config().arch), *out.tokenizer);
    }
    const ModelConfig& c = out.model->config();
    if (c.context_length < config.seq_len) {
      fail("{}: data.seq_len {} exceeds the context length {} of {}", config.source, config.seq_len,
           c.context_length, spec.init_from);
    }
  } else {
    ModelConfig shape = spec.shape;
    if (out.tokenizer) {
      const Tokenizer& tok = *out.tokenizer;
      if (shape.vocab_size == 0) shape.vocab_size = tok.vocab_size();
      if (shape.mask_token_id < 0) {
        if (!tok.mask_id()) fail("{}: the tokenizer has no mask token; set model.mask_token_id", spec.tokenizer);
        shape.mask_token_id = *tok.mask_id();
      }
      if (shape.bos_token_id < 0 && tok.bos_id()) shape.bos_token_id = *tok.bos_id();
      if (shape.eos_token_id < 0 && tok.eos_id()) shape.eos_token_id = *tok.eos_id();
    }
    shape.validate();
    out.model = TrainModel::create(shape, config.seed, spec.init_std);
  }
  const ModelConfig& c = out.model->config();
  if (out.tokenizer && out.tokenizer->vocab_size() > c.vocab_size) {
    fail("{}: the tokenizer has {} tokens but the model's vocabulary only {}", config.source,
         out.tokenizer->vocab_size(), c.vocab_size);
  }
  if (c.mask_token_id < 0) fail("{}: the model has no mask token; masked diffusion needs one", config.source);
  return out;
}

// A resumed run must draw the same batches and noise as the run that wrote the checkpoint.
void check_same_run(const TrainConfig& now, const TrainConfig& then, const std::string& ckpt) {
  auto same = [&](const char* key, const auto& a, const auto& b) {
    if (a != b) {
      fail("{}: written by a run with {} = {}, but {} has {}; resuming would not continue that run", ckpt,
           key, fmt::to_string(b), now.source, fmt::to_string(a));
    }
  };
  same("train.seed", now.seed, then.seed);
  same("data.seq_len", now.seq_len, then.seq_len);
  same("data.format", std::string(now.sft ? "sft" : "pretrain"), std::string(then.sft ? "sft" : "pretrain"));
  same("train.batch_size", now.batch_size, then.batch_size);
  same("train.grad_accum", now.grad_accum, then.grad_accum);
  same("objective.schedule", std::string(schedule_name(now.schedule)), std::string(schedule_name(then.schedule)));
  same("objective.t_sampling", std::string(time_sampling_name(now.t_sampling)),
       std::string(time_sampling_name(then.t_sampling)));
  same("objective.t_eps", now.t_eps, then.t_eps);
  same("data.train domains", now.train_data.size(), then.train_data.size());
  for (size_t i = 0; i < now.train_data.size(); ++i) {
    same("data.train name", now.train_data[i].name, then.train_data[i].name);
    same("data.train weight", now.train_data[i].weight, then.train_data[i].weight);
  }
}

// Drops log lines past the checkpoint (steps that will run again) and any torn last line.
void truncate_log(const std::string& path, int64_t last_step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer()) continue;
    if (j["step"].get<int64_t>() <= last_step) kept += line + "\n";
  }
  in.close();
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << kept;
    if (!out) fail("{}: cannot write", temp);
  }
  fs::rename(temp, path);
}

nlohmann::json heldout_json(const std::vector<DomainNelbo>& heldout) {
  nlohmann::json j = nlohmann::json::object();
  for (const DomainNelbo& d : heldout) {
    j[d.name] = {{"bits_per_token", d.bits_per_token},
                 {"nats_per_token", d.nats_per_token},
                 {"perplexity_bound", d.perplexity_bound},
                 {"std_error_bits", d.std_error_bits},
                 {"windows", d.windows}};
  }
  return j;
}

std::vector<TokenShards> open_all(const std::vector<DataSpec>& specs) {
  std::vector<TokenShards> out;
  for (const DataSpec& d : specs) out.push_back(TokenShards::open(d.path));
  return out;
}

}  // namespace

RunResult run_training(const TrainConfig& config, const RunOptions& options) {
  const std::string ckpt = checkpoint_path(config.out_dir);
  if (!options.resume && fs::exists(ckpt)) {
    fail("{}: a checkpoint is already there; pass --resume to continue that run or choose another output folder",
         ckpt);
  }
  if (options.resume && !fs::exists(ckpt)) fail("{}: no checkpoint to resume from", ckpt);

  if (config.lora && !config.devices.empty()) {
    fail("devices {}: the CUDA engine does not support LoRA; LoRA trains on the CPU",
         fmt::join(config.devices, ","));
  }
  const auto n_devices = static_cast<int64_t>(std::max<size_t>(1, config.devices.size()));
  if (config.batch_size % n_devices != 0) {
    fail("{}: train.batch_size {} does not split evenly across {} GPUs (--devices {}); make it a "
         "multiple of {}",
         config.source, config.batch_size, n_devices, fmt::join(config.devices, ","), n_devices);
  }
  if (config.lora && config.device != "cpu") {
    fail("device '{}': the CUDA engine does not support LoRA; LoRA trains on the CPU (--device cpu)", config.device);
  }
  const bool on_cpu = config.device == "cpu";
  if (on_cpu && !config.precision.empty() && config.precision != "f32") {
    fail("{}: train.precision = \"{}\" needs a CUDA device; the CPU trains in f32 (set precision = \"f32\" "
         "or --device cuda)",
         config.source, config.precision);
  }
  const DevicePrecision precision =
      parse_device_precision(config.precision.empty() ? (on_cpu ? "f32" : "bf16") : config.precision);
  ThreadPool pool(config.threads);
  LoadedModel loaded = load_model(config);
  TrainModel& model = *loaded.model;
  model.set_device_precision(precision);
  if (config.devices.empty()) {
    model.set_device(config.device);
  } else {
    model.set_devices(config.devices);
  }
  if (config.lora) model.add_lora(*config.lora);  // before AdamW, which keeps the parameter list
  const int32_t vocab = static_cast<int32_t>(model.config().vocab_size);

  // Pre-training draws windows from token shards; SFT draws tokenized prompt/response examples.
  std::optional<DataSampler> sampler;
  std::optional<SftSampler> sft_sampler;
  std::vector<SftDataset> sft_heldout;
  std::vector<TokenShards> heldout_shards;
  std::vector<EvalDomain> heldout;
  std::vector<std::string> data_notes;
  if (config.sft) {
    if (!loaded.tokenizer) {
      fail("{}: data.format = \"sft\" needs a tokenizer (model.tokenizer, or a model.init_from GGUF with a vocabulary)",
           config.source);
    }
    const int32_t eos = model.config().eos_token_id >= 0 ? static_cast<int32_t>(model.config().eos_token_id)
                                                          : loaded.tokenizer->eos_id().value_or(-1);
    auto load = [&](const DataSpec& d) {
      SftDataset data =
          loaded.chat_template
              ? load_sft_jsonl(d.path, d.name, *loaded.tokenizer, eos, config.seq_len, *loaded.chat_template)
              : load_sft_jsonl(d.path, d.name, *loaded.tokenizer, eos, config.seq_len);
      for (const SftExample& e : data.examples) {
        for (int32_t id : e.tokens) {
          if (id >= vocab) fail("{}: token id {} is outside the model's vocabulary of {}", d.path, id, vocab);
        }
      }
      data_notes.push_back(fmt::format("SFT data {}: {} examples, {} truncated to seq_len {}, {} skipped (prompt fills seq_len)",
                                       d.path, data.examples.size(), data.truncated, config.seq_len, data.skipped));
      return data;
    };
    std::vector<SftDomain> domains;
    for (const DataSpec& d : config.train_data) domains.push_back({load(d), d.weight});
    sft_sampler.emplace(std::move(domains), config.seq_len, config.seed);
    for (const DataSpec& d : config.heldout_data) sft_heldout.push_back(load(d));
  } else {
    std::vector<DataDomain> domains;
    for (const DataSpec& d : config.train_data) domains.push_back({d.name, TokenShards::open(d.path), d.weight});
    sampler.emplace(std::move(domains), config.seq_len, vocab, config.seed);
    heldout_shards = open_all(config.heldout_data);
    for (size_t i = 0; i < heldout_shards.size(); ++i) heldout.push_back({config.heldout_data[i].name, &heldout_shards[i]});
  }
  const bool has_heldout = !heldout.empty() || !sft_heldout.empty();
  EvalOptions eval_options;
  eval_options.samples = config.eval_samples;
  eval_options.windows = config.eval_windows;
  eval_options.seq_len = config.seq_len;
  eval_options.batch = config.batch_size;

  AdamW optimizer(model.parameters(), config.adamw);
  fs::create_directories(config.out_dir);
  const std::string log_path = (fs::path(config.out_dir) / "log.jsonl").string();
  int64_t start_step = 0;
  if (options.resume) {
    const CheckpointInfo info = load_checkpoint(ckpt, model, optimizer);
    model.values_changed();
    check_same_run(config, parse_train_config(info.config_text, ckpt + " (its config)"), ckpt);
    start_step = info.step;
    truncate_log(log_path, start_step);
  } else {
    std::ofstream(log_path, std::ios::trunc);
    std::ofstream config_copy((fs::path(config.out_dir) / "config.toml").string(), std::ios::trunc);
    config_copy << config.text;
  }
  std::ofstream log(log_path, std::ios::app);
  if (!log) fail("{}: cannot open the training log", log_path);
  // On a GPU the optimiser state lives there (after any resume has loaded it on the host), so
  // a step moves no weights or gradients between host and device.
  const bool device_adamw = !config.lora && model.start_device_optimizer(optimizer);

  ObjectiveOptions objective;
  objective.schedule = config.schedule;
  objective.eps = config.t_eps;
  objective.sampling = config.t_sampling;
  objective.mask_id = static_cast<int32_t>(model.config().mask_token_id);
  objective.seed = config.seed;

  const LrSchedule schedule = config.lr_schedule();
  const int64_t B = config.batch_size;
  const int64_t accum = config.grad_accum;
  const int64_t per_step = config.sequences_per_step();
  const float grad_scale = 1.0f / static_cast<float>(accum);
  ProgressLine progress(options.progress);
  const std::string what =
      config.lora ? fmt::format("{} LoRA parameters (rank {}) on a frozen base of {}", model.n_trainable(),
                                config.lora->rank, model.n_parameters())
                  : fmt::format("{} parameters", model.n_parameters());
  const std::string where =
      on_cpu ? model.device_description()
             : fmt::format("{}, {} products, AdamW on the device", model.device_description(),
                           device_precision_name(precision));
  progress.message(fmt::format("training {} ({}) on {}: {} steps of {} tokens ({} x {} x {}) into {}",
                               what, arch_name(model.config().arch),
                               where, config.steps,
                               config.tokens_per_step(), config.batch_size, config.grad_accum, config.seq_len,
                               config.out_dir));
  for (const std::string& note : data_notes) progress.message(note);
  if (options.resume) progress.message(fmt::format("resuming {} at step {}", ckpt, start_step));

  RunResult result;
  result.steps_done = start_step;
  const auto run_start = Clock::now();
  double step_seconds = 0;  // time inside steps only: evaluation and checkpoints excluded
  int64_t steps_run = 0;
  CleanBatch clean;
  clean.n_seq = B;
  clean.seq_len = config.seq_len;
  clean.tokens.resize(static_cast<size_t>(B * config.seq_len));
  if (config.sft) clean.prompt_len.assign(static_cast<size_t>(B), 0);

  for (int64_t step = start_step; step < config.steps; ++step) {
    const auto step_start = Clock::now();
    model.zero_grad();
    double loss = 0;
    int64_t masked = 0;
    int64_t scored = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      for (int64_t s = 0; s < B; ++s) {
        if (sft_sampler) {
          sft_sampler->fill(step, micro * B + s, clean, s);
          continue;
        }
        sampler->sample(step, micro * B + s,
                       std::span<int32_t>(clean.tokens).subspan(static_cast<size_t>(s * config.seq_len),
                                                                static_cast<size_t>(config.seq_len)));
      }
      const DiffusionBatch noised = make_diffusion_batch(clean, objective, step, micro * B, per_step);
      loss += model.forward_backward(noised.batch, grad_scale, pool) / static_cast<double>(accum);
      masked += noised.n_masked;
      scored += noised.n_scored;
    }
    const double lr = schedule.at(step);
    const auto diverged = [&](double grad_norm) {
      fail("step {}: loss {} / gradient norm {} is not finite; the run diverged (lower train.lr, raise "
           "train.warmup_steps); the last checkpoint is {}",
           step + 1, loss, grad_norm, ckpt);
    };
    double grad_norm = 0;
    if (device_adamw) {
      if (!std::isfinite(loss)) diverged(NAN);
      // The norm is known only once the step ran; a non-finite one stops the run before any
      // checkpoint takes the damaged values.
      grad_norm = model.device_optimizer_step(lr, config.grad_clip);
      if (!std::isfinite(grad_norm)) diverged(grad_norm);
    } else {
      grad_norm = optimizer.clip_gradients(config.grad_clip, pool);
      if (!std::isfinite(loss) || !std::isfinite(grad_norm)) diverged(grad_norm);
      optimizer.step(lr, pool);
      model.values_changed();
    }
    step_seconds += std::chrono::duration<double>(Clock::now() - step_start).count();
    ++steps_run;

    StepStats stats;
    stats.step = step + 1;
    stats.total = config.steps;
    stats.loss = loss;
    stats.lr = lr;
    stats.grad_norm = grad_norm;
    stats.masked_fraction = scored > 0 ? static_cast<double>(masked) / static_cast<double>(scored) : 0.0;
    stats.tokens = stats.step * config.tokens_per_step();
    stats.tokens_per_s = static_cast<double>(steps_run * config.tokens_per_step()) / step_seconds;
    stats.elapsed_s = std::chrono::duration<double>(Clock::now() - run_start).count();
    stats.eta_s = step_seconds / static_cast<double>(steps_run) * static_cast<double>(config.steps - stats.step);

    const bool last = stats.step == config.steps;
    const bool eval_now = has_heldout &&
                          (last || (config.eval_interval > 0 && stats.step % config.eval_interval == 0));
    if (eval_now) {
      stats.heldout = config.sft ? evaluate_sft_nelbo(model, sft_heldout, eval_options, pool)
                                 : evaluate_nelbo(model, heldout, eval_options, pool);
      result.heldout = stats.heldout;
    }
    nlohmann::json line = {{"step", stats.step},
                           {"loss", stats.loss},
                           {"lr", stats.lr},
                           {"grad_norm", stats.grad_norm},
                           {"masked_fraction", stats.masked_fraction},
                           {"tokens", stats.tokens},
                           {"tokens_per_s", stats.tokens_per_s},
                           {"elapsed_s", stats.elapsed_s}};
    if (eval_now) line["heldout"] = heldout_json(stats.heldout);
    log << line.dump() << '\n';
    log.flush();
    progress.update(stats, eval_now || last || steps_run == 1);
    if (eval_now) progress.message(fmt::format("step {}: held-out {}", stats.step, describe_heldout(stats.heldout)));
    if (options.on_step) options.on_step(stats);
    result.steps_done = stats.step;

    const bool stop_requested = options.stop && options.stop->load();
    const bool stop_here = stats.step == options.stop_after;
    if (last || stop_requested || stop_here ||
        (config.checkpoint_interval > 0 && stats.step % config.checkpoint_interval == 0)) {
      model.sync_from_device();
      save_checkpoint(config.out_dir, model, optimizer, stats.step, config.text);
      if (config.lora) model.save_lora(config.out_dir, config.model.init_from);
      result.checkpoint = ckpt;
    }
    if (!last && (stop_requested || stop_here)) {
      result.interrupted = stop_requested;
      progress.message(fmt::format("stopped after step {}; checkpoint {} (continue with --resume)", stats.step, ckpt));
      return result;
    }
  }
  progress.finish();
  model.sync_from_device();  // the export reads the host values

  if (result.checkpoint.empty()) {
    // Resumed at the final step: nothing ran, the checkpoint on disk is already current.
    result.checkpoint = ckpt;
  }
  const Tokenizer* tokenizer = loaded.tokenizer ? &*loaded.tokenizer : nullptr;
  if (config.lora) {
    // The adapter folder is the run folder itself, so PEFT's from_pretrained(OUT) reads it.
    model.save_lora(config.out_dir, config.model.init_from);
    result.model_path = lora_weights_path(config.out_dir);
    progress.message(fmt::format("wrote the LoRA adapter {} and {}", result.model_path, lora_config_path(config.out_dir)));
    if (config.merge_lora) {
      model.merge_lora();
      result.model_path = (fs::path(config.out_dir) / "model.gguf").string();
      model.save_gguf(result.model_path, config.export_type, tokenizer);
      progress.message(fmt::format("wrote {} ({}, base with the adapters merged)", result.model_path,
                                   type_name(config.export_type)));
    }
    result.finished = true;
    return result;
  }
  result.model_path = (fs::path(config.out_dir) / "model.gguf").string();
  model.save_gguf(result.model_path, config.export_type, loaded.tokenizer ? &*loaded.tokenizer : nullptr);
  result.finished = true;
  progress.message(fmt::format("wrote {} ({}, {} parameters{})", result.model_path, type_name(config.export_type),
                               model.n_parameters(), loaded.tokenizer ? "" : ", no vocabulary"));
  return result;
}

}  // namespace ruvdllm::train
