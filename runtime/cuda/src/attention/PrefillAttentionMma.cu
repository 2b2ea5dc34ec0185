//===- PrefillAttentionMma.cu - tensor-core paged prefill attention --------===//
//
// FlashAttention-2 over the paged pool for bf16 and f16 pools, on
// mma.sync.m16n8k16 (inputs in the pool's type, fp32 accumulation). One
// block of 4 warps takes 64 query tokens of one sequence for one query head;
// each warp owns 16 of those rows for the whole key loop, so the softmax
// state (row max, row sum) and the output accumulator stay in its registers.
//
// Per tile of 64 key positions: K and V rows are gathered through the block
// table with cp.async into shared memory (two buffers: the next tile's
// copies are in flight while this one is used); S = Q K^T from ldmatrix
// fragments (Q's loaded once), scaled and masked in fp32 (causal: query row
// j of a chunk of n sits at position context - n + j), online softmax with
// the row max reduced over the 4 lanes of a quad, then P (rounded to the
// pool's 16-bit type) times V from ldmatrix.trans fragments. Tiles that start
// past the block's last query position are never loaded.
//
// One query head per block, heads of one KV group adjacent in the grid: a
// block's 64 query rows are its tile height whatever the grouping, so
// packing a group's heads into the rows would not cut K/V traffic for long
// chunks (the same number of 64-row tiles each read K/V once); the group's
// blocks run together and re-read the tiles from L2. Short chunks (few
// tokens, many heads per KV head) would gain from packing; not done.
//
// Shared rows are padded by 16 bytes (D + 8 elements) so the 8 rows an
// ldmatrix phase reads fall on distinct banks. Q is bf16 in memory; for an
// f16 pool it is converted to f16 (exact for |q| >= 2^-14, the normal f16
// range; smaller values lose at most 2^-25 each).
//
//===----------------------------------------------------------------------===//
#include "PrefillKernels.h"

#include "KVElement.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

