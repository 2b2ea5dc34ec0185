//===- AWQTest.cpp - AWQ, SmoothQuant and KV-cache scales ------------===//
//
// The search's error model against explicit token products; the folds'
// float equivalence on random decoders (MHA, GQA with biases, MQA, bf16
// weights); AWQ against RTN; SmoothQuant W8A8 and the KV-cache scales end
// to end through the reference executor; the passes' bad-input errors.
//
//===----------------------------------------------------------------------===//
#include "AWQTestUtil.h"
#include "CalibrationTestUtil.h"

#include "qopt/Quant/AWQ.h"
#include "qopt/Quant/Calibration.h"
#include "qopt/Quant/KVCache.h"
#include "qopt/Quant/Passes.h"
#include "qopt/Quant/SmoothQuant.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"

#include <iostream>

using namespace awqtest;
using namespace mlir;
using namespace qopt;
using namespace qopt::quant;

namespace {

Format fmt(const std::string &name, int64_t group, bool sym = false) {
  Format f;
  std::string err;
  EXPECT_TRUE(parseFormat(name, group, sym, &f, &err)) << err;
  return f;
}

/// X [n, k] with a few large channels, and X^T X.
struct Inputs {
  int64_t n, k;
  std::vector<float> x;
  std::vector<float> gram;
};

Inputs randomInputs(uint32_t seed, int64_t n, int64_t k) {
  std::mt19937 rng(seed);
  Inputs in{n, k, exectest::randomVec(rng, size_t(n * k)), {}};
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j : {int64_t(2), k / 3, k - 1})
      in.x[size_t(r * k + j)] *= 10;
  in.gram.assign(size_t(k * k), 0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      double s = 0;
      for (int64_t r = 0; r < n; ++r)
        s += double(in.x[size_t(r * k + i)]) * in.x[size_t(r * k + j)];
      in.gram[size_t(i * k + j)] = float(s);
    }
  return in;
}

/// sum over tokens of ||x (a - b)^T||^2 restricted to columns [c0, c1) of
/// row `row` (or all rows and columns).
double tokenError(const Inputs &in, const std::vector<float> &a, const std::vector<float> &b,
                  int64_t rows, int64_t row = -1, int64_t c0 = 0, int64_t c1 = -1) {
  if (c1 < 0)
    c1 = in.k;
  double total = 0;
  for (int64_t r = (row < 0 ? 0 : row); r < (row < 0 ? rows : row + 1); ++r)
    for (int64_t t = 0; t < in.n; ++t) {
      double y = 0;
      for (int64_t j = c0; j < c1; ++j)
        y += double(in.x[size_t(t * in.k + j)]) *
             (double(a[size_t(r * in.k + j)]) - b[size_t(r * in.k + j)]);
      total += y * y;
    }
  return total;
}

TEST(AWQSearch, ErrorModelMatchesTokenProducts) {
  const int64_t rows = 37, k = 172;
  Inputs in = randomInputs(1, 300, k);
  std::mt19937 rng(2);
  std::vector<float> w = exectest::randomVec(rng, size_t(rows * k), 0.1f);
  for (const Format &f : {fmt("int4", 64), fmt("int3", 128), fmt("int8", -1, true)}) {
    // fakeQuantize is RTN as Q1's quantizer stores it.
    std::vector<float> q = dequantize(quantizeRTN(w.data(), rows, k, f));
    EXPECT_EQ(fakeQuantize(w.data(), rows, k, f, {}, 2), q) << f.str();
    double direct = tokenError(in, w, q, rows);
    double model = outputError(w.data(), rows, k, f, {}, in.gram, 2);
    EXPECT_NEAR(model, direct, 1e-3 * direct) << f.str();
  }
}

