// The generation loop: forward the canvas, commit positions, repeat, block by block.
#include "ruvdllm/diffusion/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "ruvdllm/core/error.h"

namespace ruvdllm {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

SamplingOptions sampling_options(const GenerationOptions& o) {
  SamplingOptions s;
  s.rule = o.algorithm;
  s.temperature = o.temperature;
  s.top_k = o.top_k;
  s.top_p = o.top_p;
  s.gumbel = o.gumbel;
  s.alg_temp = o.alg_temp;
  s.cfg_scale = o.cfg_scale;
  s.seed = o.seed;
  return s;
}

struct SpecialIds {
  int32_t mask = -1;
  int32_t eos = -1;  // -1: no EOS fill
};

SpecialIds resolve_ids(const ModelConfig& config, const GenerationOptions& o) {
  const int64_t vocab = config.vocab_size;
  SpecialIds ids;
  const int64_t mask = o.mask_id >= 0 ? o.mask_id : config.mask_token_id;
  if (mask < 0) fail("generate: the model has no mask token; set the mask id explicitly");
  if (mask >= vocab) fail("generate: mask id {} is outside the vocabulary of {}", mask, vocab);
  ids.mask = static_cast<int32_t>(mask);
  const int64_t eos = o.eos_id >= 0 ? o.eos_id : config.eos_token_id;
  if (eos >= vocab) fail("generate: EOS id {} is outside the vocabulary of {}", eos, vocab);
  if (o.eos_fill && eos >= 0) ids.eos = static_cast<int32_t>(eos);
  return ids;
}

void validate_generation(const ModelConfig& config, std::span<const int32_t> prompt,
                         const GenerationOptions& o, int32_t mask_id) {
  if (config.vocab_size <= 0) fail("generate: the model reports no vocabulary");
  if (o.steps <= 0) fail("generate: steps must be > 0, got {}", o.steps);
  if (o.block_len < 0)
    fail("generate: block_len must be >= 0 (0 = no blocks), got {}", o.block_len);
  if (!(o.eps >= 0 && o.eps < 1)) fail("generate: eps must be in [0, 1), got {}", o.eps);
  if (o.cache_blocks && o.cfg_scale > 0) {
    fail("generate: cache_blocks cannot be combined with cfg_scale (guidance runs two sequences)");
  }
  validate_sampling(sampling_options(o));
  int64_t prompt_masks = 0;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= config.vocab_size) {
      fail("generate: prompt token {} at position {} is outside the vocabulary of {}", prompt[i], i,
           config.vocab_size);
    }
    prompt_masks += prompt[i] == mask_id;
  }
  if (o.gen_len < 0 || (o.gen_len == 0 && prompt_masks == 0)) {
    fail("generate: gen_len must be > 0 (got {}), or the prompt must hold mask tokens to infill",
         o.gen_len);
  }
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  if (config.context_length > 0 && o.gen_len > config.context_length - prompt_len) {
    fail("generate: prompt of {} tokens + gen_len {} exceeds the model context of {}", prompt_len,
         o.gen_len, config.context_length);
  }
}

}  // namespace

Generator::Generator(Model& model, ThreadPool& pool)
    : owned_(std::make_unique<ModelDenoiser>(model, pool)), denoiser_(*owned_) {}

Generator::Generator(Denoiser& denoiser) : denoiser_(denoiser) {}

