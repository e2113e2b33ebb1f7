#pragma once
// The inference products: y[n × out] = x[n × in] (bf16) · w[out × in]ᵀ (bf16) through cuBLAS
// with f32 accumulation, three ways:
//  - f32 output + beta·y: with beta = 1 the product adds straight into the f32 residual stream.
//  - bf16 output: for products whose only reader is the next element-wise kernel (q|k|v,
//    gate|up), which then reads half the bytes.
//  - split-K: the inner dimension cut into slices, one strided-batched call writing an f32
//    partial per slice, which residual_rmsnorm_rows sums into the residual. A product with
//    few output tiles (4096 outputs × 256 rows: 64 tiles of 128 × 128 on 132 SMs) leaves half
//    the GPU idle otherwise; split_for() says when to.
// bench/bench_cuda_gemm.cpp measures each way at an 8B model's shapes.
//
// Training's products (general transposes and batches, f32 outputs, the TF32 policy, backward
// passes) are cuda/gemm.h's Gemm. This class is the inference side: bf16 outputs, split-K, the
// exact mode's pedantic f32, and its own workspace so that a pass can be captured as a graph.
//
// (cuBLASLt with the algorithm per shape chosen by timing its heuristic's top 8 was measured
// against this on an H100 for the 8B step: no faster, 8.85 vs 8.80 ms at 256 positions; again
// on an H200 on 2026-11-29, with the heuristic's first choice or the top 8 timed: the same or
// 1–2% slower. So the plain call stays.)
//
// On an H100/H200, products over Q4_0, Q4_K, Q5_K and Q8_0 weights kept in blocks at
// blocks_min_rows..blocks_max_rows rows run on our own GEMM (WgmmaGemm: blocks decoded into the
// tiles wgmma reads, stream-K), which the engine asks for through takes_blocks/linear_blocks. Dense
// bf16 products stay on cuBLAS, which measured faster there (bench_cuda_gemm).
// RUVDLLM_CUDA_GEMM=cublas turns ours off; =wgmma sends every product that fits to it, dense bf16
// too, whatever the row count (to compare the ways in one build, and to test ours on small models).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "cuda/device_buffer.h"
#include "cuda/wgmma_gemm.h"

namespace ruvdllm::cuda {

class InferGemm {
 public:
  // Any: our Hopper GEMM where it serves (weights in blocks, or RUVDLLM_CUDA_GEMM=wgmma).
  // DenseWeights: no weights kept in blocks, so our GEMM (and its tens of MB of stream-K
  // partials) only when RUVDLLM_CUDA_GEMM=wgmma asks for it. Cublas: cuBLAS for every product
  // whatever RUVDLLM_CUDA_GEMM says (the floor's peak is measured through it, so that ratios
  // stay comparable).
  enum class Engines { Any, DenseWeights, Cublas };
  explicit InferGemm(cudaStream_t stream, Engines engines = Engines::Any);
  ~InferGemm();
  InferGemm(const InferGemm&) = delete;
  InferGemm& operator=(const InferGemm&) = delete;

  static constexpr int kMaxSplits = 2;
  static constexpr int kMaxBlockParts = 4;  // blocks_parts's largest answer

  // Every product reads row r of x at x + r·ldx (ldx 0: in, the rows packed).
  void linear(float* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n, int64_t in,
              int64_t out, float beta = 0.0f, int64_t ldx = 0);
  void linear(__nv_bfloat16* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n,
              int64_t in, int64_t out, int64_t ldx = 0);
  // f32 operands in f32 arithmetic (the exact-precision mode; TF32 is never used).
  void linear(float* y, const float* x, const float* w, int64_t n, int64_t in, int64_t out,
              float beta = 0.0f, int64_t ldx = 0);
  // Partial s (of `splits`) of y at partials + s·n·out: x[:, slice s] · w[:, slice s]ᵀ.
  void linear_split(float* partials, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n,
                    int64_t in, int64_t out, int splits, int64_t ldx = 0);
  void linear_split(float* partials, const float* x, const float* w, int64_t n, int64_t in,
                    int64_t out, int splits, int64_t ldx = 0);
  // 2 when the product's output tiles would fill at most half the GPU and `in` splits evenly,
  // else 1 (on an H100/H200 this splits the 4096-output products at 256 rows, not at 512).
  int split_for(int64_t n, int64_t in, int64_t out) const;