TEST(AWQSearch, ClipSearchMinimizesEachGroup) {
  const int64_t rows = 9, k = 172;
  Inputs in = randomInputs(3, 200, k);
  std::mt19937 rng(4);
  std::vector<float> w = exectest::randomVec(rng, size_t(rows * k), 0.1f);
  for (int64_t i = 0; i < rows * k; i += 13)
    w[size_t(i)] *= 4; // weight outliers: clipping pays off somewhere
  for (const Format &f : {fmt("int3", 64), fmt("int4", 128, true)}) {
    const int64_t grid = 10, groups = f.numGroups(k);
    std::vector<float> clips = searchClipRatios(w.data(), rows, k, f, in.gram, grid, 0.5, 2);
    ASSERT_EQ(int64_t(clips.size()), rows * groups);
    // The stored result of the chosen clips is the searched fake quantization.
    std::vector<float> chosen = dequantize(quantizeClipped(w.data(), rows, k, f, clips));
    EXPECT_EQ(fakeQuantize(w.data(), rows, k, f, clips, 1), chosen) << f.str();
    int shrunk = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        int64_t c0 = f.groupBegin(g, k), c1 = f.groupEnd(g, k);
        double best = INFINITY;
        for (int64_t i = 0; i < grid; ++i) {
          std::vector<float> uniform(size_t(rows * groups), float(1.0 - 0.5 * i / grid));
          std::vector<float> q = dequantize(quantizeClipped(w.data(), rows, k, f, uniform));
          best = std::min(best, tokenError(in, w, q, rows, r, c0, c1));
        }
        double got = tokenError(in, w, chosen, rows, r, c0, c1);
        EXPECT_LE(got, best * (1 + 1e-3) + 1e-9) << f.str() << " row " << r << " group " << g;
        shrunk += clips[size_t(r * groups + g)] < 1.0f;
      }
    EXPECT_GT(shrunk, 0) << "no group was clipped: the test shows nothing";
  }
}

//===----------------------------------------------------------------------===//
// Float equivalence of the folds
//===----------------------------------------------------------------------===//

struct ModelCase {
  const char *name;
  ModelConfig config;
  DType dtype;
};

std::vector<ModelCase> modelCases() {
  return {{"mha", smallConfig(4, 4), DType::F32},
          {"gqa-bias", smallConfig(4, 2, /*bias=*/true), DType::F32},
          {"mqa", smallConfig(4, 1), DType::F32},
          {"gqa-bf16", smallConfig(6, 2), DType::BF16}};
}

TEST(ScaleFolding, AWQFoldOnlyKeepsTheFloatFunction) {
  for (const ModelCase &mc : modelCases())
    for (bool duo : {false, true}) {
      RandomModel m(mc.config, 5, mc.dtype);
      auto eval = randomSamples(6, 2, 37, mc.config.vocabSize);
      Tensor before = logitsOf(*m.module, m.store, eval);
      WeightSelection sel;
      std::string err;
      ASSERT_TRUE(WeightSelection::create(fmt("int3", 32), {}, false, false, &sel, &err)) << err;
      AWQConfig config;
      config.foldOnly = true;
      config.duoScaling = duo;
      std::vector<AWQSetChoice> choices;
      ASSERT_TRUE(runAWQ(*m.module, m.store, sel, randomSamples(7, 6, 40, mc.config.vocabSize),
                         config, &choices, &err))
          << mc.name << ": " << err;
      ASSERT_TRUE(succeeded(verify(*m.module)));
      Tensor after = logitsOf(*m.module, m.store, eval);
      double rel = relDiff(before, after);
      EXPECT_LT(rel, 1e-4) << mc.name;
      // Every kind of set really rescaled something somewhere.
      std::map<std::string, double> maxAlpha;
      for (const AWQSetChoice &c : choices)
        maxAlpha[c.set] = std::max(maxAlpha[c.set], c.alpha);
      for (const char *set : {"qkv", "o", "gate_up", "down"})
        EXPECT_GT(maxAlpha[set], 0.0) << mc.name << ": set " << set << " never scaled";
      std::cout << "  " << mc.name << (duo ? " duo" : "")
                << ": AWQ fold-only relative logit change " << rel << "\n";
    }
}

TEST(ScaleFolding, SmoothQuantFoldOnlyKeepsTheFloatFunction) {
  for (const ModelCase &mc : modelCases()) {
    RandomModel m(mc.config, 8, mc.dtype);
    auto eval = randomSamples(9, 2, 37, mc.config.vocabSize);
    Tensor before = logitsOf(*m.module, m.store, eval);
    SmoothQuantConfig config;
    config.foldOnly = true;
    std::string err;
    ASSERT_TRUE(runSmoothQuant(*m.module, m.store, randomSamples(10, 6, 40, mc.config.vocabSize),
                               config, &err))
        << mc.name << ": " << err;
    Tensor after = logitsOf(*m.module, m.store, eval);
    double rel = relDiff(before, after);
    EXPECT_LT(rel, 1e-4) << mc.name;
    int renamed = 0;
    m.module->walk([&](qllm::ParamOp p) { renamed += p.getName().ends_with(".smooth"); });
    EXPECT_EQ(renamed, 7 * mc.config.numLayers) << "2 norms + q, k, v, gate, up per layer";
    std::cout << "  " << mc.name << ": SmoothQuant fold-only relative logit change " << rel << "\n";
  }
}

