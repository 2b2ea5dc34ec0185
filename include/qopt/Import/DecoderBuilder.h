//===- DecoderBuilder.h - the canonical QLLM form of a decoder -*- C++ -*-===//
//
// Both importers end in the same IR: one `func.func @forward(%ids)` whose
// body starts with every `qllm.param` in order of first use, then per layer
//   rms_norm, linear q/k/v, rotary q, rotary k, attention, linear o, add,
//   rms_norm, linear gate/up, swiglu, linear down, add
// and finally rms_norm + lm_head. The module carries the hyper-parameters in
// a `qllm.config` dictionary attribute.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_IMPORT_DECODERBUILDER_H
#define QOPT_IMPORT_DECODERBUILDER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "qopt/Import/ModelConfig.h"
#include "qopt/Weights/WeightStore.h"

namespace qopt {

/// Builds the canonical module for `config`, reading dtypes and shapes of
/// the canonically named tensors from `store`. On a missing tensor or a
/// shape that contradicts the config, returns null and sets *error naming
/// the tensor (`sourceName` prefixes it: the file the user gave).
mlir::OwningOpRef<mlir::ModuleOp>
buildDecoderModule(mlir::MLIRContext &ctx, const ModelConfig &config,
                   const WeightStore &store, const std::string &sourceName,
                   std::string *error);

/// Moves every `qllm.param` / `qllm.qparam` of `func` to the top of its
/// body in order of first use and merges duplicates (same name), so IR from
/// different importers and passes prints identically.
void canonicalizeParamOrder(mlir::Operation *func);

/// Writes the `qllm.config` dictionary attribute of a module.
void setConfigAttr(mlir::ModuleOp module, const ModelConfig &config);
/// Reads it back; false with *error if absent or malformed.
bool getConfigAttr(mlir::ModuleOp module, ModelConfig *config, std::string *error);

} // namespace qopt

#endif