  // The rows for which weights in blocks are decoded inside WgmmaGemm's tiles (below, QuantGemm's
  // mma.sync tiles serve; bench_cuda_quant_gemm measures both): any row count for Q4_K and
  // Q5_K, from 64 rows for Q8_0, from 128 for Q4_0.
  // Up to blocks_max_rows: 512 rows (256 for Q4_0). At 512 (H200, the 8B model's products) Q4_K
  // in two 256-row tiles measured 5% faster per layer than dequantizing for cuBLAS, 9% on the
  // head; Q5_K and Q8_0 take WgmmaGemm's wide tiles, which decode each weight once per 512 rows.
  static int64_t blocks_min_rows(TensorType type);
  static int64_t blocks_max_rows(TensorType type);
  // Whether the product over these blocks (at w) runs on WgmmaGemm.
  bool takes_blocks(TensorType type, const void* w, int64_t n, int64_t in, int64_t out) const;
  // y[r·ldy + c] = x[r] · row c of w (blocks of `type`): bf16 y, or f32 y = product + beta·y.
  void linear_blocks(float* y, int64_t ldy, const __nv_bfloat16* x, const void* w, TensorType type,
                     int64_t n, int64_t in, int64_t out, float beta, int64_t ldx = 0);
  void linear_blocks(__nv_bfloat16* y, int64_t ldy, const __nv_bfloat16* x, const void* w,
                     TensorType type, int64_t n, int64_t in, int64_t out, int64_t ldx = 0);
  // h = SwiGLU of a gate|up product over blocks interleaved in groups of 8 (swiglu.cuh), on
  // WgmmaGemm (so only where takes_blocks says it runs there); out / 2 values per row of h.
  void linear_blocks_swiglu(__nv_bfloat16* h, int64_t ldh, const __nv_bfloat16* x, const void* w,
                            TensorType type, int64_t n, int64_t in, int64_t out, int64_t ldx = 0);
  // For a product whose reader adds partials (the residual products): the parts WgmmaGemm
  // should cut K into (WgmmaGemm::k_parts_for) when these blocks can go to it at this row count,
  // else 1. linear_blocks_split then writes row r of part p at partials + (p·n + r)·ldy.
  int blocks_parts(TensorType type, const void* w, int64_t n, int64_t in, int64_t out) const;
  void linear_blocks_split(float* partials, int64_t ldy, const __nv_bfloat16* x, const void* w,
                           TensorType type, int64_t n, int64_t in, int64_t out, int parts);
  // Whether a bf16 product of this shape runs on WgmmaGemm (RUVDLLM_CUDA_GEMM=wgmma only).
  bool uses_own(int64_t n, int64_t in, int64_t out) const;

 private:
  void run(void* y, cudaDataType y_type, const void* x, const void* w, cudaDataType operand_type,
           int64_t n, int64_t in, int64_t out, float beta, int splits, int64_t ldx);

  cublasHandle_t handle_ = nullptr;
  int multiprocessors_ = 0;

  bool own_dense_ = false;          // RUVDLLM_CUDA_GEMM=wgmma: every product that fits
  std::unique_ptr<WgmmaGemm> own_;  // null where the GPU cannot run it, or when turned off
  // A fixed workspace, so cuBLAS allocates nothing while a pass is being captured as a graph.
  DeviceArray<uint8_t> workspace_;
};

}  // namespace ruvdllm::cuda
