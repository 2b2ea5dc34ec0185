//===- DeviceSamplingEngineTest.cpp - the engine with an executor that samples -===//
//
// ModelExecutor::executeAndSample (Executor.h): an executor that can draw
// the tokens where the logits are gets every step through it, with the
// (params, seed, index) the host sampler would use, and its tokens are the
// ones the requests get. The fake "device" here samples with the host
// sampler, so outputs must equal the oracle exactly.
//
//===----------------------------------------------------------------------===//
#include "FakeModel.h"

#include "qopt-rt/serving/Engine.h"

#include <gtest/gtest.h>

#include <map>

using namespace qrt::serving;
using namespace qrt::serving::test;

namespace {

constexpr int32_t kVocab = 101;
constexpr int32_t kEos = 0;

/// FakeModel that samples "on the device": execute() into its own buffer,
/// then sampleToken per row, unless told to answer otherwise.
class SamplingFakeModel : public FakeModel {
public:
  using FakeModel::FakeModel;
  bool canSample = true;
  /// >= 0: every draw returns this token instead (proves where tokens come from).
  int32_t forcedToken = -1;
  /// Fail executeAndSample with this error when not empty.
  std::string failWith;
  int64_t executeCalls = 0, sampleCalls = 0;

  bool canSampleOnDevice() const override { return canSample; }
  bool execute(const StepBatch &b, float *logits, std::string *error) override {
    ++executeCalls;
    return FakeModel::execute(b, logits, error);
  }
  bool executeAndSample(const StepBatch &b, const std::vector<SampleSpec> &rows, int32_t *tokens,
                        std::string *error) override {
    ++sampleCalls;
    if (!failWith.empty()) {
      *error = failWith;
      return false;
    }
    EXPECT_EQ(rows.size(), b.sampleIndices.size());
    std::vector<float> logits(rows.size() * size_t(kVocab));
    if (!FakeModel::execute(b, logits.data(), error))
      return false;
    for (size_t r = 0; r < rows.size(); ++r)
      tokens[r] = forcedToken >= 0
                      ? forcedToken
                      : sampleToken(logits.data() + r * size_t(kVocab), kVocab, rows[r].params,
                                    rows[r].seed, rows[r].index);
    return true;
  }
};

struct Outcome {
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, FinishReason> reason;
  std::map<RequestId, std::string> error;
};

/// Greedy and seeded requests, all submitted at once, run to the end.
Outcome runAll(SamplingFakeModel &model, const std::vector<std::vector<int32_t>> &prompts,
               const std::vector<SamplingParams> &params) {
  Outcome o;
  std::string err;
  EngineConfig ec;
  ec.scheduler.blockSize = 16;
  ec.scheduler.numBlocks = 256;
  ec.scheduler.maxNumBatchedTokens = 512;
  ec.scheduler.maxNumSeqs = 8;
  ec.scheduler.maxModelLen = 256;
  ec.eosTokenIds = {kEos};
  auto engine = Engine::create(ec, model, nullptr, &err);
  EXPECT_TRUE(engine) << err;
  if (!engine)
    return o;
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(engine->addRequest(prompts[i], params[i]), RequestId(i));
  for (int step = 0; step < 10000 && engine->hasUnfinished(); ++step)
    for (const RequestOutput &out : engine->step()) {
      auto &t = o.tokens[out.id];
      t.insert(t.end(), out.newTokenIds.begin(), out.newTokenIds.end());
      if (out.finished) {
        o.reason[out.id] = out.finishReason;
        o.error[out.id] = out.error;
      }
    }
  EXPECT_FALSE(engine->hasUnfinished());
  return o;
}

struct Fixture {
  std::unique_ptr<KVCache> kv;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
  Fixture() {
    std::string err;
    kv = KVCache::create(fakeKVSpec(16), KVCache::bytesPerBlock(fakeKVSpec(16)) * 256, &err);
    EXPECT_TRUE(kv) << err;
    for (int i = 0; i < 6; ++i) {
      std::vector<int32_t> p;
      for (int k = 0; k < 5 + 7 * i; ++k)
        p.push_back(1 + (i * 31 + k * 17) % (kVocab - 1));
      prompts.push_back(p);
      SamplingParams sp;
      sp.maxTokens = 10 + 3 * i;
      sp.ignoreEos = true;
      if (i % 2) {
        sp.temperature = 0.8f;
        sp.topK = 20;
        sp.topP = 0.9f;
        sp.seed = 500 + uint64_t(i);
      } else {
        sp.temperature = 0;
      }
      params.push_back(sp);
    }
  }
};

} // namespace

