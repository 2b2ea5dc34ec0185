//===- MmaKernel.cuh - W4A16 / W8A16 on the tensor cores (mma.sync) -*- CUDA -*-===//
//
// A plain, well-known structure (Marlin's permuted tiles and wgmma later):
//  - block tile 64 (M) x 128 (N) x 64 (K), 8 warps as 2 x 4, warp tile
//    32 x 32 = 2 x 4 mma.sync.m16n8k16 (fp16/bf16 in, fp32 accumulate);
//  - a 3-stage cp.async pipeline global -> shared for x and the packed
//    codes (rows past M or N are zero-filled, so no tail branches inside);
//  - A fragments with ldmatrix.x4 from rows padded by 16 bytes (no bank
//    conflicts); B fragments built per thread: the 4 codes a thread's
//    fragment needs (k = 2t, 2t+1, 2t+8, 2t+9 of row g) are unpacked from
//    two 32-bit words of shared memory, dequantized (q - z) * s in fp32
//    and rounded to the activation type; int4 two codes per and+or thanks
//    to the layout's interleaved nibbles (dequantFragment). Code rows are
//    padded by 16 bytes
//    so the 8 rows a warp reads fall in distinct banks;
//  - scales/zeros are read through the read-only cache once per k-tile and
//    32 columns (groups are multiples of 32 columns).
//  - split-K (grid.z > 1, when the caller gives a workspace and the M x N
//    tiles alone would leave SMs idle, e.g. M <= 64 at N = 4096): block z
//    takes a contiguous range of k-tiles and writes its fp32 partial sums
//    to partial[z][M][N]; splitKReduce adds the splits in order, the bias,
//    and converts. Deterministic (no atomics), graph-capturable.
// A template over the weight description W (WeightOnlyParams.h), like the
// small-M kernel.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_KERNELS_MMAKERNEL_CUH
#define QOPT_CUDA_KERNELS_MMAKERNEL_CUH

#include "qopt-cuda/kernels/DeviceUtil.cuh"
#include "qopt-cuda/kernels/WeightOnlyParams.h"

#include <algorithm>

namespace qcuda::detail::mma {

constexpr int kBM = 64, kBN = 128, kBK = 64, kStages = 3, kThreads = 256;
constexpr int kAStride = kBK + 8; // elements; +16 bytes per row

template <int Bits> struct BTile {
  static constexpr int kWords = kBK * Bits / 32; // words of one row's codes
  static constexpr int kStride = kWords + 4;     // +16 bytes per row
  static constexpr int kVecs = kWords / 4;       // 16-byte vectors per row
};

template <int Bits> __host__ __device__ constexpr int stageBytes() {
  return kBM * kAStride * 2 + kBN * BTile<Bits>::kStride * 4;
}

__device__ __forceinline__ uint32_t smemAddr(const void *p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

/// 16-byte async copy; a false predicate copies nothing and zero-fills.
__device__ __forceinline__ void cpAsync16(void *dst, const void *src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smemAddr(dst)),
               "l"(src), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrixX4(uint32_t (&a)[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(smemAddr(p)));
}

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2], __nv_bfloat16) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2], __half) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/// The B fragment (k = 2t, 2t+1 in b0; 2t+8, 2t+9 in b1) of one 16-column
/// step `kk` in a row of the B tile, dequantized (q - z) * s in fp32 and
/// rounded to XT. `zs` = (128 + z) * s (int4 only).
template <typename XT, int Bits>
__device__ __forceinline__ void dequantFragment(const uint32_t *row, int kk, int t, float s,
                                                float z, float zs, uint32_t (&b)[2]) {
  if constexpr (Bits == 4) {
    // Interleaved nibbles (GpuPackedLayout.h): (word >> 4t) & 0x000F000F
    // holds the codes of k = 2t and 2t+1; or-ing 0x4300 makes each half the
    // bf16 of 128 + q, widened to fp32 by a shift or a mask. Then
    // (128 + q) s - (128 + z) s is exact in fp32 (<= 19 significant bits):
    // the same (q - z) s as the 8-bit path, rounded once to XT.
    const uint32_t lo = ((row[kk * 2] >> (4 * t)) & 0x000F000Fu) | 0x43004300u;
    const uint32_t hi = ((row[kk * 2 + 1] >> (4 * t)) & 0x000F000Fu) | 0x43004300u;
    b[0] = packPair(fmaf(__uint_as_float(lo << 16), s, -zs),
                    fmaf(__uint_as_float(lo & 0xFFFF0000u), s, -zs), XT());
    b[1] = packPair(fmaf(__uint_as_float(hi << 16), s, -zs),
                    fmaf(__uint_as_float(hi & 0xFFFF0000u), s, -zs), XT());
  } else {
    const uint32_t lo = row[kk * 4 + t / 2], hi = row[kk * 4 + 2 + t / 2];
    const int sh = 16 * (t % 2);
    b[0] = packPair((codeToF32((lo >> sh) & 255u) - z) * s,
                    (codeToF32((lo >> (sh + 8)) & 255u) - z) * s, XT());
    b[1] = packPair((codeToF32((hi >> sh) & 255u) - z) * s,
                    (codeToF32((hi >> (sh + 8)) & 255u) - z) * s, XT());
  }
}

