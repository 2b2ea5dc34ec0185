//===- QLLMDialect.h - the QLLM dialect -----------------------*- C++ -*-===//
#ifndef QOPT_DIALECT_QLLM_QLLMDIALECT_H
#define QOPT_DIALECT_QLLM_QLLMDIALECT_H

#include "mlir/IR/Dialect.h"

namespace qopt {
class WeightStore;
} // namespace qopt

#include "qopt/Dialect/QLLM/QLLMOpsDialect.h.inc"

#endif
