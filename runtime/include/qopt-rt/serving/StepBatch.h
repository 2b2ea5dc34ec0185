//===- StepBatch.h - one scheduler step, as the executor sees it -*- C++ -*-===//
//
// The whole contract between the scheduler and a model executor: flat arrays
// ready to become kernel arguments, with no sequence objects behind them.
// Prefill chunks and decodes are the same thing here - "compute the KV and
// hidden states of these new positions of this sequence, attending to
// everything before them" - so one forward pass serves a mixed batch (the
// layout of vLLM v1 / FlashAttention varlen: tokens concatenated, sequences
// delimited by queryStart).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_STEPBATCH_H
#define QOPT_RT_SERVING_STEPBATCH_H

#include "qopt-rt/serving/Request.h"

#include <cstdint>
#include <vector>

namespace qrt::serving {

/// The work of one engine step. T = total new tokens, S = sequences.
struct StepBatch {
  // --- per token (size T), sequences' tokens one after another ---
  /// Input ids of the positions to compute.
  std::vector<int32_t> tokenIds;
  /// Their positions in their sequences (for rotary embeddings).
  std::vector<int32_t> positions;
  /// Where each token's K and V are written: block * blockSize + offset.
  std::vector<int64_t> slotMapping;

  // --- per sequence (size S) ---
  std::vector<RequestId> seqIds;
  /// Tokens of sequence i are [queryStart[i], queryStart[i+1]) (size S+1).
  std::vector<int32_t> queryStart;
  /// Positions sequence i attends to after this step: 0..contextLens[i]-1,
  /// i.e. the cached ones plus this step's. The new ones are the last
  /// queryStart[i+1]-queryStart[i] of them (causal within the chunk).
  std::vector<int32_t> contextLens;
  /// Block table of sequence i: blockTable[blockTableStart[i] ..
  /// blockTableStart[i+1]) covers positions 0..contextLens[i]-1 (size S+1).
  std::vector<int32_t> blockTableStart;
  std::vector<int32_t> blockTable;
  /// Sequences whose last new token's logits are needed, as indices into
  /// the per-sequence arrays, in increasing order. The executor writes one
  /// row of logits per entry, in this order. Sequences in the middle of a
  /// chunked prefill are absent: their logits would be thrown away.
  std::vector<int32_t> sampleIndices;

  /// Sequences preempted while building this step (their blocks are gone;
  /// an executor with per-sequence state may drop it).
  std::vector<RequestId> preempted;

  int32_t blockSize = 0;

  int32_t numTokens() const { return int32_t(tokenIds.size()); }
  int32_t numSeqs() const { return int32_t(seqIds.size()); }
  bool empty() const { return tokenIds.empty(); }
  void clear();
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_STEPBATCH_H
