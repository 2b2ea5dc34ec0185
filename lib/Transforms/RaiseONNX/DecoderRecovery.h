//===- DecoderRecovery.h - QLLM op graph -> canonical decoder --*- C++ -*-===//
//
// After the patterns have replaced every generic node, the function is a
// graph of QLLM ops in the exporter's order with the exporter's weight
// names. This step walks it from the logits back to the embedding, checks
// that it is exactly a stack of Llama decoder layers (nothing extra, nothing
// missing, one epsilon/theta/head layout for all layers), recovers the
// ModelConfig, renames the weights to their canonical names and rebuilds
// the function with buildDecoderModule, so the result is the same IR the
// Hugging Face importer produces.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_TRANSFORMS_RAISEONNX_DECODERRECOVERY_H
#define QOPT_LIB_TRANSFORMS_RAISEONNX_DECODERRECOVERY_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace qopt {
class WeightStore;
namespace raise {

/// Replaces `func` in `module` by the canonical decoder. With a store, the
/// weights are renamed in it (a duplicated lm_head equal to the embedding
/// becomes a tied one); without, only the IR names change. On failure
/// returns false with *error, and *where set to the offending op if any.
bool rebuildCanonicalDecoder(mlir::ModuleOp module, mlir::func::FuncOp func, WeightStore *store,
                             std::string *error, mlir::Operation **where);

} // namespace raise
} // namespace qopt

#endif
