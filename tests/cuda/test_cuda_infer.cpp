// The GPU denoising step against the CPU runtime: logits of random models in every weight
// type, mask mode and architecture variant; CUDA graph replay against eager launches; and
// generation with the shipped model token for token against the CPU at temperature 0.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cuda/wgmma_gemm.h"
#include "cuda_test_util.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/cuda/infer_engine.h"
#include "ruvdllm/diffusion/generate.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/text/tokenizer.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using testing::CudaTest;
using testing::rel_error;
using testing::ScopedEnv;
using testing::TempDir;

std::unique_ptr<Model> random_model(const TempDir& dir, Arch arch, TensorType type,
                                    const std::string& name) {
  InitOptions init;
  init.type = type;
  init.seed = 7;
  // Sharper attention than a real init, so every part of the pass moves the logits.
  init.init_std = 0.08f;
  const std::string path = dir.file(name + ".gguf");
  write_random_model(shape_config(arch, "test"), init, path);
  return Model::load(path);
}

std::vector<int32_t> random_tokens(const ModelConfig& c, size_t n, uint32_t seed) {
  std::vector<int32_t> t(n);
  uint32_t x = seed;
  for (auto& id : t) {
    x = x * 1664525u + 1013904223u;
    id = static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(c.vocab_size));
  }
  return t;
}

std::vector<float> cpu_logits(Model& model, std::span<const int32_t> tokens,
                              const ForwardOptions& o) {
  ThreadPool pool(2);
  std::vector<float> out(tokens.size() * static_cast<size_t>(model.config().vocab_size));
  model.forward(tokens, o, out.data(), pool);
  return out;
}

std::vector<float> gpu_logits(cuda::CudaInferEngine& engine, std::span<const int32_t> tokens,
                              const ForwardOptions& o) {
  engine.forward(tokens, o);
  std::vector<float> out(tokens.size() * static_cast<size_t>(engine.config().vocab_size));
  engine.copy_logits(out.data());
  return out;
}

// A cached prefix, then a block after it (twice: the second pass replays the captured graph),
// then that block appended in the same pass as a next one, and the next one alone, as block
// diffusion runs them, on the CPU and the GPU: the relative error of each pass. The GPU's cache
// must hold the prefix, then the prefix and the block.
std::vector<double> cached_pass_errors(Model& model, cuda::CudaInferEngine& engine,
                                       size_t prefix_len) {
  const auto prefix = random_tokens(model.config(), prefix_len, 8);
  const auto block = random_tokens(model.config(), 16, 9);
  ThreadPool pool(2);
  const auto vocab = static_cast<size_t>(model.config().vocab_size);
  KVCache cpu_cache, gpu_cache;
  ForwardOptions extend;
  extend.append_to_cache = true;
  std::vector<float> cpu(prefix.size() * vocab);
  extend.cache = &cpu_cache;
  model.forward(prefix, extend, cpu.data(), pool);
  extend.cache = &gpu_cache;
  std::vector<double> errors{rel_error(gpu_logits(engine, prefix, extend), cpu)};
  for (int pass = 0; pass < 2; ++pass) {
    ForwardOptions current;
    std::vector<float> cpu_block(block.size() * vocab);
    current.cache = &cpu_cache;
    model.forward(block, current, cpu_block.data(), pool);
    current.cache = &gpu_cache;
    errors.push_back(rel_error(gpu_logits(engine, block, current), cpu_block));
  }
  EXPECT_EQ(gpu_cache.n_tokens, static_cast<int64_t>(prefix_len));
  // The block goes into the cache in the same pass as the next one (extend_rows, as a
  // generation's first step of a block runs), then the next block runs over the grown cache.
  const auto next = random_tokens(model.config(), 16, 10);
  std::vector<int32_t> both = block;
  both.insert(both.end(), next.begin(), next.end());
  ForwardOptions grow;
  grow.extend_rows = static_cast<int64_t>(block.size());
  std::vector<float> cpu_both(both.size() * vocab), cpu_next(next.size() * vocab);
  grow.cache = &cpu_cache;
  model.forward(both, grow, cpu_both.data(), pool);
  grow.cache = &gpu_cache;
  errors.push_back(rel_error(gpu_logits(engine, both, grow), cpu_both));
  EXPECT_EQ(gpu_cache.n_tokens, static_cast<int64_t>(prefix_len + block.size()));
  ForwardOptions after;
  after.cache = &cpu_cache;
  model.forward(next, after, cpu_next.data(), pool);
  after.cache = &gpu_cache;
  errors.push_back(rel_error(gpu_logits(engine, next, after), cpu_next));
  ForwardOptions foreign;
  foreign.cache = &cpu_cache;  // filled by the CPU
  EXPECT_THROW(engine.forward(block, foreign), Error);
  return errors;
}

