// Token sampling on the GPU: one thread block per candidate row, the same proposal as
// ruvdllm::sample_position (src/diffusion/token_sampler.cpp) without copying logits to the host;
// and the choice of the positions to commit among those proposals (choose_top), near the end.
//
// Precision choices, and why they keep GPU and CPU tokens equal:
//  - the row statistics (max, argmax with lowest id, second, Σe, Σe·d) follow the CPU formulas
//    term by term (e = exp(max((x − max)·τ⁻¹, −104)), 0 below −87) and sum in double;
//  - the masses the draw and the nucleus compare against are sums of integers round(e·2^s)
//    (s chosen per vocabulary so the row total stays below 2^62): integer sums are exact in
//    any order, so the shared-memory histogram atomics, the nucleus boundary and the
//    inverse-CDF walk agree bit for bit with each other and between runs;
//  - top-k lists follow the CPU: float weights exp((x − max)·τ⁻¹), double sums;
//  - greedy rows (τ = 0) need only Σe and Σe·d for their scores, so they are summed in the
//    same pass as the maximum, against a running maximum (rescaled exactly in double).
// The few rows where a draw lands within rounding of a CDF boundary may still differ.
//
// Passes over a row: greedy 1; sampled 2 + the support (top-k: 4 radix passes and a collect;
// top-p: 1–3 histogram passes over the entries above a probed floor, a collect) + the draw.
//
// No fmt here: nvcc's host pass cannot compile it; errors go through throw_error.
#include <climits>
#include <cmath>
#include <cstddef>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/sampling.h"
#include "cuda/sampling_block.cuh"

