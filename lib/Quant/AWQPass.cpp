//===- AWQPass.cpp - qopt-awq ----------------------------------------===//
//
// The pass checks the request, draws the calibration windows and hands
// the module to runAWQ (AWQ.h), which tests also call directly.
//
//===----------------------------------------------------------------------===//
#include "AWQPassCalibration.h"

#include "qopt/Quant/AWQ.h"
#include "qopt/Quant/Passes.h"
#include "qopt/Quant/StoreAccess.h"

#include <unistd.h>

namespace qopt::quant {
#define GEN_PASS_DEF_AWQ
#include "qopt/Quant/Passes.h.inc"
} // namespace qopt::quant

using namespace mlir;
using namespace qopt;
using namespace qopt::quant;

namespace {

struct AWQ : qopt::quant::impl::AWQBase<AWQ> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::string error;
    auto fail = [&](const std::string &message) {
      module.emitError() << "qopt-awq: " << message;
      signalPassFailure();
    };
    // Everything wrong with the request is reported before calibration.
    Format format;
    WeightSelection selection;
    if (!parseFormat(wquant, groupSize, symmetric, &format, &error) ||
        !WeightSelection::create(format, overrides, quantizeEmbeddings, quantizeLmHead, &selection,
                                 &error))
      return fail(error);
    if (gridSize < 1 || threads < 0)
      return fail("-awq-grid must be at least 1 and -threads non-negative");
    WeightStore *store = getOrLoadWeightStore(module, &error);
    if (!store)
      return fail(error);
    CalibrationOptions co{calib, calibSamples, calibSeqlen, seed};
    std::vector<std::vector<int32_t>> samples;
    if (!sampleForPass(module, "AWQ", tokenizer, co, &samples, &error))
      return fail(error);
    AWQConfig config;
    config.gridSize = gridSize;
    config.clipSearch = clipSearch;
    config.threads = threads;
    config.progress = isatty(2);
    if (!runAWQ(module, *store, selection, std::move(samples), config, nullptr, &error))
      return fail(error);
  }
};

} // namespace
