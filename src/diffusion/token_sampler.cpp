// Sampling one position's token from its row of logits, and the rule's score for it.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/strings.h"
#include "ruvdllm/diffusion/rng.h"
#include "ruvdllm/diffusion/row_kernels.h"
#include "ruvdllm/diffusion/sampler.h"

namespace ruvdllm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Candidate order: more likely first, lower id on ties.
bool more_likely(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// The k largest logits (ties to the lower id), most likely first. Entries above the running
// threshold are appended; when the buffer holds 4k, it is cut back to its best k and the
// threshold rises to the k-th value. The vector scan skips everything at or below the
// threshold, which soon is nearly everything, and no step needs a heap or a sort of the row.
void top_k_candidates(const float* x, int64_t n, int64_t k,
                      std::vector<std::pair<float, int32_t>>* out) {
  out->clear();
  const auto kk = static_cast<size_t>(k);
  const size_t capacity = std::max<size_t>(4 * kk, 64);
  auto cut_to_k = [&] {
    std::nth_element(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(kk - 1), out->end(),
                     more_likely);
    out->resize(kk);
  };
  float threshold = kNegInf;
  for (int64_t i = find_greater(x, 0, n, threshold); i < n;
       i = find_greater(x, i + 1, n, threshold)) {
    out->emplace_back(x[i], static_cast<int32_t>(i));
    if (out->size() == capacity) {
      cut_to_k();
      // Later entries equal to the k-th have higher ids, so they rank below it: strict > holds.
      threshold = (*out)[kk - 1].first;
    }
  }
  if (out->size() > kk) cut_to_k();
  std::sort(out->begin(), out->end(), more_likely);
}

// Keeps the shortest prefix of `list` (most likely first, first = weight) whose weight reaches
// top_p·total; returns the kept weight.
double truncate_top_p(std::vector<std::pair<float, int32_t>>* list, double total, float top_p) {
  const double target = static_cast<double>(top_p) * total;
  double cum = 0;
  for (size_t j = 0; j < list->size(); ++j) {
    cum += (*list)[j].first;
    if (cum >= target) {
      list->resize(j + 1);
      return cum;
    }
  }
  return cum;  // rounding left the target just out of reach: keep everything
}

// The nucleus (top-p) of a whole row of weights as a Selection, without sorting the row: it is
// the shortest most-likely-first prefix whose weight reaches top_p·total. A threshold is
// bisected over the weights (one vector pass per probe) keeping mass(> lo) >= target >
// mass(> hi); a few fixed levels are probed first so that a peaked row settles at once. When
// at most kFewEntries weights lie in (lo, hi], only those are sorted, most likely first, and
// walked from mass(> hi) to the boundary entry.
struct Nucleus {
  Selection selection;
  double mass = 0;
};

uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

float bits_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

Nucleus top_p_nucleus(const float* e, int64_t n, double total, float top_p,
                      std::vector<int32_t>* indices) {
  constexpr int64_t kFewEntries = 256;
  const double target = static_cast<double>(top_p) * total;
  // The row's largest weight is exactly 1 (exp(0)), so nothing lies above hi = 1.
  float lo = 0.0f, hi = 1.0f;
  MassAbove at_lo{n, total}, at_hi{0, 0.0};
  auto probe = [&](float level) {
    const MassAbove m = mass_above(e, n, level);
    if (m.mass >= target) {
      lo = level;
      at_lo = m;
    } else {
      hi = level;
      at_hi = m;
    }
  };
  for (float level : {1.0f / 64, 0x1p-14f, 0x1p-30f}) {
    probe(level);
    if (lo == level) break;
  }
  while (at_lo.count - at_hi.count > kFewEntries) {
    // Bit patterns of non-negative floats are ordered like the floats: the midpoint halves the
    // exponent range first, then the mantissa.
    const uint32_t a = float_bits(lo), b = float_bits(hi);
    if (b - a <= 1) break;
    probe(bits_float(a + (b - a) / 2));
  }
  indices->resize(static_cast<size_t>(at_lo.count - at_hi.count + kCollectPadding));
  const int64_t count = collect_range(e, n, lo, hi, indices->data());
  std::sort(indices->begin(), indices->begin() + count,
            [e](int32_t a, int32_t b) { return e[a] > e[b] || (e[a] == e[b] && a < b); });
  double mass = at_hi.mass;
  for (int64_t j = 0; j < count; ++j) {
    const int32_t id = (*indices)[static_cast<size_t>(j)];
    mass += e[id];
    if (mass >= target) return {Selection{e[id], id}, mass};
  }
  return {Selection{lo, -1}, mass};  // rounding left the target just out of reach
}

bool lower_id(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.second < b.second;
}

// The index within `list` of an inverse-CDF draw with uniform u, weights list[j].first.
size_t draw_from(const std::vector<std::pair<float, int32_t>>& list, double total, double u) {
  const double target = u * total;
  double cum = 0;
  size_t last_positive = 0;
  for (size_t j = 0; j < list.size(); ++j) {
    if (list[j].first > 0) last_positive = j;
    cum += list[j].first;
    if (cum > target && list[j].first > 0) return j;
  }
  return last_positive;
}

float rule_score(Unmasking rule, double confidence, double second_weight, double sum,
                 double weighted) {
  switch (rule) {
    case Unmasking::Confidence:
      return static_cast<float>(confidence);
    case Unmasking::Margin:
      return static_cast<float>((1.0 - second_weight) / sum);
    case Unmasking::Entropy:
      return static_cast<float>(weighted / sum - std::log(sum));
    case Unmasking::Origin:
    case Unmasking::Random:
      return 0.0f;
  }
  return 0.0f;
}

// Rows whose maximum is not finite: all −inf/NaN (nothing to prefer) or a +inf logit (certain).
Proposal degenerate_row(const RowTop2& top, Unmasking rule, int64_t position) {
  Proposal p;
  p.position = position;
  p.token = static_cast<int32_t>(top.argmax);
  if (top.max > 0) {
    p.confidence = 1.0f;
    p.score = (rule == Unmasking::Confidence || rule == Unmasking::Margin) ? 1.0f : 0.0f;
  } else {
    p.score = (rule == Unmasking::Origin || rule == Unmasking::Random) ? 0.0f : kNegInf;
  }
  return p;
}


}  // namespace

