#include "ruvdllm/core/tensor.h"

#include <cstdlib>

#include "ruvdllm/core/error.h"

namespace ruvdllm {

int64_t TensorView::rows() const {
  int64_t r = 1;
  for (size_t i = 1; i < shape.size(); ++i) r *= shape[i];
  return r;
}

int64_t TensorView::elements() const {
  int64_t e = 1;
  for (int64_t d : shape) e *= d;
  return e;
}

size_t TensorView::row_stride() const { return row_bytes(type, row_len()); }

TensorView TensorView::matrix(int64_t i) const {
  if (dims() < 3 || i < 0 || i >= ne(2)) {
    fail("tensor {}: matrix {} out of range ({} dims)", name, i, dims());
  }
  TensorView m = *this;
  m.shape = {ne(0), ne(1)};
  m.nbytes = row_stride() * static_cast<size_t>(ne(1));
  m.data = static_cast<const uint8_t*>(data) + static_cast<size_t>(i) * m.nbytes;
  return m;
}

void Tensor::FreeDeleter::operator()(void* p) const { std::free(p); }

Tensor::Tensor(std::string name, TensorType type, std::vector<int64_t> shape) {
  view_.name = std::move(name);
  view_.type = type;
  view_.shape = std::move(shape);
  for (int64_t d : view_.shape) {
    if (d < 0) fail("tensor {}: negative dimension", view_.name);
  }
  view_.nbytes = view_.row_stride() * static_cast<size_t>(view_.rows());
  const size_t alloc = ((view_.nbytes + 63) / 64) * 64;
  storage_.reset(std::aligned_alloc(64, alloc == 0 ? 64 : alloc));
  if (!storage_) fail("tensor {}: out of memory allocating {} bytes", view_.name, alloc);
  view_.data = storage_.get();
}

}  // namespace ruvdllm
