//===- AttentionTestSupport.h - device buffers and KV references for tests ===//
//
// What the attention, elementwise and sampling tests share: a skip when no
// device is present, a typed device buffer, and host-side KV element
// encode/decode written from the pool's definition (KVCache.h: bf16/f16
// casts, int8 and fp8-e4m3 holding round(x / scale)), independent of the
// kernels under test.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_TEST_CUDA_ATTENTIONTESTSUPPORT_H
#define QOPT_TEST_CUDA_ATTENTIONTESTSUPPORT_H

#include "qopt-cuda/Attention.h"
#include "qopt-rt/half.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

/// Skips the test (with the reason) when no CUDA device can be used.
#define QCUDA_REQUIRE_DEVICE()                                                                   \
  do {                                                                                           \
    int n_ = 0;                                                                                  \
    cudaError_t e_ = cudaGetDeviceCount(&n_);                                                    \
    if (e_ != cudaSuccess || n_ == 0)                                                            \
      GTEST_SKIP() << "no CUDA device: "                                                         \
                   << (e_ != cudaSuccess ? cudaGetErrorString(e_) : "device count is 0");        \
  } while (0)

namespace qcuda::test {

/// A device allocation of n elements of T, filled from / copied to vectors.
template <class T> class DeviceBuffer {
public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n > 0 && cudaMalloc(&p_, n * sizeof(T)) != cudaSuccess)
      p_ = nullptr;
  }
  explicit DeviceBuffer(const std::vector<T> &v) : DeviceBuffer(v.size()) { upload(v); }
  ~DeviceBuffer() {
    if (p_)
      cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  T *get() const { return static_cast<T *>(p_); }
  size_t size() const { return n_; }
  void upload(const std::vector<T> &v) {
    if (p_ && !v.empty())
      cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    if (p_ && n_ > 0)
      cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }

private:
  void *p_ = nullptr;
  size_t n_ = 0;
};

/// bf16 NaN: outputs are filled with it before a kernel runs, so an element
/// the kernel does not write fails every comparison.
constexpr uint16_t kBf16NaN = 0x7fc0;

inline float fp8E4M3Decode(uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  if ((b & 0x7f) == 0x7f)
    return NAN;
  const float v = e == 0 ? std::ldexp(float(m) / 8.0f, -6) : std::ldexp(1.0f + float(m) / 8.0f, e - 7);
  return (b & 0x80) ? -v : v;
}

/// Nearest e4m3 code (ties to the even code), saturating at 448.
inline uint8_t fp8E4M3Encode(float x) {
  if (std::isnan(x))
    return 0;
  const float a = std::fabs(x);
  int best = 0;
  float bestD = INFINITY;
  for (int c = 0; c < 127; ++c) {
    const float d = std::fabs(fp8E4M3Decode(uint8_t(c)) - a);
    if (d < bestD || (d == bestD && c % 2 == 0)) {
      bestD = d;
      best = c;
    }
  }
  return uint8_t((std::signbit(x) && best != 0) ? (best | 0x80) : best);
}

/// The pool's bytes for values x (K or V of one head), and back.
struct KVCodecRef {
  KVDType type;
  size_t bytes() const { return kvElementBytes(type); }
  void store(uint8_t *dst, float x, float scale) const {
    switch (type) {
    case KVDType::BF16: {
      uint16_t h = qrt::f32ToBf16(x);
      std::memcpy(dst, &h, 2);
      return;
    }
    case KVDType::F16: {
      uint16_t h = qrt::f32ToF16(x);
      std::memcpy(dst, &h, 2);
      return;
    }
    case KVDType::I8: {
      float r = std::nearbyint(x / scale);
      r = std::min(127.0f, std::max(-127.0f, r));
      *dst = uint8_t(int8_t(r));
      return;
    }
    case KVDType::FP8E4M3:
      *dst = fp8E4M3Encode(x / scale);
      return;
    }
  }
  double load(const uint8_t *src, float scale) const {
    uint16_t h;
    switch (type) {
    case KVDType::BF16:
      std::memcpy(&h, src, 2);
      return qrt::bf16ToF32(h);
    case KVDType::F16:
      std::memcpy(&h, src, 2);
      return qrt::f16ToF32(h);
    case KVDType::I8:
      return double(int8_t(*src)) * scale;
    case KVDType::FP8E4M3:
      return double(fp8E4M3Decode(*src)) * scale;
    }
    return 0;
  }
  /// Largest |decoded - x| that rounding x into the pool may cause.
  double roundingBound(double x, float scale) const {
    const double a = std::fabs(x);
    switch (type) {
    case KVDType::BF16:
      return a * 0x1p-8;
    case KVDType::F16:
      return a * 0x1p-11 + 0x1p-25;
    case KVDType::I8:
      return 0.5 * scale;
    case KVDType::FP8E4M3:
      // Half an e4m3 step: 2^-4 relative to x itself (the scale cancels),
      // or half the smallest subnormal (2^-10) in scaled units.
      return a * 0x1p-4 + 0x1p-10 * scale;
    }
    return 0;
  }
};

inline const char *kvName(KVDType t) {
  switch (t) {
  case KVDType::BF16:
    return "bf16";
  case KVDType::F16:
    return "f16";
  case KVDType::I8:
    return "int8";
  case KVDType::FP8E4M3:
    return "fp8_e4m3";
  }
  return "?";
}

inline std::vector<uint16_t> toBf16(const std::vector<float> &v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    o[i] = qrt::f32ToBf16(v[i]);
  return o;
}

} // namespace qcuda::test

#endif // QOPT_TEST_CUDA_ATTENTIONTESTSUPPORT_H
