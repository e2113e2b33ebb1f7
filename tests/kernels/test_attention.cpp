// Tiled attention against the scalar reference for every mask mode, grouped-query heads,
// odd head sizes and lengths that do not fill a tile, on every SIMD target this machine
// supports; plus known answers, thread-count independence and shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "hwy/targets.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/kernels/ops.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

template <class Fn>
void for_each_target(Fn&& fn) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    fn();
  }
  hwy::SetSupportedTargetsForTest(0);
}

struct Inputs {
  std::vector<float> q, k, v;
};

Inputs random_inputs(const AttentionShape& s, uint64_t seed, float spread = 1.0f) {
  Inputs in;
  in.q = testing::random_floats(static_cast<size_t>(s.n_q * s.n_heads * s.head_dim), seed, -spread,
                                spread);
  in.k = testing::random_floats(static_cast<size_t>(s.n_kv * s.n_kv_heads * s.head_dim), seed + 1,
                                -spread, spread);
  in.v = testing::random_floats(static_cast<size_t>(s.n_kv * s.n_kv_heads * s.head_dim), seed + 2);
  return in;
}

AttentionShape make_shape(int64_t n_q, int64_t n_kv, int64_t n_heads, int64_t n_kv_heads,
                          int64_t head_dim, MaskMode mask, int64_t block_len = 0) {
  AttentionShape s;
  s.n_q = n_q;
  s.n_kv = n_kv;
  s.n_heads = n_heads;
  s.n_kv_heads = n_kv_heads;
  s.head_dim = head_dim;
  s.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  s.mask = mask;
  s.block_len = block_len;
  s.q_pos0 = n_kv - n_q;  // a cached prefix when n_kv > n_q
  return s;
}

std::string describe(const AttentionShape& s) {
  const char* names[] = {"full", "causal", "block-causal"};
  return std::string(names[static_cast<int>(s.mask)]) + " n_q " + std::to_string(s.n_q) + " n_kv " +
         std::to_string(s.n_kv) + " heads " + std::to_string(s.n_heads) + "/" +
         std::to_string(s.n_kv_heads) + " head_dim " + std::to_string(s.head_dim) + " block_len " +
         std::to_string(s.block_len);
}

// The tiled result's largest absolute difference from the reference.
double error_vs_reference(const AttentionShape& s, const Inputs& in, ThreadPool& pool) {
  const size_t n_out = static_cast<size_t>(s.n_q * s.n_heads * s.head_dim);
  std::vector<float> fast(n_out, -7.0f), ref(n_out);
  attention(s, in.q.data(), in.k.data(), in.v.data(), fast.data(), pool);
  attention_reference(s, in.q.data(), in.k.data(), in.v.data(), ref.data());
  return testing::compare(fast.data(), ref.data(), n_out).max_abs;
}

struct MaskCase {
  MaskMode mask;
  int64_t block_len;
};
const MaskCase kMasks[] = {{MaskMode::Full, 0},
                           {MaskMode::Causal, 0},
                           {MaskMode::BlockCausal, 1},
                           {MaskMode::BlockCausal, 5},
                           {MaskMode::BlockCausal, 32}};

TEST(Attention, MatchesReferenceForEveryMaskAndShape) {
  struct Size {
    int64_t n_q, n_kv;
  };
  const Size sizes[] = {{1, 1}, {17, 17}, {100, 100}, {257, 257}, {1, 40}, {17, 87}, {100, 300}};
  struct Heads {
    int64_t n_heads, n_kv_heads, head_dim;
  };
  const Heads heads[] = {{8, 2, 64}, {8, 8, 40}};
  ThreadPool pool(2);
  for (const MaskCase& m : kMasks) {
    for (const Size& z : sizes) {
      for (const Heads& h : heads) {
        const AttentionShape s =
            make_shape(z.n_q, z.n_kv, h.n_heads, h.n_kv_heads, h.head_dim, m.mask, m.block_len);
        const Inputs in = random_inputs(s, static_cast<uint64_t>(z.n_q * 1000 + z.n_kv));
        EXPECT_LE(error_vs_reference(s, in, pool), 1e-5) << describe(s);
      }
    }
  }
}

TEST(Attention, MatchesReferenceOnEveryTarget) {
  ThreadPool pool(2);
  for_each_target([&] {
    for (const MaskCase& m : kMasks) {
      for (int64_t head_dim : {64, 40, 1, 19}) {
        const AttentionShape s = make_shape(70, 150, 4, 2, head_dim, m.mask, m.block_len);
        const Inputs in = random_inputs(s, 77 + static_cast<uint64_t>(head_dim));
        EXPECT_LE(error_vs_reference(s, in, pool), 1e-5) << describe(s);
      }
    }
  });
}

TEST(Attention, PeakedScoresAcrossManyKeyTiles) {
  // Large scores make the running max move from tile to tile, exercising the rescaling.
  ThreadPool pool(2);
  for (MaskMode mask : {MaskMode::Full, MaskMode::Causal}) {
    AttentionShape s = make_shape(64, 1100, 2, 1, 64, mask);
    s.scale = 1.0f;
    const Inputs in = random_inputs(s, 91, 1.5f);
    EXPECT_LE(error_vs_reference(s, in, pool), 1e-5) << describe(s);
  }
}