class CudaInfer : public CudaTest {};

// bf16 operands (8-bit mantissa) in every product and attention, f32 elsewhere: the logits stay
// within 3% (relative L2) of the CPU's f32 pass on these two-layer models; measured ≤ 1% on
// an H100. A wrong layout, mask or rotation gives errors of order 1.
constexpr double kLogitBound = 3e-2;

TEST_F(CudaInfer, LogitsMatchCpuForEveryWeightType) {
  TempDir dir;
  for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0,
                          TensorType::Q4_0, TensorType::Q4_K, TensorType::Q6_K}) {
    auto model = random_model(dir, Arch::LLaDA, type, type_traits(type).name);
    for (cuda::WeightMode mode : {cuda::WeightMode::Quantized, cuda::WeightMode::Dense}) {
      cuda::InferOptions options;
      options.weights = mode;
      cuda::CudaInferEngine engine(model->config(), model->weights(), options);
      const auto tokens = random_tokens(model->config(), 45, 3);
      ForwardOptions o;
      const double err = rel_error(gpu_logits(engine, tokens, o), cpu_logits(*model, tokens, o));
      EXPECT_LT(err, kLogitBound) << type_traits(type).name << " mode "
                                  << (mode == cuda::WeightMode::Dense ? "bf16" : "quantized");
    }
  }
}

// Precision::F32 against the CPU where the CPU multiplies in f32 (F32 and F16 weights: sgemm):
// both sides compute the same f32 math in different orders, so the logits agree to f32
// rounding (measured around 1e-7 relative; the bound leaves 100×), in every mask, with several
// sequences, for Dream's biases and shift, and after a cached prefix. Quantized weights, which
// the CPU multiplies with int8 activations, are checked to the bf16 bound only.
constexpr double kExactLogitBound = 1e-5;

TEST_F(CudaInfer, ExactPrecisionFollowsCpuF32) {
  TempDir dir;
  struct Case {
    MaskMode mask;
    int64_t block_len, n_seq, length;
  };
  for (const TensorType type : {TensorType::F32, TensorType::F16, TensorType::Q4_K}) {
    for (const Arch arch : {Arch::LLaDA, Arch::Dream}) {
      auto model = random_model(dir, arch, type,
                                std::string(arch_name(arch)) + "-" + type_traits(type).name);
      const double bound = type_traits(type).quantized ? kLogitBound : kExactLogitBound;
      for (const cuda::WeightMode mode : {cuda::WeightMode::Quantized, cuda::WeightMode::Dense}) {
        cuda::InferOptions options;
        options.precision = cuda::Precision::F32;
        options.weights = mode;
        cuda::CudaInferEngine engine(model->config(), model->weights(), options);
        for (const Case& k : {Case{MaskMode::Full, 0, 1, 45}, Case{MaskMode::Causal, 0, 1, 37},
                              Case{MaskMode::BlockCausal, 5, 2, 23}}) {
          const auto tokens =
              random_tokens(model->config(), static_cast<size_t>(k.n_seq * k.length), 11);
          ForwardOptions o;
          o.mask = k.mask;
          o.block_len = k.block_len;
          o.n_seq = k.n_seq;
          const double err =
              rel_error(gpu_logits(engine, tokens, o), cpu_logits(*model, tokens, o));
          std::printf("  f32 %s %s %s mask %d: relative error %.2e\n", arch_name(arch),
                      type_traits(type).name,
                      mode == cuda::WeightMode::Dense ? "dense" : "quantized",
                      static_cast<int>(k.mask), err);
          EXPECT_LT(err, bound) << arch_name(arch) << " " << type_traits(type).name << " mask "
                                << static_cast<int>(k.mask);
        }
        for (const double err : cached_pass_errors(*model, engine, 30)) {
          EXPECT_LT(err, bound) << arch_name(arch) << " " << type_traits(type).name
                                << " with a cached prefix";
        }
      }
    }
  }
}

