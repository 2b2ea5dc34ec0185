//===- KVCache.cpp - calibrated per-head KV-cache scales -------------===//
//
// K is observed where the cache would receive it: the output of the k
// rotary (the attention's second operand); V is the v linear's output
// (its third). Both have the same per-head layout [.., kvHeads * headDim].
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/KVCache.h"

#include "qopt/Quant/Calibration.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cmath>

using namespace mlir;

namespace qopt::quant {

bool runKVCacheQuant(ModuleOp module, WeightStore &store, std::vector<std::vector<int32_t>> samples,
                     const KVCacheConfig &config, std::string *error) {
  std::string dtype;
  float qmax = 0;
  if (config.dtype == "int8") {
    dtype = "int8";
    qmax = 127.0f;
  } else if (config.dtype == "fp8" || config.dtype == "fp8_e4m3") {
    dtype = "fp8_e4m3";
    qmax = 448.0f;
  } else {
    *error = "-kv-cache=" + config.dtype + ": expected int8 or fp8";
    return false;
  }
  auto runner = LayerwiseRunner::create(module, store, std::move(samples), config.threads, error);
  if (!runner)
    return false;
  MLIRContext *ctx = module.getContext();
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t numLayers = int64_t(runner->layers().size());
  for (int64_t li = 0; li < numLayers; ++li) {
    DecoderLayer layer = runner->layers()[size_t(li)];
    qllm::AttentionOp attention = layer.attention;
    const int64_t kvHeads = attention.getNumKvHeads();
    const int64_t headDim = attention.getHeadDim();
    if (attention.getKey() != layer.kRotary.getResult() ||
        attention.getValue() != layer.v.getResult()) {
      *error = "KV cache: layer " + std::to_string(li) +
               ": the attention does not read the k rotary and the v linear";
      return false;
    }
    std::vector<float> kMax(size_t(kvHeads), 0.0f), vMax(size_t(kvHeads), 0.0f);
    auto headMax = [&](const Tensor &t, std::vector<float> &m) {
      const int64_t width = kvHeads * headDim;
      for (size_t i = 0; i < t.data.size(); ++i) {
        size_t head = size_t((int64_t(i) % width) / headDim);
        m[head] = std::max(m[head], std::fabs(t.data[i]));
      }
    };
    Operation *kOp = layer.kRotary, *vOp = layer.v;
    auto observer = [&](Operation *op, const Tensor &, const Tensor &out) {
      if (op == kOp)
        headMax(out, kMax);
      else if (op == vOp)
        headMax(out, vMax);
    };
    if (!runner->observe(li, observer, error))
      return false;
    // A head that never fires still needs a positive scale.
    auto scales = [&](const std::vector<float> &m) {
      std::vector<float> s(m.size());
      for (size_t h = 0; h < m.size(); ++h)
        s[h] = (m[h] > 0 && std::isfinite(m[h]) ? m[h] : 1.0f) / qmax;
      return s;
    };
    attention.setKvCacheDtypeAttr(StringAttr::get(ctx, dtype));
    attention.setKScalesAttr(DenseF32ArrayAttr::get(ctx, scales(kMax)));
    attention.setVScalesAttr(DenseF32ArrayAttr::get(ctx, scales(vMax)));
    if (li + 1 < numLayers && !runner->advance(li, error))
      return false;
    if (config.progress) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      llvm::errs() << llvm::format("\rkv-cache: layer %lld/%lld, %.1f s elapsed   ",
                                   (long long)(li + 1), (long long)numLayers, secs);
    }
  }
  if (config.progress)
    llvm::errs() << "\n";
  return true;
}

} // namespace qopt::quant
