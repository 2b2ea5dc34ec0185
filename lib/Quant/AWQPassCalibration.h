//===- AWQPassCalibration.h - calibration samples for a pass ---*- C++ -*-===//
//
// What the calibrating passes of this directory (qopt-awq, qopt-smoothquant,
// qopt-kv-cache-quant) do before any work: get the weight store, find the
// tokenizer (the option, else tokenizer.json beside the model a module came
// from), check the request, and draw the calibration windows.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_QUANT_AWQPASSCALIBRATION_H
#define QOPT_LIB_QUANT_AWQPASSCALIBRATION_H

#include "qopt/Quant/Calibration.h"
#include "qopt/Weights/WeightStore.h"

#include <string>
#include <vector>

namespace qopt::quant {

/// Tokenizes `options.file` with `tokenizerPath` (or the tokenizer beside
/// the module's `qllm.source` model when empty) and samples the windows.
/// `method` prefixes errors ("AWQ needs calibration text: -calib=FILE").
bool sampleForPass(mlir::ModuleOp module, const std::string &method,
                   const std::string &tokenizerPath, const CalibrationOptions &options,
                   std::vector<std::vector<int32_t>> *samples, std::string *error);

/// The module's weight store (getOrLoadWeightStore), then the calibration
/// windows (sampleForPass): what a calibrating pass needs before its work.
/// Null with *error when either fails.
WeightStore *loadStoreAndSamples(mlir::ModuleOp module, const std::string &method,
                                 const std::string &tokenizerPath,
                                 const CalibrationOptions &options,
                                 std::vector<std::vector<int32_t>> *samples, std::string *error);

} // namespace qopt::quant

#endif
