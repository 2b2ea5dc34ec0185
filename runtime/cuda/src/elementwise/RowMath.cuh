//===- RowMath.cuh - the fp32 arithmetic RMSNorm and SwiGLU share -*- CUDA -*-===//
//
// One definition of the row math behind RowKernels.cu (bf16 outputs) and
// w8a8/FusedActQuant.cu (8-bit outputs): bf16 x 8 <-> fp32 conversion,
// the residual add with the norm taken of the stored (bf16-rounded) stream,
// the fmaf chain and reduction order of the sum of squares, and silu(g) *
// u. Sharing it keeps the two producers' fp32 values identical bit for bit
// (the W8A8 tests emulate this exact order on the CPU).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_ELEMENTWISE_ROWMATH_CUH
#define QOPT_CUDA_ELEMENTWISE_ROWMATH_CUH

#include <cuda_bf16.h>

#include <cstdint>

namespace qcuda::rowmath {

/// 8 bf16 <-> 8 floats through one 16-byte word.
__device__ __forceinline__ void unpack8(const uint4 &v, float *f) {
  const __nv_bfloat162 *p = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(p[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

__device__ __forceinline__ uint4 pack8(const float *f) {
  uint4 v;
  __nv_bfloat162 *p = reinterpret_cast<__nv_bfloat162 *>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i)
    p[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

/// For one row of `vecs` 8-element vectors, with a block of Threads
/// threads: x += residual (stored as bf16) when residual is given, then
/// 1 / sqrt(mean(x^2) + eps) of the stored row; every thread gets it.
template <int Threads>
__device__ float rmsInverse(uint4 *xr, const uint4 *residualRow, int64_t vecs, float eps,
                            float dim) {
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < vecs; i += Threads) {
    uint4 v = xr[i];
    float f[8];
    unpack8(v, f);
    if (residualRow) {
      float r[8];
      unpack8(residualRow[i], r);
#pragma unroll
      for (int e = 0; e < 8; ++e)
        f[e] += r[e];
      v = pack8(f);
      xr[i] = v;
      unpack8(v, f); // the norm is of the stored (rounded) stream
    }
#pragma unroll
    for (int e = 0; e < 8; ++e)
      ss = fmaf(f[e], f[e], ss);
  }
  __shared__ float partial[Threads / 32];
#pragma unroll
  for (int off = 16; off > 0; off /= 2)
    ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if (threadIdx.x % 32 == 0)
    partial[threadIdx.x / 32] = ss;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < Threads / 32; ++w)
    total += partial[w];
  return 1.0f / sqrtf(total / dim + eps);
}

/// weight * (x * inv) for the 8 columns of vector i.
__device__ __forceinline__ void normalize8(const uint4 &x, const float *weight, int64_t i,
                                           float inv, float *f) {
  unpack8(x, f);
#pragma unroll
  for (int e = 0; e < 8; ++e)
    f[e] = weight[i * 8 + e] * (f[e] * inv);
}

/// silu(g) * u for 8 columns (g, u: the same vector of the gate and up
/// halves of a fused gate|up row).
__device__ __forceinline__ void swiglu8(const uint4 &g, const uint4 &u, float *v) {
  float uf[8];
  unpack8(g, v);
  unpack8(u, uf);
#pragma unroll
  for (int e = 0; e < 8; ++e)
    v[e] = v[e] / (1.0f + expf(-v[e])) * uf[e];
}

} // namespace qcuda::rowmath

#endif
