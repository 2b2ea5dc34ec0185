//===- DecodeGraphsTest.cpp - bucket choice and padding of decode steps ----===//
//
// The host side of the CUDA executor's decode graphs (DecodeGraphs.h): plain
// C++, runs on every machine.
//
//===----------------------------------------------------------------------===//
#include "DecodeGraphs.h"

#include <gtest/gtest.h>

#include <cstring>

using namespace qcuda;
using qrt::serving::StepBatch;

namespace {

/// A decode step of sequences with these contexts (one new token each),
/// blocks handed out consecutively from `firstBlock`.
StepBatch decodeStep(const std::vector<int32_t> &contexts, int32_t firstBlock = 3) {
  StepBatch b;
  b.blockSize = 16;
  b.queryStart.push_back(0);
  b.blockTableStart.push_back(0);
  int32_t block = firstBlock;
  for (size_t i = 0; i < contexts.size(); ++i) {
    const int32_t ctx = contexts[i];
    b.seqIds.push_back(uint64_t(i + 1));
    b.tokenIds.push_back(int32_t(100 + i));
    b.positions.push_back(ctx - 1);
    b.contextLens.push_back(ctx);
    b.queryStart.push_back(int32_t(i + 1));
    const int32_t first = block;
    for (int32_t k = 0; k < (ctx + 15) / 16; ++k)
      b.blockTable.push_back(block++);
    b.blockTableStart.push_back(int32_t(b.blockTable.size()));
    b.slotMapping.push_back(int64_t(first + (ctx - 1) / 16) * 16 + (ctx - 1) % 16);
    b.sampleIndices.push_back(int32_t(i));
  }
  return b;
}

DecodeGraphLimits limits(int32_t maxSeqs = 0) {
  DecodeGraphLimits l;
  l.buckets = decodeBuckets(maxSeqs);
  l.maxBlocksPerSeq = 4; // max_model_len 64
  l.blockSize = 16;
  l.padBlock = 50;
  return l;
}

std::vector<int32_t> rowsOf(const StepBatch &b) {
  std::vector<int32_t> r;
  for (int32_t si : b.sampleIndices)
    r.push_back(b.queryStart[size_t(si + 1)] - 1);
  return r;
}

} // namespace

TEST(DecodeGraphs, BucketsStopAtWhatConcurrencyCanUse) {
  EXPECT_EQ(decodeBuckets(0), (std::vector<int32_t>{1, 2, 4, 8, 16, 32, 64}));
  EXPECT_EQ(decodeBuckets(1), (std::vector<int32_t>{1}));
  EXPECT_EQ(decodeBuckets(3), (std::vector<int32_t>{1, 2, 4}));
  EXPECT_EQ(decodeBuckets(8), (std::vector<int32_t>{1, 2, 4, 8}));
  EXPECT_EQ(decodeBuckets(500), (std::vector<int32_t>{1, 2, 4, 8, 16, 32, 64}));
  const std::vector<int32_t> b = decodeBuckets(0);
  EXPECT_EQ(bucketFor(b, 0), 0);
  EXPECT_EQ(bucketFor(b, 1), 1);
  EXPECT_EQ(bucketFor(b, 3), 4);
  EXPECT_EQ(bucketFor(b, 8), 8);
  EXPECT_EQ(bucketFor(b, 33), 64);
  EXPECT_EQ(bucketFor(b, 65), 0);
  EXPECT_EQ(bucketFor(decodeBuckets(3), 4), 4);
}

TEST(DecodeGraphs, ExactBucketKeepsTheStepAsItIs) {
  const StepBatch b = decodeStep({5, 17});
  PaddedDecodeStep p;
  ASSERT_TRUE(padDecodeStep(b, rowsOf(b), limits(), &p));
  EXPECT_EQ(p.bucket, 2);
  EXPECT_EQ(p.numSeqs, 2);
  EXPECT_EQ(p.numLogitRows, 2);
  EXPECT_EQ(p.tokenIds, b.tokenIds);
  EXPECT_EQ(p.positions, b.positions);
  EXPECT_EQ(p.slots, b.slotMapping);
  EXPECT_EQ(p.queryStart, b.queryStart);
  EXPECT_EQ(p.contextLens, b.contextLens);
  EXPECT_EQ(p.blockTableStart, b.blockTableStart);
  EXPECT_EQ(p.blockTable, b.blockTable);
  EXPECT_EQ(p.logitRows, (std::vector<int32_t>{0, 1}));
}

