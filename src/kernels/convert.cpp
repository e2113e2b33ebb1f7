// Whole-tensor type conversion (e.g. BF16 safetensors -> Q4_K for a GGUF file), parallel over
// rows, with progress reported from the calling thread so callers need no locking.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm {

namespace {

// Enough elements per task to amortise scheduling, few enough to keep progress lively.
constexpr int64_t kElementsPerTask = 1 << 16;
constexpr int64_t kTasksPerChunkPerThread = 4;

void check_convertible(const TensorView& src, TensorType dst_type) {
  const TypeTraits& from = type_traits(src.type);
  const TypeTraits& to = type_traits(dst_type);
  const int64_t n = src.row_len();
  for (int64_t dim : src.shape) {
    if (dim < 0) fail("convert {}: negative dimension", src.name);
  }
  if (n % from.block_size != 0) {
    fail("convert {}: row of {} elements is not a multiple of {}'s block size {}", src.name, n,
         from.name, from.block_size);
  }
  if (n % to.block_size != 0) {
    fail("convert {} from {} to {}: row of {} elements is not a multiple of {}'s block size {}",
         src.name, from.name, to.name, n, to.name, to.block_size);
  }
  const size_t needed = src.row_stride() * static_cast<size_t>(src.rows());
  if (needed > 0 && src.data == nullptr) fail("convert {}: tensor has no data", src.name);
  if (src.nbytes < needed) {
    fail("convert {}: {} bytes of {} data, shape needs {}", src.name, src.nbytes, from.name,
         needed);
  }
}

}  // namespace

Tensor convert_tensor(const TensorView& src, TensorType dst_type, ThreadPool& pool,
                      const std::function<void(int64_t, int64_t)>& progress) {
  check_convertible(src, dst_type);
  Tensor dst(src.name, dst_type, src.shape);
  const int64_t rows = src.rows();
  const int64_t n = src.row_len();
  const size_t src_stride = src.row_stride();
  const size_t dst_stride = dst.view().row_stride();
  auto* dst_bytes = static_cast<uint8_t*>(dst.data());

  // Re-quantizing dequantized values would lose precision for nothing.
  const bool same_type = src.type == dst_type;
  const bool direct_from_f32 =
      src.type == TensorType::F32 && reinterpret_cast<uintptr_t>(src.data) % alignof(float) == 0;
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));

  auto convert_row = [&](int64_t r, int thread) {
    const uint8_t* in = src.row(r);
    uint8_t* out = dst_bytes + static_cast<size_t>(r) * dst_stride;
    if (same_type) {
      std::memcpy(out, in, src_stride);
    } else if (dst_type == TensorType::F32) {
      dequantize_row(src.type, in, reinterpret_cast<float*>(out), n);
    } else if (direct_from_f32) {
      quantize_row(dst_type, reinterpret_cast<const float*>(in), out, n);
    } else {
      std::vector<float>& row = scratch[static_cast<size_t>(thread)];
      row.resize(static_cast<size_t>(n));
      dequantize_row(src.type, in, row.data(), n);
      quantize_row(dst_type, row.data(), out, n);
    }
  };

  const int64_t rows_per_task = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(n, 1));
  const int64_t rows_per_chunk = rows_per_task * kTasksPerChunkPerThread * pool.size();
  for (int64_t begin = 0; begin < rows; begin += rows_per_chunk) {
    const int64_t end = std::min(rows, begin + rows_per_chunk);
    const int64_t tasks = (end - begin + rows_per_task - 1) / rows_per_task;
    pool.parallel_for(tasks, [&](int64_t task, int thread) {
      const int64_t first = begin + task * rows_per_task;
      const int64_t last = std::min(end, first + rows_per_task);
      for (int64_t r = first; r < last; ++r) convert_row(r, thread);
    });
    if (progress) progress(end, rows);
  }
  if (progress && rows == 0) progress(0, 0);
  return dst;
}

}  // namespace ruvdllm
