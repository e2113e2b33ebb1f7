#pragma once
// The generation loop: append gen_len mask tokens to the prompt, then run steps that each
// forward the whole canvas and commit some masked positions, until none is left.
//
// The canvas is the prompt followed by gen_len masks. The prompt may itself hold mask tokens
// (infilling): those are filled too, conditioned on the text on both sides, and every position
// that was not a mask is never changed. The generated region starts at the first mask of the
// canvas; LLaDA-style blocks (block_len > 0) tile that region only, never the prompt before it.
//
// Commit counts per step (see schedule.h):
//  - block_len > 0 with the linear schedule: LLaDA's even split floor(m/S) + [i < m mod S];
//  - otherwise Dream's timestep count floor(M·(α(s) − α(t))/(1 − α(t))) on the grid
//    t_k = 1 − (k/N)(1 − eps), inside each block (block_len = 0: one block);
//  - the `origin` rule instead moves each masked position independently with probability
//    (α(s) − α(t))/(1 − α(t)) (MDLM ancestral sampling);
//  - the last step of a block always commits everything left in it.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/diffusion/denoiser.h"
#include "ruvdllm/diffusion/sampler.h"
#include "ruvdllm/diffusion/schedule.h"
#include "ruvdllm/model/model.h"

namespace ruvdllm {

struct GenerationOptions {
  // Masks appended after the prompt. 0 is allowed only when the prompt holds masks (infilling).
  int64_t gen_len = 128;
  // Forward passes to spend. Clamped to the number of masks (a step commits at least one token
  // in block mode), and raised to the number of blocks holding masks.
  int64_t steps = 128;
  int64_t block_len = 0;  // 0: no blocks (Dream style); > 0: LLaDA semi-autoregressive blocks
  Unmasking algorithm = Unmasking::Confidence;
  NoiseSchedule schedule = NoiseSchedule::Linear;
  double eps = 1e-3;      // final time of the timestep grid, in [0, 1)
  float temperature = 0;  // 0: argmax
  int64_t top_k = 0;      // 0: off
  float top_p = 1;        // 1: off
  bool gumbel = false;    // LLaDA-style Gumbel-max token draws (same distribution as the default)
  float cfg_scale = 0;  // > 0: classifier-free guidance (a second sequence with the prompt masked)
  float alg_temp = 0;   // > 0: stochastic position choice
  uint64_t seed = 0;
  // Once an end-of-sequence token is committed in the appended answer, every later answer
  // position becomes EOS too (committed or not), as LLaDA's outputs end; generation then skips
  // the steps that have nothing left to fill. Infilled prompt masks are never EOS-filled.
  bool eos_fill = true;
  int64_t mask_id = -1;  // -1: the model's mask token
  int64_t eos_id = -1;   // -1: the model's EOS token (EOS fill is off when there is none)
  // Block diffusion with a KV cache (BD3-LM, spec §6 A.6): everything before the current block
  // (prompt, finished blocks) is run once into the cache, and each step forwards only the
  // current block, which sees the cache and itself but not the blocks after it. Exact for
  // block-diffusion models; for LLaDA/Dream, which were trained to attend to the masked
  // future, it is a faster approximation. block_len = 0 caches just the prompt. Not with
  // cfg_scale (guidance runs two sequences).
  bool cache_blocks = false;
};

// What the per-step callback sees. Spans are valid only during the call.
struct StepInfo {
  int64_t step = 0;         // 0-based
  int64_t total_steps = 0;  // planned; generation may finish earlier after an EOS fill
  int64_t block = 0;        // index of the block being generated
  std::span<const int32_t> canvas;
  std::span<const int64_t> positions;   // committed by sampling this step, ascending
  std::span<const float> confidences;   // p(token) of each, under softmax(logits/τ)
  std::span<const int64_t> eos_filled;  // positions set to EOS by eos_fill this step
  double forward_ms = 0;
  double sampling_ms = 0;
};
// Return false to stop generating (the result then still holds masks).
using StepCallback = std::function<bool(const StepInfo&)>;

struct StepTiming {
  double forward_ms = 0;   // model forward (both sequences with guidance)
  double sampling_ms = 0;  // guidance, softmax, token and position choice, commits
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // the final canvas: prompt (infilled) then the answer
  int64_t prompt_len = 0;       // the answer is tokens[prompt_len, end)
  int64_t steps_run = 0;
  int64_t steps_planned = 0;
  bool stopped = false;  // the callback returned false
  std::vector<StepTiming> timings;
  double forward_ms = 0;
  double sampling_ms = 0;

  std::span<const int32_t> answer() const {
    return std::span<const int32_t>(tokens).subspan(static_cast<size_t>(prompt_len));
  }
};

// Runs generations on one model, keeping the logits buffers between calls.
class Generator {
 public:
  // On the CPU.
  Generator(Model& model, ThreadPool& pool);
  // On any denoiser (e.g. a GPU's), which must outlive the generator.
  explicit Generator(Denoiser& denoiser);
  // Throws Error for bad options (gen_len <= 0 without prompt masks or past the model's context,
  // steps <= 0, a missing mask token, token ids outside the vocabulary, ...).
  GenerationResult run(std::span<const int32_t> prompt, const GenerationOptions& options,
                       const StepCallback& on_step = {});

 private:
  std::unique_ptr<Denoiser> owned_;
  Denoiser& denoiser_;
  std::vector<int32_t> tokens_;
};

GenerationResult generate(Model& model, std::span<const int32_t> prompt,
                          const GenerationOptions& options, ThreadPool& pool,
                          const StepCallback& on_step = {});

}  // namespace ruvdllm
