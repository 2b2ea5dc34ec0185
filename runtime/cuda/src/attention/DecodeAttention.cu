//===- DecodeAttention.cu - split-KV paged decode attention -----------------===//
//
// Flash decoding over the paged pool. Decode reads every K/V byte of every
// sequence once per step and does ~2 flops per byte, so the kernel is a
// memory stream: the design goal is that each byte is read once (all query
// heads of a GQA group share one block of threads, so K/V are not re-read
// per query head) with 16-byte loads and several loads in flight per thread.
//
// Kernel 1, grid (chunk, kv head x head tile, sequence): one block takes up
// to `chunk` tokens of one sequence for one KV head and up to GT of its
// query heads. A row of D elements is read by D / kPerVec threads (16 bytes
// each); 128 threads cover 128 * kPerVec / D tokens per pass.
//   pass 1: scores = q . k (q slice in registers, dot reduced by shuffles)
//           into shared memory (the chunk's scores fit: GT x 512 floats);
//   pass 2: chunk max and exp-sum per query head;
//   pass 3: unnormalized sum_t p_t v_t per query head, reduced across the
//           threads that read different tokens.
// Kernel 2 merges a sequence's chunks (log-sum-exp) into the bf16 output.
// Scales: the softmax scale and the K scale multiply the score, the V scale
// the chunk output, never each element.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/Attention.h"

#include "AttentionShapes.h"
#include "KVElement.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