namespace ruvdllm::cuda {
namespace {

// ---- the nucleus of a whole row (top-p without top-k) ----

// Boundary digit of a histogram scanned from the top: the first bin whose cumulative mass
// (plus `above`) reaches target. Sets s.bin (−1 when none), s.above (mass above that bin)
// and s.bin_size. Run by every thread; warp 0 does the work.
__device__ void find_mass_boundary(Shared& s, u64 above, u64 target) {
  __syncthreads();
  if (threadIdx.x < kWarp) {
    const int lane = threadIdx.x;
    constexpr int per_lane = kBins / kWarp;
    const int top = kBins - 1 - lane * per_lane;  // lane 0 holds the highest bins
    u64 mass = 0;
    for (int j = 0; j < per_lane; ++j) mass += s.bin_mass[top - j];
    u64 incl = mass;
    for (int offset = 1; offset < kWarp; offset <<= 1) {
      const u64 y = __shfl_up_sync(kFull, incl, offset);
      if (lane >= offset) incl += y;
    }
    const u64 excl = incl - mass;  // exact in integers
    const unsigned crossing = __ballot_sync(kFull, above + incl >= target);
    if (lane == 0) s.bin = -1;
    __syncwarp();
    if (crossing != 0 && lane == __ffs(crossing) - 1) {
      u64 cum = above + excl;
      for (int j = 0; j < per_lane; ++j) {
        const int b = top - j;
        if (cum + s.bin_mass[b] >= target) {
          s.bin = b;
          s.above = cum;
          s.bin_size = s.bin_count[b];
          break;
        }
        cum += s.bin_mass[b];
      }
    }
  }
  __syncthreads();
}

__device__ void clear_bins(Shared& s, int bins) {
  for (int b = threadIdx.x; b < bins; b += kThreads) {
    s.bin_mass[b] = 0;
    s.bin_count[b] = 0;
  }
}

struct Nucleus {
  Cut cut;
  u64 mass;
};

// Shortest most-likely-first set of entries whose fixed-point mass reaches target, found by
// up to three histogram levels over the weights' float bits and a sort of the few entries of
// the boundary bin. Only entries with e > weight_floor take part: the caller has checked that their
// mass reaches the target, so the nucleus lies among them.
__device__ Nucleus row_nucleus(const float* x, int64_t n, float max, float inv_temp, float scale,
                               u64 target, float weight_floor, Shared& s) {
  uint32_t prefix = 0;
  u64 above = 0;
  int shift = 20;
  for (int level = 0;; ++level) {
    clear_bins(s, kBins);
    __syncthreads();
    for_each_logit(x, n, [&](int64_t, float v) {
      const float e = weight_of(v, max, inv_temp);
      const uint32_t bits = __float_as_uint(e);
      if (e > weight_floor && (level == 0 || (bits >> (shift + 10)) == prefix)) {
        const int d = (bits >> shift) & (kBins - 1);
        atomicAdd(&s.bin_count[d], 1u);
        atomicAdd(&s.bin_mass[d], fixed_of(e, scale));
      }
    });
    find_mass_boundary(s, above, target);
    if (s.bin < 0) return {Cut{-1.0f, -1}, above};  // unreachable with exact sums; keep all
    prefix = (prefix << 10) | static_cast<uint32_t>(s.bin);
    above = s.above;
    if (s.bin_size <= static_cast<uint32_t>(kCapacity) || shift == 0) break;
    shift -= 10;
  }
  const uint32_t bin_size = s.bin_size;
  __syncthreads();

  if (bin_size > static_cast<uint32_t>(kCapacity)) {
    // More than kCapacity entries share one weight: keep the m lowest ids among them, the
    // m-th found by bisection on the id.
    const float e_tie = __uint_as_float(prefix);
    const u64 f_tie = fixed_of(e_tie, scale);
    if (f_tie == 0) return {Cut{-1.0f, -1}, above};  // unreachable: the bin has mass
    const u64 m = (target - above + f_tie - 1) / f_tie;
    int64_t lo = 0, hi = n - 1;  // the answer lies in [lo, hi]
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      u64 count = 0;
      for (int64_t i = threadIdx.x; i <= mid; i += kThreads)
        count += weight_of(x[i], max, inv_temp) == e_tie ? 1 : 0;
      count = block_reduce(count, Plus{}, s.scratch_u);
      if (count >= m) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return {Cut{e_tie, lo}, above + m * f_tie};
  }

  if (threadIdx.x == 0) s.counter = 0;
  __syncthreads();
  for_each_logit(x, n, [&](int64_t i, float v) {
    const float e = weight_of(v, max, inv_temp);
    if (e > weight_floor && (__float_as_uint(e) >> shift) == prefix) {
      const int slot = atomicAdd(&s.counter, 1);
      s.cand_key[slot] = e;
      s.cand_id[slot] = static_cast<int32_t>(i);
    }
  });
  __syncthreads();
  const int count = s.counter;
  const int size = pow2_at_least(count);
  pad_candidates(s, count, size);
  bitonic_sort(s, size, by_key_desc);

  int begin, end;
  thread_slice(count, &begin, &end);
  u64 local = 0;
  for (int j = begin; j < end; ++j) local += fixed_of(s.cand_key[j], scale);
  u64 cum = above + block_exclusive_scan(local, s.scratch_u);
  if (threadIdx.x == 0) s.found = INT_MAX;
  __syncthreads();
  for (int j = begin; j < end; ++j) {
    cum += fixed_of(s.cand_key[j], scale);
    if (cum >= target) {
      atomicMin(&s.found, j);
      break;
    }
  }
  __syncthreads();
  const int j = s.found;
  if (j == INT_MAX) return {Cut{-1.0f, -1}, above};
  // The exact mass through j, recomputed in one fixed order.
  u64 through = 0;
  for (int t = threadIdx.x; t <= j; t += kThreads) through += fixed_of(s.cand_key[t], scale);
  through = block_reduce(through, Plus{}, s.scratch_u);
  return {Cut{s.cand_key[j], s.cand_id[j]}, above + through};
}

// Inverse-CDF draw in id order over the entries the cut keeps: the first whose running
// fixed-point mass exceeds target (< the kept mass, so one always does). Each warp first sums a
// contiguous segment; the warp whose segment crosses the target then walks it 32 at a time.
__device__ int64_t draw_in_id_order(const float* x, int64_t n, float max, float inv_temp,
                                    float scale, Cut cut, u64 target, int64_t fallback, Shared& s) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t segment = ((n + kWarps - 1) / kWarps + kWarp - 1) / kWarp * kWarp;
  const int64_t begin = min(n, warp * segment), end = min(n, begin + segment);
  auto kept_fixed = [&](int64_t i) -> u64 {
    const float e = weight_of(x[i], max, inv_temp);
    return cut.contains(e, i) ? fixed_of(e, scale) : 0;
  };
  u64 local = 0;
  for (int64_t i = begin + lane; i < end; i += kWarp) local += kept_fixed(i);
  local = warp_reduce(local, Plus{});
  __syncthreads();
  if (lane == 0) s.scratch_u[warp] = local;
  if (threadIdx.x == 0) s.token = fallback;
  __syncthreads();
  u64 running = 0;
  int crossing_warp = -1;
  for (int w = 0; w < kWarps; ++w) {
    if (running + s.scratch_u[w] > target) {
      crossing_warp = w;
      break;
    }
    running += s.scratch_u[w];
  }
  if (warp == crossing_warp) {
    for (int64_t base = begin; base < end; base += kWarp) {
      const int64_t i = base + lane;
      const u64 f = i < end ? kept_fixed(i) : 0;
      u64 incl = f;
      for (int offset = 1; offset < kWarp; offset <<= 1) {
        const u64 y = __shfl_up_sync(kFull, incl, offset);
        if (lane >= offset) incl += y;
      }
      const unsigned crossed = __ballot_sync(kFull, running + incl > target);
      if (crossed != 0) {
        if (lane == 0) s.token = base + __ffs(crossed) - 1;
        break;
      }
      running += __shfl_sync(kFull, incl, kWarp - 1);
    }
  }
  __syncthreads();
  return s.token;
}

// Gumbel-max over the row (FMA as the CPU's vector kernel), restricted to the cut's entries
// when `restricted`. Index 0 when nothing scores above −inf, as row_gumbel_max.
__device__ int64_t row_gumbel(const float* x, int64_t n, float max, float inv_temp, uint64_t key,
                              bool restricted, Cut cut, Shared& s) {
  Best best{kNegInf, INT_MAX};
  for_each_logit(x, n, [&](int64_t i, float v) {
    if (restricted && !cut.contains(weight_of(v, max, inv_temp), i)) return;
    const float score = fmaf(v, inv_temp, gumbel_noise(key, static_cast<uint32_t>(i)));
    if (score > best.value) best = {score, static_cast<int32_t>(i)};
  });
  best = block_best(best, s);
  return best.value > kNegInf ? best.index : 0;
}

// ---- top-k ----

// Order key of a logit: unsigned comparison of keys is float comparison (−0 taken as +0).
__device__ inline uint32_t order_key(float x) {
  const uint32_t b = __float_as_uint(x == 0.0f ? 0.0f : x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ inline bool eligible(float x) { return x > kNegInf; }  // NaN and −inf never are

// Puts the k largest logits (ties to the lower id) into the candidate list; returns how many
// (fewer than k when fewer entries are eligible). Radix selection of the k-th key, 8 bits per
// pass, then one collecting pass that ranks tied entries in id order.
__device__ int top_k_candidates(const float* x, int64_t n, int k, Shared& s) {
  uint32_t prefix = 0;
  int remaining = k;
  bool take_all = false;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    clear_bins(s, kRadixBins);
    __syncthreads();
    // Logits share few high digits, so lanes with equal digits add once per warp.
    for (int64_t base = 0; base < n; base += kThreads) {
      const int64_t i = base + threadIdx.x;
      bool counted = false;
      uint32_t digit = 0;
      if (i < n) {
        const float v = x[i];
        if (eligible(v)) {
          const uint32_t key = order_key(v);
          counted = pass == 0 || (key >> (shift + 8)) == prefix;
          digit = (key >> shift) & (kRadixBins - 1);
        }
      }
      const unsigned active = __ballot_sync(kFull, counted);
      if (counted) {
        const unsigned peers = __match_any_sync(active, digit);
        if (threadIdx.x % kWarp == static_cast<unsigned>(__ffs(peers) - 1))
          atomicAdd(&s.bin_count[digit], static_cast<unsigned>(__popc(peers)));
      }
    }
    __syncthreads();
    // The digit where the count from the top reaches `remaining` (warp 0; lane 0 holds the
    // highest bins), and in s.counter the entries above it.
    if (threadIdx.x < kWarp) {
      const int lane = threadIdx.x;
      constexpr int per_lane = kRadixBins / kWarp;
      const int top = kRadixBins - 1 - lane * per_lane;
      int count = 0;
      for (int j = 0; j < per_lane; ++j) count += static_cast<int>(s.bin_count[top - j]);
      int incl = count;
      for (int offset = 1; offset < kWarp; offset <<= 1) {
        const int y = __shfl_up_sync(kFull, incl, offset);
        if (lane >= offset) incl += y;
      }
      const unsigned crossing = __ballot_sync(kFull, incl >= remaining);
      if (lane == 0) s.bin = -1;
      __syncwarp();
      if (crossing != 0 && lane == __ffs(crossing) - 1) {
        int cum = incl - count;
        for (int j = 0; j < per_lane; ++j) {
          const int c = static_cast<int>(s.bin_count[top - j]);
          if (cum + c >= remaining) {
            s.bin = top - j;
            s.counter = cum;
            break;
          }
          cum += c;
        }
      }
    }
    __syncthreads();
    if (s.bin < 0) {  // fewer than k eligible entries (only possible on the first pass)
      take_all = true;
      break;
    }
    prefix = (prefix << 8) | static_cast<uint32_t>(s.bin);
    remaining -= s.counter;
    __syncthreads();
  }
  const uint32_t threshold = prefix;
  const int ties_wanted = take_all ? 0 : remaining;

  __syncthreads();  // every thread has read s.bin and s.counter
  if (threadIdx.x == 0) {
    s.counter = 0;
    s.ties_taken = 0;
  }
  __syncthreads();
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int64_t base = 0; base < n; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    bool above = false, tie = false;
    float v = 0;
    if (i < n) {
      v = x[i];
      if (eligible(v)) {
        const uint32_t key = order_key(v);
        above = take_all || key > threshold;
        tie = !take_all && key == threshold;
      }
    }
    if (above) {
      const int slot = atomicAdd(&s.counter, 1);
      s.cand_key[slot] = v;
      s.cand_id[slot] = static_cast<int32_t>(i);
    }
    const int tile_ties = __syncthreads_count(tie);
    if (tile_ties > 0 && s.ties_taken < ties_wanted) {
      const unsigned ballot = __ballot_sync(kFull, tie);
      if (lane == 0) s.warp_count[warp] = __popc(ballot);
      __syncthreads();
      int rank = s.ties_taken + __popc(ballot & ((1u << lane) - 1));
      for (int w = 0; w < warp; ++w) rank += s.warp_count[w];
      if (tie && rank < ties_wanted) {
        const int slot = atomicAdd(&s.counter, 1);
        s.cand_key[slot] = v;
        s.cand_id[slot] = static_cast<int32_t>(i);
      }
      __syncthreads();
      if (threadIdx.x == 0) s.ties_taken += tile_ties;
    }
  }
  __syncthreads();
  return s.counter;
}

// top_k (and top_p within it) as sample_position does: the list most likely first, weights
// exp((x − max)·τ⁻¹), the nucleus prefix, then the draw walked in id order.
__device__ int64_t sample_top_k(const float* x, int64_t n, const KernelParams& p,
                                const KernelJob& job, float row_max, int64_t argmax, Shared& s) {
  int count = top_k_candidates(x, n, p.top_k, s);
  int size = pow2_at_least(count);
  pad_candidates(s, count, size);
  bitonic_sort(s, size, by_key_desc);
  for (int j = threadIdx.x; j < count; j += kThreads)
    s.cand_key[j] = expf((s.cand_key[j] - row_max) * p.inv_temp);
  __syncthreads();

  int begin, end;
  thread_slice(count, &begin, &end);
  double local = 0;
  for (int j = begin; j < end; ++j) local += s.cand_key[j];
  double mass = block_reduce(local, Plus{}, s.scratch_d);
  if (p.restrict_p) {
    const double target = static_cast<double>(p.top_p) * mass;
    double cum = block_exclusive_scan(local, s.scratch_d);
    if (threadIdx.x == 0) s.found = INT_MAX;
    __syncthreads();
    for (int j = begin; j < end; ++j) {
      cum += s.cand_key[j];
      if (cum >= target) {
        atomicMin(&s.found, j);
        break;
      }
    }
    __syncthreads();
    if (s.found != INT_MAX) {
      const int last = s.found;
      double kept = 0;
      for (int j = begin; j < min(end, last + 1); ++j) kept += s.cand_key[j];
      mass = block_reduce(kept, Plus{}, s.scratch_d);
      count = last + 1;
      __syncthreads();
      for (int j = count + static_cast<int>(threadIdx.x); j < size; j += kThreads)
        s.cand_id[j] = INT_MAX;
    }
  }
  size = pow2_at_least(count);
  bitonic_sort(s, size, by_id);  // the support is walked in id order
  thread_slice(count, &begin, &end);

  if (p.gumbel) {
    Best best{kNegInf, INT_MAX};
    for (int j = begin; j < end; ++j) {
      const int32_t id = s.cand_id[j];
      // Multiply and add rounded separately, as the CPU's scalar candidate loop.
      const float v = __fadd_rn(__fmul_rn(x[id], p.inv_temp),
                                gumbel_noise(job.gumbel_key, static_cast<uint32_t>(id)));
      if (v > best.value) best = {v, id};
    }
    best = block_best(best, s);
    return best.value > kNegInf ? best.index : argmax;
  }

  const double target = job.token_uniform * mass;
  local = 0;
  for (int j = begin; j < end; ++j) local += s.cand_key[j];
  double cum = block_exclusive_scan(local, s.scratch_d);
  if (threadIdx.x == 0) s.found = INT_MAX;
  __syncthreads();
  int last_positive = -1;
  for (int j = begin; j < end; ++j) {
    const float w = s.cand_key[j];
    cum += w;
    if (w > 0) last_positive = j;
    if (cum > target && w > 0) {
      atomicMin(&s.found, j);
      break;
    }
  }
  const int fallback = block_reduce(last_positive, [](int a, int b) { return max(a, b); },
                                    s.scratch_i);
  const int chosen = s.found != INT_MAX ? s.found : max(fallback, 0);
  return s.cand_id[chosen];
}

// ---- the kernel ----

__device__ float rule_score(Unmasking rule, double confidence, double second_weight, double sum,
                            double weighted) {
  switch (rule) {
    case Unmasking::Confidence:
      return static_cast<float>(confidence);
    case Unmasking::Margin:
      return static_cast<float>((1.0 - second_weight) / sum);
    case Unmasking::Entropy:
      return static_cast<float>(weighted / sum - log(sum));
    case Unmasking::Origin:
    case Unmasking::Random:
      return 0.0f;
  }
  return 0.0f;
}

// Two blocks per SM (at most 64 registers; a few bytes spill in cold paths): a 256-row step
// then runs in one wave on a 132-SM H100 instead of two.
__global__ void __launch_bounds__(kThreads, 2) sample_rows_kernel(KernelParams p) {
  __shared__ Shared s;
  const KernelJob job = p.jobs[blockIdx.x];
  const int64_t n = p.vocab;
  float* x = p.logits + job.row * n;
  Proposal* out = p.out + blockIdx.x;

  // Pass 1: guidance and the mask written back, and the row's top two. Greedy rows also sum
  // their weights here, relative to a running per-thread maximum that the merge below rescales
  // (the only pass they need; sampled rows need exact weights relative to the row's maximum
  // and take a second pass).
  const float* u = p.uncond ? p.uncond + job.row * n : nullptr;
  const bool one_pass = !p.sampled;
  float run_max = kNegInf;
  double run_sum = 0, run_weighted = 0;
  Top2 t{kNegInf, INT_MAX, kNegInf};
  for_each_logit(x, n, [&](int64_t i, float v) {
    if (u) {
      const float un = u[i];
      v = fmaf(v - un, p.cfg_weight, un);
      x[i] = v;
    }
    if (i == p.mask_id) {
      v = kNegInf;
      x[i] = v;
    }
    if (v > t.max) {
      t.second = t.max;
      t.max = v;
      t.index = static_cast<int32_t>(i);
    } else {
      t.second = fmaxf(t.second, v);
    }
    if (one_pass && v > kNegInf) {
      if (v > run_max) {
        if (run_max > kNegInf) {
          // Rebase Σe and Σe·d from the old maximum to v: e·exp(−Δ), d − Δ.
          const double delta = static_cast<double>(v) - static_cast<double>(run_max);
          const double c = exp(-delta);
          run_weighted = c * (run_weighted - delta * run_sum);
          run_sum *= c;
        }
        run_max = v;
      }
      const float d = fmaxf(v - run_max, kExpFloor);
      if (d >= kExpUnderflow) {
        const float e = expf(d);
        run_sum += e;
        run_weighted += static_cast<double>(e) * d;
      }
    }
  });
  t = block_top2(t, s);
  const float max = t.max;
  const int64_t argmax = t.max > kNegInf ? t.index : 0;

  if (!isfinite(max)) {  // all −inf/NaN (nothing to prefer) or a +inf logit (certain)
    if (threadIdx.x == 0) {
      out->position = job.position;
      out->token = static_cast<int32_t>(argmax);
      const bool certain = max > 0;
      const bool ranked = p.rule != Unmasking::Origin && p.rule != Unmasking::Random;
      out->confidence = certain ? 1.0f : 0.0f;
      if (certain) {
        out->score = (p.rule == Unmasking::Confidence || p.rule == Unmasking::Margin) ? 1.0f : 0.0f;
      } else {
        out->score = ranked ? kNegInf : 0.0f;
      }
    }
    return;
  }

  double sum = 0, weighted = 0;
  if (one_pass) {
    double thread_sum = 0, thread_weighted = 0;
    if (run_max > kNegInf) {
      const double delta = static_cast<double>(max) - static_cast<double>(run_max);
      const double c = exp(-delta);
      thread_sum = c * run_sum;
      thread_weighted = c * (run_weighted - delta * run_sum);
    }
    sum = block_reduce(thread_sum, Plus{}, s.scratch_d);
    weighted = block_reduce(thread_weighted, Plus{}, s.scratch_d);
  }

  // Pass 2 (sampled rows): Σe and Σe·d (double), the fixed-point total, and the fixed-point
  // mass above each probe level (for the nucleus's floor).
  const bool row_nucleus_needed = p.sampled && p.top_k == 0 && p.restrict_p;
  u64 sum_fixed = 0;
  u64 level_mass[kLevels] = {};
  if (!one_pass) {
    for_each_logit(x, n, [&](int64_t, float v) {
      const float d = deviation(v, max, p.inv_temp);
      const float e = d < kExpUnderflow ? 0.0f : expf(d);
      if (e > 0) {
        sum += e;
        weighted += static_cast<double>(e) * d;
        const u64 f = fixed_of(e, p.fixed_scale);
        sum_fixed += f;
        if (row_nucleus_needed) {
#pragma unroll
          for (int l = 0; l < kLevels; ++l) level_mass[l] += e > kLevelValues[l] ? f : 0;
        }
      }
    });
    sum = block_reduce(sum, Plus{}, s.scratch_d);
    weighted = block_reduce(weighted, Plus{}, s.scratch_d);
    sum_fixed = block_reduce(sum_fixed, Plus{}, s.scratch_u);
  }
  if (row_nucleus_needed) {
#pragma unroll
    for (int l = 0; l < kLevels; ++l) level_mass[l] = block_reduce(level_mass[l], Plus{}, s.scratch_u);
  }

  int64_t token = argmax;
  if (p.sampled) {
    if (p.top_k > 0) {
      token = sample_top_k(x, n, p, job, max, argmax, s);
    } else {
      Nucleus nucleus{Cut{-1.0f, -1}, sum_fixed};
      if (p.restrict_p) {
        // ⌈top_p·total⌉: "mass >= top_p·total" for integer masses.
        const double target = ceil(static_cast<double>(p.top_p) * static_cast<double>(sum_fixed));
        const u64 target_fixed = min(sum_fixed, static_cast<u64>(target));
        // The highest probe level above which the nucleus's mass already lies: the histogram
        // passes then touch only the (usually few) entries above it.
        float weight_floor = 0.0f;
#pragma unroll
        for (int l = 0; l < kLevels; ++l) {
          if (weight_floor == 0.0f && level_mass[l] >= target_fixed) weight_floor = kLevelValues[l];
        }
        nucleus = row_nucleus(x, n, max, p.inv_temp, p.fixed_scale, target_fixed, weight_floor, s);
      }
      if (p.gumbel) {
        token = row_gumbel(x, n, max, p.inv_temp, job.gumbel_key, p.restrict_p, nucleus.cut, s);
      } else {
        // ⌊u·mass⌋ < mass: "running > u·mass" for integer running sums.
        const u64 target = min(nucleus.mass - 1, static_cast<u64>(job.token_uniform *
                                                                  static_cast<double>(nucleus.mass)));
        token = draw_in_id_order(x, n, max, p.inv_temp, p.fixed_scale, nucleus.cut, target, argmax,
                                 s);
      }
    }
  }

  if (threadIdx.x == 0) {
    const double confidence = exp(static_cast<double>((x[token] - max) * p.inv_temp)) / sum;
    const double second_weight = exp(static_cast<double>((t.second - max) * p.inv_temp));
    out->position = job.position;
    out->token = static_cast<int32_t>(token);
    out->confidence = static_cast<float>(confidence);
    out->score = rule_score(p.rule, confidence, second_weight, sum, weighted);
  }
}

// ---- the choice of positions (choose_top on the device) ----
//
// Rank by counting: candidate i is chosen when fewer than `count` candidates beat it, and its
// output slot is the number of chosen candidates at lower positions. Both counts are integer
// sums over all j, so the result is exact and repeats bit for bit; at a few thousand
// candidates the n² comparisons (one broadcast load each) take a few microseconds.

constexpr int kChoiceThreads = 256;
constexpr int kChoiceLanes = 32;                              // candidates i per block
constexpr int kChoiceSlices = kChoiceThreads / kChoiceLanes;  // warps sharing out the j range
constexpr int64_t kNotChosen = INT64_MAX;                     // no candidate has this position

// Layout twin of CudaRowSampler::ChoiceEntry (checked in sampling.cpp).
struct ChoiceEntry {
  double key;
  int64_t position;
};

// choose_top's order: the larger key, then the lower position.
__device__ inline bool beats(const ChoiceEntry& a, const ChoiceEntry& b) {
  return a.key > b.key || (a.key == b.key && a.position < b.position);
}

// choose_top's key, in double as on the host: score/alg_temp is one correctly rounded
// division, and only the two logs may differ from glibc's (last bit).
__global__ void choice_keys_kernel(const Proposal* proposals, const KernelJob* jobs, int n,
                                   float alg_temp, bool all_chosen, ChoiceEntry* entries,
                                   int64_t* chosen_positions) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const Proposal p = proposals[i];
  double key = p.score;
  if (isnan(key)) key = -INFINITY;
  if (alg_temp > 0) {
    const double u = jobs[i].choice_uniform;
    key = key / static_cast<double>(alg_temp) - log(-log(fmax(u, 1e-300)));
  }
  entries[i] = {key, p.position};
  if (all_chosen) chosen_positions[i] = p.position;
}

