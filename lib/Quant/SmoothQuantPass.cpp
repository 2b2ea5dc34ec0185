//===- SmoothQuantPass.cpp - qopt-smoothquant ------------------------===//
#include "AWQPassCalibration.h"

#include "qopt/Quant/Passes.h"
#include "qopt/Quant/SmoothQuant.h"

#include <unistd.h>

namespace qopt::quant {
#define GEN_PASS_DEF_SMOOTHQUANT
#include "qopt/Quant/Passes.h.inc"
} // namespace qopt::quant

using namespace mlir;
using namespace qopt;
using namespace qopt::quant;

namespace {

struct SmoothQuant : qopt::quant::impl::SmoothQuantBase<SmoothQuant> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::string error;
    auto fail = [&](const std::string &message) {
      module.emitError() << "qopt-smoothquant: " << message;
      signalPassFailure();
    };
    if (wquant != "int8" && wquant != "fp8" && wquant != "fp8_e4m3")
      return fail("W8A8 is int8 or fp8 weights and activations; it cannot produce -wquant=" +
                  wquant);
    if (!(alpha >= 0 && alpha <= 1))
      return fail("-smoothquant-alpha must be in [0, 1], got " + std::to_string(alpha));
    if (actQuant != "per-token" && actQuant != "per-tensor")
      return fail("-act-quant=" + actQuant + ": expected per-token or per-tensor");
    if (threads < 0)
      return fail("-threads must be non-negative");
    std::vector<std::vector<int32_t>> samples;
    WeightStore *store = loadStoreAndSamples(module, "SmoothQuant", tokenizer,
                                             {calib, calibSamples, calibSeqlen, seed}, &samples,
                                             &error);
    if (!store)
      return fail(error);
    SmoothQuantConfig config;
    config.alpha = alpha;
    config.perTensor = actQuant == "per-tensor";
    config.fp8 = wquant != "int8";
    config.threads = threads;
    config.progress = isatty(2);
    if (!runSmoothQuant(module, *store, std::move(samples), config, &error))
      return fail(error);
  }
};

} // namespace
