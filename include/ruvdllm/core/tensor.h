#pragma once
// A non-owning view of a tensor's bytes (usually inside a memory-mapped file) and an
// owning buffer for tensors made in memory.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ruvdllm/core/tensor_type.h"

namespace ruvdllm {

// Shapes use GGUF order: shape[0] is the contiguous dimension. A linear layer y = W x with
// W of out×in (PyTorch's [out, in]) has shape {in, out}: `rows()` = out rows of `row_len()` = in.
// A stack of expert matrices has shape {in, out, n_expert}.
struct TensorView {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t dims() const { return static_cast<int64_t>(shape.size()); }
  int64_t ne(int i) const { return i < dims() ? shape[static_cast<size_t>(i)] : 1; }
  int64_t row_len() const { return ne(0); }
  int64_t rows() const;       // product of shape[1..]
  int64_t elements() const;   // product of shape
  size_t row_stride() const;  // bytes of one row
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_stride();
  }
  // The i-th 2-D matrix of a 3-D tensor (e.g. one expert). Throws Error if out of range.
  TensorView matrix(int64_t i) const;
};

// 64-byte aligned, owning storage for a tensor made in memory.
class Tensor {
 public:
  Tensor() = default;
  Tensor(std::string name, TensorType type, std::vector<int64_t> shape);
  TensorView& view() { return view_; }
  const TensorView& view() const { return view_; }
  void* data() { return storage_.get(); }
  const void* data() const { return storage_.get(); }
  float* f32() { return static_cast<float*>(data()); }  // only for F32 tensors
  const float* f32() const { return static_cast<const float*>(data()); }
  size_t nbytes() const { return view_.nbytes; }

 private:
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, FreeDeleter> storage_;
  TensorView view_;
};

}  // namespace ruvdllm
