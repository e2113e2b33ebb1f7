#pragma once
// Our own GEMM for Hopper (H100/H200, sm_90a): y[n × out] = x[n × in] · w[out × in]ᵀ with bf16
// x, f32 accumulation, and w either bf16 or kept in GGUF blocks (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K)
// that are decoded into the shared-memory tiles the tensor cores read. The engine uses the
// block kernel for passes of up to 512 rows: Q4_K and Q5_K at any row count, Q8_0 from 64,
// Q4_0 from 128 to 256, Q6_K only when asked for (the other way, dequantize_to_bf16 into a
// scratch matrix then cuBLAS, writes and re-reads 2 bytes per weight per product; InferGemm::
// takes_blocks, blocks_min_rows and blocks_max_rows have the measured rule); with bf16 weights
// cuBLAS measured faster, so that kernel runs only when asked for (RUVDLLM_CUDA_GEMM=wgmma).
//
// How it works (wgmma_gemm.cu):
//  - A CTA computes 128 outputs × 256 rows (or 128 rows when n ≤ 128). The weight tile is
//    wgmma's A operand, the activations its B, so each weight tile is read from memory once for
//    all the rows it meets. Past 256 rows, weights in blocks of most types take wide tiles
//    (64 outputs × 512 rows, CTA pairs sharing x's copies), decoding each weight once per 512
//    rows (takes_wide_tiles).
//  - A producer warpgroup fills 64-wide K slices of both tiles in shared memory several stages
//    ahead, signalling mbarriers: bf16 tiles by the bulk tensor copy engine (TMA, 128-byte
//    swizzle); weights in blocks by TMA copies of the raw blocks that its 128 threads then
//    decode, one weight row each, into the same swizzled layout.
//  - Two consumer warpgroups multiply them with wgmma (64 outputs each), f32 accumulators in
//    registers.
//  - Q4_K and Q5_K (tiles of up to 256 rows): the consumers decode their own weight rows straight
//    into wgmma's A registers (the next slice while the current one's MMAs run), so the decoded
//    tile never passes through shared memory (register_decoding).
//  - Stream-K: the grid is one CTA per SM, and the (tile, K slice) iterations are cut into equal
//    contiguous ranges, so the last wave never leaves SMs idle. A tile shared by several CTAs
//    is finished by the one that holds its first K slice: it adds the others' f32 partials in
//    a fixed order, so results do not depend on timing (the same bits every run on a card).
//  - Or K cut into parts (linear_blocks_split), one CTA per (tile, part), each part's product
//    written to its own output for the caller to add: for products with few tiles.
//
// Only sm_90a machine code is built for it; on any other GPU available() is false and the
// callers keep cuBLAS.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/device_buffer.h"
#include "ruvdllm/core/tensor_type.h"

namespace ruvdllm::cuda {

class WgmmaGemm {
 public:
  // Whether the current device runs this kernel (compute capability 9.0, sm_90a code present).
  static bool available();
  // Shapes it takes: out a multiple of 128, in a multiple of 64, n ≥ 1.
  static bool fits(int64_t n, int64_t in, int64_t out);
  // Weights in blocks: Q4_0, Q8_0, Q4_K or Q5_K with in a multiple of 256, or Q6_K with in a
  // multiple of 2048 (its rows' bytes a multiple of 16, as the copies need).
  static bool fits_blocks(TensorType type, int64_t n, int64_t in, int64_t out);
  // K slices (64 values of a 128-output × 256-row tile, or of a wide tile) each CTA multiplies in
  // a product with weights in blocks: few leave stream-K's fill and fix-up costs uncovered.
  int64_t slices_per_cta(int64_t n, int64_t in, int64_t out) const;
  // Whether products over weights of this type past 256 rows take wide tiles (64 outputs × 512
  // rows in CTA pairs that share x's copies, each weight decoded once per 512 rows) rather than
  // 128 × 256 tiles: Q4_0, Q8_0, Q5_K and Q6_K, where they measured faster, unless
  // RUVDLLM_CUDA_WIDE_TILES=0 or set_wide_tiles(false) (to compare the two in one build).
  bool takes_wide_tiles(TensorType type) const;
  void set_wide_tiles(bool wide) { wide_tiles_ = wide; }
  // Whether Q4_K and Q5_K weights in tiles of up to 256 rows are decoded by the consumer
  // warpgroups straight into wgmma's A registers (wgmma_register_decode.cuh; measured faster at
  // every row count) rather than by a decoding warpgroup into the shared-memory tiles
  // (RUVDLLM_CUDA_DECODE=registers|warpgroup, or set_register_decoding, to compare the two).
  bool register_decoding() const { return register_decoding_; }
  void set_register_decoding(bool registers) { register_decoding_ = registers; }

