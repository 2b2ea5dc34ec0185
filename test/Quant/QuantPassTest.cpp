//===- QuantPassTest.cpp - selection, the RTN pass, executor, quality ---===//
//
// On random decoders (test/Exec's builder): which weights a pass picks;
// that qopt-quantize-rtn turns them into qllm.qparam and that the
// executor's output on the quantized module is the float model's output on
// the dequantized weights (a module built independently from them); that
// the quality numbers are those of their definitions; that bad pipeline
// options are refused with the expected words.
//
//===----------------------------------------------------------------------===//
#include "../Exec/ExecTestUtil.h"

#include "qopt/Quant/LinearSelection.h"
#include "qopt/Quant/Passes.h"
#include "qopt/Quant/Pipeline.h"
#include "qopt/Quant/QualityEval.h"
#include "qopt/Quant/QuantReport.h"
#include "qopt/Quant/Quantizer.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

using namespace qopt;
using namespace qopt::quant;
namespace n = qopt::names;

namespace {

ModelConfig tinyConfig(bool tied = false) {
  ModelConfig c;
  c.vocabSize = 97;
  c.hiddenSize = 64;
  c.intermediateSize = 172; // not a multiple of any group size
  c.numLayers = 2;
  c.numHeads = 4;
  c.numKvHeads = 2;
  c.headDim = 16;
  c.maxPositionEmbeddings = 64;
  c.tieWordEmbeddings = tied;
  return c;
}

struct Model {
  mlir::MLIRContext ctx;
  WeightStore store;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  ModelConfig config;

  explicit Model(const ModelConfig &c, uint32_t seed = 1) : config(c) {
    ctx.loadDialect<qllm::QLLMDialect, mlir::func::FuncDialect>();
    std::mt19937 rng(seed);
    exectest::randomWeights(c, store, rng);
    std::string err;
    module = buildDecoderModule(ctx, c, store, "<random>", &err);
    EXPECT_TRUE(module) << err;
    ctx.getLoadedDialect<qllm::QLLMDialect>()->setWeightStore(&store);
  }
};

std::map<std::string, Format> selectedFormats(Model &m, const WeightSelection &sel) {
  std::vector<SelectedWeight> selected;
  std::string err;
  EXPECT_TRUE(sel.collect(*m.module, &selected, &err)) << err;
  std::map<std::string, Format> out;
  for (const SelectedWeight &s : selected)
    out[s.name] = s.format;
  return out;
}

Format fmt(const std::string &name, int64_t group = 128, bool sym = false) {
  Format f;
  std::string err;
  EXPECT_TRUE(parseFormat(name, group, sym, &f, &err)) << err;
  return f;
}

std::vector<std::vector<int32_t>> windowsOf(int64_t count, int64_t len, int64_t vocab,
                                            uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> pick(0, int32_t(vocab - 1));
  std::vector<std::vector<int32_t>> w(static_cast<size_t>(count));
  for (auto &x : w)
    for (int64_t i = 0; i < len; ++i)
      x.push_back(pick(rng));
  return w;
}

} // namespace

TEST(LinearSelection, DefaultsOverridesEmbeddingsLmHead) {
  Model m(tinyConfig());
  WeightSelection sel;
  std::string err;
  ASSERT_TRUE(WeightSelection::create(fmt("int4"), {}, false, false, &sel, &err)) << err;
  auto picked = selectedFormats(m, sel);
  EXPECT_EQ(picked.size(), 2u * 7u); // every decoder linear, nothing else
  EXPECT_FALSE(picked.count(n::embedTokens()));
  EXPECT_FALSE(picked.count(n::lmHead()));
  EXPECT_TRUE(picked.count(n::mlp(1, "down_proj")));

  ASSERT_TRUE(WeightSelection::create(
      fmt("int4"),
      {"model\\.layers\\.0\\.mlp\\.down_proj\\.weight=int8", "k_proj=none", "down_proj=int3:g32",
       "q_proj=nf4"},
      false, true, &sel, &err))
      << err;
  picked = selectedFormats(m, sel);
  EXPECT_EQ(picked.at(n::mlp(0, "down_proj")).bits, 8u); // first match wins
  EXPECT_EQ(picked.at(n::mlp(0, "down_proj")).groupSize, 128);
  EXPECT_EQ(picked.at(n::mlp(1, "down_proj")).bits, 3u);
  EXPECT_EQ(picked.at(n::mlp(1, "down_proj")).groupSize, 32);
  EXPECT_FALSE(picked.count(n::attn(0, "k_proj")));
  EXPECT_EQ(picked.at(n::attn(1, "q_proj")).kind, qllm::ElementKind::NF4);
  EXPECT_EQ(picked.at(n::attn(1, "q_proj")).groupSize, 64);
  EXPECT_TRUE(picked.count(n::lmHead()));
  EXPECT_FALSE(picked.count(n::embedTokens()));

  for (const char *bad : {"nonsense", "(=int4", "x=int9", "=int4", "x=", "x=nf4:gchannel"}) {
    EXPECT_FALSE(WeightSelection::create(fmt("int4"), {bad}, false, false, &sel, &err)) << bad;
    EXPECT_NE(err.find("-wquant-override"), std::string::npos) << err;
  }
}

