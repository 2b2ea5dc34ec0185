//===- ExecModelTest.cpp - whole decoders, generation, perplexity, errors ===//
//
// Random-weight decoders built by buildDecoderModule (GQA, MQA, tied,
// Qwen2 biases, llama3 rope, bf16 weights) run through the executor and
// through a forward composed of NaiveOps; greedy generation and perplexity
// are checked against loops over that naive forward.
//
//===----------------------------------------------------------------------===//
#include "ExecTestUtil.h"
#include "NaiveOps.h"

#include <gtest/gtest.h>

#include <map>

using namespace exectest;
using namespace mlir;
using qopt::ModelConfig;
using qopt::ReferenceExecutor;
using qopt::Tensor;

namespace {

ModelConfig smallConfig() {
  ModelConfig c;
  c.vocabSize = 61;
  c.hiddenSize = 64;
  c.intermediateSize = 172;
  c.numLayers = 2;
  c.numHeads = 8;
  c.numKvHeads = 4;
  c.headDim = 16;
  c.rmsNormEps = 1e-5;
  return c;
}

/// LlamaForCausalLM's forward from NaiveOps; logits [B*S, V].
Vec naiveForward(const ModelConfig &c, const qopt::WeightStore &store,
                 const std::vector<std::vector<int32_t>> &batch) {
  namespace n = qopt::names;
  auto W = [&](const std::string &name) { return store.readF32(name); };
  const int64_t B = batch.size(), S = batch[0].size(), D = c.hiddenSize;
  const int64_t I = c.intermediateSize, Hq = c.numHeads * c.headDim,
                Hkv = c.numKvHeads * c.headDim;
  naive::Rope rope;
  rope.type = c.ropeScaling.type;
  rope.factor = c.ropeScaling.factor;
  rope.low = c.ropeScaling.lowFreqFactor;
  rope.high = c.ropeScaling.highFreqFactor;
  rope.originalMax = double(c.ropeScaling.originalMaxPositionEmbeddings);
  std::vector<int64_t> ids;
  for (auto &row : batch)
    ids.insert(ids.end(), row.begin(), row.end());
  Vec h = naive::embedding(ids, W(n::embedTokens()), D);
  for (int64_t l = 0; l < c.numLayers; ++l) {
    Vec x = naive::rmsNorm(h, W(n::inputNorm(l)), D, c.rmsNormEps);
    auto proj = [&](const char *p, int64_t out) {
      Vec bias;
      if (c.attentionBias)
        bias = W(n::attn(l, p, "bias"));
      return naive::linear(x, W(n::attn(l, p)), D, out, c.attentionBias ? &bias : nullptr);
    };
    Vec q = naive::rotary(proj("q_proj", Hq), B, S, c.numHeads, c.headDim, c.headDim,
                          c.ropeTheta, rope);
    Vec k = naive::rotary(proj("k_proj", Hkv), B, S, c.numKvHeads, c.headDim, c.headDim,
                          c.ropeTheta, rope);
    Vec v = proj("v_proj", Hkv);
    Vec a = naive::attention(q, k, v, B, S, c.numHeads, c.numKvHeads, c.headDim,
                             1.0 / std::sqrt(double(c.headDim)));
    h = naive::add(h, naive::linear(a, W(n::attn(l, "o_proj")), Hq, D));
    x = naive::rmsNorm(h, W(n::postAttentionNorm(l)), D, c.rmsNormEps);
    Vec g = naive::linear(x, W(n::mlp(l, "gate_proj")), D, I);
    Vec u = naive::linear(x, W(n::mlp(l, "up_proj")), D, I);
    h = naive::add(h, naive::linear(naive::swiglu(g, u), W(n::mlp(l, "down_proj")), I, D));
  }
  Vec x = naive::rmsNorm(h, W(n::finalNorm()), D, c.rmsNormEps);
  return naive::linear(x, W(c.tieWordEmbeddings ? n::embedTokens() : n::lmHead()), D,
                       c.vocabSize);
}

/// A random model: its store, module and executor.
struct Model {
  MLIRContext ctx;
  qopt::WeightStore store;
  OwningOpRef<ModuleOp> module;
  std::unique_ptr<ReferenceExecutor> exec;
  ModelConfig config;

