// Weight dequantization to bf16 (dequantize_to_bf16) and embedding lookup to f32 (embed_rows),
// for every type infer_kernels.h lists, with GGUF's block layouts (ruvdllm/kernels/quant.h).
//
// Results are bit-identical to the CPU reference (dequantize_row_reference, then
// f32_to_bf16's round to nearest even): quant_formats.cuh forms each value in the reference's
// order.
//
// A quantized tensor is one flat run of blocks (rows are whole blocks), so dequantization is a
// 1-D problem: each CTA copies a tile of blocks into shared memory with 16-byte loads (the
// block sizes 18, 34 and 210 bytes defeat aligned vector loads straight from a block), then
// each thread decodes groups of 8 consecutive values and writes each group with one 16-byte
// store, consecutive threads on consecutive groups.
//
// No fmt here: nvcc's host pass cannot compile fmt's headers (see train_kernels.cu).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/dependent_launch.h"
#include "cuda/infer_kernels.h"
#include "cuda/launch_util.h"
#include "cuda/quant_formats.cuh"
#include "ruvdllm/core/tensor_type.h"

namespace ruvdllm::cuda {
namespace {

using namespace quant;  // kGroup, the formats and their loads

constexpr int kTileThreads = 256;
constexpr int kTileGroups = 1024;  // 8192 values per CTA: 4 groups per thread
constexpr int kEmbedThreads = 128;

template <bool kVector>
__device__ inline void store_group(bf16* dst, const float v[kGroup]) {
  if constexpr (kVector) {
    *reinterpret_cast<uint4*>(dst) = pack_bf16(v);
  } else {
#pragma unroll
    for (int k = 0; k < kGroup; ++k) dst[k] = __float2bfloat16_rn(v[k]);
  }
}

template <class Format>
constexpr int kTileBlocks = (kTileGroups * kGroup) / Format::kBlockValues;

// One CTA per tile of kTileBlocks blocks (the last tile may be shorter). kVectorIn: the
// weights start 16-byte aligned (every tile then does, tile sizes being multiples of 16 bytes);
// kVectorOut: `out` is 16-byte aligned.
template <class Format, bool kVectorIn, bool kVectorOut>
__global__ void __launch_bounds__(kTileThreads)
    dequantize_tile_kernel(bf16* out, const uint8_t* weights, int64_t n_blocks) {
  constexpr int kTileBytes = kTileBlocks<Format> * Format::kBlockBytes;
  static_assert(kTileBytes % 16 == 0 && kTileBytes <= 48 * 1024);
  constexpr int kGroupsPerBlock = Format::kBlockValues / kGroup;
  __shared__ __align__(16) uint8_t tile[kTileBytes];
  wait_for_prior_grid();  // `out` is often a scratch tile the previous product still reads

  const int64_t first_block = static_cast<int64_t>(blockIdx.x) * kTileBlocks<Format>;
  const int64_t left = n_blocks - first_block;
  const int blocks = left < kTileBlocks<Format> ? static_cast<int>(left) : kTileBlocks<Format>;
  const int bytes = blocks * Format::kBlockBytes;
  const uint8_t* src = weights + first_block * Format::kBlockBytes;
  int copied = 0;
  if constexpr (kVectorIn) {
    const int vectors = bytes / 16;
    const uint4* src16 = reinterpret_cast<const uint4*>(src);
    uint4* tile16 = reinterpret_cast<uint4*>(tile);
    for (int i = threadIdx.x; i < vectors; i += kTileThreads) tile16[i] = __ldg(src16 + i);
    copied = vectors * 16;
  }
  for (int i = copied + threadIdx.x; i < bytes; i += kTileThreads) tile[i] = src[i];
  __syncthreads();

  bf16* dst = out + first_block * Format::kBlockValues;
  const int groups = blocks * kGroupsPerBlock;
  for (int i = threadIdx.x; i < groups; i += kTileThreads) {
    float v[kGroup];
    Format::template decode<alignment_of(Format::kBlockBytes)>(
        tile + (i / kGroupsPerBlock) * Format::kBlockBytes, i % kGroupsPerBlock, v);
    store_group<kVectorOut>(dst + static_cast<int64_t>(i) * kGroup, v);
  }
}

// Plain float types, kGroup values per thread; the last group of an unaligned or odd-sized
// run is converted one value at a time.
__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(__half x) { return __half2float(x); }
__device__ inline float to_float(bf16 x) { return __bfloat162float(x); }

template <typename In, bool kVector>
__global__ void convert_kernel(bf16* out, const In* in, int64_t n) {
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * kGroup;
  if (first >= n) return;
  if (kVector && first + kGroup <= n) {
    float v[kGroup];
    if constexpr (sizeof(In) == 4) {
      const float4 a = *reinterpret_cast<const float4*>(in + first);
      const float4 b = *reinterpret_cast<const float4*>(in + first + 4);
      const float values[kGroup] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
      for (int k = 0; k < kGroup; ++k) v[k] = values[k];
    } else {
      const uint4 raw = *reinterpret_cast<const uint4*>(in + first);
      In values[kGroup];
      memcpy(values, &raw, sizeof(raw));
#pragma unroll
      for (int k = 0; k < kGroup; ++k) v[k] = to_float(values[k]);
    }
    store_group<true>(out + first, v);
    return;
  }
  const int64_t end = first + kGroup < n ? first + kGroup : n;
  for (int64_t i = first; i < end; ++i) out[i] = __float2bfloat16_rn(to_float(in[i]));
}

// One CTA per token; threads stride over the row's groups (quantized) or values (floats).
template <class Format>
__global__ void embed_quantized_kernel(float* out, const uint8_t* table, const int32_t* tokens,
                                       int64_t d) {
  constexpr int kGroupsPerBlock = Format::kBlockValues / kGroup;
  const int64_t row_bytes = d / Format::kBlockValues * Format::kBlockBytes;
  const uint8_t* row = table + static_cast<int64_t>(tokens[blockIdx.x]) * row_bytes;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * d;
  for (int64_t i = threadIdx.x; i < d / kGroup; i += blockDim.x) {
    float v[kGroup];
    Format::template decode<1>(row + (i / kGroupsPerBlock) * Format::kBlockBytes,
                               static_cast<int>(i % kGroupsPerBlock), v);
#pragma unroll
    for (int k = 0; k < kGroup; ++k) dst[i * kGroup + k] = v[k];
  }
}

template <typename In>
__global__ void embed_float_kernel(float* out, const In* table, const int32_t* tokens, int64_t d) {
  const In* row = table + static_cast<int64_t>(tokens[blockIdx.x]) * d;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) dst[i] = to_float(row[i]);
}

std::string describe(TensorType type) {
  const auto id = static_cast<uint32_t>(type);
  return is_supported_type(id) ? std::string(type_name(type)) : "id " + std::to_string(id);
}

// Error unless type is supported and cols a whole number of its blocks.
void check_shape(const char* what, TensorType type, int64_t rows, int64_t cols) {
  if (!dequantize_supported(type)) {
    throw_error(std::string(what) + ": unsupported tensor type " + describe(type));
  }
  const int64_t block = type_traits(type).block_size;
  if (rows < 0 || cols < 0 || cols % block != 0) {
    throw_error(std::string(what) + ": bad shape " + std::to_string(rows) + " x " +
                std::to_string(cols) + " for type " + describe(type) +
                " (row length must be a multiple of " + std::to_string(block) + ")");
  }
}

template <class Format, bool kVectorIn, bool kVectorOut>
void launch_tiles(bf16* out, const void* weights, int64_t n_blocks, cudaStream_t stream) {
  launch_after_prior("dequantize_to_bf16", dequantize_tile_kernel<Format, kVectorIn, kVectorOut>,
                     blocks_for(n_blocks, kTileBlocks<Format>, "dequantize_to_bf16"), kTileThreads,
                     0, stream, out, static_cast<const uint8_t*>(weights), n_blocks);
}

template <class Format>
void dequantize_blocks(bf16* out, const void* weights, int64_t n_blocks, cudaStream_t stream) {
  const bool in16 = aligned(weights, 16), out16 = aligned(out, 16);
  if (in16 && out16) {
    launch_tiles<Format, true, true>(out, weights, n_blocks, stream);
  } else if (in16) {
    launch_tiles<Format, true, false>(out, weights, n_blocks, stream);
  } else if (out16) {
    launch_tiles<Format, false, true>(out, weights, n_blocks, stream);
  } else {
    launch_tiles<Format, false, false>(out, weights, n_blocks, stream);
  }
}

template <typename In>
void convert_floats(bf16* out, const void* in, int64_t n, cudaStream_t stream) {
  const auto* src = static_cast<const In*>(in);
  const unsigned grid = blocks_for(n, int64_t{kTileThreads} * kGroup, "dequantize_to_bf16");
  if (aligned(in, 16) && aligned(out, 16)) {
    convert_kernel<In, true><<<grid, kTileThreads, 0, stream>>>(out, src, n);
  } else {
    convert_kernel<In, false><<<grid, kTileThreads, 0, stream>>>(out, src, n);
  }
  check_launch("dequantize_to_bf16");
}

template <class Format>
void embed_blocks(float* out, const void* table, const int32_t* tokens, int64_t n, int64_t d,
                  cudaStream_t stream) {
  embed_quantized_kernel<Format><<<static_cast<unsigned>(n), kEmbedThreads, 0, stream>>>(
      out, static_cast<const uint8_t*>(table), tokens, d);
  check_launch("embed_rows");
}

template <typename In>
void embed_floats(float* out, const void* table, const int32_t* tokens, int64_t n, int64_t d,
                  cudaStream_t stream) {
  embed_float_kernel<In><<<static_cast<unsigned>(n), kEmbedThreads, 0, stream>>>(
      out, static_cast<const In*>(table), tokens, d);
  check_launch("embed_rows");
}

}  // namespace