namespace qcuda::detail {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBQ = 16 * kWarps; ///< query rows per block, 16 per warp
constexpr int kBK = 64;          ///< key positions per tile

/// The 16-bit input type of the mma for a pool type, and its instruction.
template <KVDType T> struct MmaInput;

template <> struct MmaInput<KVDType::BF16> {
  using Elem = __nv_bfloat16;
  static __device__ __forceinline__ Elem fromBf16(__nv_bfloat16 x) { return x; }
  /// lo in the low half: the element of the lower column, as ldmatrix and
  /// the mma fragments order them.
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
  }
  static __device__ __forceinline__ void mma(float d[4], const uint32_t a[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <> struct MmaInput<KVDType::F16> {
  using Elem = __half;
  static __device__ __forceinline__ Elem fromBf16(__nv_bfloat16 x) {
    return __float2half_rn(__bfloat162float(x));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
  }
  static __device__ __forceinline__ void mma(float d[4], const uint32_t a[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

__device__ __forceinline__ uint32_t smemAddr(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// Four 8x8 matrices of 16-bit elements; lanes 8i..8i+7 give the row
/// addresses of matrix i, r[i] receives (row lane/4, columns 2(lane%4),+1).
__device__ __forceinline__ void ldmatrixX4(uint32_t r[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}

/// As ldmatrixX4, each matrix transposed: r[i] receives (rows 2(lane%4),+1,
/// column lane/4) of the stored matrix i.
__device__ __forceinline__ void ldmatrixX4Trans(uint32_t r[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}

__device__ __forceinline__ void cpAsync16(void *dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smemAddr(dst)), "l"(src)
               : "memory");
}
__device__ __forceinline__ void cpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
/// Waits until at most N of this thread's committed groups are pending.
template <int N> __device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <int D> constexpr int rowPitch() { return D + 8; }

template <int D> constexpr size_t mmaSmemBytes() {
  // Q [64] rows, K and V [2 buffers][64] rows, 16-bit elements.
  return sizeof(uint16_t) * size_t(kBQ + 4 * kBK) * rowPitch<D>();
}

template <int D, KVDType T>
__global__ void __launch_bounds__(kThreads) prefillMmaKernel(PrefillParams p) {
  using In = MmaInput<T>;
  using Elem = typename In::Elem;
  constexpr int LD = rowPitch<D>();
  constexpr int kPieces = D / 8; // 16-byte pieces of a row
  constexpr int kNT = kBK / 8;   // n8 tiles of S per warp
  constexpr int kDT = D / 8;     // n8 tiles of O per warp

  extern __shared__ __align__(16) unsigned char smemRaw[];
  Elem *Qs = reinterpret_cast<Elem *>(smemRaw);
  Elem *Ks = Qs + kBQ * LD; // [2][kBK][LD]
  Elem *Vs = Ks + 2 * kBK * LD;

  const int h = blockIdx.x, seq = blockIdx.z, kvh = h / p.group;
  // The last query tiles see the most keys: start them first.
  const int tile = gridDim.y - 1 - blockIdx.y;
  const int q0 = p.queryStart[seq];
  const int qlen = p.queryStart[seq + 1] - q0;
  const int tileStart = tile * kBQ;
  if (tileStart >= qlen)
    return;
  const int nq = min(kBQ, qlen - tileStart);
  const int ctx = p.contextLens[seq];
  const int firstPos = ctx - qlen; // position of the chunk's first token
  // Keys this tile can see: up to its last query's position.
  const int kend = min(ctx, firstPos + tileStart + nq);
  const int nTiles = kend > 0 ? (kend + kBK - 1) / kBK : 0;
  const int32_t *table = p.blockTable + p.blockTableStart[seq];
  const Elem *kBase = static_cast<const Elem *>(p.k);
  const Elem *vBase = static_cast<const Elem *>(p.v);

  // Positions at or past kend are never read (their blocks may not exist):
  // their rows are zeros, so V's padding adds 0 * 0, never 0 * NaN.
  auto loadTile = [&](int t, int buf) {
    Elem *kd = Ks + buf * kBK * LD;
    Elem *vd = Vs + buf * kBK * LD;
    for (int i = threadIdx.x; i < kBK * kPieces; i += kThreads) {
      const int key = i / kPieces, part = i % kPieces, pos = t * kBK + key;
      Elem *kdst = kd + key * LD + part * 8;
      Elem *vdst = vd + key * LD + part * 8;
      if (pos < kend) {
        const int64_t off = kvOffset(table[pos / p.blockSize], pos % p.blockSize, kvh,
                                     p.blockSize, p.kvHeads, D) +
                            part * 8;
        cpAsync16(kdst, kBase + off);
        cpAsync16(vdst, vBase + off);
      } else {
        *reinterpret_cast<uint4 *>(kdst) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4 *>(vdst) = make_uint4(0, 0, 0, 0);
      }
    }
    cpAsyncCommit();
  };
  if (nTiles > 0)
    loadTile(0, 0);

  // Q rows past the chunk are zeros (their outputs are not stored).
  for (int i = threadIdx.x; i < kBQ * D; i += kThreads) {
    const int r = i / D, d = i % D;
    Qs[r * LD + d] = In::fromBf16(
        r < nq ? p.q[int64_t(q0 + tileStart + r) * p.qStride + int64_t(h) * D + d]
               : __float2bfloat16_rn(0.0f));
  }
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int quadRow = lane / 4, quadCol = lane % 4;
  // This thread's accumulator rows: warp*16 + quadRow and 8 below it.
  const int row0 = warp * 16 + quadRow;
  const int qpos[2] = {firstPos + tileStart + row0, firstPos + tileStart + row0 + 8};
  const float scaleLog2 = p.softmaxScale * 1.4426950408889634f; // exp(x) = 2^(x log2 e)

  // A fragments of this warp's 16 Q rows, one per 16 columns of head_dim.
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks)
    ldmatrixX4(qf[ks], Qs + (warp * 16 + lane % 8 + (lane / 8) % 2 * 8) * LD + ks * 16 +
                           lane / 16 * 8);

  float o[kDT][4];
#pragma unroll
  for (int j = 0; j < kDT; ++j)
    o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  // Running max (scaled by log2 e) and this thread's part of the row sums;
  // the quad's parts are added at the end (they share every rescale).
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int t = 0; t < nTiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < nTiles)
      loadTile(t + 1, buf ^ 1);
    else
      cpAsyncCommit(); // an empty group: "all but the newest" stays this tile
    cpAsyncWait<1>();
    __syncthreads(); // every thread's copies (and zero rows) of tile t landed
    const Elem *kb = Ks + buf * kBK * LD;
    const Elem *vb = Vs + buf * kBK * LD;

    float s[kNT][4];
#pragma unroll
    for (int j = 0; j < kNT; ++j)
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks)
#pragma unroll
      for (int np = 0; np < kNT / 2; ++np) {
        // Matrices: keys +0..7 / +8..15 of this pair of n8 tiles, times
        // columns +0..7 / +8..15 of this k16 step; K rows are B's columns.
        uint32_t b[4];
        ldmatrixX4(b, kb + (np * 16 + lane % 8 + lane / 16 * 8) * LD + ks * 16 +
                          (lane / 8) % 2 * 8);
        In::mma(s[2 * np], qf[ks], b[0], b[1]);
        In::mma(s[2 * np + 1], qf[ks], b[2], b[3]);
      }

    // Scale and mask: element e of n8 tile j is row qpos[e / 2], key
    // t*64 + 8j + 2*quadCol + e % 2.
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int pos = t * kBK + 8 * j + 2 * quadCol + e % 2;
        s[j][e] = (pos > qpos[e / 2] || pos >= kend) ? -INFINITY : s[j][e] * scaleLog2;
      }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < kNT; ++j)
        mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mNew = fmaxf(m[r], mx);
      // A row with nothing visible yet keeps m = -inf: subtracting 0
      // instead gives weights 0 (exp2(-inf)) rather than NaN.
      const float base = mNew == -INFINITY ? 0.0f : mNew;
      const float corr = exp2f(m[r] - base);
      m[r] = mNew;
      l[r] *= corr;
#pragma unroll
      for (int j = 0; j < kDT; ++j) {
        o[j][2 * r] *= corr;
        o[j][2 * r + 1] *= corr;
      }
#pragma unroll
      for (int j = 0; j < kNT; ++j) {
        s[j][2 * r] = exp2f(s[j][2 * r] - base);
        s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - base);
        l[r] += s[j][2 * r] + s[j][2 * r + 1];
      }
    }