namespace qcuda {
namespace {

using detail::KVElem;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
/// Largest chunk of tokens one block takes; also the scores buffer length.
constexpr int kMaxChunk = 512;
/// Smallest chunk the host picks; bounds the number of chunks (workspace).
constexpr int kMinChunk = 64;
/// Query heads one block serves at most (GQA groups up to 8 in one block,
/// larger groups in tiles of 8).
constexpr int kMaxHeadTile = 8;

struct DecodeParams {
  const void *k;
  const void *v;
  const float *kScale; ///< null: 1
  const float *vScale;
  const int32_t *contextLens;
  const int32_t *blockTableStart;
  const int32_t *blockTable;
  const __nv_bfloat16 *q;
  __nv_bfloat16 *out;
  float *partOut; ///< [seqs, heads, maxSplits, D]
  float *partMax; ///< [seqs, heads, maxSplits]
  float *partSum;
  int64_t qStride;
  int64_t outStride;
  int32_t blockSize;
  int32_t kvHeads;
  int32_t numHeads;
  int32_t group;     ///< query heads per KV head
  int32_t headTiles; ///< ceil(group / GT)
  int32_t chunk;
  int32_t maxSplits;
  int32_t maxContext;
  float softmaxScale;
};

template <int D, int GT, KVDType T>
__global__ void __launch_bounds__(kThreads) decodeChunkKernel(DecodeParams p) {
  using E = KVElem<T>;
  using Storage = typename E::Storage;
  constexpr int VEC = E::kPerVec;
  constexpr int TPT = D / VEC;       // threads per token row
  constexpr int TOK = kThreads / TPT; // tokens per pass
  constexpr int U = 2;                // passes whose loads are issued together
  static_assert(TPT <= 32 && 32 % TPT == 0, "a token row must sit in one warp");

  __shared__ float scores[GT][kMaxChunk];
  __shared__ float warpAcc[kWarps][GT][D];
  __shared__ float chunkMax[GT], chunkSum[GT];

  const int split = blockIdx.x;
  const int kvh = blockIdx.y / p.headTiles;
  const int tile = blockIdx.y % p.headTiles;
  const int seq = blockIdx.z;
  const int ctx = min(p.contextLens[seq], p.maxContext);
  const int t0 = split * p.chunk;
  if (t0 >= ctx)
    return;
  const int n = min(ctx - t0, p.chunk);
  const int h0 = kvh * p.group + tile * GT;
  const int nh = min(GT, p.group - tile * GT);
  const int lane = threadIdx.x % TPT, slot = threadIdx.x / TPT;
  const int32_t *table = p.blockTable + p.blockTableStart[seq];
  const Storage *kBase = static_cast<const Storage *>(p.k);
  const Storage *vBase = static_cast<const Storage *>(p.v);
  auto rowPtr = [&](const Storage *base, int tok) {
    const int pos = t0 + tok;
    return base + detail::kvOffset(table[pos / p.blockSize], pos % p.blockSize, kvh,
                                   p.blockSize, p.kvHeads, D) +
           lane * VEC;
  };

  float qr[GT][VEC];
#pragma unroll
  for (int g = 0; g < GT; ++g)
#pragma unroll
    for (int i = 0; i < VEC; ++i)
      qr[g][i] = g < nh ? __bfloat162float(p.q[seq * p.qStride + int64_t(h0 + g) * D +
                                               lane * VEC + i])
                        : 0.0f;
  const float scoreScale = p.softmaxScale * (p.kScale ? p.kScale[kvh] : 1.0f);

  // Pass 1: scores.
  for (int base = 0; base < n; base += TOK * U) {
    uint4 raw[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int tok = base + u * TOK + slot;
      raw[u] = tok < n ? *reinterpret_cast<const uint4 *>(rowPtr(kBase, tok))
                       : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[VEC];
      E::widen(raw[u], kf);
      float dot[GT];
#pragma unroll
      for (int g = 0; g < GT; ++g) {
        dot[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < VEC; ++i)
          dot[g] = fmaf(qr[g][i], kf[i], dot[g]);
#pragma unroll
        for (int off = TPT / 2; off > 0; off /= 2)
          dot[g] += __shfl_xor_sync(0xffffffffu, dot[g], off);
      }
      const int tok = base + u * TOK + slot;
      if (lane == 0 && tok < n)
#pragma unroll
        for (int g = 0; g < GT; ++g)
          scores[g][tok] = dot[g] * scoreScale;
    }
  }
  __syncthreads();

  // Pass 2: per query head, the chunk's max and the weights exp(s - max).
  const int warp = threadIdx.x / 32, wl = threadIdx.x % 32;
  for (int g = warp; g < GT; g += kWarps) {
    float m = -INFINITY;
    for (int t = wl; t < n; t += 32)
      m = fmaxf(m, scores[g][t]);
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    float sum = 0.0f;
    for (int t = wl; t < n; t += 32) {
      const float e = expf(scores[g][t] - m);
      scores[g][t] = e;
      sum += e;
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
      sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (wl == 0) {
      chunkMax[g] = m;
      chunkSum[g] = sum;
    }
  }
  __syncthreads();

  // Pass 3: sum_t p_t v_t.
  float acc[GT][VEC];
#pragma unroll
  for (int g = 0; g < GT; ++g)
#pragma unroll
    for (int i = 0; i < VEC; ++i)
      acc[g][i] = 0.0f;
  for (int base = 0; base < n; base += TOK * U) {
    uint4 raw[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int tok = base + u * TOK + slot;
      raw[u] = tok < n ? *reinterpret_cast<const uint4 *>(rowPtr(vBase, tok))
                       : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int tok = base + u * TOK + slot;
      if (tok < n) {
        float vf[VEC];
        E::widen(raw[u], vf);
#pragma unroll
        for (int g = 0; g < GT; ++g) {
          const float w = scores[g][tok];
#pragma unroll
          for (int i = 0; i < VEC; ++i)
            acc[g][i] = fmaf(w, vf[i], acc[g][i]);
        }
      }
    }
  }
  // Threads of a warp that read different tokens hold the same elements
  // (lanes TPT apart): fold them, then the warps through shared memory.
#pragma unroll
  for (int g = 0; g < GT; ++g)
#pragma unroll
    for (int i = 0; i < VEC; ++i)
#pragma unroll
      for (int off = TPT; off < 32; off *= 2)
        acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], off);
  if (wl < TPT)
#pragma unroll
    for (int g = 0; g < GT; ++g)
#pragma unroll
      for (int i = 0; i < VEC; ++i)
        warpAcc[warp][g][lane * VEC + i] = acc[g][i];
  __syncthreads();

