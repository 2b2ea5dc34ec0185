//===- AWQTestUtil.h - helpers of the AWQ/SmoothQuant/KV tests -*- C++ -*-===//
//
// Random decoders with activation outliers (a few channels of every
// rms_norm weight scaled up, as trained models have them), logits, the
// relative difference the float-equivalence bar uses, and the quality of a
// quantized module against its float clone.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_TEST_QUANT_AWQTESTUTIL_H
#define QOPT_TEST_QUANT_AWQTESTUTIL_H

#include "../Exec/ExecTestUtil.h"

#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Exec/ReferenceExecutor.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Quant/QualityEval.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace awqtest {

using namespace qopt;

inline ModelConfig smallConfig(int64_t heads, int64_t kvHeads, bool bias = false) {
  ModelConfig c;
  c.vocabSize = 91;
  c.hiddenSize = 64;
  c.intermediateSize = 172; // not a multiple of the group size
  c.numLayers = 3;
  c.numHeads = heads;
  c.numKvHeads = kvHeads;
  c.headDim = 16;
  c.rmsNormEps = 1e-5;
  c.attentionBias = bias;
  return c;
}

/// A random decoder whose rms_norm weights have a few large channels.
struct RandomModel {
  mlir::MLIRContext ctx;
  WeightStore store;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  ModelConfig config;

  RandomModel(const ModelConfig &c, uint32_t seed, DType dtype = DType::F32) : config(c) {
    ctx.loadDialect<qllm::QLLMDialect, mlir::func::FuncDialect>();
    std::mt19937 rng(seed);
    exectest::randomWeights(c, store, rng, dtype);
    // Outlier channels: x8 on three channels of each norm.
    for (const std::string &name : store.names()) {
      if (name.find("layernorm") == std::string::npos)
        continue;
      std::vector<float> w = store.readF32(name);
      for (size_t j : {size_t(3), size_t(17), size_t(40)})
        w[j % w.size()] *= 8.0f;
      store.erase(name);
      std::string err;
      EXPECT_TRUE(store.addOwned(name, DType::F32, {int64_t(w.size())}, exectest::bytesOf(w), &err))
          << err;
    }
    std::string err;
    module = buildDecoderModule(ctx, c, store, "<random>", &err);
    EXPECT_TRUE(module) << err;
  }
};

inline std::vector<std::vector<int32_t>> randomSamples(uint32_t seed, int64_t n, int64_t seq,
                                                       int64_t vocab) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> r(static_cast<size_t>(n));
  for (auto &s : r)
    for (int64_t t = 0; t < seq; ++t)
      s.push_back(int32_t(rng() % uint32_t(vocab)));
  return r;
}

/// Logits of `module` on `batch` (fails the test on an error).
inline Tensor logitsOf(mlir::ModuleOp module, const WeightStore &store,
                       const std::vector<std::vector<int32_t>> &batch) {
  std::string err;
  auto exec = ReferenceExecutor::create(module, store, &err);
  EXPECT_TRUE(exec) << err;
  Tensor out;
  if (exec) {
    EXPECT_TRUE(exec->forward(batch, &out, &err)) << err;
  }
  return out;
}

/// max |a - b| / max |a|: the float-equivalence measure.
inline double relDiff(const Tensor &a, const Tensor &b) {
  if (a.data.size() != b.data.size() || a.data.empty())
    return INFINITY;
  double d = 0, m = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    d = std::max(d, double(std::fabs(a.data[i] - b.data[i])));
    m = std::max(m, double(std::fabs(a.data[i])));
  }
  return d / m;
}

/// KLD / top-1 / PPL of `quantized` against `reference` on `tokens`.
inline quant::QualityResult quality(mlir::ModuleOp reference, mlir::ModuleOp quantized,
                                    const WeightStore &store, const std::vector<int32_t> &tokens,
                                    int64_t ctx, int64_t chunks) {
  std::string err;
  quant::QualityResult r;
  auto a = ReferenceExecutor::create(reference, store, &err);
  EXPECT_TRUE(a) << err;
  auto b = ReferenceExecutor::create(quantized, store, &err);
  EXPECT_TRUE(b) << err;
  if (a && b) {
    EXPECT_TRUE(quant::evaluateQuality(*a, *b, tokens, ctx, chunks, &r, &err)) << err;
  }
  return r;
}

} // namespace awqtest

#endif
