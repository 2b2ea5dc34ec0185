//===- SchedulerTest.cpp - scheduling policy, step by step ----------------===//
//
// Drives the scheduler directly (no model): the test plays the engine,
// appending a made-up token for every sampled sequence, and checks the
// policy the engine tests can only see indirectly: decodes first, chunk
// sizes, the budget, prefix hits, the preemption victim, and refusals.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/serving/Scheduler.h"

#include <gtest/gtest.h>

#include <map>
#include <numeric>

using namespace qrt::serving;

namespace {

std::vector<int32_t> seqTokens(int32_t n, int32_t base = 0) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), base);
  return t;
}

SchedulerConfig config(int32_t blocks, int32_t budget, int32_t bs = 4) {
  SchedulerConfig c;
  c.blockSize = bs;
  c.numBlocks = blocks;
  c.maxNumBatchedTokens = budget;
  c.maxNumSeqs = std::min(budget, 8);
  c.maxModelLen = 512;
  return c;
}

/// Tokens scheduled per sequence in a batch.
std::map<RequestId, int32_t> chunks(const StepBatch &b) {
  std::map<RequestId, int32_t> m;
  for (int32_t i = 0; i < b.numSeqs(); ++i)
    m[b.seqIds[size_t(i)]] = b.queryStart[size_t(i) + 1] - b.queryStart[size_t(i)];
  return m;
}

/// One engine step without a model: every sampled sequence gets token 1.
void completeWithTokens(Scheduler &s, const StepBatch &b) {
  s.completeStep();
  for (int32_t i : b.sampleIndices)
    s.appendToken(b.seqIds[size_t(i)], 1);
}

TEST(Scheduler, RefusesBadConfigs) {
  std::string err;
  SchedulerConfig c = config(10, 16);
  c.numBlocks = 0;
  EXPECT_FALSE(Scheduler::create(c, &err));
  EXPECT_NE(err.find("no block"), std::string::npos) << err;
  c = config(10, 16);
  c.maxNumSeqs = 17;
  EXPECT_FALSE(Scheduler::create(c, &err));
  EXPECT_NE(err.find("max_num_seqs"), std::string::npos) << err;
  c = config(10, 16);
  c.enableChunkedPrefill = false;
  EXPECT_FALSE(Scheduler::create(c, &err));
  EXPECT_NE(err.find("chunked"), std::string::npos) << err;
  c = config(10, 16);
  c.blockSize = 0;
  EXPECT_FALSE(Scheduler::create(c, &err));
}

TEST(Scheduler, RefusesRequestsThatCanNeverRun) {
  std::string err;
  auto s = Scheduler::create(config(10, 16), &err);
  ASSERT_TRUE(s) << err;
  EXPECT_FALSE(s->add(1, {}, 10, &err));
  EXPECT_NE(err.find("empty"), std::string::npos);
  EXPECT_FALSE(s->add(2, seqTokens(512), 600, &err));
  EXPECT_NE(err.find("max_model_len"), std::string::npos) << err;
  // 10 blocks of 4 hold 40 positions; 30 + 12 new tokens need 41 - 1 = 41 KV
  // slots... the last token's KV is never stored: 41 slots -> 11 blocks.
  EXPECT_FALSE(s->add(3, seqTokens(30), 42, &err));
  EXPECT_NE(err.find("needs 11 KV blocks"), std::string::npos) << err;
  EXPECT_TRUE(s->add(4, seqTokens(30), 41, &err)) << err; // exactly 10
  EXPECT_FALSE(s->add(4, seqTokens(3), 5, &err));
  EXPECT_NE(err.find("already"), std::string::npos);
  EXPECT_EQ(s->numWaiting(), 1);
  EXPECT_EQ(s->verify(), "");
}

