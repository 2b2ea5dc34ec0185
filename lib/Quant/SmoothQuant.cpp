//===- SmoothQuant.cpp - SmoothQuant W8A8 layer by layer -------------===//
//
// Per decoder layer: run it on the calibration hidden states gathering the
// per-channel max |x| of every linear input; smooth the two inputs an
// rms_norm produces (q/k/v and gate/up; o and down read the attention and
// swiglu outputs, which have no per-channel op to fold into, and are
// quantized unsmoothed, as SmoothQuant does for Llama); quantize all seven
// weights per channel and mark their inputs; run the layer again, now
// with quantized weights and quantized activations, for layer i + 1.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/SmoothQuant.h"

#include "qopt/Quant/Calibration.h"
#include "qopt/Quant/Quantizer.h"
#include "qopt/Quant/ScaleFolding.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cmath>

using namespace mlir;

namespace qopt::quant {

namespace {

constexpr const char *kSuffix = ".smooth";

bool isFloatParam(Value v) {
  auto p = v.getDefiningOp<qllm::ParamOp>();
  return p && p.getResult().hasOneUse();
}

/// s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), W_j over every row of every
/// linear reading the input (SmoothQuant's smooth_ln_fcs, same clamps).
bool smoothingScales(const std::vector<float> &xmax, llvm::ArrayRef<qllm::LinearOp> linears,
                     const WeightStore &store, double alpha, std::vector<float> *s,
                     std::string *error) {
  const size_t k = xmax.size();
  std::vector<float> wmax(k, 0.0f);
  for (qllm::LinearOp lin : linears) {
    std::vector<float> w;
    if (!readLinearWeight(lin, store, &w, error))
      return false;
    for (size_t i = 0; i < w.size(); ++i)
      wmax[i % k] = std::max(wmax[i % k], std::fabs(w[i]));
  }
  s->resize(k);
  for (size_t j = 0; j < k; ++j) {
    double v = std::pow(std::max(double(xmax[j]), 1e-5), alpha) /
               std::pow(std::max(double(wmax[j]), 1e-5), 1.0 - alpha);
    (*s)[j] = float(std::max(v, 1e-5));
  }
  return true;
}

} // namespace

bool runSmoothQuant(ModuleOp module, WeightStore &store, std::vector<std::vector<int32_t>> samples,
                    const SmoothQuantConfig &config, std::string *error) {
  if (!(config.alpha >= 0 && config.alpha <= 1)) {
    *error = "SmoothQuant: alpha must be in [0, 1], got " + std::to_string(config.alpha);
    return false;
  }
  Format format;
  if (!parseFormat(config.fp8 ? "fp8" : "int8", -1, true, &format, error))
    return false;
  const float qmax = config.fp8 ? 448.0f : 127.0f;
  const char *actType = config.fp8 ? "fp8_e4m3" : "int8";

  auto runner = LayerwiseRunner::create(module, store, std::move(samples), config.threads, error);
  if (!runner)
    return false;
  MLIRContext *ctx = module.getContext();
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t numLayers = int64_t(runner->layers().size());
  for (int64_t li = 0; li < numLayers; ++li) {
    DecoderLayer layer = runner->layers()[size_t(li)];
    const std::vector<qllm::LinearOp> linears = {layer.q,    layer.k,  layer.v,   layer.o,
                                                 layer.gate, layer.up, layer.down};
    // 1. Per-channel max |x| of each distinct input.
    llvm::DenseMap<Operation *, std::vector<float> *> maxByOp;
    llvm::DenseMap<Value, std::vector<float> *> maxOf;
    std::vector<std::unique_ptr<std::vector<float>>> owned;
    for (qllm::LinearOp lin : linears) {
      Value in = lin.getInput();
      if (maxOf.count(in))
        continue;
      int64_t k = cast<RankedTensorType>(in.getType()).getShape().back();
      owned.push_back(std::make_unique<std::vector<float>>(size_t(k), 0.0f));
      maxOf[in] = owned.back().get();
      maxByOp[lin] = owned.back().get();
    }
    auto observer = [&](Operation *op, const Tensor &in, const Tensor &) {
      auto it = maxByOp.find(op);
      if (it == maxByOp.end())
        return;
      std::vector<float> &m = *it->second;
      const size_t k = m.size();
      for (size_t i = 0; i < in.data.size(); ++i)
        m[i % k] = std::max(m[i % k], std::fabs(in.data[i]));
    };
    if (!runner->observe(li, observer, error))
      return false;

    // 2. Smooth the norm -> linears sets.
    llvm::DenseMap<Value, std::vector<float>> smoothOf;
    auto smooth = [&](qllm::RMSNormOp norm, llvm::ArrayRef<qllm::LinearOp> set) {
      if (!isFloatParam(norm.getWeight()) ||
          !llvm::all_of(set, [](qllm::LinearOp l) { return isFloatParam(l.getWeight()); }))
        return true; // nothing to fold into (already quantized): leave as is
      qllm::LinearOp first = set[0];
      std::vector<float> s;
      if (!smoothingScales(*maxOf.lookup(first.getInput()), set, store, config.alpha, &s, error) ||
          !divideNormWeight(norm, s, store, kSuffix, error))
        return false;
      for (qllm::LinearOp lin : set)
        if (!scaleLinearColumns(lin, s, store, kSuffix, error))
          return false;
      smoothOf[first.getInput()] = std::move(s);
      return true;
    };
    if (!smooth(layer.inputNorm, {layer.q, layer.k, layer.v}) ||
        !smooth(layer.postAttentionNorm, {layer.gate, layer.up}))
      return false;

    // 3. Quantize the weights per channel, mark the activations.
    if (!config.foldOnly) {
      for (qllm::LinearOp lin : linears) {
        auto param = lin.getWeight().getDefiningOp<qllm::ParamOp>();
        if (!param)
          continue; // already quantized by someone else: keep it
        std::vector<float> w;
        if (!readLinearWeight(lin, store, &w, error))
          return false;
        const int64_t k = cast<RankedTensorType>(lin.getInput().getType()).getShape().back();
        QuantizedMatrix q = quantizeRTN(w.data(), int64_t(w.size()) / k, k, format);
        std::string scaledName = param.getName().str();
        std::string canonical = canonicalWeightName(scaledName, kSuffix);
        param.setName(canonical);
        if (!replaceWithQuantized(param, store, q, error))
          return false;
        if (scaledName != canonical)
          store.erase(scaledName);

        lin.setActQuantAttr(StringAttr::get(ctx, config.perTensor ? "per_tensor" : "per_token"));
        lin.setActQuantTypeAttr(StringAttr::get(ctx, actType));
        if (config.perTensor) {
          // The static scale covers the smoothed input: max_j max|X_j| / s_j.
          const std::vector<float> &xmax = *maxOf.lookup(lin.getInput());
          auto it = smoothOf.find(lin.getInput());
          float amax = 0;
          for (size_t j = 0; j < xmax.size(); ++j)
            amax = std::max(amax, xmax[j] / (it != smoothOf.end() ? it->second[j] : 1.0f));
          float scale = amax > 0 && std::isfinite(amax) ? amax / qmax : 1.0f;
          lin.setActScaleAttr(FloatAttr::get(Float32Type::get(ctx), scale));
        }
      }
    }
    // Layer i + 1 calibrates on the W8A8 layer i.
    if (li + 1 < numLayers && !runner->advance(li, error))
      return false;
    if (config.progress) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      llvm::errs() << llvm::format("\rsmoothquant: layer %lld/%lld, %.1f s elapsed   ",
                                   (long long)(li + 1), (long long)numLayers, secs);
    }
  }
  if (config.progress)
    llvm::errs() << "\n";
  return true;
}

} // namespace qopt::quant