// The j range of this thread's slice.
__device__ inline void choice_slice(int n, int64_t* begin, int64_t* end) {
  const int64_t slice = (static_cast<int64_t>(n) + kChoiceSlices - 1) / kChoiceSlices;
  *begin = min(static_cast<int64_t>(n), threadIdx.x / kChoiceLanes * slice);
  *end = min(static_cast<int64_t>(n), *begin + slice);
}

// Sums the slices' counts for lane i (read by the first warp only).
__device__ inline int64_t sum_slices(int64_t count,
                                     int64_t (&partial)[kChoiceSlices][kChoiceLanes]) {
  const int lane = threadIdx.x % kChoiceLanes;
  partial[threadIdx.x / kChoiceLanes][lane] = count;
  __syncthreads();
  int64_t total = 0;
  for (int g = 0; g < kChoiceSlices; ++g) total += partial[g][lane];
  return total;
}

// chosen_positions[i] = the position of candidate i if fewer than `count` beat it, else
// kNotChosen.
__global__ void __launch_bounds__(kChoiceThreads)
    choice_rank_kernel(const ChoiceEntry* __restrict__ entries, int n, int64_t count,
                       int64_t* __restrict__ chosen_positions) {
  __shared__ int64_t partial[kChoiceSlices][kChoiceLanes];
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kChoiceLanes + threadIdx.x % kChoiceLanes;
  const bool valid = i < n;
  const ChoiceEntry mine = valid ? entries[i] : ChoiceEntry{0.0, 0};
  int64_t begin, end;
  choice_slice(n, &begin, &end);
  int64_t beaten_by = 0;
#pragma unroll 4
  for (int64_t j = begin; j < end; ++j) beaten_by += beats(entries[j], mine) ? 1 : 0;
  const int64_t rank = sum_slices(beaten_by, partial);
  if (threadIdx.x < kChoiceLanes && valid)
    chosen_positions[i] = rank < count ? mine.position : kNotChosen;
}