TEST_F(CudaInfer, LogitsMatchCpuForEveryMaskAndSeveralSequences) {
  TempDir dir;
  auto model = random_model(dir, Arch::LLaDA, TensorType::F16, "llada");
  cuda::CudaInferEngine engine(model->config(), model->weights());
  struct Case {
    MaskMode mask;
    int64_t block_len, n_seq, length;
  };
  for (const Case& k : {Case{MaskMode::Full, 0, 1, 64}, Case{MaskMode::Causal, 0, 1, 37},
                        Case{MaskMode::BlockCausal, 8, 1, 40},
                        Case{MaskMode::BlockCausal, 5, 2, 23}, Case{MaskMode::Full, 0, 3, 19}}) {
    const auto tokens = random_tokens(model->config(), static_cast<size_t>(k.n_seq * k.length), 11);
    ForwardOptions o;
    o.mask = k.mask;
    o.block_len = k.block_len;
    o.n_seq = k.n_seq;
    EXPECT_LT(rel_error(gpu_logits(engine, tokens, o), cpu_logits(*model, tokens, o)), kLogitBound)
        << "mask " << static_cast<int>(k.mask) << " block " << k.block_len << " seqs " << k.n_seq;
  }
}

// Dream: q/k/v biases, NeoX RoPE (as its config has it), shifted logits.
TEST_F(CudaInfer, DreamLogitsMatchCpu) {
  TempDir dir;
  auto model = random_model(dir, Arch::Dream, TensorType::Q8_0, "dream");
  ASSERT_TRUE(model->config().shift_logits);
  ASSERT_TRUE(model->config().qkv_bias);
  cuda::CudaInferEngine engine(model->config(), model->weights());
  const auto tokens = random_tokens(model->config(), 60, 5);
  ForwardOptions o;
  o.n_seq = 2;
  EXPECT_LT(rel_error(gpu_logits(engine, tokens, o), cpu_logits(*model, tokens, o)), kLogitBound);
}

// The same options with every pass launched kernel by kernel: what graph replays must equal.
cuda::InferOptions without_graphs(cuda::InferOptions options = {}) {
  options.cuda_graph = false;
  return options;
}

// The first pass of a shape runs eagerly, the second is captured, later ones replay the graph:
// all must compute the same thing, for new tokens too.
TEST_F(CudaInfer, GraphReplayEqualsEagerLaunches) {
  TempDir dir;
  auto model = random_model(dir, Arch::LLaDA, TensorType::Q4_K, "graph");
  // Quantized weights, so the per-product dequantization is inside the captured graph too.
  cuda::InferOptions graph_options;
  graph_options.weights = cuda::WeightMode::Quantized;
  cuda::CudaInferEngine graphed(model->config(), model->weights(), graph_options);
  EXPECT_EQ(graphed.weight_mode(), cuda::WeightMode::Quantized);
  cuda::CudaInferEngine eager(model->config(), model->weights(), without_graphs(graph_options));
  ForwardOptions o;
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    const auto tokens = random_tokens(model->config(), 50, seed);
    EXPECT_EQ(gpu_logits(graphed, tokens, o), gpu_logits(eager, tokens, o)) << "pass " << seed;
  }
  EXPECT_EQ(graphed.graphs_captured(), 1);
  EXPECT_EQ(eager.graphs_captured(), 0);
  // The warm-up pass runs eagerly, captures nothing and leaves no logits to sample.
  cuda::CudaInferEngine warmed(model->config(), model->weights(), graph_options);
  warmed.warm_up();
  EXPECT_EQ(warmed.graphs_captured(), 0);
  std::vector<float> none(static_cast<size_t>(model->config().vocab_size));
  EXPECT_THROW(warmed.copy_logits(none.data()), Error);
  EXPECT_EQ(gpu_logits(warmed, random_tokens(model->config(), 50, 1), o),
            gpu_logits(eager, random_tokens(model->config(), 50, 1), o));
  // A model this small always fits dequantized, which Auto then prefers.
  EXPECT_EQ(cuda::CudaInferEngine(model->config(), model->weights()).weight_mode(),
            cuda::WeightMode::Dense);
}

// A process that runs many pass shapes (a server: a canvas length per request) keeps graphs for
// the 16 shapes used last; an evicted shape runs eagerly again, with the same results.
TEST_F(CudaInfer, KeepsGraphsForTheShapesUsedLast) {
  TempDir dir;
  auto model = random_model(dir, Arch::LLaDA, TensorType::Q8_0, "graph-lru");
  cuda::CudaInferEngine eager(model->config(), model->weights(), without_graphs());
  cuda::CudaInferEngine graphed(model->config(), model->weights());
  ForwardOptions o;
  auto same = [&](size_t length, uint32_t seed) {
    const auto tokens = random_tokens(model->config(), length, seed);
    return gpu_logits(graphed, tokens, o) == gpu_logits(eager, tokens, o);
  };
  // Longest first: a longer pass would resize the buffers, which drops every graph.
  for (size_t length = 27; length >= 8; --length) {
    for (uint32_t pass = 0; pass < 3; ++pass) {  // eager, captured, replayed
      EXPECT_TRUE(same(length, static_cast<uint32_t>(length) * 4 + pass)) << length;
    }
  }
  EXPECT_EQ(graphed.graphs_captured(), 16);
  // The first lengths were evicted; they run (and are captured) again.
  for (uint32_t pass = 0; pass < 3; ++pass) EXPECT_TRUE(same(27, 900 + pass));
  EXPECT_EQ(graphed.graphs_captured(), 16);
}