  explicit WgmmaGemm(cudaStream_t stream);
  WgmmaGemm(const WgmmaGemm&) = delete;
  WgmmaGemm& operator=(const WgmmaGemm&) = delete;

  // For r < n, c < out: y[r·ldy + c] = Σ_i x[r·ldx + i] · w[c·in + i] (ldx 0: in, else a
  // multiple of 8); bf16 output, or f32 output y = product + beta·y. Error for a shape fits()
  // refuses, or operands that are not 16-byte aligned.
  void linear(float* y, int64_t ldy, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t n,
              int64_t in, int64_t out, float beta = 0.0f, int64_t ldx = 0);
  void linear(__nv_bfloat16* y, int64_t ldy, const __nv_bfloat16* x, const __nv_bfloat16* w,
              int64_t n, int64_t in, int64_t out, int64_t ldx = 0);
  // The same with w as `out` rows of `in` values in type's blocks (row stride row_bytes(type,
  // in)); each weight decodes to the bf16 value dequantize_to_bf16 writes (for Q4_K/Q5_K a zero may
  // carry the other sign, which no product sees).
  void linear_blocks(float* y, int64_t ldy, const __nv_bfloat16* x, const void* w, TensorType type,
                     int64_t n, int64_t in, int64_t out, float beta = 0.0f, int64_t ldx = 0);
  void linear_blocks(__nv_bfloat16* y, int64_t ldy, const __nv_bfloat16* x, const void* w,
                     TensorType type, int64_t n, int64_t in, int64_t out, int64_t ldx = 0);
  // A gate|up product with SwiGLU applied to its tiles: w holds `out` rows interleaved as
  // swiglu.cuh's kSwigluGroup layout, and h[r·ldh + o] = silu(gate_o) · up_o for o < out / 2,
  // each of gate and up rounded to bf16 first: the same bits as linear_blocks into a bf16
  // gate|up followed by swiglu_rows(..., interleaved), without writing and re-reading gate|up or
  // launching the element-wise kernel.
  void linear_blocks_swiglu(__nv_bfloat16* h, int64_t ldh, const __nv_bfloat16* x, const void* w,
                            TensorType type, int64_t n, int64_t in, int64_t out, int64_t ldx = 0);
  // The product with K cut into `parts` equal parts (each whole 256-value chunks; n ≤ 256): part
  // p's product goes to y + p·n·ldy, for a reader that adds them (the engine's next RMSNorm).
  // No CTA shares a tile with another, so there are no partial sums to add in the kernel, whose
  // finishing (waiting for and reading up to four 128 KB partials) was the critical path of
  // products with few tiles.
  void linear_blocks_split(float* y, int64_t ldy, const __nv_bfloat16* x, const void* w,
                           TensorType type, int64_t n, int64_t in, int64_t out, int parts,
                           int64_t ldx = 0);
  // Parts to cut K into for such a product (1: none): 4 or 2 where that measured faster (the
  // rule is in wgmma_gemm.cu); RUVDLLM_CUDA_K_PARTS=0 or set_k_parts(Off): never; =any or Any:
  // whenever the parts fit the SMs and split K evenly (to test the way on small models).
  enum class KParts { Off, Measured, Any };
  int k_parts_for(int64_t n, int64_t in, int64_t out) const;
  void set_k_parts(KParts parts) { k_parts_ = parts; }

 private:
  // type BF16: w is bf16.
  void run(void* y, bool bf16_out, int64_t ldy, const __nv_bfloat16* x, const void* w,
           TensorType type, int64_t n, int64_t in, int64_t out, float beta, int64_t ldx,
           int parts = 1, bool swiglu = false);

  static bool wide_tiles_by_default();
  static bool register_decoding_by_default();
  static KParts k_parts_by_default();

  cudaStream_t stream_;
  bool wide_tiles_;
  bool register_decoding_;
  KParts k_parts_;
  int multiprocessors_ = 0;
  DeviceArray<float> partials_;  // one tile of f32 partial sums per CTA
  DeviceArray<int> ready_;       // per CTA: its partial is written (reset by the reader)
};

}  // namespace ruvdllm::cuda
