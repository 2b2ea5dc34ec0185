//===- QONNXDialect.cpp - generic ONNX nodes --------------------------===//
#include "qopt/Dialect/QONNX/QONNXOps.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace qopt::qonnx;

#include "qopt/Dialect/QONNX/QONNXOpsDialect.cpp.inc"

void QONNXDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "qopt/Dialect/QONNX/QONNXOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "qopt/Dialect/QONNX/QONNXOps.cpp.inc"