Unmasking parse_unmasking(std::string_view name) {
  const std::string n = ascii_lower(name);
  if (n == "origin") return Unmasking::Origin;
  if (n == "confidence" || n == "low_confidence" || n == "maskgit_plus")
    return Unmasking::Confidence;
  if (n == "margin" || n == "topk_margin") return Unmasking::Margin;
  if (n == "entropy") return Unmasking::Entropy;
  if (n == "random") return Unmasking::Random;
  fail("unknown unmasking algorithm '{}' (expected origin, confidence, margin, entropy or random)",
       name);
}

const char* unmasking_name(Unmasking rule) {
  switch (rule) {
    case Unmasking::Origin:
      return "origin";
    case Unmasking::Confidence:
      return "confidence";
    case Unmasking::Margin:
      return "margin";
    case Unmasking::Entropy:
      return "entropy";
    case Unmasking::Random:
      return "random";
  }
  return "unknown";
}

void validate_sampling(const SamplingOptions& o) {
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature)) {
    fail("temperature must be a finite number >= 0, got {}", o.temperature);
  }
  if (o.top_k < 0) fail("top_k must be >= 0 (0 = off), got {}", o.top_k);
  if (!(o.top_p > 0 && o.top_p <= 1)) fail("top_p must be in (0, 1] (1 = off), got {}", o.top_p);
  if (!(o.alg_temp >= 0) || !std::isfinite(o.alg_temp)) {
    fail("alg_temp must be a finite number >= 0, got {}", o.alg_temp);
  }
  if (!(o.cfg_scale >= 0) || !std::isfinite(o.cfg_scale)) {
    fail("cfg_scale must be a finite number >= 0 (0 = off), got {}", o.cfg_scale);
  }
}