  Model(const ModelConfig &c, uint32_t seed, qopt::DType dtype = qopt::DType::F32,
        qopt::ExecutorOptions opts = {})
      : config(c) {
    std::mt19937 rng(seed);
    randomWeights(c, store, rng, dtype);
    std::string err;
    module = qopt::buildDecoderModule(ctx, c, store, "<random>", &err);
    EXPECT_TRUE(module) << err;
    if (!module)
      return;
    exec = ReferenceExecutor::create(*module, store, &err, opts);
    EXPECT_TRUE(exec) << err;
  }
};

std::vector<std::vector<int32_t>> randomIds(std::mt19937 &rng, int64_t B, int64_t S,
                                            int64_t V) {
  std::uniform_int_distribution<int32_t> pick(0, int32_t(V - 1));
  std::vector<std::vector<int32_t>> r(B);
  for (auto &row : r)
    for (int64_t i = 0; i < S; ++i)
      row.push_back(pick(rng));
  return r;
}

struct Variant {
  const char *name;
  void (*apply)(ModelConfig &);
  qopt::DType dtype;
};

const Variant kVariants[] = {
    {"gqa", [](ModelConfig &) {}, qopt::DType::F32},
    {"mqa", [](ModelConfig &c) { c.numHeads = 4; c.numKvHeads = 1; c.headDim = 32; },
     qopt::DType::F32},
    {"tied", [](ModelConfig &c) { c.tieWordEmbeddings = true; }, qopt::DType::F32},
    {"qwen2-bias", [](ModelConfig &c) { c.attentionBias = true; c.architecture = "Qwen2ForCausalLM"; },
     qopt::DType::F32},
    {"llama3-rope",
     [](ModelConfig &c) {
       c.ropeTheta = 500000;
       c.headDim = 64;
       c.numHeads = 2;
       c.numKvHeads = 1;
       c.ropeScaling.type = "llama3";
       c.ropeScaling.factor = 32;
       c.ropeScaling.lowFreqFactor = 1;
       c.ropeScaling.highFreqFactor = 4;
       c.ropeScaling.originalMaxPositionEmbeddings = 8192;
     },
     qopt::DType::F32},
    {"linear-rope",
     [](ModelConfig &c) {
       c.ropeScaling.type = "linear";
       c.ropeScaling.factor = 2;
     },
     qopt::DType::F32},
    {"bf16", [](ModelConfig &) {}, qopt::DType::BF16},
};

TEST(ExecModel, MatchesNaiveForward) {
  std::mt19937 rng(11);
  for (const Variant &v : kVariants) {
    ModelConfig c = smallConfig();
    v.apply(c);
    Model m(c, 100, v.dtype);
    ASSERT_TRUE(m.exec) << v.name;
    EXPECT_EQ(m.exec->vocabSize(), c.vocabSize);
    for (auto [B, S] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {3, 33}}) {
      auto ids = randomIds(rng, B, S, c.vocabSize);
      Tensor logits;
      std::string err;
      ASSERT_TRUE(m.exec->forward(ids, &logits, &err)) << err;
      EXPECT_EQ(logits.shape, (std::vector<int64_t>{B, S, c.vocabSize}));
      Vec ref = naiveForward(c, m.store, ids);
      EXPECT_LT(naive::maxAbsDiff(logits.data, ref), 1e-4 * naive::maxAbs(ref))
          << v.name << " batch " << B << " seq " << S;
    }
  }
}

// A sequence's logits do not depend on what else is in the batch, nor on
// the thread count.
TEST(ExecModel, BatchAndThreadInvariance) {
  std::mt19937 rng(12);
  ModelConfig c = smallConfig();
  qopt::ExecutorOptions one;
  one.threads = 1;
  Model m(c, 101), m1(c, 101, qopt::DType::F32, one);
  ASSERT_TRUE(m.exec && m1.exec);
  auto ids = randomIds(rng, 3, 9, c.vocabSize);
  Tensor all, single, threaded;
  std::string err;
  ASSERT_TRUE(m.exec->forward(ids, &all, &err)) << err;
  ASSERT_TRUE(m1.exec->forward(ids, &threaded, &err)) << err;
  EXPECT_LT(naive::maxAbsDiff(all.data, threaded.data), 1e-5);
  const int64_t n = 9 * c.vocabSize;
  for (int b = 0; b < 3; ++b) {
    ASSERT_TRUE(m.exec->forward({ids[b]}, &single, &err)) << err;
    Vec part(all.data.begin() + b * n, all.data.begin() + (b + 1) * n);
    EXPECT_LT(naive::maxAbsDiff(part, single.data), 1e-5) << "sequence " << b;
  }
}

