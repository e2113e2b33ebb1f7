#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "ruvdllm/core/env_choice.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/core/tensor.h"
#include "ruvdllm/core/thread_pool.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

// An A/B switch: its first choice when unset, the named one when set, an Error naming every
// choice otherwise.
TEST(EnvChoice, ReadsOneOfTheNamedChoices) {
  const char* name = "RUVDLLM_TEST_ENV_CHOICE";
  auto read = [&] { return env_choice<int>(name, {{"auto", -1}, {"on", 1}, {"off", 0}}); };
  unsetenv(name);
  EXPECT_EQ(read(), -1);
  setenv(name, "off", 1);
  EXPECT_EQ(read(), 0);
  setenv(name, "on", 1);
  EXPECT_EQ(read(), 1);
  setenv(name, "On", 1);
  try {
    read();
    ADD_FAILURE() << "no error for 'On'";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "RUVDLLM_TEST_ENV_CHOICE must be one of auto, on, off, not 'On'");
  }
  unsetenv(name);
}

TEST(TensorType, TraitsMatchGgufBlockLayouts) {
  EXPECT_EQ(type_traits(TensorType::Q8_0).block_bytes, 34u);
  EXPECT_EQ(type_traits(TensorType::Q4_K).block_size, 256);
  EXPECT_EQ(row_bytes(TensorType::Q6_K, 512), 420u);
  EXPECT_EQ(row_bytes(TensorType::BF16, 3), 6u);
  EXPECT_THROW(row_bytes(TensorType::Q4_0, 33), Error);
  EXPECT_FALSE(is_supported_type(3));  // Q4_1 is not supported
  EXPECT_THROW(type_traits(static_cast<TensorType>(99)), Error);
  EXPECT_EQ(type_from_name("Q4_k"), TensorType::Q4_K);
  EXPECT_EQ(type_from_name("BF16"), TensorType::BF16);
  EXPECT_FALSE(type_from_name("q4_k_m").has_value());
}

TEST(Half, F16RoundTripsEveryHalfValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << "half bits " << h;
  }
}

TEST(Half, F16RoundsToNearestEven) {
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 1.0f / 2048)), 1.0f);  // tie to even
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(70000.0f))));
  EXPECT_EQ(f16_to_f32(f32_to_f16(65504.0f)), 65504.0f);
  const float tiny = 5.9604645e-8f;  // smallest subnormal half
  EXPECT_EQ(f16_to_f32(f32_to_f16(tiny)), tiny);
}

TEST(Half, Bf16RoundsToNearest) {
  auto values = testing::random_normal(1000, 7, 10.0f);
  for (float v : values) {
    const float r = bf16_to_f32(f32_to_bf16(v));
    EXPECT_LE(std::fabs(r - v), std::fabs(v) * (1.0f / 256));
  }
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Tensor, AllocatesAlignedAndSlicesMatrices) {
  Tensor t("experts", TensorType::Q8_0, {64, 3, 4});
  EXPECT_EQ(t.nbytes(), 2u * 34 * 3 * 4);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  TensorView m = t.view().matrix(2);
  EXPECT_EQ(m.rows(), 3);
  EXPECT_EQ(static_cast<const uint8_t*>(m.data) - static_cast<const uint8_t*>(t.data()),
            2 * 3 * 68);
  EXPECT_THROW(t.view().matrix(4), Error);
}

TEST(ThreadPool, RunsEveryTaskOnceAtAnySize) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    std::vector<std::atomic<int>> hits(1000);
    for (int rep = 0; rep < 20; ++rep) {
      pool.parallel_for(1000, [&](int64_t task, int thread) {
        ASSERT_LT(thread, threads);
        hits[static_cast<size_t>(task)]++;
      });
    }
    for (auto& h : hits) EXPECT_EQ(h.load(), 20);
  }
}

TEST(ThreadPool, RethrowsTaskErrors) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(100,
                                 [](int64_t task, int) {
                                   if (task == 57) fail("task {} failed", task);
                                 }),
               Error);
  int count = 0;
  pool.parallel_for(10, [&](int64_t, int) {});  // still usable afterwards
  pool.parallel_for(1, [&](int64_t, int) { ++count; });
  EXPECT_EQ(count, 1);
}

TEST(ThreadPool, PhysicalCoresIsPositive) { EXPECT_GE(ThreadPool::physical_cores(), 1); }

}  // namespace
}  // namespace ruvdllm