  const float vs = p.vScale ? p.vScale[kvh] : 1.0f;
  for (int idx = threadIdx.x; idx < nh * D; idx += kThreads) {
    const int g = idx / D, d = idx % D;
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w)
      s += warpAcc[w][g][d];
    const int64_t row = (int64_t(seq) * p.numHeads + h0 + g) * p.maxSplits + split;
    p.partOut[row * D + d] = s * vs;
    if (d == 0) {
      p.partMax[row] = chunkMax[g];
      p.partSum[row] = chunkSum[g];
    }
  }
}

/// Merges the chunks of one (sequence, query head): grid (heads, seqs),
/// D threads, one output element each.
template <int D>
__global__ void __launch_bounds__(D) decodeMergeKernel(DecodeParams p) {
  const int h = blockIdx.x, seq = blockIdx.y, d = threadIdx.x;
  const int ctx = min(p.contextLens[seq], p.maxContext);
  __nv_bfloat16 *o = p.out + seq * p.outStride + int64_t(h) * D + d;
  if (ctx <= 0) {
    *o = __float2bfloat16_rn(0.0f);
    return;
  }
  const int splits = (ctx + p.chunk - 1) / p.chunk;
  const int64_t row0 = (int64_t(seq) * p.numHeads + h) * p.maxSplits;
  float m = -INFINITY;
  for (int i = 0; i < splits; ++i)
    m = fmaxf(m, p.partMax[row0 + i]);
  float sum = 0.0f, acc = 0.0f;
  for (int i = 0; i < splits; ++i) {
    const float w = expf(p.partMax[row0 + i] - m);
    sum = fmaf(w, p.partSum[row0 + i], sum);
    acc = fmaf(w, p.partOut[(row0 + i) * D + d], acc);
  }
  *o = __float2bfloat16_rn(acc / sum);
}

int headTileFor(int group) {
  return group >= kMaxHeadTile ? kMaxHeadTile : group >= 4 ? 4 : group >= 2 ? 2 : 1;
}

template <int D, int GT>
void launchChunks(KVDType t, dim3 grid, const DecodeParams &p, cudaStream_t s) {
  switch (t) {
  case KVDType::BF16:
    decodeChunkKernel<D, GT, KVDType::BF16><<<grid, kThreads, 0, s>>>(p);
    break;
  case KVDType::F16:
    decodeChunkKernel<D, GT, KVDType::F16><<<grid, kThreads, 0, s>>>(p);
    break;
  case KVDType::I8:
    decodeChunkKernel<D, GT, KVDType::I8><<<grid, kThreads, 0, s>>>(p);
    break;
  case KVDType::FP8E4M3:
    decodeChunkKernel<D, GT, KVDType::FP8E4M3><<<grid, kThreads, 0, s>>>(p);
    break;
  }
}

template <int D>
void launchDecode(KVDType t, int gt, dim3 grid, const DecodeParams &p, cudaStream_t s) {
  switch (gt) {
  case 1:
    launchChunks<D, 1>(t, grid, p, s);
    break;
  case 2:
    launchChunks<D, 2>(t, grid, p, s);
    break;
  case 4:
    launchChunks<D, 4>(t, grid, p, s);
    break;
  default:
    launchChunks<D, 8>(t, grid, p, s);
    break;
  }
  decodeMergeKernel<D><<<dim3(p.numHeads, grid.z), D, 0, s>>>(p);
}

int maxSplitsBound(int maxContext) { return std::max(1, (maxContext + kMinChunk - 1) / kMinChunk); }

