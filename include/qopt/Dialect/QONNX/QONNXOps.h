//===- QONNXOps.h - generic ONNX nodes ------------------------*- C++ -*-===//
#ifndef QOPT_DIALECT_QONNX_QONNXOPS_H
#define QOPT_DIALECT_QONNX_QONNXOPS_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"

#include "qopt/Dialect/QONNX/QONNXOpsDialect.h.inc"

#define GET_OP_CLASSES
#include "qopt/Dialect/QONNX/QONNXOps.h.inc"

#endif