TEST(Scheduler, LongPromptDoesNotStallDecodes) {
  std::string err;
  auto s = Scheduler::create(config(1000, 8), &err);
  ASSERT_TRUE(s);
  for (RequestId id = 0; id < 3; ++id)
    ASSERT_TRUE(s->add(id, seqTokens(2, int32_t(id) * 10), 400, &err));
  completeWithTokens(*s, s->schedule()); // three 2-token prefills
  ASSERT_TRUE(s->add(9, seqTokens(100), 400, &err));
  int32_t prefilled = 0;
  for (int step = 0; step < 30 && prefilled < 100; ++step) {
    const StepBatch &b = s->schedule();
    auto c = chunks(b);
    // Every decode runs every step; the prompt gets the rest of the budget.
    for (RequestId id = 0; id < 3; ++id)
      EXPECT_EQ(c[id], 1) << "step " << step;
    EXPECT_EQ(c[9], std::min(5, 100 - prefilled));
    EXPECT_LE(b.numTokens(), 8);
    // Decodes come first in the batch.
    EXPECT_EQ(b.seqIds.back(), 9);
    prefilled += c[9];
    bool promptDone = prefilled == 100;
    EXPECT_EQ(b.sampleIndices.size(), promptDone ? 4u : 3u);
    completeWithTokens(*s, b);
    EXPECT_EQ(s->verify(), "");
  }
  EXPECT_EQ(prefilled, 100);
}

TEST(Scheduler, CappedPromptChunksLeaveRoomForNewArrivals) {
  // With long_prefill_token_threshold, a long prompt that arrived first
  // takes 4 tokens a step; later requests are admitted into the rest of the
  // budget and then decode every step while the prompt is still prefilling.
  std::string err;
  SchedulerConfig c = config(1000, 8);
  c.longPrefillTokenThreshold = 4;
  auto s = Scheduler::create(c, &err);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->add(0, seqTokens(100), 400, &err));
  const StepBatch &b1 = s->schedule();
  EXPECT_EQ(chunks(b1)[0], 4);
  completeWithTokens(*s, b1);
  ASSERT_TRUE(s->add(1, seqTokens(2, 200), 400, &err));
  ASSERT_TRUE(s->add(2, seqTokens(2, 300), 400, &err));
  for (int step = 0; step < 10; ++step) {
    const StepBatch &b = s->schedule();
    auto ch = chunks(b);
    EXPECT_EQ(ch[0], 4) << "step " << step;
    EXPECT_EQ(ch[1], step == 0 ? 2 : 1) << "step " << step;
    EXPECT_EQ(ch[2], step == 0 ? 2 : 1) << "step " << step;
    if (step > 0) {
      EXPECT_EQ(b.seqIds.back(), 0) << "decodes go first";
    }
    EXPECT_LE(b.numTokens(), 8);
    completeWithTokens(*s, b);
    EXPECT_EQ(s->verify(), "");
  }
}

TEST(Scheduler, AnUncompletedStepIsDropped) {
  std::string err;
  auto s = Scheduler::create(config(100, 8, 4), &err);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->add(0, seqTokens(20), 40, &err));
  completeWithTokens(*s, s->schedule()); // 8 computed
  const StepBatch &b = s->schedule();    // 8..15, never completed
  EXPECT_EQ(b.positions.front(), 8);
  EXPECT_EQ(s->blockPool().numAvailable(), 96);
  const StepBatch &again = s->schedule();
  EXPECT_EQ(again.positions.front(), 8);
  EXPECT_EQ(s->blockPool().numAvailable(), 96);
  EXPECT_EQ(s->verify(), "");
}