//===----------------------------------------------------------------------===//
// AWQ against RTN
//===----------------------------------------------------------------------===//

/// RTN of every selected weight (the baseline).
void quantizeAllRTN(ModuleOp module, WeightStore &store, const WeightSelection &sel) {
  std::vector<SelectedWeight> selected;
  std::string err;
  ASSERT_TRUE(sel.collect(module, &selected, &err)) << err;
  for (SelectedWeight &s : selected) {
    std::vector<float> w = store.readF32(s.name);
    auto shape = s.param.getResult().getType().getShape();
    QuantizedMatrix q = quantizeRTN(w.data(), shape[0], shape[1], s.format);
    ASSERT_TRUE(replaceWithQuantized(s.param, store, q, &err)) << err;
  }
}

TEST(AWQ, BeatsRTNOnRandomDecoders) {
  for (const ModelCase &mc : modelCases()) {
    RandomModel m(mc.config, 11, mc.dtype);
    RandomModel rtn(mc.config, 11, mc.dtype); // the same weights, its own store
    OwningOpRef<ModuleOp> floatModule = m.module->clone();
    WeightSelection sel;
    std::string err;
    ASSERT_TRUE(WeightSelection::create(fmt("int3", 32), {}, false, false, &sel, &err)) << err;
    quantizeAllRTN(*rtn.module, rtn.store, sel);
    std::vector<AWQSetChoice> choices;
    AWQConfig config;
    config.clipQK = std::string(mc.name) == "mqa"; // the variant that clips q and k too
    ASSERT_TRUE(runAWQ(*m.module, m.store, sel, randomSamples(12, 8, 64, mc.config.vocabSize),
                       config, &choices, &err))
        << err;
    ASSERT_TRUE(succeeded(verify(*m.module)));
    int qparams = 0;
    m.module->walk([&](qllm::QParamOp) { ++qparams; });
    EXPECT_EQ(qparams, 7 * mc.config.numLayers);
    // Scaled copies of the linear weights are gone (norm weights and
    // biases keep theirs: they stay float).
    for (const std::string &name : m.store.names()) {
      bool floatTensor =
          name.find("layernorm") != std::string::npos || name.find(".bias") != std::string::npos;
      EXPECT_TRUE(floatTensor || name.find(".awq") == std::string::npos) << name;
    }
    std::vector<int32_t> text = randomSamples(13, 1, 8 * 64, mc.config.vocabSize)[0];
    QualityResult r = quality(*floatModule, *rtn.module, rtn.store, text, 64, 0);
    QualityResult a = quality(*floatModule, *m.module, m.store, text, 64, 0);
    std::cout << "  " << mc.name << ": int3 g32 KLD RTN " << r.meanKld << ", AWQ " << a.meanKld
              << "\n";
    EXPECT_LT(a.meanKld, r.meanKld) << mc.name;
  }
}

//===----------------------------------------------------------------------===//
// SmoothQuant W8A8
//===----------------------------------------------------------------------===//

TEST(SmoothQuant, W8A8EndToEnd) {
  struct Variant {
    bool perTensor, fp8;
  };
  for (Variant v : {Variant{false, false}, Variant{true, false}, Variant{false, true}}) {
    RandomModel m(smallConfig(4, 2), 14);
    OwningOpRef<ModuleOp> floatModule = m.module->clone();
    SmoothQuantConfig config;
    config.perTensor = v.perTensor;
    config.fp8 = v.fp8;
    std::string err;
    ASSERT_TRUE(runSmoothQuant(*m.module, m.store, randomSamples(15, 8, 64, 91), config, &err))
        << err;
    ASSERT_TRUE(succeeded(verify(*m.module)));
    int marked = 0;
    m.module->walk([&](qllm::LinearOp lin) {
      auto q = lin.getWeight().getDefiningOp<qllm::QParamOp>();
      ASSERT_TRUE(q);
      auto attr = cast<qllm::QWeightType>(q.getType()).getQuant();
      EXPECT_EQ(attr.getGroupSize(), -1);
      EXPECT_EQ(attr.getKind(), v.fp8 ? qllm::ElementKind::FP8E4M3 : qllm::ElementKind::Int);
      ASSERT_TRUE(lin.getActQuant());
      EXPECT_EQ(*lin.getActQuant(), v.perTensor ? "per_tensor" : "per_token");
      EXPECT_EQ(*lin.getActQuantType(), v.fp8 ? "fp8_e4m3" : "int8");
      EXPECT_EQ(bool(lin.getActScale()), v.perTensor);
      ++marked;
    });
    EXPECT_EQ(marked, 7 * 3);
    std::vector<int32_t> text = randomSamples(16, 1, 8 * 64, 91)[0];
    QualityResult r = quality(*floatModule, *m.module, m.store, text, 64, 0);
    std::cout << "  W8A8 " << (v.fp8 ? "fp8" : "int8") << " "
              << (v.perTensor ? "per-tensor" : "per-token") << ": KLD " << r.meanKld << ", top-1 "
              << r.top1 << "\n";
    EXPECT_GT(r.meanKld, 0.0);
    // e4m3's 3 mantissa bits round a typical value ~4x coarser than int8
    // with an absmax scale; its strength is range, not precision.
    EXPECT_LT(r.meanKld, v.perTensor || v.fp8 ? 0.05 : 0.01);
  }
}

