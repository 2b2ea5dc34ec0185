//===- DecodeGraphs.h - decode steps padded to batch-size buckets -*- C++ -*-===//
//
// The host side of the CUDA executor's decode graphs, plain C++ (tested on
// any machine). A CUDA graph replays the launches it captured: same grids,
// same pointers. So a pure decode step (every sequence has one new token)
// is padded to a fixed batch size, its bucket, and its arrays are packed at
// fixed offsets of one device buffer that every bucket's graph reads; the
// step then costs one upload and one graph launch instead of ~10 launches
// per layer.
//
// Padding rows are harmless: they read token 0 at position 0, write their
// K/V into slot 0 of a pool block the engine never gets (the pad block),
// attend over that one position through a block table holding only it, and
// their logits are never copied back. Rows of different sequences never mix
// (GEMMs, norms and attention are per row or per sequence), so the real
// rows' results do not depend on the padding.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_MODEL_DECODEGRAPHS_H
#define QOPT_CUDA_MODEL_DECODEGRAPHS_H

#include "qopt-rt/serving/StepBatch.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qcuda {

/// The largest bucket: beyond it launches are a small share of the step.
constexpr int32_t kMaxDecodeBucket = 64;

/// Buckets 1, 2, 4, ..., 64, stopping at the first that holds maxNumSeqs
/// (a step never has more sequences). maxNumSeqs <= 0: all of them.
std::vector<int32_t> decodeBuckets(int32_t maxNumSeqs);

/// What the padding needs to know about the pool and the buckets.
struct DecodeGraphLimits {
  std::vector<int32_t> buckets; ///< increasing (decodeBuckets)
  /// Capacity of one sequence's block table: ceil(max_model_len / block).
  int32_t maxBlocksPerSeq = 0;
  int32_t blockSize = 16;
  /// The pool block the engine never gets; padding rows write into it.
  int32_t padBlock = -1;
};

/// A pure decode step padded to its bucket: the arrays the kernels read.
struct PaddedDecodeStep {
  int32_t bucket = 0;
  int32_t numSeqs = 0;      ///< real sequences: rows 0 .. numSeqs-1
  int32_t numLogitRows = 0; ///< real logits: the first numLogitRows of logitRows
  std::vector<int64_t> slots;          ///< [bucket]
  std::vector<int32_t> tokenIds;       ///< [bucket]
  std::vector<int32_t> positions;      ///< [bucket]
  std::vector<int32_t> queryStart;     ///< [bucket + 1]: 0, 1, .., bucket
  std::vector<int32_t> contextLens;    ///< [bucket]
  std::vector<int32_t> blockTableStart; ///< [bucket + 1]
  std::vector<int32_t> blockTable;     ///< the real tables, then one pad block per padding row
  /// [bucket]: the rows whose logits the step returns, then rows
  /// numLogitRows .. bucket-1 to fill it (valid rows, maybe real ones
  /// again; their logits are computed and never copied back).
  std::vector<int32_t> logitRows;
};

/// The bucket for a step of `numSeqs` sequences (the smallest that holds
/// it), or 0 when none does.
int32_t bucketFor(const std::vector<int32_t> &buckets, int32_t numSeqs);

/// Pads `b` (already validated: consistent arrays, ids and blocks in range)
/// when it is a pure decode step (numTokens == numSeqs) that a bucket holds
/// and whose every block table fits maxBlocksPerSeq; false (and *out left
/// alone) otherwise: the step runs without a graph. `logitRows` are the
/// token rows whose logits the step returns (increasing).
bool padDecodeStep(const qrt::serving::StepBatch &b, const std::vector<int32_t> &logitRows,
                   const DecodeGraphLimits &limits, PaddedDecodeStep *out);

/// Byte offsets of the arrays in the fixed device buffer, laid out for the
/// largest bucket so every bucket's graph reads the same addresses. The
/// block table comes last: an upload copies only the part a step uses.
struct DecodeStepLayout {
  size_t slots = 0, tokenIds = 0, positions = 0, queryStart = 0, contextLens = 0,
         blockTableStart = 0, logitRows = 0, blockTable = 0;
  size_t totalBytes = 0; ///< with a full block table (bucket x maxBlocksPerSeq)
};
DecodeStepLayout decodeStepLayout(int32_t maxBucket, int32_t maxBlocksPerSeq);

/// Writes `step` into `staging` at `layout`'s offsets; returns the bytes to
/// upload (the header arrays and the used part of the block table).
size_t packDecodeStep(const PaddedDecodeStep &step, const DecodeStepLayout &layout,
                      std::vector<uint8_t> *staging);

} // namespace qcuda

#endif // QOPT_CUDA_MODEL_DECODEGRAPHS_H