// Passes over a KV cache are captured too: the cache's length reaches the kernels through device
// memory, so a block's graph replays after the next block has grown the cache, with the bits of
// eager launches. RUVDLLM_CUDA_GRAPHS=uncached leaves them eager.
TEST_F(CudaInfer, CachedPassGraphsReplayAfterTheCacheGrows) {
  TempDir dir;
  auto model = random_model(dir, Arch::LLaDA, TensorType::Q8_0, "graph-cache");
  cuda::CudaInferEngine eager(model->config(), model->weights(), without_graphs());
  const auto prefix = random_tokens(model->config(), 24, 3);
  const auto block = random_tokens(model->config(), 16, 4);
  const auto next = random_tokens(model->config(), 16, 5);
  std::vector<int32_t> both = block;
  both.insert(both.end(), next.begin(), next.end());
  auto cached_passes = [&](cuda::CudaInferEngine& engine) {
    KVCache cache;
    ForwardOptions fill;
    fill.cache = &cache;
    fill.append_to_cache = true;
    std::vector<std::vector<float>> logits{gpu_logits(engine, prefix, fill)};
    ForwardOptions use;
    use.cache = &cache;
    // Eager, captured, replayed after 24 cached positions; then the block goes into the cache
    // with the next one's first step, and the next block's passes replay after 40.
    for (int pass = 0; pass < 3; ++pass) logits.push_back(gpu_logits(engine, block, use));
    ForwardOptions grow = use;
    grow.extend_rows = static_cast<int64_t>(block.size());
    logits.push_back(gpu_logits(engine, both, grow));
    for (int pass = 0; pass < 3; ++pass) logits.push_back(gpu_logits(engine, next, use));
    EXPECT_EQ(cache.n_tokens, 40);
    return logits;
  };
  const auto want = cached_passes(eager);
  cuda::CudaInferEngine by_default(model->config(), model->weights());
  EXPECT_EQ(cached_passes(by_default), want);
  EXPECT_EQ(by_default.graphs_captured(), 1);  // the 16-row shape; the others ran once
  {
    ScopedEnv uncached("RUVDLLM_CUDA_GRAPHS", "uncached");
    cuda::CudaInferEngine eager_cached(model->config(), model->weights());
    EXPECT_EQ(cached_passes(eager_cached), want);
    EXPECT_EQ(eager_cached.graphs_captured(), 0);
  }
  ScopedEnv bad("RUVDLLM_CUDA_GRAPHS", "sometimes");
  EXPECT_THROW(cuda::CudaInferEngine(model->config(), model->weights()), Error);
}

