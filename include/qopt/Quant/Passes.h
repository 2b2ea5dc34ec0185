//===- Passes.h - quantization passes --------------------------*- C++ -*-===//
#ifndef QOPT_QUANT_PASSES_H
#define QOPT_QUANT_PASSES_H

#include "mlir/Pass/Pass.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"

namespace qopt::quant {

#define GEN_PASS_DECL
#include "qopt/Quant/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "qopt/Quant/Passes.h.inc"

} // namespace qopt::quant

#endif
