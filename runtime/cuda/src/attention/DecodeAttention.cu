//===- DecodeAttention.cu - split-KV paged decode attention -----------------===//
//
// Flash decoding over the paged pool. Decode reads every K/V byte of every
// sequence once per step and does ~2 flops per byte, so the kernel is a
// memory stream: the design goal is that each byte is read once (all query
// heads of a GQA group share one block of threads, so K/V are not re-read
// per query head) with 16-byte loads and several loads in flight per thread.
//
// Kernel 1, grid (split block, kv head x head tile, sequence): one block
// takes chunks of up to `chunk` tokens of one sequence (chunk x, x + gridDim.x,
// ...: normally just one; a grid fixed for a CUDA graph may be narrower or
// wider than the context needs) for one KV head and up to GT of its query
// heads. A row of D elements is read by D / kPerVec threads (16 bytes
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
#include "PagedRead.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

namespace qcuda {
namespace {

using detail::KVElem;
using detail::PagedReadParams;
using detail::pagedRead;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
/// Largest chunk of tokens one block takes; also the scores buffer length.
constexpr int kMaxChunk = 512;
/// Smallest chunk the host picks; bounds the number of chunks (workspace).
constexpr int kMinChunk = 64;
/// Query heads one block serves at most (GQA groups up to 8 in one block,
/// larger groups in tiles of 8).
constexpr int kMaxHeadTile = 8;

struct DecodeParams : PagedReadParams {
  float *partOut; ///< [seqs, heads, maxSplits, D]
  float *partMax; ///< [seqs, heads, maxSplits]
  float *partSum;
  int32_t numHeads;
  int32_t headTiles; ///< ceil(group / GT)
  int32_t chunk;
  int32_t maxSplits;
  int32_t maxContext;
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

  const int kvh = blockIdx.y / p.headTiles;
  const int tile = blockIdx.y % p.headTiles;
  const int seq = blockIdx.z;
  const int ctx = min(p.contextLens[seq], p.maxContext);
  if (int(blockIdx.x) * p.chunk >= ctx)
    return; // no chunk of this sequence for this block (a fixed, wide grid)
  const int h0 = kvh * p.group + tile * GT;
  const int nh = min(GT, p.group - tile * GT);
  const int lane = threadIdx.x % TPT, slot = threadIdx.x / TPT;
  const int32_t *table = p.blockTable + p.blockTableStart[seq];
  const Storage *kBase = static_cast<const Storage *>(p.k);
  const Storage *vBase = static_cast<const Storage *>(p.v);

  float qr[GT][VEC];
#pragma unroll
  for (int g = 0; g < GT; ++g)
#pragma unroll
    for (int i = 0; i < VEC; ++i)
      qr[g][i] = g < nh ? __bfloat162float(p.q[seq * p.qStride + int64_t(h0 + g) * D +
                                               lane * VEC + i])
                        : 0.0f;
  const float scoreScale = p.softmaxScale * (p.kScale ? p.kScale[kvh] : 1.0f);
  const int warp = threadIdx.x / 32, wl = threadIdx.x % 32;
  const float vs = p.vScale ? p.vScale[kvh] : 1.0f;