TEST(LinearSelection, TiedEmbeddingNeedsBoth) {
  Model m(tinyConfig(/*tied=*/true));
  WeightSelection sel;
  std::string err;
  ASSERT_TRUE(WeightSelection::create(fmt("int8"), {}, false, true, &sel, &err));
  EXPECT_FALSE(selectedFormats(m, sel).count(n::embedTokens()));
  ASSERT_TRUE(WeightSelection::create(fmt("int8"), {}, true, true, &sel, &err));
  EXPECT_TRUE(selectedFormats(m, sel).count(n::embedTokens()));
}

/// The quantized module runs as the float module of the dequantized weights.
TEST(QuantizeRTN, ExecutorRunsTheDequantizedWeights) {
  for (const char *format : {"int4", "int3", "int8", "nf4", "fp8", "int2"})
    for (bool withHead : {false, true}) {
      SCOPED_TRACE(std::string(format) + (withHead ? " +lm_head+embeddings" : ""));
      Model m(tinyConfig());
      Model reference(tinyConfig()); // same seed: same weights
      mlir::PassManager pm(&m.ctx);
      QuantizeRTNOptions o;
      o.wquant = format;
      o.groupSize = std::string(format) == "fp8" ? -1 : 32;
      o.quantizeLmHead = withHead;
      o.quantizeEmbeddings = withHead;
      pm.addPass(createQuantizeRTN(o));
      ASSERT_TRUE(mlir::succeeded(pm.run(*m.module)));
      int qparams = 0, params2d = 0;
      m.module->walk([&](qllm::QParamOp) { ++qparams; });
      m.module->walk([&](qllm::ParamOp p) { params2d += p.getResult().getType().getRank() == 2; });
      EXPECT_EQ(qparams, withHead ? 16 : 14);
      EXPECT_EQ(params2d, withHead ? 0 : 2);

      // The reference: the float module over a store whose weights are
      // replaced by their dequantized values.
      Format f = fmt(format, std::string(format) == "fp8" ? -1 : 32);
      WeightStore deqStore;
      std::string err;
      for (const std::string &name : reference.store.names()) {
        const WeightEntry *e = reference.store.find(name);
        std::vector<float> w = reference.store.readF32(*e);
        bool quantized = e->shape.size() == 2 &&
                         (withHead || (name != n::embedTokens() && name != n::lmHead()));
        if (quantized) {
          QuantizedMatrix q = quantizeRTN(w.data(), e->shape[0], e->shape[1], f);
          w = dequantize(q);
        }
        ASSERT_TRUE(deqStore.addOwned(name, DType::F32, e->shape, exectest::bytesOf(w), &err));
      }
      auto refModule = buildDecoderModule(reference.ctx, reference.config, deqStore, "<deq>", &err);
      ASSERT_TRUE(refModule) << err;
      auto exec = ReferenceExecutor::create(*m.module, m.store, &err);
      ASSERT_TRUE(exec) << err;
      auto refExec = ReferenceExecutor::create(*refModule, deqStore, &err);
      ASSERT_TRUE(refExec) << err;
      auto ids = windowsOf(2, 9, 97, 3);
      Tensor a, b;
      ASSERT_TRUE(exec->forward(ids, &a, &err)) << err;
      ASSERT_TRUE(refExec->forward(ids, &b, &err)) << err;
      ASSERT_EQ(a.shape, b.shape);
      for (size_t i = 0; i < a.data.size(); ++i)
        ASSERT_NEAR(a.data[i], b.data[i], 1e-5f * (1 + std::fabs(b.data[i])));
    }
}