TEST(DecodeGraphs, PaddingRowsUseThePadBlockOnly) {
  const StepBatch b = decodeStep({5, 17, 33});
  // Only the first and last sequences want logits.
  const std::vector<int32_t> rows = {0, 2};
  PaddedDecodeStep p;
  ASSERT_TRUE(padDecodeStep(b, rows, limits(), &p));
  EXPECT_EQ(p.bucket, 4);
  EXPECT_EQ(p.numSeqs, 3);
  EXPECT_EQ(p.numLogitRows, 2);
  ASSERT_EQ(p.tokenIds.size(), 4u);
  EXPECT_EQ(p.tokenIds[3], 0);
  EXPECT_EQ(p.positions[3], 0);
  EXPECT_EQ(p.slots[3], 50 * 16);
  EXPECT_EQ(p.contextLens[3], 1);
  EXPECT_EQ(p.queryStart, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  // The real tables (1 + 2 + 3 blocks), then the padding row's one entry.
  ASSERT_EQ(p.blockTableStart.size(), 5u);
  EXPECT_EQ(p.blockTableStart[3], 6);
  EXPECT_EQ(p.blockTableStart[4], 7);
  EXPECT_EQ(p.blockTable.back(), 50);
  EXPECT_EQ(std::vector<int32_t>(p.blockTable.begin(), p.blockTable.begin() + 6), b.blockTable);
  // Logit rows: the real ones first, then valid rows to fill the bucket.
  EXPECT_EQ(p.logitRows, (std::vector<int32_t>{0, 2, 2, 3}));
}

TEST(DecodeGraphs, StepsThatAreNotPureDecodeOrTooLargeRunWithoutAGraph) {
  PaddedDecodeStep p;
  // A prefill: two new tokens in one sequence.
  StepBatch pre = decodeStep({5});
  pre.tokenIds.push_back(7);
  pre.positions.push_back(5);
  pre.slotMapping.push_back(3 * 16 + 5);
  pre.queryStart.back() = 2;
  pre.contextLens.back() = 6;
  EXPECT_FALSE(padDecodeStep(pre, rowsOf(pre), limits(), &p));
  // More sequences than the largest bucket the concurrency allows.
  const StepBatch five = decodeStep({1, 1, 1, 1, 1});
  EXPECT_FALSE(padDecodeStep(five, rowsOf(five), limits(4), &p));
  EXPECT_TRUE(padDecodeStep(five, rowsOf(five), limits(8), &p));
  EXPECT_EQ(p.bucket, 8);
  // A block table longer than max_model_len allows (5 blocks > 4).
  const StepBatch longCtx = decodeStep({65});
  EXPECT_FALSE(padDecodeStep(longCtx, rowsOf(longCtx), limits(), &p));
  // No pad block or no table capacity: never graphed.
  DecodeGraphLimits none = limits();
  none.padBlock = -1;
  const StepBatch one = decodeStep({3});
  EXPECT_FALSE(padDecodeStep(one, rowsOf(one), none, &p));
  none = limits();
  none.maxBlocksPerSeq = 0;
  EXPECT_FALSE(padDecodeStep(one, rowsOf(one), none, &p));
  EXPECT_FALSE(padDecodeStep(StepBatch(), {}, limits(), &p));
}

TEST(DecodeGraphs, LayoutIsFixedAndUploadsOnlyTheUsedTable) {
  const DecodeStepLayout l = decodeStepLayout(64, 4);
  const size_t offsets[] = {l.slots,       l.tokenIds,        l.positions, l.queryStart,
                            l.contextLens, l.blockTableStart, l.logitRows, l.blockTable};
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(offsets[i] % 256, 0u) << i;
    if (i) {
      EXPECT_GT(offsets[i], offsets[i - 1]) << i;
    }
  }
  EXPECT_GE(l.blockTableStart - l.queryStart, 65u * 4);
  EXPECT_EQ(l.totalBytes, l.blockTable + 64 * 4 * 4);

  const StepBatch b = decodeStep({5, 17, 33});
  PaddedDecodeStep p;
  ASSERT_TRUE(padDecodeStep(b, rowsOf(b), limits(), &p));
  std::vector<uint8_t> staging;
  const size_t n = packDecodeStep(p, l, &staging);
  EXPECT_EQ(n, l.blockTable + 7 * 4);
  ASSERT_GE(staging.size(), n);
  auto read32 = [&](size_t offset, size_t i) {
    int32_t v;
    std::memcpy(&v, staging.data() + offset + i * 4, 4);
    return v;
  };
  int64_t slot3;
  std::memcpy(&slot3, staging.data() + l.slots + 3 * 8, 8);
  EXPECT_EQ(slot3, 50 * 16);
  EXPECT_EQ(read32(l.tokenIds, 1), 101);
  EXPECT_EQ(read32(l.positions, 2), 32);
  EXPECT_EQ(read32(l.queryStart, 4), 4);
  EXPECT_EQ(read32(l.contextLens, 3), 1);
  EXPECT_EQ(read32(l.blockTableStart, 4), 7);
  EXPECT_EQ(read32(l.logitRows, 3), 3);
  EXPECT_EQ(read32(l.blockTable, 6), 50);
}