//===----------------------------------------------------------------------===//
// KV cache
//===----------------------------------------------------------------------===//

TEST(KVCache, ScalesAreCalibratedAndApplied) {
  for (const char *dtype : {"int8", "fp8"}) {
    RandomModel m(smallConfig(4, 2), 17);
    OwningOpRef<ModuleOp> floatModule = m.module->clone();
    auto samples = randomSamples(18, 6, 48, 91);
    // Layer 0's K (after rotary) and V per head, from a full float forward.
    std::vector<DecoderLayer> layers;
    std::string err;
    ASSERT_TRUE(findDecoderLayers(*m.module, &layers, &err)) << err;
    const int64_t kvHeads = 2, headDim = 16;
    std::vector<float> kMax(kvHeads, 0), vMax(kvHeads, 0);
    {
      auto exec = ReferenceExecutor::create(*m.module, m.store, &err);
      ASSERT_TRUE(exec) << err;
      Operation *kOp = layers[0].kRotary, *vOp = layers[0].v;
      exec->setObserver([&](Operation *op, const Tensor &, const Tensor &out) {
        std::vector<float> *target = op == kOp ? &kMax : op == vOp ? &vMax : nullptr;
        if (target)
          for (size_t i = 0; i < out.data.size(); ++i) {
            size_t h = (i / headDim) % kvHeads;
            (*target)[h] = std::max((*target)[h], std::fabs(out.data[i]));
          }
      });
      Tensor ignored;
      ASSERT_TRUE(exec->forward(samples, &ignored, &err)) << err;
    }
    KVCacheConfig config;
    config.dtype = dtype;
    ASSERT_TRUE(runKVCacheQuant(*m.module, m.store, samples, config, &err)) << err;
    ASSERT_TRUE(succeeded(verify(*m.module)));
    const float qmax = std::string(dtype) == "int8" ? 127 : 448;
    qllm::AttentionOp a0 = layers[0].attention;
    ASSERT_TRUE(a0.getKScales() && a0.getVScales());
    EXPECT_EQ(*a0.getKvCacheDtype(), std::string(dtype) == "int8" ? "int8" : "fp8_e4m3");
    for (int64_t h = 0; h < kvHeads; ++h) {
      EXPECT_FLOAT_EQ((*a0.getKScales())[h], kMax[h] / qmax);
      EXPECT_FLOAT_EQ((*a0.getVScales())[h], vMax[h] / qmax);
    }
    // Calibrated scales change the logits a little; absurd ones (a range
    // 50x too small: everything saturates) break them.
    std::vector<int32_t> text = randomSamples(19, 1, 6 * 48, 91)[0];
    double calibrated = quality(*floatModule, *m.module, m.store, text, 48, 0).meanKld;
    m.module->walk([&](qllm::AttentionOp a) {
      std::vector<float> k(a.getKScales()->begin(), a.getKScales()->end());
      std::vector<float> v(a.getVScales()->begin(), a.getVScales()->end());
      for (float &x : k)
        x /= 50;
      for (float &x : v)
        x /= 50;
      a.setKScalesAttr(DenseF32ArrayAttr::get(&m.ctx, k));
      a.setVScalesAttr(DenseF32ArrayAttr::get(&m.ctx, v));
    });
    double absurd = quality(*floatModule, *m.module, m.store, text, 48, 0).meanKld;
    std::cout << "  KV " << dtype << ": KLD " << calibrated << ", with scales / 50: " << absurd
              << "\n";
    EXPECT_GT(calibrated, 1e-7);
    EXPECT_LT(calibrated, 0.01);
    EXPECT_GT(absurd, 10 * calibrated);
  }
}