// Quantized weights multiplied in their blocks (QuantGemm) against the dequantized copy +
// cuBLAS: both see the very same bf16 weight values, so the logits differ only by f32 summation
// order and the bf16 roundings that follow (bounds below), at row counts either side of the
// engine's switch, with graphs and a KV cache. Widths of 256 and 512, because the fused way
// needs rows of whole 256-value stages (the "test" shape is 64 wide); 2048 for Q6_K, whose rows
// WgmmaGemm decodes only in multiples of 2048 values.
TEST_F(CudaInfer, FusedQuantizedProductsMatchTheDequantizedWay) {
  TempDir dir;
  for (const TensorType type : {TensorType::Q4_K, TensorType::Q8_0, TensorType::Q6_K}) {
    ModelConfig config = shape_config(Arch::LLaDA, "test");
    config.n_embd = 256;
    config.head_dim = 64;
    config.n_ff = 512;
    // The ways differ by f32 summation order and the bf16 roundings after it: measured below
    // 1e-3 relative at 256 and 512 wide, 5.2e-3 at 2048.
    double bound = 5e-3;
    if (type == TensorType::Q6_K) {
      // WgmmaGemm decodes Q6_K rows of multiples of 2048 values only (16-byte row strides).
      bound = 1e-2;
      config.n_embd = 2048;
      config.n_head = 16;
      config.n_head_kv = 8;
      config.head_dim = 128;
      config.n_ff = 2048;
    }
    InitOptions init;
    init.type = type;
    init.seed = 11;
    const std::string path = dir.file(std::string("fused_") + type_traits(type).name + ".gguf");
    write_random_model(config, init, path);
    auto model = Model::load(path);
    cuda::InferOptions options;
    options.weights = cuda::WeightMode::Quantized;
    auto engine_for = [&](const char* way) {
      ScopedEnv env("RUVDLLM_CUDA_QUANT_GEMM", way);
      return std::make_unique<cuda::CudaInferEngine>(model->config(), model->weights(), options);
    };
    auto fused = engine_for("fused"), dequantized = engine_for("dequantize");
    auto automatic = engine_for("auto");
    // Blocks decoded inside WgmmaGemm's tiles (H100/H200) for every product it takes: `auto`
    // leaves this model's small products to the other ways.
    // wgmma applies SwiGLU to the gate|up product's tiles; elementwise runs the same products
    // and then the element-wise kernel, which must give the same bits.
    std::unique_ptr<cuda::CudaInferEngine> wgmma, elementwise, k_parts;
    if (cuda::WgmmaGemm::available()) {
      ScopedEnv own("RUVDLLM_CUDA_GEMM", "wgmma");
      wgmma = engine_for("auto");
      ScopedEnv swiglu("RUVDLLM_CUDA_SWIGLU", "kernel");
      elementwise = engine_for("auto");
    }
    if (cuda::WgmmaGemm::available()) {
      // The FFN-down product (512 in) with K in two parts that the next norm adds, at 150 and
      // 250 rows (the measured rule keeps K whole for products this small).
      ScopedEnv parts("RUVDLLM_CUDA_K_PARTS", "any");
      k_parts = engine_for("auto");
    }
    // 150, 250 and 300 rows: 128- and 256-row tiles, and two row tiles.
    for (const size_t n : {size_t{20}, size_t{150}, size_t{250}, size_t{300}}) {
      const auto tokens = random_tokens(model->config(), n, 5);
      ForwardOptions o;
      const auto want = gpu_logits(*dequantized, tokens, o);
      for (int pass = 0; pass < 2; ++pass) {  // the second replays a graph
        EXPECT_LT(rel_error(gpu_logits(*fused, tokens, o), want), bound)
            << type_traits(type).name << " " << n << " rows, pass " << pass;
      }
      EXPECT_LT(rel_error(gpu_logits(*automatic, tokens, o), want), bound);
      if (wgmma) {
        const auto own = gpu_logits(*wgmma, tokens, o);
        EXPECT_LT(rel_error(own, want), bound)
            << type_traits(type).name << " " << n << " rows, wgmma";
        EXPECT_TRUE(own == gpu_logits(*elementwise, tokens, o))
            << type_traits(type).name << " " << n << " rows: SwiGLU in the tiles differs from "
            << "the element-wise kernel";
      }
      if (k_parts) {
        for (int pass = 0; pass < 2; ++pass) {
          EXPECT_LT(rel_error(gpu_logits(*k_parts, tokens, o), want), bound)
              << type_traits(type).name << " " << n << " rows, K in parts, pass " << pass;
        }
      }
      EXPECT_LT(rel_error(want, cpu_logits(*model, tokens, o)), kLogitBound);
    }
    const auto errors = cached_pass_errors(*model, *fused, 40);
    for (const double e : errors) EXPECT_LT(e, kLogitBound) << type_traits(type).name;
    if (wgmma) {
      // Cached passes with every product on WgmmaGemm, SwiGLU in the gate|up tiles.
      for (const double e : cached_pass_errors(*model, *wgmma, 40)) {
        EXPECT_LT(e, kLogitBound) << type_traits(type).name << ", wgmma";
      }
    }
  }
  {
    ScopedEnv bad("RUVDLLM_CUDA_SWIGLU", "fused");
    EXPECT_THROW(
        cuda::CudaInferEngine(shape_config(Arch::LLaDA, "test"),
                              random_model(dir, Arch::LLaDA, TensorType::Q8_0, "env0")->weights()),
        Error);
  }
  {
    ScopedEnv bad("RUVDLLM_CUDA_QUANT_GEMM", "fast");
    EXPECT_THROW(
        cuda::CudaInferEngine(shape_config(Arch::LLaDA, "test"),
                              random_model(dir, Arch::LLaDA, TensorType::Q8_0, "env")->weights()),
        Error);
  }
  ScopedEnv bad("RUVDLLM_CUDA_GEMM", "fast");
  EXPECT_THROW(
      cuda::CudaInferEngine(shape_config(Arch::LLaDA, "test"),
                            random_model(dir, Arch::LLaDA, TensorType::Q8_0, "env2")->weights()),
      Error);
}

