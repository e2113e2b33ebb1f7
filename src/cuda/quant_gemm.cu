// QuantGemm (quant_gemm.h): products over weights kept in GGUF blocks.
//
// Per stage of 256 values of `in` (whole blocks of every type, contiguous in each weight row), a
// CTA of 8 warps
//  - copies its rows of x (bf16) into shared memory with cp.async, which runs while
//  - the stage's raw blocks, loaded into registers during the previous stage's products, go to
//    shared memory, the next stage's loads are issued, and every thread decodes 64 weight values
//    (quant_formats.cuh: the same values dequantize_to_bf16 writes; the K-quants as 2 runs of
//    32 that share a sub-block's scale and offset) into a bf16 tile; then
//  - each warp multiplies its part of the tile pair with ldmatrix + mma.sync m16n8k16 (f32
//    accumulators in registers).
// Tiles are row-major with 16-byte chunks swizzled (chunk c of row r at c ^ (r & 7)), so the
// eight rows one ldmatrix phase reads sit in distinct bank groups.
//
// A first version decoded straight from global memory (each group's loads waited on DRAM in
// turn): an 8B Q4_K step at 32 rows took 11.7 ms on an H200, as long as dequantizing every
// weight for cuBLAS. Raw bytes loaded a stage ahead, levels made floats without the int → float
// converter and four per byte permute, three CTAs per SM and the K-quants' runs of 32 took it
// to 8.95 ms (docs/PERFORMANCE.md). What bounds it now is the decode's instruction count (ncu:
// an instruction issued on two thirds of the cycles, DRAM at 12% of its peak), not memory.
//
// No fmt here: nvcc's host pass cannot compile fmt's headers (see train_kernels.cu).
#include <algorithm>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/dependent_launch.h"
#include "cuda/launch_util.h"
#include "cuda/mma_sync.cuh"
#include "cuda/quant_formats.cuh"
#include "cuda/quant_gemm.h"

