#pragma once
// Descriptors of the bulk tensor copy engine (TMA, Hopper), encoded on the host through the
// driver's cuTensorMapEncodeTiled: WgmmaGemm's kernels copy their tiles with them.
#include <cuda.h>

#include <cstdint>

namespace ruvdllm::cuda {

// A row-major matrix of rows × cols elements of elem_bytes (row stride ld elements, 0: cols),
// copied in boxes of box_cols × box_rows; rows past the end read as zeros. Swizzled: the
// 128-byte pattern wgmma's shared-memory descriptors expect; otherwise copied as it lies.
// Error if the driver lacks the call or refuses the shape.
CUtensorMap tile_map(const void* base, CUtensorMapDataType type, int elem_bytes, int64_t rows,
                     int64_t cols, int box_cols, int box_rows, bool swizzled, int64_t ld = 0);

}  // namespace ruvdllm::cuda