  // The loop condition is the same for every thread of the block, so the
  // barriers inside are reached by all of them.
  for (int split = blockIdx.x; split * p.chunk < ctx; split += gridDim.x) {
    const int t0 = split * p.chunk;
    const int n = min(ctx - t0, p.chunk);
    auto rowPtr = [&](const Storage *base, int tok) {
      const int pos = t0 + tok;
      return base + detail::kvOffset(table[pos / p.blockSize], pos % p.blockSize, kvh,
                                     p.blockSize, p.kvHeads, D) +
             lane * VEC;
    };

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
    // The next chunk rewrites scores, chunkMax/chunkSum and warpAcc.
    __syncthreads();
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

int multiprocessors() {
  int dev = 0, sms = 132;
  if (cudaGetDevice(&dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    sms = 132;
  return std::max(1, sms);
}

int headTilesFor(const PagedKV &kv, const AttentionHeads &heads) {
  const int group = std::max(1, heads.numHeads / std::max(1, kv.kvHeads));
  const int gt = headTileFor(group);
  return (group + gt - 1) / gt;
}

/// Halves the chunk from the largest while the grid would leave the
/// multiprocessors idle: small batches of short contexts need more,
/// smaller chunks.
int pickChunk(const PagedKV &kv, const PagedSequences &seqs, const AttentionHeads &heads) {
  const int sms = multiprocessors();
  const int maxCtx = std::max(1, seqs.maxContextLen);
  const int64_t rows = int64_t(std::max(0, seqs.numSeqs)) * std::max(0, kv.kvHeads) *
                       headTilesFor(kv, heads);
  int chunk = kMaxChunk;
  while (chunk > kMinChunk && rows * ((maxCtx + chunk - 1) / chunk) < 2 * int64_t(sms))
    chunk /= 2;
  return chunk;
}

/// The chunk a call runs with: the launch's, or the one picked for the
/// batch (the same for the workspace query and the call: same arguments,
/// same device).
int chunkFor(const PagedKV &kv, const PagedSequences &seqs, const AttentionHeads &heads,
             const DecodeLaunch &launch) {
  return launch.chunk > 0 ? launch.chunk : pickChunk(kv, seqs, heads);
}

/// Splits the workspace holds per (sequence, query head): every split of
/// maxContext at the chunk. Sized at the chunk actually used, not the
/// smallest: at 64 a batch of long contexts would need 8x the memory.
int maxSplitsBound(int maxContext, int chunk) {
  return std::max(1, (maxContext + chunk - 1) / chunk);
}

bool fail(std::string *error, const std::string &msg) {
  if (error)
    *error = msg;
  return false;
}

} // namespace

DecodeLaunch decodeAttentionFixedLaunch(const PagedKV &kv, const PagedSequences &seqs,
                                        const AttentionHeads &heads) {
  DecodeLaunch l;
  l.chunk = pickChunk(kv, seqs, heads);
  const int splits = (std::max(1, seqs.maxContextLen) + l.chunk - 1) / l.chunk;
  const int64_t rows = std::max<int64_t>(1, int64_t(std::max(0, seqs.numSeqs)) *
                                                std::max(0, kv.kvHeads) * headTilesFor(kv, heads));
  const int64_t fill = (2 * int64_t(multiprocessors()) + rows - 1) / rows;
  l.splitBlocks = int32_t(std::min<int64_t>(splits, std::max<int64_t>(1, fill)));
  return l;
}

size_t decodeAttentionWorkspaceBytes(const PagedKV &kv, const PagedSequences &seqs,
                                     const AttentionHeads &heads, const DecodeLaunch &launch) {
  const size_t rows =
      size_t(std::max(0, seqs.numSeqs)) * size_t(std::max(0, heads.numHeads)) *
      size_t(maxSplitsBound(seqs.maxContextLen, chunkFor(kv, seqs, heads, launch)));
  return rows * (size_t(std::max(0, kv.headDim)) + 2) * sizeof(float);
}

bool decodeAttention(const PagedKV &kv, const PagedSequences &seqs, const AttentionHeads &heads,
                     const void *q, void *out, void *workspace, size_t workspaceBytes,
                     cudaStream_t stream, std::string *error, const DecodeLaunch &launch) {
  std::string e = detail::checkAttentionShapes(kv, seqs, heads, "decode attention");
  if (!e.empty())
    return fail(error, e);
  if (launch.chunk != 0 && (launch.chunk < kMinChunk || launch.chunk > kMaxChunk ||
                            (launch.chunk & (launch.chunk - 1)) != 0))
    return fail(error, "decode attention: chunk " + std::to_string(launch.chunk) +
                           " is not a power of two in [" + std::to_string(kMinChunk) + ", " +
                           std::to_string(kMaxChunk) + "]");
  if (launch.splitBlocks < 0)
    return fail(error, "decode attention: negative splitBlocks");
  if (seqs.numSeqs == 0)
    return true;
  if (!q || !out)
    return fail(error, "decode attention: q or out is null");
  const size_t need = decodeAttentionWorkspaceBytes(kv, seqs, heads, launch);
  if (!workspace || workspaceBytes < need)
    return fail(error, "decode attention: workspace of " + std::to_string(workspaceBytes) +
                           " bytes, " + std::to_string(need) + " needed");

  const int group = heads.numHeads / kv.kvHeads;
  const int gt = headTileFor(group);
  const int headTiles = (group + gt - 1) / gt;
  const int maxCtx = std::max(1, seqs.maxContextLen);
  const int chunk = chunkFor(kv, seqs, heads, launch);
  const int splitBlocks =
      launch.splitBlocks > 0 ? launch.splitBlocks : (maxCtx + chunk - 1) / chunk;

  DecodeParams p;
  static_cast<PagedReadParams &>(p) = pagedRead(kv, seqs, heads, q, out);
  p.maxSplits = maxSplitsBound(seqs.maxContextLen, chunk);
  const size_t rows = size_t(seqs.numSeqs) * heads.numHeads * p.maxSplits;
  p.partOut = static_cast<float *>(workspace);
  p.partMax = p.partOut + rows * kv.headDim;
  p.partSum = p.partMax + rows;
  p.numHeads = heads.numHeads;
  p.headTiles = headTiles;
  p.chunk = chunk;
  p.maxContext = seqs.maxContextLen;

  const dim3 grid(splitBlocks, kv.kvHeads * headTiles, seqs.numSeqs);
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