// The head for listed rows only (ForwardOptions::logit_rows, what generation asks for): those
// rows equal the full pass's (the head product's row count differs, so cuBLAS may sum in
// another order: bound 1e-5 relative per row), the others are not computed, proposals match,
// and a replayed graph picks up a new list of the same padded length.
TEST_F(CudaInfer, LogitRowsGiveThoseRowsOfTheFullPass) {
  TempDir dir;
  auto model = random_model(dir, Arch::LLaDA, TensorType::F16, "rows");
  cuda::CudaInferEngine engine(model->config(), model->weights());
  const auto V = static_cast<size_t>(model->config().vocab_size);
  for (const int64_t n_seq : {int64_t{1}, int64_t{2}}) {
    SCOPED_TRACE(n_seq);
    const int64_t L = 100;
    const auto tokens = random_tokens(model->config(), static_cast<size_t>(n_seq * L), 11);
    ForwardOptions all;
    all.n_seq = n_seq;
    const auto full = gpu_logits(engine, tokens, all);
    const std::vector<std::vector<int64_t>> lists = {{3, 50, 99, 7}, {0, 1, 98}, {64, 2, 3, 4, 5}};
    for (const auto& rows : lists) {  // three passes of one padded shape: eager, capture, replay
      ForwardOptions some = all;
      some.logit_rows = rows;
      const auto part = gpu_logits(engine, tokens, some);
      for (int64_t s = 0; s < n_seq; ++s) {
        for (int64_t p = 0; p < L; ++p) {
          const size_t at = static_cast<size_t>(s * L + p) * V;
          const std::vector<float> got(part.begin() + at, part.begin() + at + V);
          if (std::find(rows.begin(), rows.end(), p) == rows.end()) {
            EXPECT_TRUE(std::isnan(got[0])) << "row " << p << " was not asked for";
            continue;
          }
          const std::vector<float> want(full.begin() + at, full.begin() + at + V);
          EXPECT_LE(rel_error(got, want), 1e-5) << "sequence " << s << " row " << p;
        }
      }
    }
  }
  // Proposals from a listed-rows pass equal those of the full pass at those positions.
  const auto tokens = random_tokens(model->config(), 80, 12);
  const std::vector<int64_t> rows = {5, 40, 79};
  SamplingOptions sampling;
  std::vector<Proposal> from_full, from_rows;
  engine.forward(tokens, ForwardOptions{});
  engine.propose(rows, 0, sampling, 0, &from_full);
  ForwardOptions some;
  some.logit_rows = rows;
  engine.forward(tokens, some);
  engine.propose(rows, 0, sampling, 0, &from_rows);
  ASSERT_EQ(from_rows.size(), from_full.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(from_rows[i].position, rows[i]);
    EXPECT_EQ(from_rows[i].token, from_full[i].token) << "position " << rows[i];
    EXPECT_NEAR(from_rows[i].confidence, from_full[i].confidence, 1e-5);
  }
  const std::vector<int64_t> unlisted = {6};
  EXPECT_THROW(engine.propose(unlisted, 0, sampling, 0, &from_rows), Error);
  const std::vector<int64_t> outside = {80};
  some.logit_rows = outside;
  EXPECT_THROW(engine.forward(tokens, some), Error);
}

TEST_F(CudaInfer, RejectsWhatItCannotRun) {
  TempDir dir;
  auto model = random_model(dir, Arch::LLaDA, TensorType::F16, "bad");
  cuda::CudaInferEngine engine(model->config(), model->weights());
  const auto tokens = random_tokens(model->config(), 8, 1);
  KVCache cache;
  ForwardOptions cached;
  cached.cache = &cache;
  cached.n_seq = 2;  // a cache holds one sequence
  EXPECT_THROW(engine.forward(tokens, cached), Error);
  std::vector<int32_t> bad = tokens;
  bad[3] = static_cast<int32_t>(model->config().vocab_size);
  EXPECT_THROW(engine.forward(bad, ForwardOptions{}), Error);
  ForwardOptions uneven;
  uneven.n_seq = 3;
  EXPECT_THROW(engine.forward(tokens, uneven), Error);
  auto moe = random_model(dir, Arch::LLaDAMoE, TensorType::F16, "moe");
  EXPECT_THROW(cuda::CudaInferEngine(moe->config(), moe->weights()), Error);
  cuda::InferOptions far;
  far.device = 99;
  EXPECT_THROW(cuda::CudaInferEngine(model->config(), model->weights(), far), Error);
}

