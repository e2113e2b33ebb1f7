#pragma once
// Owning handles for device memory (cudaMalloc, never managed memory) and pinned host memory.
// Both only grow: a batch larger than any before reallocates, smaller ones reuse the space.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "cuda/cuda_check.h"

namespace ruvdllm::cuda {

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) { reserve(n); }
  ~DeviceArray() { release(); }
  DeviceArray(DeviceArray&& other) noexcept { swap(other); }
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    swap(other);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  // Contents are not kept when it grows.
  void reserve(size_t n) {
    if (n <= capacity_) return;
    release();
    void* p = nullptr;
    check_cuda(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    ptr_ = static_cast<T*>(p);
    capacity_ = n;
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t capacity() const { return capacity_; }
  size_t bytes() const { return capacity_ * sizeof(T); }

 private:
  void release() {
    if (ptr_) cudaFree(ptr_);  // an error here cannot be reported from a destructor
    ptr_ = nullptr;
    capacity_ = 0;
  }
  void swap(DeviceArray& other) {
    std::swap(ptr_, other.ptr_);
    std::swap(capacity_, other.capacity_);
  }
  T* ptr_ = nullptr;
  size_t capacity_ = 0;
};

template <typename T>
class PinnedArray {
 public:
  PinnedArray() = default;
  ~PinnedArray() { release(); }
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;

  void reserve(size_t n) {
    if (n <= capacity_) return;
    release();
    void* p = nullptr;
    check_cuda(cudaMallocHost(&p, n * sizeof(T)), "cudaMallocHost");
    ptr_ = static_cast<T*>(p);
    capacity_ = n;
  }
  T* data() { return ptr_; }
  size_t capacity() const { return capacity_; }

 private:
  void release() {
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    capacity_ = 0;
  }
  T* ptr_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace ruvdllm::cuda
