#pragma once
// Counter-based random numbers. Every draw is a pure function of (seed, step, position, stream,
// counter), so a generation gives the same tokens whatever the thread count or the order in
// which rows are processed, and no generator state is shared between threads.
#include <cstdint>

namespace ruvdllm {

// Independent uses of randomness within one step and position draw from separate streams, so
// that e.g. changing top-k never changes which positions `origin` transfers.
enum class RandomStream : uint64_t {
  Token = 1,           // inverse-CDF token sampling
  Gumbel = 2,          // Gumbel-max token sampling (one draw per vocabulary entry)
  Transfer = 3,        // `origin`: whether a position is unmasked this step
  RandomScore = 4,     // `random`: the position's score
  PositionChoice = 5,  // alg_temp > 0: Gumbel noise on position scores
};

// SplitMix64's finaliser: a bijection on 64 bits with full avalanche.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t random_key(uint64_t seed, int64_t step, int64_t position, RandomStream stream) {
  uint64_t h = mix64(seed);
  h = mix64(h ^ static_cast<uint64_t>(step));
  h = mix64(h ^ static_cast<uint64_t>(position));
  return mix64(h ^ static_cast<uint64_t>(stream));
}

// Uniform in [0, 1) with 53 random bits.
inline double random_uniform(uint64_t key, uint64_t counter = 0) {
  return static_cast<double>(mix64(key ^ mix64(counter)) >> 11) * 0x1p-53;
}

// A 32-bit bijective hash (xor-shift-multiply) that vector code can evaluate lane by lane with
// 32-bit multiplies; used where one draw per vocabulary entry is needed. constexpr, so the GPU
// sampler (built with --expt-relaxed-constexpr) calls this very code.
constexpr uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Uniform in [2^-24, 1 - 2^-24], never 0 or 1 (so Gumbel noise stays finite), for entry i.
constexpr float vocab_uniform(uint64_t key, uint32_t i) {
  const uint32_t h =
      hash32(hash32(i ^ static_cast<uint32_t>(key)) + static_cast<uint32_t>(key >> 32));
  return (static_cast<float>(h >> 9) + 0.5f) * 0x1p-23f;
}

}  // namespace ruvdllm