// Runs the CPU and the GPU side by side on one canvas (the leader's: each step commits the
// leader's proposals): each step, the GPU must propose the CPU's token for every masked
// position, except where the CPU's two most likely tokens are within kNearTie in probability.
// The GPU multiplies bf16 operands (8 significant bits), so its logits differ from the CPU's
// f32 ones by about 1% (LogitsMatchCpu... above); on the flat rows of a small model that moves
// probabilities by up to ~1e-2, enough to swap two candidates that close. Every such swap is
// listed, and those within 1e-3 (the "tie") separately. In the exact (f32) precision
// the GPU follows the CPU within f32 rounding, and only swaps within 1e-3 are allowed.
constexpr float kNearTie = 1e-2f;
constexpr float kTie = 1e-3f;

class ShadowDenoiser final : public Denoiser {
 public:
  ShadowDenoiser(Denoiser& cpu, Denoiser& gpu, bool gpu_leads, float allowed_tie)
      : cpu_(cpu), gpu_(gpu), gpu_leads_(gpu_leads), allowed_tie_(allowed_tie) {}
  const ModelConfig& config() const override { return cpu_.config(); }
  std::string description() const override { return "shadow"; }
  void forward(std::span<const int32_t> tokens, const ForwardOptions& options) override {
    cpu_.forward(tokens, options);
    // The GPU keeps its cache on the device and counts it in a KVCache of its own.
    ForwardOptions gpu_options = options;
    if (options.cache) gpu_options.cache = &gpu_cache_;
    gpu_.forward(tokens, gpu_options);
  }
  void propose(std::span<const int64_t> positions, int64_t first_row,
               const SamplingOptions& options, int64_t step, std::vector<Proposal>* out) override {
    std::vector<Proposal> gpu, cpu, margins;
    gpu_.propose(positions, first_row, options, step, &gpu);
    SamplingOptions margin_options = options;
    margin_options.rule = Unmasking::Margin;
    cpu_.propose(positions, first_row, margin_options, step, &margins);
    cpu_.propose(positions, first_row, options, step, &cpu);
    *out = gpu_leads_ ? gpu : cpu;
    for (size_t i = 0; i < positions.size(); ++i) {
      ++compared;
      const Proposal& want = cpu[i];
      if (gpu[i].token == want.token) {
        EXPECT_NEAR(gpu[i].confidence, want.confidence, 20 * allowed_tie_)
            << "position " << positions[i];
        continue;
      }
      if (margins[i].score < allowed_tie_) {
        (margins[i].score < kTie ? ties : near_ties).push_back(positions[i]);
      } else {
        ADD_FAILURE() << "step " << step << " position " << positions[i] << ": GPU token "
                      << gpu[i].token << ", CPU " << want.token << " (margin " << margins[i].score
                      << ")";
      }
    }
  }
  int64_t compared = 0;
  std::vector<int64_t> ties, near_ties;

 private:
  Denoiser& cpu_;
  Denoiser& gpu_;
  bool gpu_leads_;
  float allowed_tie_;
  KVCache gpu_cache_;
};

const std::string kDefaultModel = std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf";

// The shipped model's weights in f32 (its Q8_0 values exactly): the CPU then multiplies in f32
// too (sgemm) instead of quantizing activations to int8, so both sides do f32 arithmetic.
std::string f32_default_model(const TempDir& dir) {
  const std::string path = dir.file("default-f32.gguf");
  std::string out;
  EXPECT_EQ(testing::run_command(std::string(RUVDLLM_CLI_PATH) + " quantize " + kDefaultModel +
                                     " " + path + " --type f32",
                                 &out),
            0)
      << out;
  return path;
}