//===----------------------------------------------------------------------===//
// The passes
//===----------------------------------------------------------------------===//

/// Runs `pass` on a random decoder whose store the dialect holds; returns
/// the diagnostics (empty on success).
struct PassRun {
  bool ok = false;
  std::string diagnostics;
};

PassRun runPass(RandomModel &m, std::unique_ptr<Pass> pass) {
  m.ctx.getLoadedDialect<qllm::QLLMDialect>()->setWeightStore(&m.store);
  PassRun r;
  ScopedDiagnosticHandler handler(&m.ctx, [&](Diagnostic &d) {
    r.diagnostics += d.str() + "\n";
    return success();
  });
  PassManager pm(&m.ctx);
  pm.addPass(std::move(pass));
  r.ok = succeeded(pm.run(*m.module));
  return r;
}

TEST(Passes, CalibrateFromTextAndQuantize) {
  calibtest::TempDir dir;
  std::string tok = dir.file("tokenizer.json", calibtest::byteTokenizerJson());
  std::string text = dir.file("calib.txt", calibtest::randomText(20000, 3));
  ModelConfig c = smallConfig(4, 2);
  c.vocabSize = 256; // the byte tokenizer's ids
  RandomModel m(c, 20);
  AWQOptions awq;
  awq.wquant = "int4";
  awq.groupSize = 32;
  awq.calib = text;
  awq.tokenizer = tok;
  awq.calibSamples = 4;
  awq.calibSeqlen = 64;
  PassRun r = runPass(m, createAWQ(awq));
  ASSERT_TRUE(r.ok) << r.diagnostics;
  KVCacheQuantOptions kv;
  kv.calib = text;
  kv.tokenizer = tok;
  kv.calibSamples = 4;
  kv.calibSeqlen = 64;
  kv.kvCache = "fp8";
  r = runPass(m, createKVCacheQuant(kv));
  ASSERT_TRUE(r.ok) << r.diagnostics;
  int qparams = 0, kvs = 0;
  m.module->walk([&](qllm::QParamOp) { ++qparams; });
  m.module->walk([&](qllm::AttentionOp a) { kvs += bool(a.getKScales()); });
  EXPECT_EQ(qparams, 7 * c.numLayers);
  EXPECT_EQ(kvs, c.numLayers);
}

TEST(Passes, BadRequestsFailBeforeWork) {
  calibtest::TempDir dir;
  std::string tok = dir.file("tokenizer.json", calibtest::byteTokenizerJson());
  std::string shortText = dir.file("short.txt", "too short");
  ModelConfig c = smallConfig(4, 2);
  c.vocabSize = 256;
  struct Case {
    std::function<std::unique_ptr<Pass>()> make;
    std::string expected;
  };
  std::vector<Case> cases = {
      {[] { return createAWQ(AWQOptions()); }, "AWQ needs calibration text: -calib=FILE"},
      {[&] {
         AWQOptions o;
         o.wquant = "int9";
         o.calib = shortText;
         return createAWQ(o);
       },
       "int9"},
      {[&] {
         AWQOptions o;
         o.calib = shortText;
         o.tokenizer = tok;
         return createAWQ(o);
       },
       "short.txt"},
      {[&] {
         SmoothQuantOptions o;
         o.wquant = "int4";
         return createSmoothQuant(o);
       },
       "cannot produce -wquant=int4"},
      {[&] {
         SmoothQuantOptions o;
         o.actQuant = "per-row";
         return createSmoothQuant(o);
       },
       "-act-quant=per-row"},
      {[&] {
         KVCacheQuantOptions o;
         o.kvCache = "int4";
         return createKVCacheQuant(o);
       },
       "-kv-cache=int4: expected int8 or fp8"},
      {[&] { return createKVCacheQuant(KVCacheQuantOptions()); },
       "-kv-cache needs calibration text"},
  };
  for (const Case &cs : cases) {
    RandomModel m(c, 21);
    PassRun r = runPass(m, cs.make());
    EXPECT_FALSE(r.ok) << cs.expected;
    EXPECT_NE(r.diagnostics.find(cs.expected), std::string::npos)
        << "expected '" << cs.expected << "' in: " << r.diagnostics;
    // Nothing was rewritten.
    int qparams = 0;
    m.module->walk([&](qllm::QParamOp) { ++qparams; });
    EXPECT_EQ(qparams, 0);
  }
}

} // namespace
