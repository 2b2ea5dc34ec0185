//===- PrefillAttention.cu - paged causal attention for prefill chunks -----===//
//
// prefillAttention: checks the arguments and picks the kernel, the
// tensor-core one (PrefillAttentionMma.cu) for bf16 / f16 pools unless told
// otherwise, and this file's fp32-FMA kernel for the rest.
//
// The FMA kernel: flash attention on shared-memory tiles, plain fp32 FMAs.
// One block of 256 threads takes 64 query tokens of one sequence for one
// query head; K/V tiles of 32 positions are gathered through the block
// table, widened to fp32 (scale applied) into shared memory, and folded into
// the output with an online softmax. Each thread owns 2 query rows: the 2 x 4
// scores it computes and the 2 x D/8 output elements it accumulates belong
// to the same rows, so the running max / sum rescale stays in registers; the
// 8 threads that share a row are adjacent lanes and reduce with shuffles.
// It serves int8 / fp8 pools (dequantized while widening) and is the
// reference the tensor-core kernel is tested against.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/Attention.h"

#include "AttentionShapes.h"
#include "KVElement.cuh"
#include "PrefillKernels.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>

namespace qcuda {
namespace {

using detail::KVElem;
using detail::PagedReadParams;
using detail::PrefillParams;
using detail::pagedRead;

constexpr int kThreads = 256;
constexpr int kBQ = 64; ///< query rows per block
constexpr int kBK = 32; ///< key positions per tile

template <int D> constexpr size_t prefillSmemBytes() {
  // Q [64][D+1], K [32][D+1], V [32][D], P [64][33] floats. The +1 rows keep
  // the column walks of Q and K on distinct banks.
  return sizeof(float) * (kBQ * (D + 1) + kBK * (D + 1) + kBK * D + kBQ * (kBK + 1));
}

template <int D, KVDType T>
__global__ void __launch_bounds__(kThreads) prefillKernel(PrefillParams p) {
  using E = KVElem<T>;
  using Storage = typename E::Storage;
  constexpr int VEC = E::kPerVec;
  constexpr int QP = D + 1, KP = D + 1, PP = kBK + 1;
  constexpr int CPT = D / 8; // output columns per thread

  extern __shared__ float smem[];
  float *Qs = smem;
  float *Ks = Qs + kBQ * QP;
  float *Vs = Ks + kBK * KP;
  float *Ps = Vs + kBK * D;

  const int seq = blockIdx.z, h = blockIdx.y, kvh = h / p.group;
  const int q0 = p.queryStart[seq];
  const int qlen = p.queryStart[seq + 1] - q0;
  const int tileStart = blockIdx.x * kBQ;
  if (tileStart >= qlen)
    return;
  const int nq = min(kBQ, qlen - tileStart);
  const int ctx = p.contextLens[seq];
  const int firstPos = ctx - qlen; // position of the chunk's first token
  // Keys this tile can see: up to its last query's position.
  const int kend = min(ctx, firstPos + tileStart + nq);
  const int32_t *table = p.blockTable + p.blockTableStart[seq];
  const Storage *kBase = static_cast<const Storage *>(p.k);
  const Storage *vBase = static_cast<const Storage *>(p.v);
  const float ks = p.kScale ? p.kScale[kvh] : 1.0f;
  const float vs = p.vScale ? p.vScale[kvh] : 1.0f;

  for (int i = threadIdx.x; i < kBQ * D; i += kThreads) {
    const int r = i / D, d = i % D;
    Qs[r * QP + d] = r < nq ? __bfloat162float(p.q[int64_t(q0 + tileStart + r) * p.qStride +
                                                   int64_t(h) * D + d]) *
                                  p.softmaxScale
                            : 0.0f;
  }

  const int tx = threadIdx.x % 8, ty = threadIdx.x / 8;
  const int r0 = 2 * ty;
  int qpos[2];
  float m[2], l[2], acc[2][CPT];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    qpos[r] = firstPos + tileStart + r0 + r;
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int j = 0; j < CPT; ++j)
      acc[r][j] = 0.0f;
  }

  for (int kt = 0; kt < kend; kt += kBK) {
    __syncthreads(); // the previous tile's K/V/P are consumed (and Q written)
    for (int i = threadIdx.x; i < kBK * (D / VEC); i += kThreads) {
      const int key = i / (D / VEC), part = i % (D / VEC);
      const int pos = kt + key;
      float kf[VEC], vf[VEC];
      if (pos < kend) {
        const int64_t off = detail::kvOffset(table[pos / p.blockSize], pos % p.blockSize, kvh,
                                             p.blockSize, p.kvHeads, D) +
                            part * VEC;
        E::widen(*reinterpret_cast<const uint4 *>(kBase + off), kf);
        E::widen(*reinterpret_cast<const uint4 *>(vBase + off), vf);
      } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e)
          kf[e] = vf[e] = 0.0f;
      }
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        Ks[key * KP + part * VEC + e] = kf[e] * ks;
        Vs[key * D + part * VEC + e] = vf[e] * vs;
      }
    }
    __syncthreads();

    float s[2][4];
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        s[r][j] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < D; ++d) {
      const float qa = Qs[r0 * QP + d], qb = Qs[(r0 + 1) * QP + d];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float kv = Ks[(tx + 8 * j) * KP + d];
        s[0][j] = fmaf(qa, kv, s[0][j]);
        s[1][j] = fmaf(qb, kv, s[1][j]);
      }
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float tileMax = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int pos = kt + tx + 8 * j;
        if (pos > qpos[r] || pos >= kend)
          s[r][j] = -INFINITY;
        tileMax = fmaxf(tileMax, s[r][j]);
      }
