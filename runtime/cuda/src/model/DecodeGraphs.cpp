//===- DecodeGraphs.cpp - decode steps padded to batch-size buckets --------===//
#include "DecodeGraphs.h"

#include <cstring>

namespace qcuda {

std::vector<int32_t> decodeBuckets(int32_t maxNumSeqs) {
  std::vector<int32_t> b;
  for (int32_t n = 1; n <= kMaxDecodeBucket; n *= 2) {
    b.push_back(n);
    if (maxNumSeqs > 0 && n >= maxNumSeqs)
      break;
  }
  return b;
}

int32_t bucketFor(const std::vector<int32_t> &buckets, int32_t numSeqs) {
  for (int32_t b : buckets)
    if (b >= numSeqs)
      return numSeqs > 0 ? b : 0;
  return 0;
}

bool padDecodeStep(const qrt::serving::StepBatch &b, const std::vector<int32_t> &logitRows,
                   const DecodeGraphLimits &limits, PaddedDecodeStep *out) {
  const int32_t S = b.numSeqs();
  if (S == 0 || b.numTokens() != S || limits.maxBlocksPerSeq <= 0 || limits.padBlock < 0)
    return false;
  const int32_t B = bucketFor(limits.buckets, S);
  if (B == 0)
    return false;
  for (int32_t i = 0; i < S; ++i)
    if (b.blockTableStart[size_t(i + 1)] - b.blockTableStart[size_t(i)] > limits.maxBlocksPerSeq)
      return false;

  PaddedDecodeStep p;
  p.bucket = B;
  p.numSeqs = S;
  p.numLogitRows = int32_t(logitRows.size());
  p.slots.assign(b.slotMapping.begin(), b.slotMapping.end());
  p.tokenIds.assign(b.tokenIds.begin(), b.tokenIds.end());
  p.positions.assign(b.positions.begin(), b.positions.end());
  p.queryStart.assign(b.queryStart.begin(), b.queryStart.end());
  p.contextLens.assign(b.contextLens.begin(), b.contextLens.end());
  p.blockTableStart.assign(b.blockTableStart.begin(), b.blockTableStart.end());
  p.blockTable.assign(b.blockTable.begin(), b.blockTable.end());
  p.logitRows = logitRows;
  for (int32_t i = S; i < B; ++i) {
    p.slots.push_back(int64_t(limits.padBlock) * limits.blockSize);
    p.tokenIds.push_back(0);
    p.positions.push_back(0);
    p.queryStart.push_back(i + 1);
    p.contextLens.push_back(1);
    p.blockTable.push_back(limits.padBlock);
    p.blockTableStart.push_back(int32_t(p.blockTable.size()));
  }
  for (int32_t r = p.numLogitRows; r < B; ++r)
    p.logitRows.push_back(r);
  *out = std::move(p);
  return true;
}

namespace {
size_t align256(size_t n) { return (n + 255) / 256 * 256; }
} // namespace

DecodeStepLayout decodeStepLayout(int32_t maxBucket, int32_t maxBlocksPerSeq) {
  DecodeStepLayout l;
  const size_t B = size_t(maxBucket > 0 ? maxBucket : 1);
  size_t at = 0;
  auto take = [&](size_t *field, size_t bytes) {
    *field = at;
    at += align256(bytes);
  };
  take(&l.slots, B * 8);
  take(&l.tokenIds, B * 4);
  take(&l.positions, B * 4);
  take(&l.queryStart, (B + 1) * 4);
  take(&l.contextLens, B * 4);
  take(&l.blockTableStart, (B + 1) * 4);
  take(&l.logitRows, B * 4);
  take(&l.blockTable, B * size_t(maxBlocksPerSeq > 0 ? maxBlocksPerSeq : 1) * 4);
  l.totalBytes = at;
  return l;
}

size_t packDecodeStep(const PaddedDecodeStep &step, const DecodeStepLayout &layout,
                      std::vector<uint8_t> *staging) {
  const size_t used = layout.blockTable + step.blockTable.size() * 4;
  if (staging->size() < used)
    staging->resize(used);
  uint8_t *base = staging->data();
  auto put = [&](size_t offset, const auto &v) {
    if (!v.empty())
      std::memcpy(base + offset, v.data(), v.size() * sizeof(v[0]));
  };
  put(layout.slots, step.slots);
  put(layout.tokenIds, step.tokenIds);
  put(layout.positions, step.positions);
  put(layout.queryStart, step.queryStart);
  put(layout.contextLens, step.contextLens);
  put(layout.blockTableStart, step.blockTableStart);
  put(layout.logitRows, step.logitRows);
  put(layout.blockTable, step.blockTable);
  return used;
}

} // namespace qcuda
