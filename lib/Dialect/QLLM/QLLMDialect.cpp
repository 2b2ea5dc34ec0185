//===- QLLMDialect.cpp - dialect registration -------------------------===//
#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Dialect/QLLM/QLLMOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace qopt::qllm;

#include "qopt/Dialect/QLLM/QLLMOpsDialect.cpp.inc"
#include "qopt/Dialect/QLLM/QLLMEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "qopt/Dialect/QLLM/QLLMAttrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "qopt/Dialect/QLLM/QLLMOpsTypes.cpp.inc"

void QLLMDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "qopt/Dialect/QLLM/QLLMOps.cpp.inc"
      >();
  registerAttributes();
  registerTypes();
}

void QLLMDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "qopt/Dialect/QLLM/QLLMAttrs.cpp.inc"
      >();
}

void QLLMDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "qopt/Dialect/QLLM/QLLMOpsTypes.cpp.inc"
      >();
}