#pragma unroll
      for (int off = 4; off > 0; off /= 2)
        tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, off));
      const float mNew = fmaxf(m[r], tileMax);
      // A row with nothing visible yet keeps m = -inf; its weights are 0.
      const float corr = mNew == -INFINITY ? 1.0f : expf(m[r] - mNew);
      float rowSum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float e = mNew == -INFINITY ? 0.0f : expf(s[r][j] - mNew);
        Ps[(r0 + r) * PP + tx + 8 * j] = e;
        rowSum += e;
      }
#pragma unroll
      for (int off = 4; off > 0; off /= 2)
        rowSum += __shfl_xor_sync(0xffffffffu, rowSum, off);
      l[r] = l[r] * corr + rowSum;
      m[r] = mNew;
#pragma unroll
      for (int j = 0; j < CPT; ++j)
        acc[r][j] *= corr;
    }
    __syncwarp(); // P rows are written and read by the same warp

#pragma unroll 4
    for (int key = 0; key < kBK; ++key) {
      const float pa = Ps[r0 * PP + key], pb = Ps[(r0 + 1) * PP + key];
#pragma unroll
      for (int j = 0; j < CPT; ++j) {
        const float vv = Vs[key * D + tx + 8 * j];
        acc[0][j] = fmaf(pa, vv, acc[0][j]);
        acc[1][j] = fmaf(pb, vv, acc[1][j]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (r0 + r >= nq)
      continue;
    __nv_bfloat16 *o = p.out + int64_t(q0 + tileStart + r0 + r) * p.outStride + int64_t(h) * D;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
#pragma unroll
    for (int j = 0; j < CPT; ++j)
      o[tx + 8 * j] = __float2bfloat16_rn(acc[r][j] * inv);
  }
}

template <int D, KVDType T>
cudaError_t launchPrefill(dim3 grid, const PrefillParams &p, cudaStream_t s) {
  constexpr size_t smem = prefillSmemBytes<D>();
  // Above 48 KB a kernel must opt in to dynamic shared memory.
  cudaError_t e = cudaFuncSetAttribute(prefillKernel<D, T>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e != cudaSuccess)
    return e;
  prefillKernel<D, T><<<grid, kThreads, smem, s>>>(p);
  return cudaGetLastError();
}

template <int D> cudaError_t launchPrefillD(KVDType t, dim3 grid, const PrefillParams &p,
                                            cudaStream_t s) {
  switch (t) {
  case KVDType::BF16:
    return launchPrefill<D, KVDType::BF16>(grid, p, s);
  case KVDType::F16:
    return launchPrefill<D, KVDType::F16>(grid, p, s);
  case KVDType::I8:
    return launchPrefill<D, KVDType::I8>(grid, p, s);
  case KVDType::FP8E4M3:
    return launchPrefill<D, KVDType::FP8E4M3>(grid, p, s);
  }
  return cudaErrorInvalidValue;
}

/// QCUDA_PREFILL_FMA set (to anything but "0") makes Auto pick the FMA
/// kernel: read once, so a process keeps one choice.
bool fmaForcedByEnvironment() {
  static const bool forced = [] {
    const char *v = std::getenv("QCUDA_PREFILL_FMA");
    return v && *v && std::string(v) != "0";
  }();
  return forced;
}

} // namespace

bool prefillAttention(const PagedKV &kv, const PagedSequences &seqs, const int32_t *queryStart,
                      int32_t maxQueryLen, const AttentionHeads &heads, const void *q, void *out,
                      cudaStream_t stream, std::string *error, PrefillKernel kernel) {
  std::string e = detail::checkAttentionShapes(kv, seqs, heads, "prefill attention");
  if (e.empty() && maxQueryLen < 0)
    e = "prefill attention: negative maximum query length";
  if (e.empty() && seqs.numSeqs > 0 && maxQueryLen > 0 && (!queryStart || !q || !out))
    e = "prefill attention: queryStart, q or out is null";
  const bool mmaType = kv.dtype == KVDType::BF16 || kv.dtype == KVDType::F16;
  if (e.empty() && kernel == PrefillKernel::TensorCore && !mmaType)
    e = std::string("prefill attention: the tensor-core kernel needs a bf16 or f16 KV pool, not ") +
        (kv.dtype == KVDType::I8 ? "int8" : "fp8_e4m3");
  if (!e.empty()) {
    if (error)
      *error = e;
    return false;
  }
  if (seqs.numSeqs == 0 || maxQueryLen == 0)
    return true;
  PrefillParams p;
  static_cast<PagedReadParams &>(p) = pagedRead(kv, seqs, heads, q, out);
  p.queryStart = queryStart;
  const bool useMma = kernel == PrefillKernel::TensorCore ||
                      (kernel == PrefillKernel::Auto && mmaType && !fmaForcedByEnvironment());
  cudaError_t err;
  if (useMma) {
    err = detail::launchPrefillMma(p, kv.dtype, kv.headDim, seqs.numSeqs, heads.numHeads,
                                   maxQueryLen, stream);
  } else {
    const dim3 grid((maxQueryLen + kBQ - 1) / kBQ, heads.numHeads, seqs.numSeqs);
    err = kv.headDim == 64 ? launchPrefillD<64>(kv.dtype, grid, p, stream)
                           : launchPrefillD<128>(kv.dtype, grid, p, stream);
  }
  if (err != cudaSuccess) {
    if (error)
      *error = std::string("prefill attention: ") + (useMma ? "tensor-core" : "FMA") +
               " kernel launch failed: " + cudaGetErrorString(err);
    return false;
  }
  return true;
}

} // namespace qcuda
