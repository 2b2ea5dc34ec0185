//===- KVCachePass.cpp - qopt-kv-cache-quant -------------------------===//
#include "AWQPassCalibration.h"

#include "qopt/Quant/KVCache.h"
#include "qopt/Quant/Passes.h"

#include <unistd.h>

namespace qopt::quant {
#define GEN_PASS_DEF_KVCACHEQUANT
#include "qopt/Quant/Passes.h.inc"
} // namespace qopt::quant

using namespace mlir;
using namespace qopt;
using namespace qopt::quant;

namespace {

struct KVCacheQuant : qopt::quant::impl::KVCacheQuantBase<KVCacheQuant> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::string error;
    auto fail = [&](const std::string &message) {
      module.emitError() << "qopt-kv-cache-quant: " << message;
      signalPassFailure();
    };
    if (kvCache != "int8" && kvCache != "fp8" && kvCache != "fp8_e4m3")
      return fail("-kv-cache=" + kvCache + ": expected int8 or fp8");
    if (threads < 0)
      return fail("-threads must be non-negative");
    std::vector<std::vector<int32_t>> samples;
    WeightStore *store = loadStoreAndSamples(module, "-kv-cache", tokenizer,
                                             {calib, calibSamples, calibSeqlen, seed}, &samples,
                                             &error);
    if (!store)
      return fail(error);
    KVCacheConfig config;
    config.dtype = kvCache;
    config.threads = threads;
    config.progress = isatty(2);
    if (!runKVCacheQuant(module, *store, std::move(samples), config, &error))
      return fail(error);
  }
};

} // namespace
