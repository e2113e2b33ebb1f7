// The GPU flash attention (src/cuda/flash_attention.h) against the CPU attention_reference
// (double accumulation) on random inputs that are exactly representable in bf16, so only the
// kernel's own rounding counts: the probabilities P enter the P·V product as bf16 (relative
// error 2⁻⁹ each) and the output is stored as bf16 (another 2⁻⁹). The bounds: ‖gpu − cpu‖₂ /
// ‖cpu‖₂ < 1e-2 and max |gpu − cpu| < 2e-2 (outputs are averages of values in [-1, 1]); the
// measured errors are printed. The output is poisoned with NaN first, so an element left
// unwritten fails.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/flash_attention.h"
#include "cuda_test_util.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/kernels/ops.h"
#include "test_util.h"

namespace ruvdllm {
namespace cuda::detail {
// Defined in src/cuda/flash_attention.cu: flash_attention with a chosen kernel variant.
void flash_attention_variant(__nv_bfloat16* out, const __nv_bfloat16* q, const __nv_bfloat16* k,
                             const __nv_bfloat16* v, const FlashAttentionDims& dims, int variant,
                             cudaStream_t stream);
}  // namespace cuda::detail

namespace {

using cuda::FlashAttentionDims;
using testing::CudaTest;
using testing::poisoned;
using testing::random_floats;
using testing::rel_error;
using testing::to_device;
using testing::to_host;

constexpr double kRelBound = 1e-2;
constexpr double kAbsBound = 2e-2;
// The f32 attention (exact_attention) against the same reference.
constexpr double kExactRelBound = 2e-5;

// Random values in [-amp, amp) rounded to bf16: the bits for the GPU, the same values as f32.
struct Bf16Data {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};
Bf16Data random_bf16(size_t n, uint64_t seed, float amp) {
  Bf16Data d;
  d.values = random_floats(n, seed, -amp, amp);
  d.bits.resize(n);
  for (size_t i = 0; i < n; ++i) {
    d.bits[i] = f32_to_bf16(d.values[i]);
    d.values[i] = bf16_to_f32(d.bits[i]);
  }
  return d;
}

const __nv_bfloat16* bf16_ptr(const cuda::DeviceArray<uint16_t>& a) {
  return reinterpret_cast<const __nv_bfloat16*>(a.data());
}

FlashAttentionDims make_dims(int64_t n_seq, int64_t n_q, int64_t n_kv, int64_t n_head,
                             int64_t n_head_kv, int64_t head_dim, MaskMode mask,
                             int64_t block_len = 0, int64_t q_pos0 = 0) {
  FlashAttentionDims d;
  d.n_seq = n_seq;
  d.n_q = n_q;
  d.n_kv = n_kv;
  d.n_head = n_head;
  d.n_head_kv = n_head_kv;
  d.head_dim = head_dim;
  d.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  d.mask = mask;
  d.block_len = block_len;
  d.q_pos0 = q_pos0;
  return d;
}

// Runs the GPU kernel and the CPU reference on the same random inputs and checks the bounds.
// q_amp sets how peaked the softmax is (scores grow with it).
void expect_matches_reference(const FlashAttentionDims& d, uint64_t seed, float q_amp = 1.0f) {
  const int64_t hd = d.head_dim;
  const int64_t q_rows = d.q_rows > 0 ? d.q_rows : d.n_q;  // rows past n_q are never read
  const size_t q_size = static_cast<size_t>(d.n_seq * d.n_head * q_rows * hd);
  const size_t kv_size = static_cast<size_t>(d.n_seq * d.n_head_kv * d.n_kv * hd);
  const size_t out_size = static_cast<size_t>(d.n_seq * d.n_head * d.n_q * hd);
  const Bf16Data q = random_bf16(q_size, seed, q_amp);
  const Bf16Data k = random_bf16(kv_size, seed + 1, 1.0f);
  const Bf16Data v = random_bf16(kv_size, seed + 2, 1.0f);

  // The CPU wants token-major q, k and v, one sequence at a time; its output is token-major
  // like the GPU's.
  AttentionShape s;
  s.n_q = d.n_q;
  s.n_kv = d.n_kv;
  s.n_heads = d.n_head;
  s.n_kv_heads = d.n_head_kv;
  s.head_dim = hd;
  s.scale = d.scale;
  s.mask = d.mask;
  s.block_len = d.block_len;
  s.q_pos0 = d.q_pos0;
  std::vector<float> want(out_size);
  std::vector<float> qt(static_cast<size_t>(d.n_q * d.n_head * hd));
  std::vector<float> kt(static_cast<size_t>(d.n_kv * d.n_head_kv * hd)), vt(kt.size());
  for (int64_t seq = 0; seq < d.n_seq; ++seq) {
    for (int64_t h = 0; h < d.n_head; ++h) {
      for (int64_t i = 0; i < d.n_q; ++i) {
        for (int64_t e = 0; e < hd; ++e) {
          qt[static_cast<size_t>((i * d.n_head + h) * hd + e)] =
              q.values[static_cast<size_t>(((seq * d.n_head + h) * q_rows + i) * hd + e)];
        }
      }
    }
    for (int64_t g = 0; g < d.n_head_kv; ++g) {
      for (int64_t j = 0; j < d.n_kv; ++j) {
        for (int64_t e = 0; e < hd; ++e) {
          const size_t from = static_cast<size_t>(((seq * d.n_head_kv + g) * d.n_kv + j) * hd + e);
          const size_t to = static_cast<size_t>((j * d.n_head_kv + g) * hd + e);
          kt[to] = k.values[from];
          vt[to] = v.values[from];
        }
      }
    }
    attention_reference(s, qt.data(), kt.data(), vt.data(),
                        want.data() + seq * d.n_q * d.n_head * hd);
  }

  auto q_d = to_device(q.bits), k_d = to_device(k.bits), v_d = to_device(v.bits);
  // The same dims with the query positions' offset (and as many keys) passed as a count in
  // device memory (FlashAttentionDims::past, as a replayed cached pass gets it): the same bits.
  const int32_t past = static_cast<int32_t>(d.q_pos0);
  const auto past_d = to_device(std::vector<int32_t>{past});
  FlashAttentionDims relative = d;
  relative.q_pos0 = 0;
  relative.n_kv -= past;
  relative.kv_rows = d.kv_rows > 0 ? d.kv_rows : d.n_kv;
  relative.past = past_d.data();
  std::vector<uint16_t> public_bits;
  // Every kernel variant (16 and 32 query rows per warp, then 16 with the keys split between
  // two warp groups), then the public entry point.
  for (int variant : {1, 2, 3, 0}) {
    auto out_d = poisoned<uint16_t>(out_size);
    auto* out = reinterpret_cast<__nv_bfloat16*>(out_d.data());
    if (variant == 0) {
      cuda::flash_attention(out, bf16_ptr(q_d), bf16_ptr(k_d), bf16_ptr(v_d), d, nullptr);
    } else {
      cuda::detail::flash_attention_variant(out, bf16_ptr(q_d), bf16_ptr(k_d), bf16_ptr(v_d), d,
                                            variant, nullptr);
    }
    const std::vector<uint16_t> out_bits = to_host(out_d, out_size);
    if (variant == 0) public_bits = out_bits;
    std::vector<float> got(out_size);
    for (size_t i = 0; i < out_size; ++i) got[i] = bf16_to_f32(out_bits[i]);

    const double rel = rel_error(got, want);
    const testing::Diff diff = testing::compare(got.data(), want.data(), out_size);
    std::printf(
        "  n_seq %ld n_q %ld n_kv %ld heads %ld/%ld hd %ld mask %d q_pos0 %ld: "
        "variant %d: rel %.1e, max abs %.1e\n",
        static_cast<long>(d.n_seq), static_cast<long>(d.n_q), static_cast<long>(d.n_kv),
        static_cast<long>(d.n_head), static_cast<long>(d.n_head_kv), static_cast<long>(hd),
        static_cast<int>(d.mask), static_cast<long>(d.q_pos0), variant, rel, diff.max_abs);
    EXPECT_LT(rel, kRelBound) << "variant " << variant;
    // A NaN makes every comparison false, so max_abs alone would not catch one.
    for (float x : got) ASSERT_TRUE(std::isfinite(x)) << "unwritten or non-finite output";
    EXPECT_LT(diff.max_abs, kAbsBound) << "variant " << variant;
  }

  if (past > 0) {
    auto out_d = poisoned<uint16_t>(out_size);
    cuda::flash_attention(reinterpret_cast<__nv_bfloat16*>(out_d.data()), bf16_ptr(q_d),
                          bf16_ptr(k_d), bf16_ptr(v_d), relative, nullptr);
    EXPECT_EQ(to_host(out_d, out_size), public_bits) << "past " << past << " on the device";
  }

  // The exact-precision attention on the same values in f32: only f32 rounding apart from the
  // reference (exp and the running sums in another order), measured below 1e-6 relative.
  auto qf = to_device(q.values), kf = to_device(k.values), vf = to_device(v.values);
  auto out_f = poisoned<float>(out_size);
  cuda::exact_attention(out_f.data(), qf.data(), kf.data(), vf.data(), d, nullptr);
  const std::vector<float> got = to_host(out_f, out_size);
  if (past > 0) {
    auto out_r = poisoned<float>(out_size);
    cuda::exact_attention(out_r.data(), qf.data(), kf.data(), vf.data(), relative, nullptr);
    EXPECT_EQ(to_host(out_r, out_size), got) << "exact, past " << past << " on the device";
  }
  for (float x : got) ASSERT_TRUE(std::isfinite(x)) << "exact: unwritten or non-finite output";
  const double rel = rel_error(got, want);
  std::printf("    exact f32: rel %.1e\n", rel);
  EXPECT_LT(rel, kExactRelBound) << "exact attention";
}

class FlashAttentionTest : public CudaTest {};

TEST_F(FlashAttentionTest, FullMaskHeadDim64) {
  expect_matches_reference(make_dims(2, 100, 100, 6, 6, 64, MaskMode::Full), 11);
  expect_matches_reference(make_dims(1, 64, 64, 2, 2, 64, MaskMode::Full), 12);  // exact tiles
}

TEST_F(FlashAttentionTest, FullMaskHeadDim128WithGroupedQueries) {
  expect_matches_reference(make_dims(2, 130, 130, 8, 2, 128, MaskMode::Full), 21);
  expect_matches_reference(make_dims(1, 37, 301, 4, 1, 128, MaskMode::Full), 22);
}

TEST_F(FlashAttentionTest, CausalMask) {
  expect_matches_reference(make_dims(2, 77, 77, 4, 4, 64, MaskMode::Causal), 31);
  expect_matches_reference(make_dims(1, 200, 200, 8, 2, 128, MaskMode::Causal), 32);
}

TEST_F(FlashAttentionTest, BlockCausalMask) {
  expect_matches_reference(make_dims(1, 200, 200, 4, 2, 128, MaskMode::BlockCausal, 32), 41);
  // Blocks that do not line up with the 64-row query tiles or the key tiles.
  expect_matches_reference(make_dims(2, 150, 150, 3, 3, 64, MaskMode::BlockCausal, 7), 42);
  expect_matches_reference(make_dims(1, 90, 90, 2, 1, 64, MaskMode::BlockCausal, 100), 43);
}

TEST_F(FlashAttentionTest, CachedPrefix) {
  // 105 cached keys, then this pass's 45 rows at positions 105..149.
  for (MaskMode mask : {MaskMode::Full, MaskMode::Causal, MaskMode::BlockCausal}) {
    expect_matches_reference(make_dims(2, 45, 150, 4, 2, 64, mask, 16, 105), 51);
    expect_matches_reference(make_dims(1, 70, 333, 2, 2, 128, mask, 32, 263), 52);
  }
  // Fewer queries than the cache, not ending at the last key.
  expect_matches_reference(make_dims(1, 20, 300, 2, 2, 64, MaskMode::Causal, 0, 130), 53);
}

// Queries that are the later rows of a pass (q_rows rows per head): the span of a pass that
// follows the rows extending a KV cache (ForwardOptions::extend_rows).
TEST_F(FlashAttentionTest, QueriesAtARowPitch) {
  auto d = make_dims(1, 32, 96, 4, 2, 128, MaskMode::Full, 0, 64);
  d.q_rows = 64;
  expect_matches_reference(d, 55);
  d = make_dims(2, 45, 150, 4, 2, 64, MaskMode::Causal, 0, 105);
  d.q_rows = 77;
  expect_matches_reference(d, 56);
}

TEST_F(FlashAttentionTest, PaddedHeadDims) {
  // 80 runs on the 128 kernel, 16/48 on the 64 one, 144/256 on the 256 one.
  expect_matches_reference(make_dims(1, 70, 70, 4, 2, 80, MaskMode::Full), 61);
  expect_matches_reference(make_dims(1, 70, 70, 4, 2, 80, MaskMode::Causal), 62);
  expect_matches_reference(make_dims(2, 33, 33, 2, 2, 16, MaskMode::Full), 63);
  expect_matches_reference(make_dims(1, 50, 90, 2, 2, 48, MaskMode::BlockCausal, 8, 40), 64);
  expect_matches_reference(make_dims(1, 70, 70, 2, 1, 144, MaskMode::Causal), 65);
  expect_matches_reference(make_dims(1, 100, 100, 2, 2, 256, MaskMode::Full), 66);
  expect_matches_reference(make_dims(1, 100, 100, 2, 2, 256, MaskMode::BlockCausal, 20), 67);
}

TEST_F(FlashAttentionTest, PeakedSoftmaxAcrossManyKeyTiles) {
  // Large scores make the running maximum change between key tiles, which exercises the
  // rescaling of the earlier partial sums.
  expect_matches_reference(make_dims(1, 64, 600, 2, 2, 128, MaskMode::Full), 71, 6.0f);
  expect_matches_reference(make_dims(1, 64, 600, 2, 2, 64, MaskMode::Causal, 0, 536), 72, 6.0f);
  expect_matches_reference(make_dims(1, 40, 400, 2, 2, 256, MaskMode::Full), 73, 4.0f);
}

TEST_F(FlashAttentionTest, SingleQueryAndKey) {
  expect_matches_reference(make_dims(1, 1, 1, 1, 1, 64, MaskMode::Full), 81);
  expect_matches_reference(make_dims(3, 1, 1, 2, 1, 128, MaskMode::Causal), 82);
  expect_matches_reference(make_dims(1, 1, 129, 2, 2, 64, MaskMode::Causal, 0, 128), 83);
}

TEST_F(FlashAttentionTest, LongerSequence) {
  expect_matches_reference(make_dims(1, 515, 515, 2, 1, 128, MaskMode::Full), 91);
  expect_matches_reference(make_dims(1, 515, 515, 2, 2, 64, MaskMode::Causal), 92);
}

TEST_F(FlashAttentionTest, NoQueriesWritesNothing) {
  auto out = poisoned<uint16_t>(64);
  auto in = poisoned<uint16_t>(64);
  const auto* p = bf16_ptr(in);
  auto* o = reinterpret_cast<__nv_bfloat16*>(out.data());
  cuda::flash_attention(o, p, p, p, make_dims(1, 0, 4, 1, 1, 16, MaskMode::Full), nullptr);
  cuda::flash_attention(o, p, p, p, make_dims(0, 4, 4, 1, 1, 16, MaskMode::Full), nullptr);
  for (uint16_t x : to_host(out, 64)) EXPECT_EQ(x, 0xFFFF);
}

// Validation runs before anything touches the GPU, so these run without one. The pointers are
// never read: each call must throw first, and the message says it threw for the right reason.
void expect_error(const FlashAttentionDims& d, const std::string& fragment,
                  const void* ptr = nullptr) {
  alignas(16) static uint16_t dummy[64];
  const auto* p = static_cast<const __nv_bfloat16*>(ptr ? ptr : dummy);
  auto* out = reinterpret_cast<__nv_bfloat16*>(dummy);
  try {
    cuda::flash_attention(out, p, p, p, d, nullptr);
    ADD_FAILURE() << "no error for: " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(FlashAttentionErrors, BadDimensionsThrow) {
  auto d = make_dims(1, 8, 8, 4, 2, 64, MaskMode::Full);
  auto bad = d;
  bad.head_dim = 72;
  expect_error(bad, "head_dim 72");
  bad.head_dim = 272;
  expect_error(bad, "head_dim 272");
  bad.head_dim = 0;
  expect_error(bad, "head_dim 0");
  bad = d;
  bad.n_head_kv = 3;
  expect_error(bad, "n_head_kv 3");
  bad = d;
  bad.n_head = 0;
  expect_error(bad, "n_head 0");
  bad = d;
  bad.n_q = -1;
  expect_error(bad, "negative size");
  bad = d;
  bad.n_kv = 0;
  expect_error(bad, "no keys");
  bad = d;
  bad.scale = 0;
  expect_error(bad, "scale");
  bad.scale = NAN;
  expect_error(bad, "scale");
  bad = d;
  bad.q_pos0 = -2;
  expect_error(bad, "q_pos0");
  bad = d;
  bad.mask = MaskMode::Causal;
  bad.q_pos0 = 1;  // queries at positions 1..8 but only 8 keys
  expect_error(bad, "only 8 keys");
  bad = d;
  bad.mask = MaskMode::BlockCausal;
  bad.block_len = 0;
  expect_error(bad, "block_len");
  bad = d;
  bad.q_rows = 7;
  expect_error(bad, "q_rows 7 is below n_q 8");
  bad = d;
  static const int32_t never_read = 0;
  bad.past = &never_read;
  expect_error(bad, "kv_rows must be given with past");
  bad = d;
  bad.mask = static_cast<MaskMode>(7);
  expect_error(bad, "mask mode");
  alignas(16) static uint16_t storage[16];
  expect_error(d, "16-byte aligned", storage + 1);
  try {
    auto* p = reinterpret_cast<__nv_bfloat16*>(storage);
    cuda::detail::flash_attention_variant(p, p, p, p, d, 4, nullptr);
    ADD_FAILURE() << "no error for variant 4";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("variant 4"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ruvdllm
