//===- ONNXImporter.h - ONNX files -> QLLM --------------------*- C++ -*-===//
#ifndef QOPT_IMPORT_ONNXIMPORTER_H
#define QOPT_IMPORT_ONNXIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "qopt/Weights/WeightStore.h"

namespace qopt {

/// Maps every node of an ONNX file 1:1 to a `qonnx.node` op (initializers
/// become `qllm.param` tensors in `store`, small constants `qonnx.constant`).
/// Inline and external data, fp32/fp16/bf16, opsets 14..21.
mlir::OwningOpRef<mlir::ModuleOp> importONNXGeneric(mlir::MLIRContext &ctx,
                                                    const std::string &path,
                                                    WeightStore &store,
                                                    std::string *error);

/// importONNXGeneric, then the qopt-raise-onnx pass: the canonical QLLM
/// module (see DecoderBuilder.h), weights renamed to canonical names. A
/// graph that does not raise completely is an error naming the first node
/// left over.
mlir::OwningOpRef<mlir::ModuleOp> importONNX(mlir::MLIRContext &ctx,
                                             const std::string &path,
                                             WeightStore &store,
                                             std::string *error);

} // namespace qopt

#endif