TEST(Attention, BitwiseIdenticalForOneAndTwoThreads) {
  ThreadPool one(1), two(2);
  for (const MaskCase& m : kMasks) {
    const AttentionShape s = make_shape(150, 200, 8, 2, 64, m.mask, m.block_len);
    const Inputs in = random_inputs(s, 5);
    const size_t n_out = static_cast<size_t>(s.n_q * s.n_heads * s.head_dim);
    std::vector<float> a(n_out), b(n_out);
    attention(s, in.q.data(), in.k.data(), in.v.data(), a.data(), one);
    attention(s, in.q.data(), in.k.data(), in.v.data(), b.data(), two);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), n_out * sizeof(float)), 0) << describe(s);
  }
}

TEST(Attention, CausalFirstQueryReturnsFirstValueExactly) {
  ThreadPool pool(2);
  for (MaskMode mask : {MaskMode::Causal, MaskMode::BlockCausal}) {
    const AttentionShape s = make_shape(100, 100, 8, 2, 40, mask, 1);
    const Inputs in = random_inputs(s, 13);
    std::vector<float> fast(static_cast<size_t>(s.n_q * s.n_heads * s.head_dim));
    std::vector<float> ref(fast.size());
    attention(s, in.q.data(), in.k.data(), in.v.data(), fast.data(), pool);
    attention_reference(s, in.q.data(), in.k.data(), in.v.data(), ref.data());
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const float* expected = in.v.data() + (h / 4) * s.head_dim;
      for (int64_t e = 0; e < s.head_dim; ++e) {
        ASSERT_EQ(fast[static_cast<size_t>(h * s.head_dim + e)], expected[e]) << "head " << h;
        ASSERT_EQ(ref[static_cast<size_t>(h * s.head_dim + e)], expected[e]) << "head " << h;
      }
    }
  }
}

TEST(Attention, IdenticalKeysGiveTheMeanOfTheValues) {
  ThreadPool pool(2);
  AttentionShape s = make_shape(33, 130, 4, 2, 24, MaskMode::Full);
  Inputs in = random_inputs(s, 17);
  const int64_t row = s.n_kv_heads * s.head_dim;
  for (int64_t j = 1; j < s.n_kv; ++j) {
    std::memcpy(in.k.data() + j * row, in.k.data(), static_cast<size_t>(row) * sizeof(float));
  }
  std::vector<float> out(static_cast<size_t>(s.n_q * s.n_heads * s.head_dim));
  attention(s, in.q.data(), in.k.data(), in.v.data(), out.data(), pool);
  for (int64_t i = 0; i < s.n_q; ++i) {
    for (int64_t h = 0; h < s.n_heads; ++h) {
      for (int64_t e = 0; e < s.head_dim; ++e) {
        double mean = 0;
        for (int64_t j = 0; j < s.n_kv; ++j)
          mean += in.v[static_cast<size_t>(j * row + (h / 2) * s.head_dim + e)];
        mean /= static_cast<double>(s.n_kv);
        ASSERT_NEAR(out[static_cast<size_t>((i * s.n_heads + h) * s.head_dim + e)], mean, 1e-6);
      }
    }
  }
}

TEST(Attention, BlockCausalSeesWholeBlocks) {
  // Block length 4, queries at positions 0..7: query 1 sees keys 0..3 (its block), not 4..7.
  // Values are one-hot per key, so the output shows exactly which keys took part.
  ThreadPool pool(1);
  AttentionShape s = make_shape(8, 8, 1, 1, 8, MaskMode::BlockCausal, 4);
  std::vector<float> q(64, 0.0f), k(64, 0.0f), v(64, 0.0f);
  for (int64_t j = 0; j < 8; ++j) v[static_cast<size_t>(j * 8 + j)] = 1.0f;
  std::vector<float> out(64);
  attention(s, q.data(), k.data(), v.data(), out.data(), pool);
  for (int64_t e = 0; e < 8; ++e)
    EXPECT_FLOAT_EQ(out[static_cast<size_t>(8 + e)], e < 4 ? 0.25f : 0.0f);
  for (int64_t e = 0; e < 8; ++e) EXPECT_FLOAT_EQ(out[static_cast<size_t>(48 + e)], 0.125f);
}

TEST(Attention, RejectsBadShapes) {
  ThreadPool pool(1);
  std::vector<float> buf(4096, 0.5f);
  const float* p = buf.data();
  float* o = buf.data();
  auto expect_rejected = [&](const AttentionShape& s) {
    EXPECT_THROW(attention(s, p, p, p, o, pool), Error) << describe(s);
    EXPECT_THROW(attention_reference(s, p, p, p, o), Error) << describe(s);
  };
  AttentionShape s = make_shape(4, 4, 6, 4, 8, MaskMode::Full);
  expect_rejected(s);  // 6 heads do not split into 4 groups
  s = make_shape(4, 4, 2, 2, 0, MaskMode::Full);
  expect_rejected(s);
  s = make_shape(4, 4, 2, 2, 8, MaskMode::BlockCausal, 0);
  expect_rejected(s);
  s = make_shape(4, 4, 2, 2, 8, MaskMode::Causal);
  s.q_pos0 = 2;  // queries at positions 2..5 but only 4 keys
  expect_rejected(s);
  s = make_shape(4, 4, 2, 2, 8, MaskMode::Full);
  s.scale = 0;
  expect_rejected(s);
  s = make_shape(4, 0, 2, 2, 8, MaskMode::Full);
  s.q_pos0 = 0;
  expect_rejected(s);
  s = make_shape(4, 4, 2, 2, 8, MaskMode::Full);
  s.mask = static_cast<MaskMode>(7);
  expect_rejected(s);
}

}  // namespace
}  // namespace ruvdllm
