//===- GemvKernel.cuh - small-M W4A16 / W8A16: stream the weights once -*- CUDA -*-===//
//
// For M <= 16 the product is bound by reading the packed weights, so the
// design is about bytes in flight, not arithmetic: a block of 4 warps owns 4
// weight rows and splits K between its warps; each lane reads one 16-byte
// code vector per row per step (the 4 rows' loads are independent, so they
// are in flight together), bypassing L1 (ld.global.nc.L1::no_allocate) to
// keep L1 for x, which every block re-reads. N = 4096 gives 1024 blocks:
// every SM busy even at M = 1.
//
// The scale is factored out of each 16-byte vector's dot product:
//   sum_k (q_k - z) s x_k = s (sum_k q_k x_k - z sum_k x_k)
// (a vector never crosses a group), so the inner loop is one FMA per code.
// int4 codes are widened two at a time (one and + or per pair: nibbles c
// and c + 4, columns 2c and 2c + 1, become the bf16 halves of 128 + q,
// the trick of Marlin and
// FasterTransformer's converters), about half the integer work of
// extracting and converting each code; at M = 1 that work, not the
// loads, is what would otherwise bound the kernel. The 128 comes back out
// with the zero point; the fp32 cancellation costs ~4 of 24 bits.
// Blocks along grid.y take 4 rows of x each; their weight reads after the
// first hit L2.
//
// A template over the weight description W (WeightOnlyParams.h): the
// runtime instantiates it with DynamicWeight, generated code with
// StaticWeight.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_KERNELS_GEMVKERNEL_CUH
#define QOPT_CUDA_KERNELS_GEMVKERNEL_CUH

#include "qopt-cuda/kernels/DeviceUtil.cuh"
#include "qopt-cuda/kernels/WeightOnlyParams.h"

