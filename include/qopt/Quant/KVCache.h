//===- KVCache.h - calibrated scales for a quantized KV cache --*- C++ -*-===//
//
// A KV cache in int8 or fp8 e4m3 halves (or quarters) the memory that
// bounds context length and batch. Its scales are calibrated per KV head:
// absmax of K (after rotary, what the cache holds) and of V over the
// calibration tokens, over 127 (int8) or 448 (e4m3). They are attached to
// each qllm.attention (kv_cache_dtype, k_scales, v_scales), where the
// runtime reads them and the reference executor applies them.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_KVCACHE_H
#define QOPT_QUANT_KVCACHE_H

#include "qopt/Weights/WeightStore.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace qopt::quant {

struct KVCacheConfig {
  /// "int8" or "fp8" (= "fp8_e4m3").
  std::string dtype = "int8";
  int threads = 0;
  bool progress = false;
};

/// Calibrates and attaches the scales to every decoder layer's attention,
/// layer by layer (layer i + 1 calibrates on layer i with its quantized KV
/// cache). False with *error on an unknown dtype or a non-canonical module.
bool runKVCacheQuant(mlir::ModuleOp module, WeightStore &store,
                     std::vector<std::vector<int32_t>> samples, const KVCacheConfig &config,
                     std::string *error);

} // namespace qopt::quant

#endif
