//===- KVElement.cuh - loading and storing KV pool elements -----*- CUDA -*-===//
//
// One trait per pool type: how many elements a 16-byte load carries, how to
// widen them to fp32 (scale applied by the caller, once per dot product or
// output, not per element) and how to store one value with the CPU
// executor's rounding (CpuModelExecutor's KVCodec), so both write the same
// bytes.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_ATTENTION_KVELEMENT_CUH
#define QOPT_CUDA_ATTENTION_KVELEMENT_CUH

#include "qopt-cuda/Attention.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace qcuda::detail {

template <KVDType T> struct KVElem;

template <> struct KVElem<KVDType::BF16> {
  using Storage = __nv_bfloat16;
  static constexpr int kPerVec = 8; ///< elements per 16 bytes
  static __device__ __forceinline__ void widen(const uint4 &v, float *out) {
    const __nv_bfloat162 *p = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 f = __bfloat1622float2(p[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
  static __device__ __forceinline__ void store(Storage *dst, float x, float) {
    *dst = __float2bfloat16_rn(x);
  }
};

template <> struct KVElem<KVDType::F16> {
  using Storage = __half;
  static constexpr int kPerVec = 8;
  static __device__ __forceinline__ void widen(const uint4 &v, float *out) {
    const __half2 *p = reinterpret_cast<const __half2 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 f = __half22float2(p[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
  static __device__ __forceinline__ void store(Storage *dst, float x, float) {
    *dst = __float2half_rn(x);
  }
};

template <> struct KVElem<KVDType::I8> {
  using Storage = int8_t;
  static constexpr int kPerVec = 16;
  static __device__ __forceinline__ void widen(const uint4 &v, float *out) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 16; ++i)
      out[i] = float(int8_t((w[i / 4] >> (8 * (i % 4))) & 0xff));
  }
  static __device__ __forceinline__ void store(Storage *dst, float x, float scale) {
    // Division, not a reciprocal product: the CPU divides, and the two can
    // round differently at .5 boundaries.
    float r = rintf(x / scale);
    r = fminf(127.0f, fmaxf(-127.0f, r));
    *dst = int8_t(r);
  }
};

template <> struct KVElem<KVDType::FP8E4M3> {
  using Storage = __nv_fp8_storage_t;
  static constexpr int kPerVec = 16;
  static __device__ __forceinline__ void widen(const uint4 &v, float *out) {
    const __nv_fp8x2_storage_t *p = reinterpret_cast<const __nv_fp8x2_storage_t *>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      __half2 h(__nv_cvt_fp8x2_to_halfraw2(p[i], __NV_E4M3));
      float2 f = __half22float2(h);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
  static __device__ __forceinline__ void store(Storage *dst, float x, float scale) {
    float y = x / scale;
    // Round to nearest even, saturating at +-448; NaN stored as 0 as the CPU
    // executor does (the hardware conversion would give the NaN code).
    // Values that round to zero are stored as +0 (the CPU sets the sign
    // only on non-zero codes).
    Storage c = __nv_cvt_float_to_fp8(y, __NV_SATFINITE, __NV_E4M3);
    *dst = (isnan(y) || (c & 0x7f) == 0) ? Storage(0) : c;
  }
};

/// Element offset of (block-table entry, token in block, head) in a pool.
__device__ __forceinline__ int64_t kvOffset(int32_t block, int32_t inBlock, int32_t head,
                                            int32_t blockSize, int32_t kvHeads,
                                            int32_t headDim) {
  return (int64_t(block) * blockSize + inBlock) * int64_t(kvHeads) * headDim +
         int64_t(head) * headDim;
}

} // namespace qcuda::detail

#endif // QOPT_CUDA_ATTENTION_KVELEMENT_CUH