namespace qcuda::detail::gemv {

constexpr int kRows = 4;  // weight rows per block
constexpr int kMTile = 4; // x rows per block
constexpr int kWarps = 4;

__device__ __forceinline__ uint4 loadStreaming(const uint4 *p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

template <typename XT, int Bits, class W>
__global__ void __launch_bounds__(kWarps * 32, 4) gemvKernel(WeightOnlyParams p) {
  constexpr int kCodesPerVec = 128 / Bits; // 32 or 16
  constexpr int kCodesPerWord = 32 / Bits;
  constexpr uint32_t kMask = (1u << Bits) - 1;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n0 = blockIdx.x * kRows;
  const int m0 = blockIdx.y * kMTile;
  const int mCount = min(kMTile, p.M - m0);
  const int N = W::rows(p), K = W::cols(p), groupSize = W::groupSize(p);
  const bool hasZeros = W::hasZeros(p);
  const int vecsPerRow = K / kCodesPerVec;
  const XT *x = static_cast<const XT *>(p.x);
  const uint4 *codes = reinterpret_cast<const uint4 *>(p.codes);
  const float zSym = float(1 << (Bits - 1));
  // What the int4 path's codes carry on top of their value (see below).
  constexpr float kCodeBias = Bits == 4 ? 128.f : 0.f;

  float acc[kMTile][kRows];
#pragma unroll
  for (int m = 0; m < kMTile; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      acc[m][r] = 0.f;

  for (int v = warp * 32 + lane; v < vecsPerRow; v += kWarps * 32) {
    uint32_t q[kRows][4];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const uint4 u = loadStreaming(codes + int64_t(n0 + r) * vecsPerRow + v);
      q[r][0] = u.x, q[r][1] = u.y, q[r][2] = u.z, q[r][3] = u.w;
    }
    const int g = v * kCodesPerVec / groupSize;
    float s[kRows], z[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      s[r] = halfBitsToF32(__ldg(p.scales + int64_t(g) * N + n0 + r));
      z[r] = hasZeros ? halfBitsToF32(__ldg(p.zeros + int64_t(g) * N + n0 + r)) : zSym;
    }
    // Not unrolled: hoisting all 4 rows' x loads would spill.
#pragma unroll 1
    for (int m = 0; m < mCount; ++m) {
      const uint4 *xv =
          reinterpret_cast<const uint4 *>(x + int64_t(m0 + m) * K + int64_t(v) * kCodesPerVec);
      // 8 activations at a time, so only 8 converted values are live.
      float dot[kRows] = {}, xsum = 0.f;
#pragma unroll
      for (int i = 0; i < kCodesPerVec / 8; ++i) {
        const uint4 u = __ldg(xv + i);
        const uint32_t xw[4] = {u.x, u.y, u.z, u.w};
        float xf[8];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 f = pairToF32(xw[j], XT());
          xf[2 * j] = f.x;
          xf[2 * j + 1] = f.y;
          xsum += f.x + f.y;
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if constexpr (Bits == 4) {
            // Two codes per operation: nibbles c and c + 4 of the word,
            // columns 2c and 2c + 1 (interleaved, GpuPackedLayout.h), land
            // in the two bf16 halves of 0x4300 | q = 128 + q (exact),
            // widened to fp32 by a shift / mask. The 128 is taken out with
            // the zero point below (dot - (z + 128) * xsum).
            const uint32_t w = q[r][i];
#pragma unroll
            for (int c = 0; c < 4; ++c) {
              const uint32_t pair = ((w >> (4 * c)) & 0x000F000Fu) | 0x43004300u;
              dot[r] = fmaf(__uint_as_float(pair << 16), xf[2 * c], dot[r]);
              dot[r] = fmaf(__uint_as_float(pair & 0xFFFF0000u), xf[2 * c + 1], dot[r]);
            }
          } else {
#pragma unroll
            for (int c = 0; c < 8; ++c) {
              const int code = i * 8 + c;
              const uint32_t q8 =
                  (q[r][code / kCodesPerWord] >> (Bits * (code % kCodesPerWord))) & kMask;
              dot[r] = fmaf(codeToF32(q8), xf[c], dot[r]);
            }
          }
        }
      }
      // acc indexed by constants only (a run-time m would put it in local memory).
#pragma unroll
      for (int mm = 0; mm < kMTile; ++mm)
        if (mm == m) {
#pragma unroll
          for (int r = 0; r < kRows; ++r)
            acc[mm][r] = fmaf(s[r], dot[r] - (z[r] + kCodeBias) * xsum, acc[mm][r]);
        }
    }
  }

  __shared__ float partial[kWarps][kMTile][kRows];
#pragma unroll
  for (int m = 0; m < kMTile; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float t = acc[m][r];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1)
        t += __shfl_xor_sync(0xffffffffu, t, off);
      if (lane == 0)
        partial[warp][m][r] = t;
    }
  __syncthreads();
  if (threadIdx.x < kMTile * kRows) {
    const int m = threadIdx.x / kRows, r = threadIdx.x % kRows;
    if (m < mCount) {
      float t = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w)
        t += partial[w][m][r];
      if (p.bias)
        t += toF32(static_cast<const XT *>(p.bias)[n0 + r]);
      storeOut(p.y, int64_t(m0 + m) * N + n0 + r, t, p.yType);
    }
  }
}

} // namespace qcuda::detail::gemv

namespace qcuda::detail {

/// Enqueues the small-M kernel (M <= kSmallMMax rows of x per 4-row tile
/// along grid.y; any M works).
template <typename XT, int Bits, class W>
cudaError_t launchGemv(const WeightOnlyParams &p, cudaStream_t stream) {
  using namespace gemv;
  const dim3 grid(unsigned(W::rows(p) / kRows), unsigned((p.M + kMTile - 1) / kMTile));
  gemvKernel<XT, Bits, W><<<grid, kWarps * 32, 0, stream>>>(p);
  return cudaGetLastError();
}

} // namespace qcuda::detail

#endif