template <typename XT, int Bits, class W>
__global__ void __launch_bounds__(kThreads) mmaKernel(WeightOnlyParams p) {
  using BT = BTile<Bits>;
  extern __shared__ __align__(16) uint8_t smem[];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int warpM = warp / 4, warpN = warp % 4;
  const int g = lane / 4, t = lane % 4;
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  const int M = p.M, N = W::rows(p), K = W::cols(p), groupSize = W::groupSize(p);
  const bool hasZeros = W::hasZeros(p);
  // This block's k-tiles: all of them, or its split's contiguous range.
  const int kTilesAll = K / kBK, tilesPerSplit = (kTilesAll + gridDim.z - 1) / gridDim.z;
  const int ktBegin = min(kTilesAll, int(blockIdx.z) * tilesPerSplit);
  const int kTiles = min(kTilesAll, ktBegin + tilesPerSplit) - ktBegin;
  const int64_t wordsPerRow = int64_t(K) * Bits / 32;
  const XT *x = static_cast<const XT *>(p.x);

  auto tileA = [&](int stage) {
    return reinterpret_cast<XT *>(smem + stage * stageBytes<Bits>());
  };
  auto tileB = [&](int stage) {
    return reinterpret_cast<uint32_t *>(smem + stage * stageBytes<Bits>() + kBM * kAStride * 2);
  };

  // it: the block's own k-tile index (0 .. kTiles); kt: the global one.
  auto loadTile = [&](int it, int stage) {
    const int kt = ktBegin + it;
    XT *sA = tileA(stage);
#pragma unroll
    for (int i = 0; i < kBM * kBK / 8 / kThreads; ++i) {
      const int c = tid + i * kThreads, row = c / (kBK / 8), col = c % (kBK / 8);
      const bool ok = m0 + row < M;
      const XT *src = x + int64_t(ok ? m0 + row : 0) * K + kt * kBK + col * 8;
      cpAsync16(sA + row * kAStride + col * 8, src, ok);
    }
    uint32_t *sB = tileB(stage);
#pragma unroll
    for (int i = 0; i < kBN * BT::kVecs / kThreads; ++i) {
      const int c = tid + i * kThreads, row = c / BT::kVecs, col = c % BT::kVecs;
      const bool ok = n0 + row < N;
      const uint32_t *src =
          p.codes + int64_t(ok ? n0 + row : 0) * wordsPerRow + kt * BT::kWords + col * 4;
      cpAsync16(sB + row * BT::kStride + col * 4, src, ok);
    }
  };

  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc[i][j][e] = 0.f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < kTiles)
      loadTile(s, s);
    cpAsyncCommit();
  }

  const float zSym = float(1 << (Bits - 1));
  for (int it = 0; it < kTiles; ++it) {
    const int kt = ktBegin + it;
    // Scales of this thread's 4 columns for the tile's two 32-column halves;
    // issued before the wait so their latency overlaps it.
    float sc[2][4], zr[2][4], zs[2][4];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t grp = (kt * kBK + h * 32) / groupSize;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int n = n0 + warpN * 32 + j * 8 + g;
        const bool ok = n < N;
        sc[h][j] = ok ? halfBitsToF32(__ldg(p.scales + grp * N + n)) : 0.f;
        zr[h][j] = ok && hasZeros ? halfBitsToF32(__ldg(p.zeros + grp * N + n)) : zSym;
        zs[h][j] = (128.f + zr[h][j]) * sc[h][j]; // exact: int4's dequantFragment
      }
    }

    cpAsyncWait<kStages - 2>();
    __syncthreads();
    // The stage refilled here was read in iteration it - 1, which every
    // thread has finished (the barrier above).
    const int next = it + kStages - 1;
    if (next < kTiles)
      loadTile(next, next % kStages);
    cpAsyncCommit();

    const XT *sA = tileA(it % kStages);
    const uint32_t *sB = tileB(it % kStages);
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      uint32_t a[2][4];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        ldmatrixX4(a[i], sA + (warpM * 32 + i * 16 + lane % 16) * kAStride + kk * 16 +
                             (lane / 16) * 8);
      uint32_t b[4][2];