TEST(ExecModel, ObserverSeesEveryOp) {
  std::mt19937 rng(13);
  ModelConfig c = smallConfig();
  Model m(c, 102);
  ASSERT_TRUE(m.exec);
  std::map<std::string, int> calls;
  Vec lastNorm;
  int checkedLinears = 0;
  m.exec->setObserver([&](Operation *op, const Tensor &in, const Tensor &out) {
    std::string name = op->getName().getStringRef().str();
    ++calls[name];
    if (name == "qllm.rms_norm")
      lastNorm = out.data;
    // q/k/v/gate/up read the preceding norm's output.
    if (name == "qllm.linear" && op->getOperand(0).getDefiningOp() &&
        isa<qopt::qllm::RMSNormOp>(op->getOperand(0).getDefiningOp())) {
      EXPECT_EQ(in.data, lastNorm);
      ++checkedLinears;
    }
    if (name == "qllm.embedding") {
      EXPECT_EQ(in.shape, (std::vector<int64_t>{1, 5}));
    }
  });
  auto ids = randomIds(rng, 1, 5, c.vocabSize);
  Tensor logits;
  std::string err;
  ASSERT_TRUE(m.exec->forward(ids, &logits, &err)) << err;
  EXPECT_EQ(calls["qllm.embedding"], 1);
  EXPECT_EQ(calls["qllm.linear"], 7 * c.numLayers);
  EXPECT_EQ(calls["qllm.lm_head"], 1);
  EXPECT_EQ(calls["qllm.rms_norm"], 2 * c.numLayers + 1);
  EXPECT_EQ(calls["qllm.attention"], c.numLayers);
  EXPECT_EQ(checkedLinears, 5 * c.numLayers);
}

TEST(ExecModel, ProfileCountsOps) {
  ModelConfig c = smallConfig();
  qopt::ExecutorOptions opts;
  opts.profile = true;
  Model m(c, 103, qopt::DType::F32, opts);
  ASSERT_TRUE(m.exec);
  Tensor logits;
  std::string err;
  ASSERT_TRUE(m.exec->forward({{1, 2, 3}}, &logits, &err)) << err;
  bool sawLinear = false;
  for (const qopt::OpProfile &p : m.exec->profile())
    if (p.opName == "qllm.linear") {
      sawLinear = true;
      EXPECT_EQ(p.calls, 7 * c.numLayers);
      EXPECT_GE(p.seconds, 0.0);
    }
  EXPECT_TRUE(sawLinear);
  m.exec->resetProfile();
  for (const qopt::OpProfile &p : m.exec->profile())
    EXPECT_EQ(p.calls, 0);
}

TEST(ExecModel, GreedyMatchesNaiveArgmax) {
  ModelConfig c = smallConfig();
  Model m(c, 104);
  ASSERT_TRUE(m.exec);
  std::vector<int32_t> prompt = {5, 17, 3};
  std::vector<int32_t> got;
  std::string err;
  ASSERT_TRUE(qopt::greedyGenerate(*m.exec, prompt, 6, std::nullopt, &got, &err)) << err;
  std::vector<int32_t> seq = prompt, expected;
  for (int i = 0; i < 6; ++i) {
    Vec logits = naiveForward(c, m.store, {seq});
    auto last = logits.end() - c.vocabSize;
    int32_t best = int32_t(std::max_element(last, logits.end()) - last);
    expected.push_back(best);
    seq.push_back(best);
  }
  EXPECT_EQ(got, expected);
  // Stops right after eos, which it keeps.
  ASSERT_TRUE(qopt::greedyGenerate(*m.exec, prompt, 6, expected[2], &got, &err)) << err;
  auto firstEos = std::find(expected.begin(), expected.end(), expected[2]);
  EXPECT_EQ(got, std::vector<int32_t>(expected.begin(), firstEos + 1));
  EXPECT_FALSE(qopt::greedyGenerate(*m.exec, {}, 3, std::nullopt, &got, &err));
}

TEST(ExecModel, PerplexityMatchesNaiveNll) {
  std::mt19937 rng(14);
  ModelConfig c = smallConfig();
  Model m(c, 105);
  ASSERT_TRUE(m.exec);
  const int64_t ctx = 11;
  std::vector<int32_t> tokens = randomIds(rng, 1, ctx * 5 + 4, c.vocabSize)[0];
  for (int64_t chunks : {int64_t(3), int64_t(0), int64_t(50)}) {
    qopt::PerplexityResult r;
    std::string err;
    ASSERT_TRUE(qopt::evaluatePerplexity(*m.exec, tokens, ctx, chunks, &r, &err)) << err;
    int64_t windows = chunks == 3 ? 3 : 5; // 0 = all; 50 = all there are
    double nll = 0;
    for (int64_t w = 0; w < windows; ++w) {
      std::vector<int32_t> win(tokens.begin() + w * ctx, tokens.begin() + (w + 1) * ctx);
      Vec logits = naiveForward(c, m.store, {win});
      for (int64_t p = 0; p + 1 < ctx; ++p) {
        double mx = -1e30, sum = 0;
        for (int64_t j = 0; j < c.vocabSize; ++j)
          mx = std::max(mx, double(logits[p * c.vocabSize + j]));
        for (int64_t j = 0; j < c.vocabSize; ++j)
          sum += std::exp(logits[p * c.vocabSize + j] - mx);
        nll += mx + std::log(sum) - logits[p * c.vocabSize + win[p + 1]];
      }
    }
    int64_t predicted = windows * (ctx - 1);
    EXPECT_EQ(r.windows, windows);
    EXPECT_EQ(r.predicted, predicted);
    EXPECT_NEAR(r.meanNll, nll / predicted, 1e-5);
    EXPECT_NEAR(r.perplexity, std::exp(nll / predicted), 1e-4 * r.perplexity);
  }
  qopt::PerplexityResult r;
  std::string err;
  std::vector<int32_t> few(tokens.begin(), tokens.begin() + 7);
  EXPECT_FALSE(qopt::evaluatePerplexity(*m.exec, few, ctx, 3, &r, &err));
  EXPECT_NE(err.find("at least 11 tokens"), std::string::npos) << err;
  EXPECT_NE(err.find("only 7"), std::string::npos) << err;
}