TEST(QuantizeRTN, TextualPipelineAndFormatDefaults) {
  registerQoptQuantPasses();
  Model m(tinyConfig());
  mlir::PassManager pm(&m.ctx);
  std::string errText;
  llvm::raw_string_ostream es(errText);
  ASSERT_TRUE(mlir::succeeded(mlir::parsePassPipeline(
      "qopt-quantize-rtn{wquant=nf4 wquant-override=down_proj=fp8}", pm, es)))
      << errText;
  ASSERT_TRUE(mlir::succeeded(pm.run(*m.module)));
  std::map<std::string, Format> formats;
  m.module->walk([&](qllm::QParamOp q) {
    formats[q.getName().str()] = fromAttr(q.getResult().getType().getQuant());
  });
  ASSERT_EQ(formats.size(), 14u);
  EXPECT_EQ(formats.at(n::attn(0, "q_proj")).kind, qllm::ElementKind::NF4);
  EXPECT_EQ(formats.at(n::attn(0, "q_proj")).groupSize, 64); // nf4's own default
  EXPECT_EQ(formats.at(n::mlp(0, "down_proj")).kind, qllm::ElementKind::FP8E4M3);
  EXPECT_EQ(formats.at(n::mlp(0, "down_proj")).groupSize, -1);
}

TEST(QuantizeRTN, FailsCleanlyWithoutAStore) {
  Model m(tinyConfig());
  m.ctx.getLoadedDialect<qllm::QLLMDialect>()->setWeightStore(nullptr);
  std::string diag;
  mlir::ScopedDiagnosticHandler h(&m.ctx, [&](mlir::Diagnostic &d) {
    diag += d.str();
    return mlir::success();
  });
  mlir::PassManager pm(&m.ctx);
  pm.addPass(createQuantizeRTN());
  EXPECT_TRUE(mlir::failed(pm.run(*m.module)));
  EXPECT_NE(diag.find("no weight store"), std::string::npos) << diag;

  // A bad format in the pass options.
  m.ctx.getLoadedDialect<qllm::QLLMDialect>()->setWeightStore(&m.store);
  diag.clear();
  mlir::PassManager pm2(&m.ctx);
  QuantizeRTNOptions o;
  o.wquant = "int9";
  pm2.addPass(createQuantizeRTN(o));
  EXPECT_TRUE(mlir::failed(pm2.run(*m.module)));
  EXPECT_NE(diag.find("int9"), std::string::npos) << diag;
}

