//===- CudaTestUtil.h - device checks and buffers for the CUDA tests -*- C++ -*-===//
#ifndef QOPT_TEST_CUDA_CUDATESTUTIL_H
#define QOPT_TEST_CUDA_CUDATESTUTIL_H

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace qcuda_test {

/// Empty when a CUDA device is usable, else why not (the skip message).
inline std::string noDeviceReason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess)
    return std::string("no CUDA device: ") + cudaGetErrorString(err);
  if (count == 0)
    return "no CUDA device: cudaGetDeviceCount found 0";
  return "";
}

#define QCUDA_SKIP_WITHOUT_DEVICE()                                                           \
  do {                                                                                      \
    const std::string why = qcuda_test::noDeviceReason();                                   \
    if (!why.empty())                                                                       \
      GTEST_SKIP() << why;                                                                  \
  } while (0)

/// A device buffer; frees itself.
class DeviceBuffer {
public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&ptr_, bytes ? bytes : 1) != cudaSuccess)
      ptr_ = nullptr;
  }
  ~DeviceBuffer() {
    if (ptr_)
      cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  template <typename T> T *as() const { return static_cast<T *>(ptr_); }
  void *get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  template <typename T> void upload(const std::vector<T> &v) {
    ASSERT_EQ(v.size() * sizeof(T), bytes_);
    ASSERT_EQ(cudaMemcpy(ptr_, v.data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
  }
  template <typename T> std::vector<T> download() const {
    std::vector<T> v(bytes_ / sizeof(T));
    EXPECT_EQ(cudaMemcpy(v.data(), ptr_, bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  /// Fills with 0xFF bytes: NaN in f16, bf16 and f32, so an element the
  /// kernel never writes fails every comparison.
  void poison() { ASSERT_EQ(cudaMemset(ptr_, 0xFF, bytes_), cudaSuccess); }

private:
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};

} // namespace qcuda_test

#endif
