//===- StoreAccess.h - the weight store a pass works on -------*- C++ -*-===//
//
// Inside `qopt` the driver hands the store to the QLLM dialect. Under
// `qopt-opt` nobody does: a module printed by `qopt -emit=mlir` carries a
// `qllm.source` attribute (the model path), and the store is imported from
// it on first use, so `qopt-opt --pass-pipeline=...` can run the
// quantization passes on such a file.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_STOREACCESS_H
#define QOPT_QUANT_STOREACCESS_H

#include "mlir/IR/BuiltinOps.h"
#include "qopt/Weights/WeightStore.h"

#include <string>

namespace qopt::quant {

/// Module attribute naming the model a module was imported from.
constexpr const char *kSourceAttrName = "qllm.source";

/// The context's weight store (QLLMDialect::getWeightStore); if none is set
/// and the module has a `qllm.source` string attribute, imports that model
/// (Hugging Face directory or .onnx) into a store kept for the rest of the
/// process and sets it on the dialect. Null with *error otherwise.
WeightStore *getOrLoadWeightStore(mlir::ModuleOp module, std::string *error);

/// Tells the kernel that a tensor's memory-mapped pages are not needed any
/// more (madvise PAGEOUT on the pages wholly inside it): streaming passes
/// call it after reading a weight, so resident memory stays about one
/// weight, not the model. Harmless on any memory; failures are ignored.
void releasePages(const WeightEntry &entry);

} // namespace qopt::quant

#endif
