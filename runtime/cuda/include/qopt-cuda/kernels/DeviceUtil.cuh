//===- DeviceUtil.cuh - conversions shared by the weight-only kernels -*- CUDA -*-===//
#ifndef QOPT_CUDA_KERNELS_DEVICEUTIL_CUH
#define QOPT_CUDA_KERNELS_DEVICEUTIL_CUH

#include "qopt-cuda/DType.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace qcuda::detail {

__device__ __forceinline__ float toF32(__half v) { return __half2float(v); }
__device__ __forceinline__ float toF32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float halfBitsToF32(uint16_t b) {
  return __half2float(__ushort_as_half(b));
}

/// Two elements packed in one 32-bit word -> fp32 (low half first).
__device__ __forceinline__ float2 pairToF32(uint32_t w, __half) {
  return __half22float2(*reinterpret_cast<const __half2 *>(&w));
}
__device__ __forceinline__ float2 pairToF32(uint32_t w, __nv_bfloat16) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w));
}

/// Two fp32 -> one word of two 16-bit elements (a in the low half).
__device__ __forceinline__ uint32_t packPair(float a, float b, __half) {
  __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<uint32_t *>(&h);
}
__device__ __forceinline__ uint32_t packPair(float a, float b, __nv_bfloat16) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t *>(&h);
}

/// A small unsigned integer (< 2^23) as fp32 without an int->float
/// conversion instruction: OR it into the mantissa of 2^23, subtract 2^23.
__device__ __forceinline__ float codeToF32(uint32_t q) {
  return __uint_as_float(0x4B000000u | q) - 8388608.f;
}

/// Stores y[i] in the output type.
__device__ __forceinline__ void storeOut(void *y, int64_t i, float v, int yType) {
  if (yType == int(DType::kF32))
    static_cast<float *>(y)[i] = v;
  else if (yType == int(DType::kBF16))
    static_cast<__nv_bfloat16 *>(y)[i] = __float2bfloat16_rn(v);
  else
    static_cast<__half *>(y)[i] = __float2half_rn(v);
}

} // namespace qcuda::detail

#endif