TEST(Scheduler, PreemptsADecodeAlreadyInTheStep) {
  // An older sequence still prefilling (pass 2) runs out of blocks after a
  // newer one's decode was scheduled (pass 1): the decode is taken back
  // out of the step, its budget returned.
  std::string err;
  SchedulerConfig c = config(6, 8, 4);
  c.longPrefillTokenThreshold = 4;
  auto s = Scheduler::create(c, &err);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->add(0, seqTokens(20), 22, &err)); // 6 blocks at the end
  ASSERT_TRUE(s->add(1, seqTokens(2, 100), 10, &err));
  bool seen = false;
  for (int step = 0; step < 12 && !seen; ++step) {
    const StepBatch &b = s->schedule();
    auto ch = chunks(b);
    if (!b.preempted.empty()) {
      EXPECT_EQ(b.preempted, std::vector<RequestId>{1});
      EXPECT_EQ(ch.count(1), 0u);
      EXPECT_EQ(ch[0], 4);
      EXPECT_EQ(b.numSeqs(), 1);
      EXPECT_EQ(b.blockTable.size(), size_t(b.blockTableStart[1]));
      seen = true;
    }
    EXPECT_EQ(s->verify(), "");
    completeWithTokens(*s, b);
  }
  EXPECT_TRUE(seen);
}

TEST(Scheduler, BatchArraysDescribeTheChunks) {
  std::string err;
  auto s = Scheduler::create(config(100, 6, 4), &err);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->add(5, seqTokens(9, 100), 50, &err));
  const StepBatch &b = s->schedule();
  ASSERT_EQ(b.numSeqs(), 1);
  EXPECT_EQ(b.tokenIds, (std::vector<int32_t>{100, 101, 102, 103, 104, 105}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(b.contextLens, (std::vector<int32_t>{6}));
  ASSERT_EQ(b.blockTable.size(), 2u); // 6 positions, blocks of 4
  for (int32_t p = 0; p < 6; ++p)
    EXPECT_EQ(b.slotMapping[size_t(p)], b.blockTable[size_t(p / 4)] * 4 + p % 4);
  EXPECT_TRUE(b.sampleIndices.empty()); // mid-prompt: no logits needed
  s->completeStep();
  const StepBatch &b2 = s->schedule();
  EXPECT_EQ(b2.positions, (std::vector<int32_t>{6, 7, 8}));
  EXPECT_EQ(b2.contextLens, (std::vector<int32_t>{9}));
  EXPECT_EQ(b2.blockTable.size(), 3u);
  EXPECT_EQ(b2.sampleIndices, (std::vector<int32_t>{0}));
}

TEST(Scheduler, PrefixHitsSkipCachedBlocksButNeverTheLastToken) {
  std::string err;
  auto s = Scheduler::create(config(100, 64, 4), &err);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->add(1, seqTokens(10), 20, &err));
  completeWithTokens(*s, s->schedule());
  // Shares 2 full blocks (8 tokens) with sequence 1, then differs.
  auto t = seqTokens(10);
  t[9] = 77;
  ASSERT_TRUE(s->add(2, t, 20, &err));
  // Identical 12-token prompt whose blocks are all cached after 3 steps...
  const StepBatch &b = s->schedule();
  auto c = chunks(b);
  EXPECT_EQ(c[2], 2); // positions 8, 9 only
  EXPECT_EQ(s->numCachedPromptTokens(2), 8);
  // Both tables start with the same two blocks.
  EXPECT_EQ(b.blockTable[size_t(b.blockTableStart[0])],
            b.blockTable[size_t(b.blockTableStart[1])]);
  EXPECT_EQ(s->blockPool().refCount(b.blockTable[0]), 2);
  completeWithTokens(*s, b);
  // A prompt fully covered by cached blocks still computes its last block.
  ASSERT_TRUE(s->add(3, seqTokens(8), 20, &err));
  c = chunks(s->schedule());
  EXPECT_EQ(c[3], 4);
  EXPECT_EQ(s->numCachedPromptTokens(3), 4);
  EXPECT_EQ(s->verify(), "");
}

