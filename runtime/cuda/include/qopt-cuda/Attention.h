//===- Attention.h - CUDA paged attention and the KV-cache write -*- C++ -*-===//
//
// The GPU side of the paged KV pool that runtime/include/qopt-rt/serving/
// KVCache.h describes for the CPU: per layer one K and one V pool laid out
// [num_blocks, block_size, kv_heads, head_dim], sequences addressing it
// through block tables (StepBatch.h), tokens written through a slot mapping
// (slot = block * block_size + offset), int8 / fp8-e4m3 pools holding
// round(x / scale) with one scale per (layer, kv head) for K and one for V.
//
// Activations (q, k, v, attention output) are bf16 rows; math is fp32.
// Every pointer below is device memory unless it says otherwise. Functions
// check their shapes on the host and return false with a one-line *error
// (kernels are enqueued on `stream`; launch failures are reported, not
// asynchronous faults).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_ATTENTION_H
#define QOPT_CUDA_ATTENTION_H

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace qcuda {

/// Element type of a KV pool; same order and meaning as
/// qrt::serving::KVDType so the two convert by value.
enum class KVDType : uint8_t { BF16, F16, I8, FP8E4M3 };

/// Bytes of one element of `t`.
inline size_t kvElementBytes(KVDType t) {
  return (t == KVDType::BF16 || t == KVDType::F16) ? 2 : 1;
}

/// One layer's K and V pools (device memory), in the CPU layout.
struct PagedKV {
  void *k = nullptr;
  void *v = nullptr;
  int32_t numBlocks = 0;
  int32_t blockSize = 16; ///< tokens per block
  int32_t kvHeads = 0;
  int32_t headDim = 0;
  KVDType dtype = KVDType::BF16;
  /// [kvHeads] static scales (device) for int8 / fp8 pools; null otherwise.
  const float *kScale = nullptr;
  const float *vScale = nullptr;
};

/// Which sequences attend to what (device arrays, StepBatch's meaning).
struct PagedSequences {
  int32_t numSeqs = 0;
  /// Sequence i attends to positions 0 .. contextLens[i]-1 [numSeqs].
  const int32_t *contextLens = nullptr;
  /// Its block table is blockTable[blockTableStart[i] ..] [numSeqs + 1].
  const int32_t *blockTableStart = nullptr;
  const int32_t *blockTable = nullptr;
  /// Host-side upper bound of contextLens (sizes the grid; larger is only
  /// slower, smaller is an error the kernels cannot see).
  int32_t maxContextLen = 0;
};

/// Query heads and where the q rows and outputs live.
struct AttentionHeads {
  int32_t numHeads = 0; ///< query heads, a multiple of the pool's kvHeads
  /// Elements between consecutive tokens' q rows (q may sit inside a fused
  /// qkv row) and between consecutive output rows.
  int64_t qStride = 0;
  int64_t outStride = 0;
};

// --- decode ------------------------------------------------------------------

/// A launch shape for decodeAttention fixed by the caller. A CUDA graph
/// replays its launches as captured, so a captured decode step cannot size
/// its grid from that step's contexts: it takes the shape for the largest
/// context it may see (decodeAttentionFixedLaunch) and blocks with no work
/// for a shorter context exit at once. The chunk also decides the order of
/// the fp32 sums: two calls with the same chunk give bitwise the same
/// output whatever their grids. Zero fields: picked from the batch.
struct DecodeLaunch {
  /// Tokens per split: a power of two in [64, 512].
  int32_t chunk = 0;
  /// Blocks per (sequence, KV head tile) along the context; block x takes
  /// splits x, x + splitBlocks, ... of its sequence. 0: one per split of
  /// maxContextLen.
  int32_t splitBlocks = 0;
};

/// The shape good for any batch of `seqs.numSeqs` sequences with contexts up
/// to seqs.maxContextLen: the chunk picked for that context and enough split
/// blocks to give every multiprocessor of the current device two blocks.
DecodeLaunch decodeAttentionFixedLaunch(const PagedKV &kv, const PagedSequences &seqs,
                                        const AttentionHeads &heads);

/// Bytes of scratch decodeAttention needs for this batch and launch. With
/// launch.chunk 0 it is sized at the chunk picked for the batch, so the call
/// must get the same numSeqs, maxContextLen and heads (a mismatch is
/// reported by the call, never overrun).
size_t decodeAttentionWorkspaceBytes(const PagedKV &kv, const PagedSequences &seqs,
                                     const AttentionHeads &heads,
                                     const DecodeLaunch &launch = {});

/// One query token per sequence (its last position, contextLens[i]-1):
/// out[i, h, :] = softmax(q[i,h,:] . K[0..ctx)^T / sqrt(head_dim)) V, with
/// query head h reading KV head h / (numHeads / kvHeads). q and out are bf16
/// [numSeqs, numHeads * headDim] rows (strides in `heads`). Split-KV
/// ("flash decoding"): each block of threads takes one chunk of one
/// sequence's context for one KV head and up to 8 of its query heads, then a
/// second kernel merges the chunks. A sequence with context 0 gets zeros.
/// head_dim 64 or 128; `workspace` holds decodeAttentionWorkspaceBytes()
/// for the same `launch`. Enqueues only (no host sync, no allocation): it
/// may be captured into a CUDA graph.
bool decodeAttention(const PagedKV &kv, const PagedSequences &seqs,
                     const AttentionHeads &heads, const void *q, void *out,
                     void *workspace, size_t workspaceBytes, cudaStream_t stream,
                     std::string *error, const DecodeLaunch &launch = {});

// --- prefill -----------------------------------------------------------------

/// Which prefill attention kernel runs.
/// - Auto: TensorCore for bf16 / f16 pools, Fma for int8 / fp8 ones; with
///   the environment variable QCUDA_PREFILL_FMA set (not "0", read once per
///   process) Fma for every pool.
/// - TensorCore: mma.sync tiles, FlashAttention-2 style; bf16 / f16 pools
///   only (an int8 / fp8 pool is an error). P is rounded to the pool's type
///   before P V.
/// - Fma: fp32 FMAs on shared-memory tiles; every pool type.
enum class PrefillKernel : uint8_t { Auto, TensorCore, Fma };

/// Chunked prefill: sequence i's new tokens are q rows queryStart[i] ..
/// queryStart[i+1]-1 (device [numSeqs + 1]); they are the last positions of
/// its context, so new token j of a chunk of n sits at position
/// contextLens[i] - n + j and attends to positions 0 ..that one (causal).
/// Their K/V must already be in the pool (writeRotaryKV). q and out are bf16
/// rows [numTokens, ...] with the strides in `heads`. `maxQueryLen` is a
/// host-side upper bound of the chunk lengths. head_dim 64 or 128.
/// `kernel` picks the implementation (PrefillKernel). Enqueues only (no host
/// sync, no allocation): it may be captured into a CUDA graph.
bool prefillAttention(const PagedKV &kv, const PagedSequences &seqs,
                      const int32_t *queryStart, int32_t maxQueryLen,
                      const AttentionHeads &heads, const void *q, void *out,
                      cudaStream_t stream, std::string *error,
                      PrefillKernel kernel = PrefillKernel::Auto);

// --- rotary embedding + KV write ---------------------------------------------

/// Where one step's projected q, k, v are: bf16 rows of `rowStride`
/// elements, token t's q heads at row t + qOffset, k heads at + kOffset and
/// v heads at + vOffset (a fused qkv row: 0, Q, Q + KV).
struct QKVRows {
  void *data = nullptr;
  int64_t rowStride = 0;
  int64_t qOffset = 0;
  int64_t kOffset = 0;
  int64_t vOffset = 0;
  int32_t numTokens = 0;
  int32_t numHeads = 0;
};

/// Rotary embedding (rotate-half, as transformers' Llama) of q in place and
/// of k, then k and v written into the pool at slotMapping[t] in the pool's
/// type (int8 / fp8: round(x / scale), saturating; fp8 NaN -> 0 as the CPU
/// executor). Angles are float(positions[t]) * invFreq[i] in fp32, invFreq
/// (device, headDim / 2 values) computed on the host by ropeInvFreq.
/// positions: int32 [numTokens]; slotMapping: int64 [numTokens].
bool writeRotaryKV(const PagedKV &kv, const QKVRows &qkv, const int32_t *positions,
                   const int64_t *slotMapping, const float *invFreq,
                   cudaStream_t stream, std::string *error);

} // namespace qcuda

#endif // QOPT_CUDA_ATTENTION_H