namespace ruvdllm::cuda {
namespace {

using namespace mma;    // cp_async_16, ldmatrix_x4, mma_bf16
using namespace quant;  // kGroup, the formats
using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;
constexpr int kOutputsPerCta = 64;
constexpr int kStage = QuantGemm::kStageValues;
constexpr int kChunks = kStage / kGroup;   // 16-byte chunks per tile row
constexpr int kQuadsPerRow = kChunks / 4;  // runs of 4 groups (32 values) a thread decodes
constexpr int kQuadsPerThread = kOutputsPerCta * kQuadsPerRow / kThreads;
constexpr int kGroupsPerThread = 4 * kQuadsPerThread;
static_assert(kOutputsPerCta * kQuadsPerRow % kThreads == 0);

// How the 8 warps of a CTA of kRows rows × 64 outputs share it.
template <int kRows>
struct WarpGrid {
  static constexpr int kM = kRows == 128 ? 4 : 2, kN = 8 / kM;
  static constexpr int kWarpRows = kRows / kM, kWarpCols = kOutputsPerCta / kN;
  static constexpr int kRowTiles = kWarpRows / 16, kColTiles = kWarpCols / 8;
  static_assert(kRowTiles >= 1 && kColTiles % 2 == 0);
};

// One stage of one weight row is kStage values: whole blocks, contiguous in the row.
template <class Format>
struct StageBytes {
  static constexpr int kBytes = kStage / Format::kBlockValues * Format::kBlockBytes;
  static constexpr int kPitch = (kBytes + 15) / 16 * 16;  // 16-byte aligned rows in shared memory
};

// The unit the raw blocks are copied in: the largest of 16, 2 and 1 bytes that divides the
// weights' address, their row stride and a stage's bytes.
template <int kUnit>
struct CopyUnit;
template <>
struct CopyUnit<16> {
  using Type = uint4;
};
template <>
struct CopyUnit<2> {
  using Type = uint16_t;
};
template <>
struct CopyUnit<1> {
  using Type = uint8_t;
};

template <int kRows, class Format>
constexpr int shared_bytes() {
  return (kRows + kOutputsPerCta) * kChunks * 16 + kOutputsPerCta * StageBytes<Format>::kPitch;
}

__device__ inline int swizzled(int row, int chunk) { return row * kChunks + (chunk ^ (row & 7)); }

__device__ inline void store(bf16* y, int64_t i, float v, float) { y[i] = __float2bfloat16_rn(v); }
__device__ inline void store(float* y, int64_t i, float v, float beta) {
  y[i] = beta == 0.0f ? v : v + beta * y[i];
}

// Several CTAs per SM: left alone, nvcc unrolls the decode and the products into 255 registers,
// which leaves one CTA per SM and nothing to hide the stage's waits behind. Three (80 registers)
// for Q4_K/Q5_K at 32 rows measured 8–10% faster than two on an H200; Q4_0, Q8_0 and Q6_K hold
// more raw bytes per stage in registers and spill at 80, so they keep two (128 registers).
template <class Format>
constexpr int min_ctas_per_sm(int rows) {
  return rows == 32 && Format::kQuads ? 3 : 2;
}

// Grid: (outputs / 64, rows / kRows, slices). Slice z covers stages [z·stages, (z+1)·stages)
// and, when partials is set, writes its f32 sums to partials[z][n][out] instead of y.
//
// Per stage: the raw blocks of the stage were loaded into registers during the previous
// stage's products (one memory round trip hidden per stage instead of one per decoded group);
// they go to shared memory, the loads for the next stage are issued, the blocks are decoded
// into the bf16 tile while x's tile arrives by cp.async, then the warps multiply.
template <class Format, int kUnit, int kRows, typename Y>
__global__ void __launch_bounds__(kThreads, min_ctas_per_sm<Format>(kRows))
    quant_gemm_kernel(Y* y, int64_t ldy, float* partials, const bf16* x, int64_t ldx,
                      const uint8_t* w, int64_t row_bytes, int n, int in, int out, float beta,
                      int stages) {
  using Grid = WarpGrid<kRows>;
  using Unit = typename CopyUnit<kUnit>::Type;
  constexpr int kStageBytes = StageBytes<Format>::kBytes, kPitch = StageBytes<Format>::kPitch;
  constexpr int kUnitsPerRow = kStageBytes / kUnit;
  constexpr int kUnitsPerThread = (kOutputsPerCta * kUnitsPerRow + kThreads - 1) / kThreads;
  constexpr int kGroupsPerBlock = Format::kBlockValues / kGroup;
  extern __shared__ __align__(128) uint4 shared[];
  uint4* xs = shared;
  uint4* ws = shared + kRows * kChunks;
  uint8_t* raw = reinterpret_cast<uint8_t*>(ws + kOutputsPerCta * kChunks);
  wait_for_prior_grid();

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / Grid::kN, warp_n = warp % Grid::kN;
  const int row0 = blockIdx.y * kRows, col0 = blockIdx.x * kOutputsPerCta;
  const int first_stage = blockIdx.z * stages;
  const int live_rows = min(kOutputsPerCta, out - col0);

  Unit pending[kUnitsPerThread];
  auto load_raw = [&](int s) {
#pragma unroll
    for (int j = 0; j < kUnitsPerThread; ++j) {
      const int i = tid + j * kThreads;
      const int r = i / kUnitsPerRow, u = i % kUnitsPerRow;
      if (r < live_rows) {
        pending[j] =
            *reinterpret_cast<const Unit*>(w + static_cast<int64_t>(col0 + r) * row_bytes +
                                           static_cast<int64_t>(s) * kStageBytes + u * kUnit);
      }
    }
  };
  load_raw(first_stage);

  float acc[Grid::kRowTiles][Grid::kColTiles][4] = {};

  for (int s = first_stage; s < first_stage + stages; ++s) {
    const int k0 = s * kStage;
    for (int i = tid; i < kRows * kChunks; i += kThreads) {
      const int r = i / kChunks, c = i % kChunks;
      const bool valid = row0 + r < n;
      const bf16* src = valid ? x + static_cast<int64_t>(row0 + r) * ldx + k0 + c * kGroup : x;
      cp_async_16(&xs[swizzled(r, c)], src, valid ? 16 : 0);
    }
    cp_async_commit();
#pragma unroll
    for (int j = 0; j < kUnitsPerThread; ++j) {
      const int i = tid + j * kThreads;
      const int r = i / kUnitsPerRow, u = i % kUnitsPerRow;
      if (r < live_rows) *reinterpret_cast<Unit*>(raw + r * kPitch + u * kUnit) = pending[j];
    }
    __syncthreads();
    if (s + 1 < first_stage + stages) load_raw(s + 1);
    if constexpr (Format::kQuads) {
      // Consecutive threads take consecutive quads (4 groups, 32 values) of a row, 4 rows a warp.
#pragma unroll
      for (int j = 0; j < kQuadsPerThread; ++j) {
        const int i = tid + j * kThreads;
        const int r = i / kQuadsPerRow, c0 = 4 * (i % kQuadsPerRow);
        uint4 packed[4] = {};
        if (r < live_rows) {
          Format::template decode_quad<alignment_of(Format::kBlockBytes)>(
              raw + r * kPitch + (c0 / kGroupsPerBlock) * Format::kBlockBytes, c0 % kGroupsPerBlock,
              packed);
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) ws[swizzled(r, c0 + q)] = packed[q];
      }
    } else {
      // Consecutive threads take consecutive groups of a row, one row a warp (Q8_0's 34-byte
      // blocks read by quads measured 12–19% slower: the lanes' loads then collide in banks).
#pragma unroll
      for (int j = 0; j < kGroupsPerThread; ++j) {
        const int i = tid + j * kThreads;
        const int r = i / kChunks, c = i % kChunks;
        uint4 packed = make_uint4(0, 0, 0, 0);
        if (r < live_rows) {
          float v[kGroup];
          Format::template decode<alignment_of(Format::kBlockBytes)>(
              raw + r * kPitch + (c / kGroupsPerBlock) * Format::kBlockBytes, c % kGroupsPerBlock,
              v);
          packed = pack_bf16(v);
        }
        ws[swizzled(r, c)] = packed;
      }
    }
    cp_async_wait<0>();
    __syncthreads();

#pragma unroll 2
    for (int kk = 0; kk < kStage / 16; ++kk) {
      uint32_t a[Grid::kRowTiles][4];
#pragma unroll
      for (int mt = 0; mt < Grid::kRowTiles; ++mt) {
        // Lanes 0–15 address rows 0–15 at k 0–7, lanes 16–31 the same rows at k 8–15.
        const int r = warp_m * Grid::kWarpRows + mt * 16 + (lane & 15);
        ldmatrix_x4(a[mt], &xs[swizzled(r, 2 * kk + (lane >> 4))]);
      }
#pragma unroll
      for (int np = 0; np < Grid::kColTiles / 2; ++np) {
        // Matrices: outputs 0–7 at k 0–7 and 8–15, then outputs 8–15 at the same.
        uint32_t b[4];
        const int r = warp_n * Grid::kWarpCols + np * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldmatrix_x4(b, &ws[swizzled(r, 2 * kk + ((lane >> 3) & 1))]);
#pragma unroll
        for (int mt = 0; mt < Grid::kRowTiles; ++mt) {
          mma_bf16(acc[mt][2 * np], a[mt], b[0], b[1]);
          mma_bf16(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
    }
    __syncthreads();
  }

  // Accumulator e of a tile: row g + 8·(e / 2), column 2·t + e % 2.
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < Grid::kRowTiles; ++mt) {
#pragma unroll
    for (int nt = 0; nt < Grid::kColTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = row0 + warp_m * Grid::kWarpRows + mt * 16 + g + 8 * (e >> 1);
        const int col = col0 + warp_n * Grid::kWarpCols + nt * 8 + 2 * t + (e & 1);
        if (row >= n || col >= out) continue;
        if (partials) {
          partials[(static_cast<int64_t>(blockIdx.z) * n + row) * out + col] = acc[mt][nt][e];
        } else {
          store(y, static_cast<int64_t>(row) * ldy + col, acc[mt][nt][e], beta);
        }
      }
    }
  }
}

template <typename Y>
__global__ void sum_partials_kernel(Y* y, int64_t ldy, const float* partials, int splits, int n,
                                    int out, float beta) {
  wait_for_prior_grid();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t size = static_cast<int64_t>(n) * out;
  if (i >= size) return;
  float v = partials[i];
  for (int s = 1; s < splits; ++s) v += partials[s * size + i];
  store(y, i / out * ldy + i % out, v, beta);
}

int rows_per_cta(int64_t n) { return n <= 32 ? 32 : n <= 64 ? 64 : 128; }

template <class Format, int kUnit, int kRows, typename Y>
void launch(Y* y, int64_t ldy, float* partials, const bf16* x, int64_t ldx, const uint8_t* w,
            int64_t row_bytes, int64_t n, int64_t in, int64_t out, float beta, int splits,
            cudaStream_t stream) {
  const dim3 grid(blocks_for(out, kOutputsPerCta, "quant_gemm"), blocks_for(n, kRows, "quant_gemm"),
                  static_cast<unsigned>(splits));
  if (grid.y > 65535) throw_error("quant_gemm: " + std::to_string(n) + " rows are too many");
  constexpr int kShared = shared_bytes<kRows, Format>();
  constexpr auto kernel = quant_gemm_kernel<Format, kUnit, kRows, Y>;
  allow_shared_memory<kernel>(kShared, "cudaFuncSetAttribute (quant_gemm shared memory)");
  launch_after_prior("quant_gemm", kernel, grid, kThreads, kShared, stream, y, ldy, partials, x,
                     ldx, w, row_bytes, static_cast<int>(n), static_cast<int>(in),
                     static_cast<int>(out), beta, static_cast<int>(in / kStage / splits));
}

template <class Format, int kUnit, typename Y>
void launch_rows(Y* y, int64_t ldy, float* partials, const bf16* x, int64_t ldx, const uint8_t* w,
                 int64_t row_bytes, int64_t n, int64_t in, int64_t out, float beta, int splits,
                 cudaStream_t stream) {
  switch (rows_per_cta(n)) {
    case 32:
      return launch<Format, kUnit, 32>(y, ldy, partials, x, ldx, w, row_bytes, n, in, out, beta,
                                       splits, stream);
    case 64:
      return launch<Format, kUnit, 64>(y, ldy, partials, x, ldx, w, row_bytes, n, in, out, beta,
                                       splits, stream);
    default:
      return launch<Format, kUnit, 128>(y, ldy, partials, x, ldx, w, row_bytes, n, in, out, beta,
                                        splits, stream);
  }
}

template <class Format, typename Y>
void launch_format(Y* y, int64_t ldy, float* partials, const bf16* x, int64_t ldx,
                   const void* weights, int64_t n, int64_t in, int64_t out, float beta, int splits,
                   cudaStream_t stream) {
  const int64_t row_bytes = in / Format::kBlockValues * Format::kBlockBytes;
  const auto* w = static_cast<const uint8_t*>(weights);
  const auto divides = [&](int unit) {
    return aligned(weights, unit) && row_bytes % unit == 0 &&
           StageBytes<Format>::kBytes % unit == 0;
  };
  if (divides(16)) {
    launch_rows<Format, 16>(y, ldy, partials, x, ldx, w, row_bytes, n, in, out, beta, splits,
                            stream);
  } else if (divides(2)) {
    launch_rows<Format, 2>(y, ldy, partials, x, ldx, w, row_bytes, n, in, out, beta, splits,
                           stream);
  } else {
    launch_rows<Format, 1>(y, ldy, partials, x, ldx, w, row_bytes, n, in, out, beta, splits,
                           stream);
  }
}

}  // namespace

QuantGemm::QuantGemm(cudaStream_t stream) : stream_(stream) {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute(multiprocessor count)");
  // splits_for doubles the slices only while slices × CTAs < 3 · SMs, so slices × CTAs stays
  // below 6 · SMs, and a CTA covers at most 128 × 64 outputs: partials never exceed that.
  partials_.reserve(static_cast<size_t>(6) * multiprocessors_ * 128 * kOutputsPerCta);
}

bool QuantGemm::supports(TensorType type, int64_t in) {
  switch (type) {
    case TensorType::Q4_0:
    case TensorType::Q8_0:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
      return in > 0 && in % kStageValues == 0 && in % type_traits(type).block_size == 0;
    default:
      return false;
  }
}

int QuantGemm::splits_for(int64_t n, int64_t in, int64_t out) const {
  const int64_t stages = in / kStageValues;
  const int64_t ctas =
      ((out + kOutputsPerCta - 1) / kOutputsPerCta) * ((n + rows_per_cta(n) - 1) / rows_per_cta(n));
  const auto fits = [&](int s) {
    return stages % s == 0 && static_cast<size_t>(s) * n * out <= partials_.capacity();
  };
  if (forced_splits_ > 0) {
    int s = std::min(forced_splits_, kMaxSplits);
    while (s > 1 && !fits(s)) --s;
    return s;
  }
  int s = 1;
  while (2 * s <= kMaxSplits && ctas * s < 3 * multiprocessors_ && stages / (2 * s) >= 2 &&
         fits(2 * s)) {
    s *= 2;
  }
  return s;
}

template <typename Y>
void QuantGemm::run(Y* y, int64_t ldy, const bf16* x, const void* w, TensorType type, int64_t n,
                    int64_t in, int64_t out, float beta, int64_t ldx) {
  if (!supports(type, in)) {
    throw_error("QuantGemm: weights of type " + std::string(type_name(type)) + " with rows of " +
                std::to_string(in) + " values are not supported (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K; " +
                "rows a multiple of 256)");
  }
  if (n < 0 || out < 0 || ldy < out || in > (int64_t{1} << 30) || out > (int64_t{1} << 30) ||
      n > (int64_t{1} << 30)) {
    throw_error("QuantGemm: bad shape " + std::to_string(n) + " x " + std::to_string(in) + " x " +
                std::to_string(out) + " (ldy " + std::to_string(ldy) + ")");
  }
  if (ldx == 0) ldx = in;
  if (ldx < in || ldx % 8 != 0) {
    throw_error("QuantGemm: ldx " + std::to_string(ldx) + " must be at least in (" +
                std::to_string(in) + ") and a multiple of 8");
  }
  if (n == 0 || out == 0) return;
  if (!aligned(x, 16))
    throw_error("QuantGemm: x must be 16-byte aligned (rows are copied by cp.async)");
  const int splits = splits_for(n, in, out);
  float* partials = splits > 1 ? partials_.data() : nullptr;
  // supports() above admitted only the block types visit_format knows.
  visit_format(type, [&](auto format) {
    launch_format<decltype(format)>(y, ldy, partials, x, ldx, w, n, in, out, beta, splits, stream_);
  });
  if (splits > 1) {
    constexpr int kSumThreads = 256;
    launch_after_prior("quant_gemm (sum)", sum_partials_kernel<Y>,
                       blocks_for(n * out, kSumThreads, "quant_gemm (sum)"), kSumThreads, 0,
                       stream_, y, ldy, partials, splits, static_cast<int>(n),
                       static_cast<int>(out), beta);
  }
}

void QuantGemm::linear(bf16* y, int64_t ldy, const bf16* x, const void* w, TensorType type,
                       int64_t n, int64_t in, int64_t out, int64_t ldx) {
  run(y, ldy, x, w, type, n, in, out, 0.0f, ldx);
}

void QuantGemm::linear(float* y, int64_t ldy, const bf16* x, const void* w, TensorType type,
                       int64_t n, int64_t in, int64_t out, float beta, int64_t ldx) {
  run(y, ldy, x, w, type, n, in, out, beta, ldx);
}

}  // namespace ruvdllm::cuda