#pragma unroll
      for (int j = 0; j < 4; ++j)
        dequantFragment<XT, Bits>(sB + (warpN * 32 + j * 8 + g) * BT::kStride, kk, t,
                                  sc[kk / 2][j], zr[kk / 2][j], zs[kk / 2][j], b[j]);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          mma16816(acc[i][j], a[i], b[j], XT());
    }
  }
  cpAsyncWait<0>();

  if (p.partial) {
    // Split-K: this split's fp32 sums, no bias (splitKReduce adds it once).
    float *out = p.partial + int64_t(blockIdx.z) * M * N;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + warpN * 32 + j * 8 + 2 * t;
      if (n >= N)
        continue;
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int m = m0 + warpM * 32 + i * 16 + g + 8 * h;
          if (m < M)
            *reinterpret_cast<float2 *>(out + int64_t(m) * N + n) =
                make_float2(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
        }
    }
    return;
  }

  const XT *bias = static_cast<const XT *>(p.bias);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int n = n0 + warpN * 32 + j * 8 + 2 * t;
    if (n >= N)
      continue;
    const float b0 = bias ? toF32(bias[n]) : 0.f, b1 = bias ? toF32(bias[n + 1]) : 0.f;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int m = m0 + warpM * 32 + i * 16 + g + 8 * h;
        if (m < M) {
          storeOut(p.y, int64_t(m) * N + n, acc[i][j][2 * h] + b0, p.yType);
          storeOut(p.y, int64_t(m) * N + n + 1, acc[i][j][2 * h + 1] + b1, p.yType);
        }
      }
  }
}

/// y[m, n] = sum over splits of partial[z][m][n] (in split order) + bias.
template <typename XT>
__global__ void splitKReduce(const float *partial, int splits, const XT *bias, void *y, int yType,
                             int M, int N) {
  const int64_t total = int64_t(M) * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int z = 0; z < splits; ++z)
      v += partial[int64_t(z) * total + i];
    if (bias)
      v += toF32(bias[i % N]);
    storeOut(y, i, v, yType);
  }
}

} // namespace qcuda::detail::mma

namespace qcuda::detail {

/// Enqueues the tensor-core kernel (any M); with p.splitK > 1 and
/// p.partial (splitK * M * N floats), split-K and its reduction.
template <typename XT, int Bits, class W>
cudaError_t launchMma(const WeightOnlyParams &p, cudaStream_t stream) {
  using namespace mma;
  constexpr int bytes = kStages * stageBytes<Bits>();
  auto kernel = mmaKernel<XT, Bits, W>;
  // Above 48 KiB a block needs the larger dynamic limit set explicitly.
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err != cudaSuccess)
    return err;
  const int splits = p.partial && p.splitK > 1 ? p.splitK : 1;
  WeightOnlyParams q = p;
  if (splits == 1)
    q.partial = nullptr;
  const dim3 grid(unsigned((W::rows(p) + kBN - 1) / kBN), unsigned((p.M + kBM - 1) / kBM),
                  unsigned(splits));
  kernel<<<grid, kThreads, bytes, stream>>>(q);
  if (splits > 1) {
    if ((err = cudaGetLastError()) != cudaSuccess)
      return err;
    const int64_t total = int64_t(p.M) * W::rows(p);
    const unsigned blocks = unsigned(std::min<int64_t>((total + 255) / 256, 4096));
    splitKReduce<XT><<<blocks, 256, 0, stream>>>(p.partial, splits, static_cast<const XT *>(p.bias),
                                                 p.y, p.yType, p.M, W::rows(p));
  }
  return cudaGetLastError();
}

} // namespace qcuda::detail

#endif