/// evaluateQuality's numbers against their definitions, computed here from
/// the two executors' logits with plain loops.
TEST(QualityEval, MatchesDefinitions) {
  Model fl(tinyConfig()), qm(tinyConfig());
  mlir::PassManager pm(&qm.ctx);
  QuantizeRTNOptions o;
  o.wquant = "int3";
  o.groupSize = 32;
  pm.addPass(createQuantizeRTN(o));
  ASSERT_TRUE(mlir::succeeded(pm.run(*qm.module)));
  std::string err;
  auto fexec = ReferenceExecutor::create(*fl.module, fl.store, &err);
  auto qexec = ReferenceExecutor::create(*qm.module, qm.store, &err);
  ASSERT_TRUE(fexec && qexec) << err;
  const int64_t ctx = 12, windows = 5;
  std::vector<int32_t> tokens;
  for (auto &w : windowsOf(1, ctx * windows + 7, 97, 9))
    tokens = w;
  QualityResult r;
  ASSERT_TRUE(evaluateQuality(*fexec, *qexec, tokens, ctx, 4, &r, &err)) << err;
  EXPECT_EQ(r.windows, 4);
  EXPECT_EQ(r.predicted, 4 * (ctx - 1));

  double nllF = 0, nllQ = 0, kld = 0;
  int agree = 0;
  for (int64_t w = 0; w < 4; ++w) {
    std::vector<int32_t> win(tokens.begin() + w * ctx, tokens.begin() + (w + 1) * ctx);
    Tensor lf, lq;
    ASSERT_TRUE(fexec->forward({win}, &lf, &err) && qexec->forward({win}, &lq, &err));
    for (int64_t p = 0; p + 1 < ctx; ++p) {
      const float *a = lf.data.data() + p * 97, *b = lq.data.data() + p * 97;
      double za = 0, zb = 0;
      for (int v = 0; v < 97; ++v) {
        za += std::exp(double(a[v]));
        zb += std::exp(double(b[v]));
      }
      for (int v = 0; v < 97; ++v) {
        double pa = std::exp(double(a[v])) / za, pb = std::exp(double(b[v])) / zb;
        kld += pa * std::log(pa / pb);
      }
      nllF -= std::log(std::exp(double(a[win[p + 1]])) / za);
      nllQ -= std::log(std::exp(double(b[win[p + 1]])) / zb);
      agree += std::max_element(a, a + 97) - a == std::max_element(b, b + 97) - b;
    }
  }
  // evaluateQuality batches windows into one forward: BLAS may sum in
  // another order than these one-window forwards, hence 1e-6.
  const double n = double(4 * (ctx - 1));
  EXPECT_NEAR(r.reference.perplexity, std::exp(nllF / n), 1e-6 * std::exp(nllF / n));
  EXPECT_NEAR(r.quantized.perplexity, std::exp(nllQ / n), 1e-6 * std::exp(nllQ / n));
  EXPECT_NEAR(r.meanKld, kld / n, 1e-9 + 1e-4 * kld / n);
  EXPECT_GT(r.meanKld, 0);
  EXPECT_DOUBLE_EQ(r.top1, agree / n);
  EXPECT_GE(r.maxKld, r.p99Kld);

  // The reference perplexity is the shared protocol's.
  PerplexityResult pr;
  ASSERT_TRUE(evaluatePerplexity(*fexec, tokens, ctx, 4, &pr, &err)) << err;
  EXPECT_NEAR(pr.perplexity, r.reference.perplexity, 1e-9 * pr.perplexity);

  // A model against itself: nothing lost.
  ASSERT_TRUE(evaluateQuality(*fexec, *fexec, tokens, ctx, 0, &r, &err)) << err;
  EXPECT_EQ(r.windows, 5);
  EXPECT_NEAR(r.meanKld, 0, 1e-12);
  EXPECT_EQ(r.top1, 1.0);
  EXPECT_FALSE(evaluateQuality(*fexec, *qexec, std::vector<int32_t>(5, 1), ctx, 0, &r, &err));
}

TEST(QuantReport, SizesAndOutputErrors) {
  Model m(tinyConfig());
  mlir::PassManager pm(&m.ctx);
  QuantizeRTNOptions o;
  o.wquant = "int4";
  o.groupSize = 32;
  std::vector<std::string> overrides = {"layers\\.1\\.mlp\\.up_proj=int2", "v_proj=none"};
  o.overrides = overrides;
  pm.addPass(createQuantizeRTN(o));
  ASSERT_TRUE(mlir::succeeded(pm.run(*m.module)));
  ModelReport r;
  std::string err;
  ASSERT_TRUE(describeWeights(*m.module, m.store, &r, &err)) << err;
  int64_t params = 0, bytes = 0;
  std::map<std::string, const WeightReport *> byName;
  for (const WeightReport &w : r.weights) {
    params += w.parameters;
    bytes += w.bytes;
    byName[w.name] = &w;
  }
  EXPECT_EQ(params, r.parameters);
  EXPECT_EQ(bytes, r.bytes);
  // down_proj [64, 172] int4 g32 asym: 86 bytes of codes per row, 6 groups
  // of fp16 scale + u8 zero.
  const WeightReport *down = byName.at(n::mlp(0, "down_proj"));
  EXPECT_TRUE(down->quantized);
  EXPECT_EQ(down->bytes, 64 * 86 + 64 * 6 * 3);
  EXPECT_EQ(down->format, "int4:g32:asym");
  EXPECT_EQ(down->role, "linear");
  EXPECT_FALSE(byName.at(n::attn(0, "v_proj"))->quantized);
  EXPECT_EQ(byName.at(n::finalNorm())->role, "norm");
  EXPECT_LT(r.bytes, r.floatBytes);

  ASSERT_TRUE(measureLinearErrors(*m.module, m.store, windowsOf(2, 10, 97, 4), 1, &r, &err))
      << err;
  double e4 = *byName.at(n::mlp(1, "gate_proj"))->relOutputError;
  double e2 = *byName.at(n::mlp(1, "up_proj"))->relOutputError;
  EXPECT_GT(e4, 0.01);
  EXPECT_LT(e4, 0.3);
  EXPECT_GT(e2, e4); // 2 bits lose more than 4
  EXPECT_FALSE(byName.at(n::attn(0, "v_proj"))->relOutputError.has_value());
  EXPECT_EQ(kvBytesPerToken(m.config, 2), 2 * 2 * 2 * 16 * 2);
}

