//===- Passes.h - qopt passes ---------------------------------*- C++ -*-===//
#ifndef QOPT_TRANSFORMS_PASSES_H
#define QOPT_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"

namespace qopt {
class WeightStore;

#define GEN_PASS_DECL
#include "qopt/Transforms/Passes.h.inc"

/// qopt-raise-onnx with a weight store: small initializers (inv_freq, cos
/// caches) are read from it, and the weights are renamed in it to their
/// canonical names. Without a store (createRaiseONNX(), as qopt-opt runs
/// it) only tables held inline as qonnx.constant can be analyzed.
std::unique_ptr<mlir::Pass> createRaiseONNXPass(WeightStore *store);

#define GEN_PASS_REGISTRATION
#include "qopt/Transforms/Passes.h.inc"
} // namespace qopt

#endif