    // O += P V over 16 keys at a time. P's A fragment is two n8 tiles of S:
    // a0/a1 rows quadRow / +8 of keys +0..7, a2/a3 of keys +8..15.
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      const uint32_t a[4] = {In::pack(s[2 * kk][0], s[2 * kk][1]),
                             In::pack(s[2 * kk][2], s[2 * kk][3]),
                             In::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             In::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        // Matrices (transposed): keys +0..7 / +8..15 of this k16 step, times
        // columns +0..7 of this pair of n8 tiles, then +8..15.
        uint32_t b[4];
        ldmatrixX4Trans(b, vb + (kk * 16 + lane % 8 + (lane / 8) % 2 * 8) * LD + dp * 16 +
                               lane / 16 * 8);
        In::mma(o[2 * dp], a, b[0], b[1]);
        In::mma(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
    __syncthreads(); // buffer `buf` is read: tile t + 2 may be copied into it
  }
  cpAsyncWait<0>(); // only empty groups can be pending here; leave none

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int row = row0 + 8 * r;
    if (row >= nq)
      continue;
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    __nv_bfloat16 *dst =
        p.out + int64_t(q0 + tileStart + row) * p.outStride + int64_t(h) * D + 2 * quadCol;
#pragma unroll
    for (int j = 0; j < kDT; ++j) {
      dst[8 * j] = __float2bfloat16_rn(o[j][2 * r] * inv);
      dst[8 * j + 1] = __float2bfloat16_rn(o[j][2 * r + 1] * inv);
    }
  }
}

template <int D, KVDType T>
cudaError_t launchMma(dim3 grid, const PrefillParams &p, cudaStream_t s) {
  constexpr size_t smem = mmaSmemBytes<D>();
  // Above 48 KB a kernel must opt in to dynamic shared memory (85 KB at
  // head_dim 128, inside sm_89's 99 KB and sm_80/90's larger limits).
  cudaError_t e = cudaFuncSetAttribute(prefillMmaKernel<D, T>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e != cudaSuccess)
    return e;
  prefillMmaKernel<D, T><<<grid, kThreads, smem, s>>>(p);
  return cudaGetLastError();
}

} // namespace

cudaError_t launchPrefillMma(const PrefillParams &p, KVDType dtype, int headDim, int numSeqs,
                             int numHeads, int maxQueryLen, cudaStream_t stream) {
  // Heads along x: a KV group's blocks are adjacent and share K/V in L2.
  const dim3 grid(numHeads, (maxQueryLen + kBQ - 1) / kBQ, numSeqs);
  if (grid.y > 65535u || grid.z > 65535u)
    return cudaErrorInvalidConfiguration;
  const bool bf16 = dtype == KVDType::BF16;
  if (!bf16 && dtype != KVDType::F16)
    return cudaErrorInvalidValue;
  if (headDim == 64)
    return bf16 ? launchMma<64, KVDType::BF16>(grid, p, stream)
                : launchMma<64, KVDType::F16>(grid, p, stream);
  if (headDim == 128)
    return bf16 ? launchMma<128, KVDType::BF16>(grid, p, stream)
                : launchMma<128, KVDType::F16>(grid, p, stream);
  return cudaErrorInvalidValue;
}

} // namespace qcuda::detail