// Writes each chosen proposal to its slot: the number of chosen candidates at lower positions.
__global__ void __launch_bounds__(kChoiceThreads)
    choice_place_kernel(const Proposal* __restrict__ proposals,
                        const int64_t* __restrict__ chosen_positions, int n,
                        Proposal* __restrict__ top) {
  __shared__ int64_t partial[kChoiceSlices][kChoiceLanes];
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kChoiceLanes + threadIdx.x % kChoiceLanes;
  const int64_t mine = i < n ? chosen_positions[i] : kNotChosen;
  const bool chosen = mine != kNotChosen;
  // Most blocks hold no chosen candidate when few are committed per step.
  if (!__syncthreads_or(chosen)) return;
  int64_t begin, end;
  choice_slice(n, &begin, &end);
  int64_t lower = 0;
#pragma unroll 4
  for (int64_t j = begin; j < end; ++j) lower += chosen_positions[j] < mine ? 1 : 0;
  const int64_t slot = sum_slices(lower, partial);
  if (threadIdx.x < kChoiceLanes && chosen) top[slot] = proposals[i];
}

}  // namespace

// Host glue (argument checks, job upload, proposals back) lives in sampling.cpp, which
// declares these.
namespace detail {

int64_t sampling_top_k_limit() { return kCapacity; }

// jobs: device array of `count` {row, position, token uniform, Gumbel key} (RowJob's layout);
// out: device array of `count` proposals. Options were validated by the caller.
void launch_sample_rows(float* logits, const float* uncond, int64_t vocab, const void* jobs,
                        Proposal* out, int64_t count, const SamplingOptions& options,
                        int fixed_shift, cudaStream_t stream) {
  static_assert(sizeof(KernelJob) == 40 && offsetof(KernelJob, position) == 8 &&
                    offsetof(KernelJob, token_uniform) == 16 &&
                    offsetof(KernelJob, gumbel_key) == 24 &&
                    offsetof(KernelJob, choice_uniform) == 32,
                "KernelJob's layout is RowJob's (checked in sampling.cpp)");
  const bool sampled = options.temperature > 0;
  KernelParams p{};
  p.logits = logits;
  p.uncond = (uncond != nullptr && options.cfg_scale > 0) ? uncond : nullptr;
  p.vocab = vocab;
  p.jobs = static_cast<const KernelJob*>(jobs);
  p.out = out;
  p.cfg_weight = options.cfg_scale + 1.0f;
  p.mask_id = (options.mask_id >= 0 && options.mask_id < vocab) ? options.mask_id : -1;
  p.sampled = sampled;
  p.inv_temp = sampled ? 1.0f / options.temperature : 1.0f;
  const bool restrict_k = sampled && options.top_k > 0 && options.top_k < vocab;
  if (restrict_k && options.top_k > kCapacity) {
    throw_error("CUDA sampler: top_k " + std::to_string(options.top_k) +
                " is above the GPU limit of " + std::to_string(kCapacity));
  }
  p.top_k = restrict_k ? static_cast<int>(options.top_k) : 0;
  p.restrict_p = sampled && options.top_p < 1.0f;
  p.top_p = options.top_p;
  p.gumbel = options.gumbel;
  p.rule = options.rule;
  p.fixed_scale = std::ldexp(1.0f, fixed_shift);
  if (count <= 0) return;
  if (count > INT_MAX) throw_error("CUDA sampler: too many rows in one call: " + std::to_string(count));
  sample_rows_kernel<<<static_cast<unsigned>(count), kThreads, 0, stream>>>(p);
  check_launch("sample_rows");
}

// proposals: the `n` proposals sample_rows_kernel wrote for the jobs (same order); entries and
// chosen_positions: device scratch of n each; top: device array of `count` (1 <= count <= n).
void launch_choose_top(const Proposal* proposals, const void* jobs, int64_t n, int64_t count,
                       float alg_temp, void* entries, int64_t* chosen_positions, Proposal* top,
                       cudaStream_t stream) {
  if (n <= 0 || count <= 0) return;
  if (n > INT_MAX)
    throw_error("CUDA sampler: too many candidates in one choice: " + std::to_string(n));
  const int rows = static_cast<int>(n);
  const bool all_chosen = count >= n;
  auto* choice = static_cast<ChoiceEntry*>(entries);
  const auto key_blocks = static_cast<unsigned>((n + kChoiceThreads - 1) / kChoiceThreads);
  choice_keys_kernel<<<key_blocks, kChoiceThreads, 0, stream>>>(
      proposals, static_cast<const KernelJob*>(jobs), rows, alg_temp, all_chosen, choice,
      chosen_positions);
  check_launch("choice_keys");
  const auto blocks = static_cast<unsigned>((n + kChoiceLanes - 1) / kChoiceLanes);
  if (!all_chosen) {
    choice_rank_kernel<<<blocks, kChoiceThreads, 0, stream>>>(choice, rows, count,
                                                              chosen_positions);
    check_launch("choice_rank");
  }
  choice_place_kernel<<<blocks, kChoiceThreads, 0, stream>>>(proposals, chosen_positions, rows,
                                                             top);
  check_launch("choice_place");
}

}  // namespace detail
}  // namespace ruvdllm::cuda