GenerationResult Generator::run(std::span<const int32_t> prompt, const GenerationOptions& o,
                                const StepCallback& on_step) {
  const ModelConfig& config = denoiser_.config();
  const SpecialIds ids = resolve_ids(config, o);
  validate_generation(config, prompt, o, ids.mask);
  const int64_t vocab = config.vocab_size;

  GenerationResult result;
  result.prompt_len = static_cast<int64_t>(prompt.size());
  std::vector<int32_t>& canvas = result.tokens;
  canvas.assign(prompt.begin(), prompt.end());
  canvas.resize(prompt.size() + static_cast<size_t>(o.gen_len), ids.mask);
  const auto length = static_cast<int64_t>(canvas.size());

  const auto first_mask = std::find(canvas.begin(), canvas.end(), ids.mask);
  const std::vector<BlockPlan> blocks =
      plan_blocks(canvas, ids.mask, first_mask - canvas.begin(), o.block_len, o.steps);
  for (const BlockPlan& block : blocks) result.steps_planned += block.steps;

  SamplingOptions sampling = sampling_options(o);
  sampling.mask_id = ids.mask;
  Sampler sampler(vocab, sampling);
  const bool guided = o.cfg_scale > 0;
  const int64_t n_seq = guided ? 2 : 1;
  ForwardOptions forward_options;
  forward_options.n_seq = n_seq;
  if (guided) {
    // LLaDA's unconditional input: the same canvas with the whole prompt masked.
    tokens_.resize(static_cast<size_t>(2 * length));
    std::fill(tokens_.begin() + length, tokens_.begin() + length + result.prompt_len, ids.mask);
  }
  const bool even_counts = o.block_len > 0 && o.schedule == NoiseSchedule::Linear;

  KVCache cache;
  std::vector<int64_t> candidates, block_rows, committed_positions, eos_filled;
  std::vector<float> confidences;
  int64_t step = 0;
  for (size_t b = 0; b < blocks.size() && !result.stopped; ++b) {
    const BlockPlan& block = blocks[b];
    // The block's masked positions: the only rows a step samples, so the only rows whose
    // logits a forward pass computes (ForwardOptions::logit_rows).
    auto gather_candidates = [&] {
      candidates.clear();
      for (int64_t p = block.begin; p < block.end; ++p) {
        if (canvas[static_cast<size_t>(p)] == ids.mask) candidates.push_back(p);
      }
    };
    gather_candidates();
    // An EOS fill may have emptied part of the block since it was planned.
    const int64_t block_steps =
        std::min<int64_t>(block.steps, static_cast<int64_t>(candidates.size()));
    const std::vector<int64_t> counts =
        even_counts ? even_transfer_counts(static_cast<int64_t>(candidates.size()), block_steps)
                    : std::vector<int64_t>{};

    for (int64_t i = 0; i < block_steps && !candidates.empty(); ++i) {
      const auto forward_start = Clock::now();
      int64_t first_row = 0;
      forward_options.logit_rows = candidates;  // uncached passes: rows are canvas positions
      if (o.cache_blocks) {
        // The prompt, or the block finished since the last pass, goes into the cache in the
        // same pass as this block's step (ForwardOptions::extend_rows): one pass of both
        // costs about one of the block alone on a GPU, whose passes are bound by weights.
        first_row = cache.n_tokens;
        ForwardOptions current;
        current.cache = &cache;
        current.extend_rows = block.begin - first_row;
        block_rows.clear();
        for (const int64_t p : candidates) block_rows.push_back(p - first_row);
        current.logit_rows = block_rows;
        denoiser_.forward(
            std::span<const int32_t>(canvas).subspan(static_cast<size_t>(first_row),
                                                     static_cast<size_t>(block.end - first_row)),
            current);
      } else if (guided) {
        std::copy(canvas.begin(), canvas.end(), tokens_.begin());
        std::copy(canvas.begin() + result.prompt_len, canvas.end(),
                  tokens_.begin() + length + result.prompt_len);
        denoiser_.forward(tokens_, forward_options);
      } else {
        denoiser_.forward(canvas, forward_options);
      }
      StepTiming timing;
      timing.forward_ms = ms_since(forward_start);

      const auto sampling_start = Clock::now();
      const auto masked = static_cast<int64_t>(candidates.size());
      const bool last = i == block_steps - 1;
      Transfer transfer;
      if (last) {
        transfer.count = masked;
        transfer.probability = 1.0;
      } else if (o.algorithm == Unmasking::Origin) {
        transfer.probability = transfer_probability(o.schedule, i, block_steps, o.eps);
      } else if (even_counts) {
        transfer.count = std::min(masked, counts[static_cast<size_t>(i)]);
      } else {
        transfer.count = timestep_transfer_count(o.schedule, masked, i, block_steps, o.eps);
      }
      const std::vector<Proposal>& commits = sampler.step(
          [&](std::span<const int64_t> positions, std::vector<Proposal>* out) {
            denoiser_.propose(positions, first_row, sampling, step, out);
          },
          [&](std::span<const int64_t> chosen_from, int64_t count, std::vector<Proposal>* out) {
            return denoiser_.propose_top(chosen_from, first_row, sampling, step, count, out);
          },
          candidates, transfer, step);

      committed_positions.clear();
      confidences.clear();
      eos_filled.clear();
      int64_t first_eos = length;
      for (const Proposal& p : commits) {
        canvas[static_cast<size_t>(p.position)] = p.token;
        committed_positions.push_back(p.position);
        confidences.push_back(p.confidence);
        if (p.token == ids.eos && p.position >= result.prompt_len) {
          first_eos = std::min(first_eos, p.position);
        }
      }
      for (int64_t q = first_eos + 1; q < length; ++q) {
        if (canvas[static_cast<size_t>(q)] != ids.eos) {
          canvas[static_cast<size_t>(q)] = ids.eos;
          eos_filled.push_back(q);
        }
      }
      timing.sampling_ms = ms_since(sampling_start);

      result.timings.push_back(timing);
      result.forward_ms += timing.forward_ms;
      result.sampling_ms += timing.sampling_ms;
      ++result.steps_run;
      if (on_step) {
        StepInfo info;
        info.step = step;
        info.total_steps = result.steps_planned;
        info.block = static_cast<int64_t>(b);
        info.canvas = canvas;
        info.positions = committed_positions;
        info.confidences = confidences;
        info.eos_filled = eos_filled;
        info.forward_ms = timing.forward_ms;
        info.sampling_ms = timing.sampling_ms;
        if (!on_step(info)) {
          result.stopped = true;
          break;
        }
      }
      ++step;
      gather_candidates();
    }
  }
  return result;
}

GenerationResult generate(Model& model, std::span<const int32_t> prompt,
                          const GenerationOptions& options, ThreadPool& pool,
                          const StepCallback& on_step) {
  Generator generator(model, pool);
  return generator.run(prompt, options, on_step);
}

}  // namespace ruvdllm