bool dequantize_supported(TensorType type) {
  switch (type) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
    case TensorType::Q4_0:
    case TensorType::Q8_0:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
      return true;
    default:
      return false;
  }
}

void dequantize_to_bf16(bf16* out, const void* weights, TensorType type, int64_t rows, int64_t cols,
                        cudaStream_t stream) {
  check_shape("dequantize_to_bf16", type, rows, cols);
  const int64_t n = rows * cols;
  if (n == 0) return;
  const int64_t n_blocks = n / type_traits(type).block_size;
  switch (type) {
    case TensorType::F32:
      return convert_floats<float>(out, weights, n, stream);
    case TensorType::F16:
      return convert_floats<__half>(out, weights, n, stream);
    case TensorType::BF16:
      return convert_floats<bf16>(out, weights, n, stream);
    default:
      break;
  }
  if (visit_format(type, [&](auto format) {
        dequantize_blocks<decltype(format)>(out, weights, n_blocks, stream);
      })) {
    return;
  }
  throw_error("dequantize_to_bf16: unsupported tensor type " + describe(type));
}

// The token ids are not range-checked here (the table's row count is not passed): the caller
// validates them against the vocabulary before they reach the device.
void embed_rows(float* out, const void* table, TensorType type, const int32_t* tokens, int64_t n,
                int64_t d, cudaStream_t stream) {
  check_shape("embed_rows", type, n, d);
  if (n == 0 || d == 0) return;
  if (n > std::numeric_limits<int>::max()) {
    throw_error("embed_rows: " + std::to_string(n) + " tokens are too many for one launch");
  }
  switch (type) {
    case TensorType::F32:
      return embed_floats<float>(out, table, tokens, n, d, stream);
    case TensorType::F16:
      return embed_floats<__half>(out, table, tokens, n, d, stream);
    case TensorType::BF16:
      return embed_floats<bf16>(out, table, tokens, n, d, stream);
    default:
      break;
  }
  if (visit_format(type, [&](auto format) {
        embed_blocks<decltype(format)>(out, table, tokens, n, d, stream);
      })) {
    return;
  }
  throw_error("embed_rows: unsupported tensor type " + describe(type));
}

}  // namespace ruvdllm::cuda