TEST(Scheduler, FinishedSequencesLeaveTheirBlocksCached) {
  std::string err;
  auto s = Scheduler::create(config(100, 64, 4), &err);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->add(1, seqTokens(13), 30, &err));
  completeWithTokens(*s, s->schedule());
  s->finish(1);
  EXPECT_EQ(s->blockPool().numEvictable(), 3); // 12 of 13 positions
  // Released tail first: the last block is the first to be evicted.
  auto lru = s->blockPool().evictableLruOrder();
  EXPECT_EQ(lru, (std::vector<BlockId>{2, 1, 0}));
  EXPECT_EQ(s->blockPool().numAvailable(), 100);
  ASSERT_TRUE(s->add(2, seqTokens(13), 30, &err));
  s->schedule();
  EXPECT_EQ(s->numCachedPromptTokens(2), 12);
  EXPECT_EQ(s->blockPool().numEvictable(), 0);
  EXPECT_EQ(s->verify(), "");
}

TEST(Scheduler, PreemptsTheMostRecentArrivalAndResumesIt) {
  std::string err;
  SchedulerConfig c = config(6, 32, 4); // 24 KV slots
  c.enablePrefixCaching = false;
  auto s = Scheduler::create(c, &err);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->add(1, seqTokens(8, 0), 24, &err));
  ASSERT_TRUE(s->add(2, seqTokens(8, 50), 24, &err));
  ASSERT_TRUE(s->add(3, seqTokens(4, 90), 24, &err));
  completeWithTokens(*s, s->schedule()); // 2 + 2 + 1 blocks: 5 of 6 used
  EXPECT_EQ(s->numRunning(), 3);
  // Decoding fills blocks; when 1 or 2 needs one and none is left, 3 goes.
  bool preempted = false;
  for (int step = 0; step < 40 && !preempted; ++step) {
    const StepBatch &b = s->schedule();
    if (!b.preempted.empty()) {
      EXPECT_EQ(b.preempted, std::vector<RequestId>{3});
      auto ch = chunks(b);
      EXPECT_EQ(ch.count(3), 0u);
      EXPECT_EQ(s->numWaiting(), 1);
      preempted = true;
    }
    completeWithTokens(*s, b);
    EXPECT_EQ(s->verify(), "");
  }
  ASSERT_TRUE(preempted);
  const std::vector<int32_t> *t3 = s->tokens(3);
  ASSERT_TRUE(t3);
  size_t lenAtPreemption = t3->size();
  EXPECT_GT(lenAtPreemption, 4u); // generated tokens are kept
  // Finish 1 and 2: 3 comes back and recomputes everything it had.
  s->finish(1);
  s->finish(2);
  const StepBatch &b = s->schedule();
  EXPECT_EQ(chunks(b)[3], int32_t(lenAtPreemption));
  EXPECT_EQ(b.sampleIndices.size(), 1u);
  EXPECT_EQ(s->stats().preemptions, 1);
}

TEST(Scheduler, OldestSequenceAlwaysProgressesInATinyPool) {
  std::string err;
  SchedulerConfig c = config(5, 8, 2); // 10 KV slots, 8 tokens a step
  auto s = Scheduler::create(c, &err);
  ASSERT_TRUE(s);
  for (RequestId id = 0; id < 8; ++id)
    ASSERT_TRUE(s->add(id, seqTokens(3 + int32_t(id) % 4, int32_t(id) * 7),
                       11, &err)) << err;
  std::map<RequestId, int32_t> generated;
  int steps = 0;
  while (s->hasUnfinished() && steps++ < 2000) {
    const StepBatch &b = s->schedule();
    ASSERT_FALSE(b.empty()) << "stalled with work left";
    completeWithTokens(*s, b);
    for (int32_t i : b.sampleIndices) {
      RequestId id = b.seqIds[size_t(i)];
      if (int32_t(s->tokens(id)->size()) >= 11)
        s->finish(id);
    }
    ASSERT_EQ(s->verify(), "");
  }
  EXPECT_FALSE(s->hasUnfinished());
  EXPECT_GT(s->stats().preemptions, 0);
}

} // namespace