bool fail(std::string *error, const std::string &msg) {
  if (error)
    *error = msg;
  return false;
}

} // namespace

size_t decodeAttentionWorkspaceBytes(const PagedKV &kv, const PagedSequences &seqs,
                                     const AttentionHeads &heads) {
  const size_t rows = size_t(std::max(0, seqs.numSeqs)) * size_t(std::max(0, heads.numHeads)) *
                      size_t(maxSplitsBound(seqs.maxContextLen));
  return rows * (size_t(std::max(0, kv.headDim)) + 2) * sizeof(float);
}

bool decodeAttention(const PagedKV &kv, const PagedSequences &seqs, const AttentionHeads &heads,
                     const void *q, void *out, void *workspace, size_t workspaceBytes,
                     cudaStream_t stream, std::string *error) {
  std::string e = detail::checkAttentionShapes(kv, seqs, heads, "decode attention");
  if (!e.empty())
    return fail(error, e);
  if (seqs.numSeqs == 0)
    return true;
  if (!q || !out)
    return fail(error, "decode attention: q or out is null");
  const size_t need = decodeAttentionWorkspaceBytes(kv, seqs, heads);
  if (!workspace || workspaceBytes < need)
    return fail(error, "decode attention: workspace of " + std::to_string(workspaceBytes) +
                           " bytes, " + std::to_string(need) + " needed");

  const int group = heads.numHeads / kv.kvHeads;
  const int gt = headTileFor(group);
  const int headTiles = (group + gt - 1) / gt;
  // Halve the chunk while the grid would leave the multiprocessors idle:
  // small batches of short contexts need more, smaller chunks.
  int dev = 0, sms = 132;
  if (cudaGetDevice(&dev) == cudaSuccess)
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int maxCtx = std::max(1, seqs.maxContextLen);
  int chunk = kMaxChunk;
  auto blocks = [&](int c) {
    return int64_t(seqs.numSeqs) * kv.kvHeads * headTiles * ((maxCtx + c - 1) / c);
  };
  while (chunk > kMinChunk && blocks(chunk) < 2 * int64_t(sms))
    chunk /= 2;

  DecodeParams p;
  p.k = kv.k;
  p.v = kv.v;
  const bool quant = kv.dtype == KVDType::I8 || kv.dtype == KVDType::FP8E4M3;
  p.kScale = quant ? kv.kScale : nullptr;
  p.vScale = quant ? kv.vScale : nullptr;
  p.contextLens = seqs.contextLens;
  p.blockTableStart = seqs.blockTableStart;
  p.blockTable = seqs.blockTable;
  p.q = static_cast<const __nv_bfloat16 *>(q);
  p.out = static_cast<__nv_bfloat16 *>(out);
  p.maxSplits = maxSplitsBound(seqs.maxContextLen);
  const size_t rows = size_t(seqs.numSeqs) * heads.numHeads * p.maxSplits;
  p.partOut = static_cast<float *>(workspace);
  p.partMax = p.partOut + rows * kv.headDim;
  p.partSum = p.partMax + rows;
  p.qStride = heads.qStride;
  p.outStride = heads.outStride;
  p.blockSize = kv.blockSize;
  p.kvHeads = kv.kvHeads;
  p.numHeads = heads.numHeads;
  p.group = group;
  p.headTiles = headTiles;
  p.chunk = chunk;
  p.maxContext = seqs.maxContextLen;
  p.softmaxScale = 1.0f / std::sqrt(float(kv.headDim));

  const dim3 grid((maxCtx + chunk - 1) / chunk, kv.kvHeads * headTiles, seqs.numSeqs);
  if (kv.headDim == 64)
    launchDecode<64>(kv.dtype, gt, grid, p, stream);
  else
    launchDecode<128>(kv.dtype, gt, grid, p, stream);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return fail(error, std::string("decode attention: launch failed: ") + cudaGetErrorString(err));
  return true;
}

} // namespace qcuda
