//===- EngineTest.cpp - end to end with a fake model ----------------------===//
//
// The scheduler's features must be invisible in the output: every request
// gives exactly the tokens that plain one-at-a-time generation gives (the
// oracle replays referenceLogits with no batching or cache), alone or among
// 31 others, with or without prefix caching, under any token budget (chunked
// prefill) and in pools so small that sequences keep being preempted. Each
// run also checks the scheduler's invariants and the step budget at every
// step, and that the feature under test was really exercised.
//
//===----------------------------------------------------------------------===//
#include "FakeModel.h"

#include "qopt-rt/serving/Engine.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

using namespace qrt::serving;
using namespace qrt::serving::test;

namespace {

constexpr int32_t kVocab = 101;
constexpr int32_t kEos = 0;

struct Req {
  std::vector<int32_t> prompt;
  SamplingParams params;
  int32_t arrivalStep = 0;
};

/// 32 requests: three shared system prompts (lengths off and on block
/// boundaries), unique suffixes, a few exact duplicates, greedy and seeded
/// sampling, staggered arrivals.
std::vector<Req> makeWorkload(uint32_t seed, int n = 32) {
  std::mt19937 rng(seed);
  auto tok = [&] { return int32_t(1 + rng() % (kVocab - 1)); };
  std::vector<std::vector<int32_t>> systems;
  for (int len : {37, 48, 64}) {
    std::vector<int32_t> s;
    for (int i = 0; i < len; ++i)
      s.push_back(tok());
    systems.push_back(s);
  }
  std::vector<Req> w;
  for (int i = 0; i < n; ++i) {
    Req r;
    if (i % 8 == 7 && i > 0) {
      r.prompt = w[size_t(i - 1)].prompt; // duplicate prompt
    } else {
      if (i % 4 != 3)
        r.prompt = systems[size_t(i % 3)];
      int suffix = 1 + int(rng() % 40);
      for (int k = 0; k < suffix; ++k)
        r.prompt.push_back(tok());
    }
    r.params.maxTokens = 1 + int32_t(rng() % 48);
    if (i % 2) {
      r.params.temperature = 0.8f;
      r.params.topK = int32_t(rng() % 30);
      r.params.topP = 0.9f;
      r.params.seed = 1000 + uint64_t(i);
    } else {
      r.params.temperature = 0;
    }
    r.params.ignoreEos = i % 5 == 0;
    r.arrivalStep = i / 3;
    w.push_back(r);
  }
  return w;
}

struct RunResult {
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, FinishReason> reason;
  std::map<RequestId, std::string> error;
  std::map<RequestId, int32_t> cached;
  SchedulerStats stats;
  int32_t maxStepTokens = 0;
};

struct RunOptions {
  SchedulerConfig sched;
  int32_t poisonToken = -1;
};

SchedulerConfig baseConfig() {
  SchedulerConfig c;
  c.blockSize = 16;
  c.numBlocks = 4096;
  c.maxNumBatchedTokens = 2048;
  c.maxNumSeqs = 64;
  c.maxModelLen = 256;
  return c;
}

/// Runs `work` to completion; request i gets id i (arrival order).
RunResult run(const std::vector<Req> &work, const RunOptions &o) {
  RunResult res;
  std::string err;
  auto kv = KVCache::create(
      fakeKVSpec(o.sched.blockSize),
      KVCache::bytesPerBlock(fakeKVSpec(o.sched.blockSize)) *
          uint64_t(o.sched.numBlocks),
      &err);
  EXPECT_TRUE(kv) << err;
  if (!kv)
    return res;
  EXPECT_EQ(kv->numBlocks(), o.sched.numBlocks);
  FakeModel model(*kv, kVocab);
  model.poisonToken = o.poisonToken;
  EngineConfig ec;
  ec.scheduler = o.sched;
  ec.eosTokenIds = {kEos};
  auto engine = Engine::create(ec, model, nullptr, &err);
  EXPECT_TRUE(engine) << err;
  if (!engine)
    return res;
  model.onStep = [&](const StepBatch &b) {
    EXPECT_LE(b.numTokens(), o.sched.maxNumBatchedTokens);
    EXPECT_LE(b.numSeqs(), o.sched.maxNumSeqs);
    res.maxStepTokens = std::max(res.maxStepTokens, b.numTokens());
  };
  size_t next = 0;
  for (int step = 0; step < 200000; ++step) {
    while (next < work.size() && work[next].arrivalStep <= step) {
      RequestId id = engine->addRequest(work[next].prompt, work[next].params);
      EXPECT_EQ(id, RequestId(next));
      ++next;
    }
    if (next == work.size() && !engine->hasUnfinished())
      break;
    for (const RequestOutput &out : engine->step()) {
      auto &toks = res.tokens[out.id];
      toks.insert(toks.end(), out.newTokenIds.begin(), out.newTokenIds.end());
      if (out.finished) {
        EXPECT_EQ(res.reason.count(out.id), 0u) << "finished twice";
        res.reason[out.id] = out.finishReason;
        res.error[out.id] = out.error;
        res.cached[out.id] = out.numCachedTokens;
      }
    }
    std::string why = engine->scheduler().verify();
    EXPECT_EQ(why, "") << "at step " << step;
    if (!why.empty())
      break;
  }
  EXPECT_FALSE(engine->hasUnfinished()) << "did not finish";
  EXPECT_EQ(model.problem, "");
  res.stats = engine->scheduler().stats();
  // Everything is released at the end: all blocks available again.
  EXPECT_EQ(engine->scheduler().blockPool().numAvailable(), o.sched.numBlocks);
  return res;
}

std::vector<int32_t> expected(const Req &r, int32_t maxModelLen) {
  return referenceGenerate(r.prompt, r.params, r.params.seed.value_or(0),
                           kVocab, maxModelLen, {kEos});
}

void expectMatchesOracle(const std::vector<Req> &work, const RunResult &res,
                         int32_t maxModelLen, const std::string &what) {
  for (size_t i = 0; i < work.size(); ++i) {
    RequestId id = RequestId(i);
    ASSERT_EQ(res.reason.count(id), 1u) << what << ": request " << i;
    EXPECT_NE(res.reason.at(id), FinishReason::Error)
        << what << ": " << res.error.at(id);
    EXPECT_EQ(res.tokens.at(id), expected(work[i], maxModelLen))
        << what << ": request " << i;
  }
}

TEST(Engine, MatchesOracleWithDefaultSettings) {
  auto work = makeWorkload(1);
  RunOptions o;
  o.sched = baseConfig();
  RunResult r = run(work, o);
  expectMatchesOracle(work, r, o.sched.maxModelLen, "default");
  EXPECT_GT(r.stats.cachedPromptTokens, 0) << "prefix cache never hit";
  // Requests ran together: more than one sequence in some step.
  EXPECT_GT(r.maxStepTokens, 64);
}

TEST(Engine, RequestAloneEqualsRequestAmong31Others) {
  auto work = makeWorkload(2);
  RunOptions o;
  o.sched = baseConfig();
  RunResult all = run(work, o);
  for (size_t i = 0; i < work.size(); ++i) {
    Req alone = work[i];
    alone.arrivalStep = 0;
    RunResult one = run({alone}, o);
    ASSERT_EQ(one.tokens.count(0), 1u);
    EXPECT_EQ(one.tokens.at(0), all.tokens.at(RequestId(i))) << "request " << i;
  }
  expectMatchesOracle(work, all, o.sched.maxModelLen, "batched");
}

TEST(Engine, PrefixCachingChangesNoOutput) {
  auto work = makeWorkload(3);
  for (bool prefix : {false, true}) {
    RunOptions o;
    o.sched = baseConfig();
    o.sched.enablePrefixCaching = prefix;
    RunResult r = run(work, o);
    expectMatchesOracle(work, r, o.sched.maxModelLen,
                        prefix ? "prefix on" : "prefix off");
    if (prefix) {
      EXPECT_GT(r.stats.cachedPromptTokens, 500);
      // A duplicate prompt reuses all its full blocks but the one holding
      // its last token.
      int32_t len = int32_t(work[7].prompt.size());
      EXPECT_EQ(r.cached.at(7), (len - 1) / 16 * 16);
    } else {
      EXPECT_EQ(r.stats.cachedPromptTokens, 0);
    }
  }
}

TEST(Engine, ChunkedPrefillChangesNoOutput) {
  auto work = makeWorkload(4);
  for (int32_t budget : {8, 13, 33, 100}) {
    RunOptions o;
    o.sched = baseConfig();
    o.sched.maxNumBatchedTokens = budget;
    o.sched.maxNumSeqs = std::min(budget, 16);
    RunResult r = run(work, o);
    std::string what = "budget " + std::to_string(budget);
    expectMatchesOracle(work, r, o.sched.maxModelLen, what);
    EXPECT_GT(r.stats.chunkedPrefills, 0) << what;
    EXPECT_LE(r.maxStepTokens, budget);
  }
  // And without chunking (the budget must cover the context).
  RunOptions o;
  o.sched = baseConfig();
  o.sched.enableChunkedPrefill = false;
  o.sched.maxNumBatchedTokens = o.sched.maxModelLen;
  RunResult r = run(work, o);
  expectMatchesOracle(work, r, o.sched.maxModelLen, "no chunking");
  EXPECT_EQ(r.stats.chunkedPrefills, 0);
}

TEST(Engine, PreemptionChangesNoOutput) {
  auto work = makeWorkload(5);
  // The largest request needs 64+40+48-1 = 151 KV slots: 10 blocks of 16.
  for (int32_t blocks : {10, 13, 24}) {
    for (int variant = 0; variant < 3; ++variant) {
      bool prefix = variant > 0;
      RunOptions o;
      o.sched = baseConfig();
      o.sched.numBlocks = blocks;
      o.sched.enablePrefixCaching = prefix;
      o.sched.maxNumBatchedTokens = 48;
      o.sched.maxNumSeqs = 8;
      // Capped chunks keep old prompts prefilling while new ones decode, so
      // preemption also hits decodes already placed in the step.
      o.sched.longPrefillTokenThreshold = variant == 2 ? 8 : 0;
      RunResult r = run(work, o);
      std::string what = std::to_string(blocks) + " blocks, prefix " +
                         (prefix ? "on" : "off") + ", chunk cap " +
                         std::to_string(o.sched.longPrefillTokenThreshold);
      expectMatchesOracle(work, r, o.sched.maxModelLen, what);
      EXPECT_GT(r.stats.preemptions, 0) << what;
    }
  }
}

TEST(Engine, OtherBlockSizes) {
  auto work = makeWorkload(6);
  for (int32_t bs : {1, 5, 32}) {
    RunOptions o;
    o.sched = baseConfig();
    o.sched.blockSize = bs;
    o.sched.numBlocks = 160 / bs + 3; // small enough to preempt
    o.sched.maxNumBatchedTokens = 40;
    o.sched.maxNumSeqs = 12;
    RunResult r = run(work, o);
    std::string what = "block size " + std::to_string(bs);
    expectMatchesOracle(work, r, o.sched.maxModelLen, what);
    EXPECT_GT(r.stats.preemptions, 0) << what;
    EXPECT_GT(r.stats.cachedPromptTokens, 0) << what;
  }
}

TEST(Engine, ContextLengthEndsGeneration) {
  std::vector<Req> work = makeWorkload(7, 8);
  for (Req &r : work) {
    r.params.maxTokens = 1000;
    r.params.ignoreEos = true;
  }
  RunOptions o;
  o.sched = baseConfig();
  o.sched.maxModelLen = 120; // prompts have up to 104 tokens
  RunResult r = run(work, o);
  for (size_t i = 0; i < work.size(); ++i) {
    EXPECT_EQ(r.reason.at(RequestId(i)), FinishReason::Length);
    EXPECT_EQ(work[i].prompt.size() + r.tokens.at(RequestId(i)).size(), 120u);
  }
  expectMatchesOracle(work, r, 120, "max_model_len 120");
}

TEST(Engine, BadRequestsFailAloneAndTheOthersGoOn) {
  auto good = makeWorkload(8, 12);
  std::vector<Req> work;
  std::vector<std::string> want; // expected error fragment, "" = good
  auto addBad = [&](Req r, const std::string &msg) {
    work.push_back(r);
    want.push_back(msg);
  };
  for (size_t i = 0; i < good.size(); ++i) {
    work.push_back(good[i]);
    want.push_back("");
    Req bad = good[i];
    switch (i % 6) {
    case 0: // longer than the context
      bad.prompt.resize(600, 5);
      addBad(bad, "max_model_len");
      break;
    case 1: // more KV than the pool (30 blocks * 16) holds
      bad.params.maxTokens = 250;
      bad.prompt.resize(240, 7);
      addBad(bad, "whole pool holds 30");
      break;
    case 2:
      bad.prompt[0] = kVocab + 3;
      addBad(bad, "outside the vocabulary");
      break;
    case 3:
      bad.params.temperature = -1;
      addBad(bad, "temperature");
      break;
    case 4:
      bad.params.stop = {"x"};
      addBad(bad, "tokenizer");
      break;
    case 5:
      bad.prompt.clear();
      addBad(bad, "empty");
      break;
    }
  }
  RunOptions o;
  o.sched = baseConfig();
  o.sched.maxModelLen = 512;
  o.sched.numBlocks = 30;
  RunResult r = run(work, o);
  for (size_t i = 0; i < work.size(); ++i) {
    RequestId id = RequestId(i);
    ASSERT_EQ(r.reason.count(id), 1u);
    if (want[i].empty()) {
      EXPECT_NE(r.reason.at(id), FinishReason::Error) << r.error.at(id);
      EXPECT_EQ(r.tokens.at(id), expected(work[i], 512)) << "request " << i;
    } else {
      EXPECT_EQ(r.reason.at(id), FinishReason::Error) << "request " << i;
      EXPECT_NE(r.error.at(id).find(want[i]), std::string::npos)
          << r.error.at(id);
      EXPECT_EQ(r.error.at(id).find('\n'), std::string::npos);
      EXPECT_TRUE(r.tokens[id].empty());
    }
  }
}

TEST(Engine, FailedForwardPassFailsOnlyItsBatch) {
  // The fake model fails any batch holding token 77 at position 0, which
  // only a prompt can put there.
  auto work = makeWorkload(9, 6);
  for (Req &r : work) {
    r.arrivalStep = 0;
    if (r.prompt[0] == 77)
      r.prompt[0] = 78;
  }
  Req poison = work[0];
  poison.prompt[0] = 77;
  poison.arrivalStep = 1000; // the others are done by then: it runs alone
  work.push_back(poison);
  work.push_back(work[1]); // and one more after it
  work.back().arrivalStep = 1001;
  RunOptions o;
  o.sched = baseConfig();
  o.poisonToken = 77;
  RunResult r = run(work, o);
  for (size_t i = 0; i < work.size(); ++i) {
    RequestId id = RequestId(i);
    if (i == 6) {
      EXPECT_EQ(r.reason.at(id), FinishReason::Error);
      EXPECT_NE(r.error.at(id).find("model execution failed: poisoned"),
                std::string::npos) << r.error.at(id);
    } else {
      EXPECT_EQ(r.tokens.at(id), expected(work[i], 256)) << "request " << i;
    }
  }
}

TEST(Engine, AbortEndsOneRequest) {
  std::string err;
  auto kv = KVCache::create(fakeKVSpec(16), 1 << 20, &err);
  ASSERT_TRUE(kv) << err;
  FakeModel model(*kv, kVocab);
  EngineConfig ec;
  ec.scheduler = baseConfig();
  ec.scheduler.numBlocks = kv->numBlocks();
  auto engine = Engine::create(ec, model, nullptr, &err);
  ASSERT_TRUE(engine) << err;
  SamplingParams p;
  p.temperature = 0;
  p.maxTokens = 20;
  p.ignoreEos = true;
  RequestId a = engine->addRequest(std::vector<int32_t>{1, 2, 3}, p);
  RequestId b = engine->addRequest(std::vector<int32_t>{4, 5, 6}, p);
  engine->step();
  engine->step();
  engine->abort(a);
  std::vector<int32_t> bTokens;
  bool sawAbort = false;
  while (engine->hasUnfinished())
    for (const RequestOutput &out : engine->step()) {
      if (out.id == a) {
        EXPECT_TRUE(out.finished);
        EXPECT_EQ(out.finishReason, FinishReason::Abort);
        EXPECT_TRUE(out.newTokenIds.empty());
        sawAbort = true;
      } else {
        bTokens.insert(bTokens.end(), out.newTokenIds.begin(),
                       out.newTokenIds.end());
      }
    }
  EXPECT_TRUE(sawAbort);
  EXPECT_EQ(bTokens.size(), 18u); // two came in the first steps
  EXPECT_EQ(engine->scheduler().verify(), "");
  (void)b;
}

} // namespace
