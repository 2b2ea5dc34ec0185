//===- QLLMOps.h - QLLM operations, attributes and types ------*- C++ -*-===//
#ifndef QOPT_DIALECT_QLLM_QLLMOPS_H
#define QOPT_DIALECT_QLLM_QLLMOPS_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"

#include "qopt/Dialect/QLLM/QLLMEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "qopt/Dialect/QLLM/QLLMAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "qopt/Dialect/QLLM/QLLMOpsTypes.h.inc"

#define GET_OP_CLASSES
#include "qopt/Dialect/QLLM/QLLMOps.h.inc"

namespace qopt::qllm {
/// Shape [out, in] of a weight operand, float tensor or quantized weight.
/// Empty when the type is neither.
llvm::SmallVector<int64_t, 2> getWeightShape(mlir::Type type);
} // namespace qopt::qllm

#endif