TEST(DeviceSamplingEngine, EveryStepSamplesThroughTheExecutorWithTheHostSeeds) {
  Fixture f;
  SamplingFakeModel model(*f.kv, kVocab);
  const Outcome o = runAll(model, f.prompts, f.params);
  EXPECT_EQ(model.problem, "");
  EXPECT_GT(model.sampleCalls, 0);
  EXPECT_EQ(model.executeCalls, 0) << "the engine called execute()";
  for (size_t i = 0; i < f.prompts.size(); ++i) {
    ASSERT_EQ(o.reason.count(RequestId(i)), 1u);
    EXPECT_EQ(o.tokens.at(RequestId(i)),
              referenceGenerate(f.prompts[i], f.params[i], f.params[i].seed.value_or(0), kVocab,
                                256, {kEos}))
        << "request " << i;
  }
}

TEST(DeviceSamplingEngine, TokensAreTheExecutors) {
  Fixture f;
  SamplingFakeModel model(*f.kv, kVocab);
  model.forcedToken = 5;
  const Outcome o = runAll(model, f.prompts, f.params);
  for (size_t i = 0; i < f.prompts.size(); ++i)
    EXPECT_EQ(o.tokens.at(RequestId(i)), std::vector<int32_t>(size_t(f.params[i].maxTokens), 5))
        << "request " << i;
}

TEST(DeviceSamplingEngine, AnExecutorThatCannotSampleGetsExecute) {
  Fixture f;
  SamplingFakeModel model(*f.kv, kVocab);
  model.canSample = false;
  const Outcome o = runAll(model, f.prompts, f.params);
  EXPECT_EQ(model.sampleCalls, 0);
  EXPECT_GT(model.executeCalls, 0);
  for (size_t i = 0; i < f.prompts.size(); ++i)
    EXPECT_EQ(o.tokens.at(RequestId(i)),
              referenceGenerate(f.prompts[i], f.params[i], f.params[i].seed.value_or(0), kVocab,
                                256, {kEos}))
        << "request " << i;
}

TEST(DeviceSamplingEngine, FailuresAndUnsampleableRowsFailTheirRequests) {
  Fixture f;
  {
    SamplingFakeModel model(*f.kv, kVocab);
    model.failWith = "device fault";
    const Outcome o = runAll(model, f.prompts, f.params);
    for (size_t i = 0; i < f.prompts.size(); ++i) {
      EXPECT_EQ(o.reason.at(RequestId(i)), FinishReason::Error);
      EXPECT_NE(o.error.at(RequestId(i)).find("model execution failed: device fault"),
                std::string::npos)
          << o.error.at(RequestId(i));
    }
  }
  {
    // -1: the row had no finite logit.
    struct NoFinite : SamplingFakeModel {
      using SamplingFakeModel::SamplingFakeModel;
      bool executeAndSample(const StepBatch &b, const std::vector<SampleSpec> &rows,
                            int32_t *tokens, std::string *error) override {
        if (!SamplingFakeModel::executeAndSample(b, rows, tokens, error))
          return false;
        for (size_t r = 0; r < rows.size(); ++r)
          tokens[r] = -1;
        return true;
      }
    } nan(*f.kv, kVocab);
    const Outcome o = runAll(nan, f.prompts, f.params);
    for (size_t i = 0; i < f.prompts.size(); ++i) {
      EXPECT_EQ(o.reason.at(RequestId(i)), FinishReason::Error);
      EXPECT_NE(o.error.at(RequestId(i)).find("no finite value"), std::string::npos)
          << o.error.at(RequestId(i));
    }
  }
}