Proposal sample_position(const float* x, int64_t vocab, const SamplingOptions& o, int64_t step,
                         int64_t position, RowScratch& scratch) {
  const RowTop2 top = row_top2(x, vocab);
  if (!std::isfinite(top.max)) return degenerate_row(top, o.rule, position);

  const bool sampled = o.temperature > 0;
  const float inv_temp = sampled ? 1.0f / o.temperature : 1.0f;
  const bool restrict_k = sampled && o.top_k > 0 && o.top_k < vocab;
  const bool restrict_p = sampled && o.top_p < 1.0f;
  // Stored exps serve the full-vocabulary CDF walk and the top-p gathering.
  const bool keep_exps = sampled && !restrict_k && (!o.gumbel || restrict_p);
  if (keep_exps && scratch.exps.size() < static_cast<size_t>(vocab)) {
    scratch.exps.resize(static_cast<size_t>(vocab));
  }
  const ExpSums sums =
      row_exp_sums(x, vocab, top.max, inv_temp, keep_exps ? scratch.exps.data() : nullptr);

  int64_t token = top.argmax;
  if (sampled) {
    // Restricted supports are walked in id order, like the unrestricted row, so a draw u maps
    // to the same token whichever way the support was found.
    const uint64_t gumbel_key = random_key(o.seed, step, position, RandomStream::Gumbel);
    const double u = random_uniform(random_key(o.seed, step, position, RandomStream::Token));
    if (restrict_k) {
      auto& list = scratch.candidates;
      top_k_candidates(x, vocab, o.top_k, &list);
      double list_mass = 0;
      for (auto& c : list) {
        c.first = std::exp((c.first - top.max) * inv_temp);
        list_mass += c.first;
      }
      if (restrict_p) list_mass = truncate_top_p(&list, list_mass, o.top_p);
      std::sort(list.begin(), list.end(), lower_id);
      if (o.gumbel) {
        float best = kNegInf;
        for (const auto& c : list) {
          const float v =
              x[c.second] * inv_temp + gumbel_noise(gumbel_key, static_cast<uint32_t>(c.second));
          if (v > best) {
            best = v;
            token = c.second;
          }
        }
      } else {
        token = list[draw_from(list, list_mass, u)].second;
      }
    } else {
      Nucleus nucleus{Selection{}, sums.sum};
      if (restrict_p) {
        nucleus = top_p_nucleus(scratch.exps.data(), vocab, sums.sum, o.top_p, &scratch.indices);
      }
      token =
          o.gumbel
              ? row_gumbel_max(x, vocab, inv_temp, gumbel_key,
                               restrict_p ? scratch.exps.data() : nullptr, nucleus.selection)
                    .index
              : cumulative_search(scratch.exps.data(), vocab, u * nucleus.mass, nucleus.selection);
    }
  }

  Proposal p;
  p.position = position;
  p.token = static_cast<int32_t>(token);
  const double confidence =
      std::exp(static_cast<double>((x[token] - top.max) * inv_temp)) / sums.sum;
  p.confidence = static_cast<float>(confidence);
  const double second_weight = std::exp(static_cast<double>((top.second - top.max) * inv_temp));
  p.score = rule_score(o.rule, confidence, second_weight, sums.sum, sums.weighted);
  return p;
}

Proposal sample_position_reference(const float* x, int64_t vocab, const SamplingOptions& o,
                                   int64_t step, int64_t position) {
  const RowTop2 top = row_top2_reference(x, vocab);
  if (!std::isfinite(top.max)) return degenerate_row(top, o.rule, position);
  const bool sampled = o.temperature > 0;
  const double inv_temp = sampled ? 1.0 / o.temperature : 1.0;
  std::vector<double> e(static_cast<size_t>(vocab));
  double sum = 0, weighted = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const double d = std::isnan(x[i]) ? -1e300 : (static_cast<double>(x[i]) - top.max) * inv_temp;
    e[static_cast<size_t>(i)] = std::exp(d);
    sum += e[static_cast<size_t>(i)];
    if (e[static_cast<size_t>(i)] > 0) weighted += e[static_cast<size_t>(i)] * d;
  }

  int64_t token = top.argmax;
  if (sampled) {
    // Sorted order (most likely first, lower id on ties) when truncating; id order otherwise,
    // the order the fast path walks.
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    const bool restrict_k = o.top_k > 0 && o.top_k < vocab;
    const bool restrict_p = o.top_p < 1.0f;
    if (restrict_k || restrict_p) {
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return x[a] > x[b]; });
      if (restrict_k) order.resize(static_cast<size_t>(o.top_k));
      if (restrict_p) {
        double mass = 0;
        for (int32_t id : order) mass += e[static_cast<size_t>(id)];
        double cum = 0;
        for (size_t j = 0; j < order.size(); ++j) {
          cum += e[static_cast<size_t>(order[j])];
          if (cum >= o.top_p * mass) {
            order.resize(j + 1);
            break;
          }
        }
      }
      std::sort(order.begin(), order.end());  // the support is walked in id order
    }
    if (o.gumbel) {
      const uint64_t key = random_key(o.seed, step, position, RandomStream::Gumbel);
      double best = -std::numeric_limits<double>::infinity();
      for (int32_t id : order) {
        const double v = x[id] * inv_temp + gumbel_noise(key, static_cast<uint32_t>(id));
        if (v > best) {
          best = v;
          token = id;
        }
      }
    } else {
      double mass = 0;
      for (int32_t id : order) mass += e[static_cast<size_t>(id)];
      const double target =
          random_uniform(random_key(o.seed, step, position, RandomStream::Token)) * mass;
      double cum = 0;
      for (int32_t id : order) {
        cum += e[static_cast<size_t>(id)];
        if (e[static_cast<size_t>(id)] > 0) token = id;
        if (cum > target && e[static_cast<size_t>(id)] > 0) break;
      }
    }
  }

  Proposal p;
  p.position = position;
  p.token = static_cast<int32_t>(token);
  const double confidence = e[static_cast<size_t>(token)] / sum;
  p.confidence = static_cast<float>(confidence);
  const double second_weight = std::exp((static_cast<double>(top.second) - top.max) * inv_temp);
  p.score = rule_score(o.rule, confidence, second_weight, sum, weighted);
  return p;
}

}  // namespace ruvdllm