TEST(Pipeline, RefusesNonsense) {
  struct Case {
    std::function<void(QuantPipelineOptions &)> set;
    const char *expect;
  };
  std::vector<Case> cases = {
      {[](auto &o) { o.wquant = "int9"; }, "2..8 bits"},
      {[](auto &o) { o.wquant = "int4", o.groupSize = 0; }, "group size"},
      {[](auto &o) { o.wquant = "int4", o.groupSize = -7; }, "group size"},
      {[](auto &o) { o.wquant = "nf4", o.groupSize = -1; }, "nf4 needs blocks"},
      {[](auto &o) { o.wquant = "fp8", o.groupSize = 32; }, "per-channel"},
      {[](auto &o) { o.wquant = "nf4", o.method = "gptq", o.calib = "x"; }, "int formats"},
      {[](auto &o) { o.wquant = "fp8", o.method = "awq", o.calib = "x"; }, "int formats"},
      {[](auto &o) { o.wquant = "int4", o.method = "gptq"; }, "-calib"},
      {[](auto &o) { o.wquant = "int4", o.method = "awq"; }, "-calib"},
      {[](auto &o) { o.method = "smoothquant"; }, "-calib"},
      {[](auto &o) { o.kvCache = "int8"; }, "-calib"},
      {[](auto &o) { o.kvCache = "int4", o.calib = "x"; }, "int8 or fp8"},
      {[](auto &o) { o.wquant = "int4", o.method = "smoothquant", o.calib = "x"; }, "W8A8"},
      {[](auto &o) { o.wquant = "w8a8", o.method = "gptq", o.calib = "x"; }, "smoothquant"},
      {[](auto &o) { o.method = "gptq", o.calib = "x"; }, "needs a weight format"},
      {[](auto &o) { o.method = "hqq"; }, "unknown method"},
      {[](auto &o) { o.wquant = "int4", o.overrides = {"x=nf4"}, o.method = "gptq",
                     o.calib = "x"; },
       "int formats only"},
      {[](auto &o) { o.overrides = {"x=int8"}; }, "needs -wquant"},
      {[](auto &o) { o.wquant = "int4", o.method = "gptq", o.calib = "x", o.gptqDamp = -1; },
       "-gptq-damp"},
      {[](auto &o) { o.wquant = "int4", o.method = "awq", o.calib = "x", o.awqGrid = 0; },
       "-awq-grid"},
      {[](auto &o) { o.method = "smoothquant", o.calib = "x", o.smoothquantAlpha = 2; },
       "-smoothquant-alpha"},
      {[](auto &o) { o.method = "smoothquant", o.calib = "x", o.actQuant = "per-row"; },
       "-act-quant"},
      {[](auto &o) { o.wquant = "int4", o.method = "gptq", o.calib = "x", o.calibSeqlen = 1; },
       "-calib-seqlen"},
  };
  for (const Case &c : cases) {
    QuantPipelineOptions o;
    c.set(o);
    std::string err;
    EXPECT_FALSE(validateQuantPipelineOptions(o, &err)) << c.expect;
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in: " << err;
  }
  QuantPipelineOptions ok;
  std::string err;
  EXPECT_TRUE(validateQuantPipelineOptions(ok, &err)) << err;
  EXPECT_TRUE(quantPipelineIsEmpty(ok));
  ok.wquant = "int3";
  ok.groupSize = -1;
  ok.symmetric = true;
  EXPECT_TRUE(validateQuantPipelineOptions(ok, &err)) << err;
  ok.wquant = "nf4";
  ok.groupSize = 128;
  EXPECT_TRUE(validateQuantPipelineOptions(ok, &err)) << err;
  ok.wquant = "int4";
  ok.method = "gptq";
  ok.calib = "x";
  ok.kvCache = "fp8";
  EXPECT_TRUE(validateQuantPipelineOptions(ok, &err)) << err;
  EXPECT_TRUE(quantPipelineNeedsCalibration(ok));
}