void expect_generation_matches_cpu(const GenerationOptions& o,
                                   const std::string& model_path = kDefaultModel,
                                   cuda::Precision precision = cuda::Precision::Bf16) {
  auto model = Model::load(model_path);
  ThreadPool pool(2);
  ModelDenoiser cpu(*model, pool);
  cuda::InferOptions options;
  options.precision = precision;
  cuda::CudaDenoiser gpu(*model, options);
  const float allowed_tie = precision == cuda::Precision::F32 ? kTie : kNearTie;
  const Tokenizer tokenizer = Tokenizer::load(kDefaultModel);
  const std::vector<int32_t> prompt = tokenizer.encode("The history of the city");

  auto list = [](const std::vector<int64_t>& v) {
    std::string s;
    for (int64_t p : v) s += " " + std::to_string(p);
    return s.empty() ? std::string(" none") : s;
  };
  // On the CPU's canvas, then on the GPU's own: the second is the GPU's real generation.
  for (const bool gpu_leads : {false, true}) {
    ShadowDenoiser shadow(cpu, gpu, gpu_leads, allowed_tie);
    const GenerationResult lockstep = Generator(shadow).run(prompt, o);
    EXPECT_GT(shadow.compared, o.gen_len);
    std::printf(
        "%s%s leads%s: positions compared %ld; swapped ties within 1e-3:%s; within 1e-2:%s\n",
        precision == cuda::Precision::F32 ? "f32: " : "", gpu_leads ? "GPU" : "CPU",
        o.cache_blocks ? " (KV cache)" : "", static_cast<long>(shadow.compared),
        list(shadow.ties).c_str(), list(shadow.near_ties).c_str());
    Denoiser& leader = gpu_leads ? static_cast<Denoiser&>(gpu) : cpu;
    EXPECT_EQ(lockstep.tokens, Generator(leader).run(prompt, o).tokens);
    if (!gpu_leads && shadow.ties.empty() && shadow.near_ties.empty()) {
      EXPECT_EQ(Generator(gpu).run(prompt, o).tokens, lockstep.tokens);
    }
  }
}

TEST_F(CudaInfer, GenerationMatchesCpuTokenForToken) {
  GenerationOptions o;
  o.gen_len = 96;
  o.steps = 48;
  o.block_len = 32;
  expect_generation_matches_cpu(o);
}

// Block diffusion with the KV cache: the prompt and every finished block are cached on the
// device, and each step forwards only the current block.
TEST_F(CudaInfer, CachedGenerationMatchesCpuTokenForToken) {
  GenerationOptions o;
  o.gen_len = 96;
  o.steps = 48;
  o.block_len = 32;
  o.cache_blocks = true;
  expect_generation_matches_cpu(o);
}

// The exact precision on an f32 copy of the shipped model: every token the CPU proposes, except
// where its top two are within 1e-3 (the tie), with and without the KV cache.
TEST_F(CudaInfer, ExactGenerationMatchesCpuTokenForToken) {
  TempDir dir;
  const std::string model = f32_default_model(dir);
  for (const bool cache : {false, true}) {
    GenerationOptions o;
    o.gen_len = 96;
    o.steps = 48;
    o.block_len = 32;
    o.cache_blocks = cache;
    expect_generation_matches_cpu(o, model, cuda::Precision::F32);
  }
}

// Logits of a pass after a cached prefix, for a model with biases and shifted logits (Dream),
// against the CPU's cache; and a cache the engine did not fill is refused.
TEST_F(CudaInfer, CachedPassLogitsMatchCpu) {
  TempDir dir;
  auto model = random_model(dir, Arch::Dream, TensorType::Q8_0, "dream-cache");
  cuda::CudaInferEngine engine(model->config(), model->weights());
  for (const double err : cached_pass_errors(*model, engine, 40)) EXPECT_LT(err, kLogitBound);
}

// The CLI end to end: `generate --device cuda` writes what the CPU writes.
TEST_F(CudaInfer, CliGeneratesOnTheGpu) {
  const std::string cli = RUVDLLM_CLI_PATH;
  const std::string model = std::string(RUVDLLM_SOURCE_DIR) + "/models/default.gguf";
  const std::string args =
      " generate -m " + model + " -p 'The history of the city' --gen-len 48 --steps 24 --json -q";
  std::string cpu, gpu;
  ASSERT_EQ(testing::run_command(cli + args, &cpu), 0) << cpu;
  ASSERT_EQ(testing::run_command(cli + args + " --device cuda", &gpu), 0) << gpu;
  EXPECT_NE(gpu.find("\"device\":\"cuda:0"), std::string::npos) << gpu;
  const auto text = [](const std::string& json) { return json.substr(0, json.find("\"prompt\"")); };
  EXPECT_EQ(text(gpu), text(cpu));
  std::string exact;
  ASSERT_EQ(testing::run_command(cli + args + " --device cuda --gpu-precision f32", &exact), 0)
      << exact;
  EXPECT_NE(exact.find("\"device\":\"cuda:0"), std::string::npos) << exact;
  std::string bad;
  EXPECT_NE(testing::run_command(cli + args + " --device cuda:7", &bad), 0);
  EXPECT_NE(bad.find("cuda:7"), std::string::npos) << bad;
}

}  // namespace
}  // namespace ruvdllm