//===----------------------------------------------------------------------===//
// Errors: one line naming the problem, never a crash.
//===----------------------------------------------------------------------===//

TEST(ExecErrors, BadTokensAndRaggedBatch) {
  ModelConfig c = smallConfig();
  Model m(c, 106);
  ASSERT_TRUE(m.exec);
  Tensor logits;
  std::string err;
  EXPECT_FALSE(m.exec->forward({{1, 2, 61}}, &logits, &err));
  EXPECT_NE(err.find("token id 61"), std::string::npos) << err;
  EXPECT_NE(err.find("vocabulary of 61"), std::string::npos) << err;
  EXPECT_FALSE(m.exec->forward({{1, -1}}, &logits, &err));
  EXPECT_NE(err.find("token id -1"), std::string::npos) << err;
  EXPECT_FALSE(m.exec->forward({{1, 2}, {3}}, &logits, &err));
  EXPECT_NE(err.find("ragged"), std::string::npos) << err;
  EXPECT_FALSE(m.exec->forward({}, &logits, &err));
  EXPECT_FALSE(m.exec->forward({{}}, &logits, &err));
}

TEST(ExecErrors, MissingWeightAndQParam) {
  ModelConfig c = smallConfig();
  Model m(c, 107);
  ASSERT_TRUE(m.module);
  std::string err;
  // Missing from the store.
  qopt::WeightStore partial;
  auto e = ReferenceExecutor::create(*m.module, partial, &err);
  EXPECT_FALSE(e);
  EXPECT_NE(err.find("model.embed_tokens.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("not in the weight store"), std::string::npos) << err;

  // A quantized weight: rejected at create() naming the op.
  OpBuilder b(&m.ctx);
  auto func = m.module->lookupSymbol<func::FuncOp>("forward");
  auto param = *func.getBody().front().getOps<qopt::qllm::ParamOp>().begin();
  b.setInsertionPoint(param);
  auto quant = qopt::qllm::QuantAttr::get(&m.ctx, qopt::qllm::ElementKind::Int, 4, 32, true,
                                          b.getF16Type(), Type(), b.getStringAttr("test"));
  auto qtype = qopt::qllm::QWeightType::get(&m.ctx, {4, 64}, quant);
  b.create<qopt::qllm::QParamOp>(b.getUnknownLoc(), qtype, b.getStringAttr("qw"));
  e = ReferenceExecutor::create(*m.module, m.store, &err);
  EXPECT_FALSE(e);
  EXPECT_NE(err.find("qllm.qparam"), std::string::npos) << err;
  EXPECT_NE(err.find("\"qw\""), std::string::npos) << err;
}

TEST(ExecErrors, UnsupportedOp) {
  MLIRContext ctx;
  ctx.allowUnregisteredDialects();
  qopt::WeightStore store;
  OpModule m(ctx, store, 1, 3);
  Value x = m.input(Vec(3 * 8, 1.0f), 8);
  OperationState st(m.b.getUnknownLoc(), "test.mystery");
  st.addOperands(x);
  st.addTypes(x.getType());
  Operation *op = m.b.create(st);
  m.finish(op->getResult(0));
  std::string err;
  EXPECT_FALSE(ReferenceExecutor::create(*m.module, store, &err));
  EXPECT_NE(err.find("unsupported op 'test.mystery'"), std::string::npos) << err;
}

TEST(ExecErrors, NoForward) {
  MLIRContext ctx;
  OpBuilder b(&ctx);
  OwningOpRef<ModuleOp> module = ModuleOp::create(b.getUnknownLoc());
  qopt::WeightStore store;
  std::string err;
  EXPECT_FALSE(ReferenceExecutor::create(*module, store, &err));
  EXPECT_NE(err.find("@forward"), std::string::npos) << err;
}

} // namespace
