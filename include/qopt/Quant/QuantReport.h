//===- QuantReport.h - what a quantized module costs and holds -*- C++ -*-===//
//
// The facts behind `qopt -report=FILE.json`: per weight its format, bits
// per weight (codes + scales + zeros + padding, as stored), and relative
// output error on calibration inputs; the model's float and quantized
// sizes; and the serving memory budget (weights + KV cache).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_QUANTREPORT_H
#define QOPT_QUANT_QUANTREPORT_H

#include "mlir/IR/BuiltinOps.h"
#include "qopt/Import/ModelConfig.h"
#include "qopt/Weights/WeightStore.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qopt::quant {

struct WeightReport {
  std::string name;
  std::string role;     ///< "linear", "embedding", "lm_head", "norm", "bias"
  std::string format;   ///< Format::spec() or the float dtype ("bf16")
  bool quantized = false;
  std::vector<int64_t> shape;
  int64_t parameters = 0;
  int64_t floatBytes = 0; ///< as the source stores it
  int64_t bytes = 0;      ///< as the module refers to it now
  double bitsPerWeight = 0;
  /// ||X W^T - X W'^T|| / ||X W^T|| on calibration inputs X (the inputs the
  /// quantized linear sees), W the float weight of the same name; unset
  /// when not measured.
  std::optional<double> relOutputError;
};

struct ModelReport {
  std::vector<WeightReport> weights; ///< every weight, in program order
  int64_t parameters = 0;
  int64_t floatBytes = 0, bytes = 0;
  /// Over the quantized weights only, and over every weight.
  double quantizedBitsPerWeight = 0, averageBitsPerWeight = 0;
  int64_t quantizedParameters = 0;
};

/// Walks `@forward`'s qllm.param / qllm.qparam ops. False with *error when
/// a weight is missing from the store.
bool describeWeights(mlir::ModuleOp module, const WeightStore &store, ModelReport *report,
                     std::string *error);

/// Runs the module on `windows` (one batch) with the reference executor and
/// fills relOutputError of every linear whose weight is quantized. Memory:
/// the module's dequantized weights plus one float weight at a time.
bool measureLinearErrors(mlir::ModuleOp module, const WeightStore &store,
                         const std::vector<std::vector<int32_t>> &windows, int threads,
                         ModelReport *report, std::string *error);

/// KV cache bytes per token: 2 (K and V) x layers x kv_heads x head_dim x
/// bytes per element.
int64_t kvBytesPerToken(const ModelConfig &config, int64_t bytesPerElement);

/// The report's `weights` array: one object per weight (`rel_output_error`
/// null where it was not measured).
llvm::json::Array weightsJson(const ModelReport &report);

/// The report's `memory_budget`: `report.bytes` of weights plus a KV cache
/// of `maxBatch` sequences of `maxContext` tokens at `kvBytesPerElement`.
llvm::json::Object memoryBudgetJson(const ModelConfig &config, const ModelReport &report,
                                    int64_t maxContext, int64_t maxBatch,
                                    int64_t kvBytesPerElement);

} // namespace qopt::quant

#endif
