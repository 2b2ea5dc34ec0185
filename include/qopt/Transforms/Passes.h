//===- Passes.h - qopt passes ---------------------------------*- C++ -*-===//
#ifndef QOPT_TRANSFORMS_PASSES_H
#define QOPT_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"

namespace qopt {
#define GEN_PASS_DECL
#include "qopt/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "qopt/Transforms/Passes.h.inc"
} // namespace qopt

#endif
