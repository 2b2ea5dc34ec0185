//===- qopt-opt.cpp - qopt's passes over MLIR files -----------------===//
//
// Registers only what qopt's IR uses, so compiler engineers can run any
// qopt pass or pipeline step by step on their own files.
//
//===----------------------------------------------------------------------===//
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Dialect/QONNX/QONNXOps.h"
#include "qopt/Quant/Passes.h"
#include "qopt/Quant/Pipeline.h"
#include "qopt/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<qopt::qllm::QLLMDialect, qopt::qonnx::QONNXDialect,
                  mlir::func::FuncDialect>();
  qopt::registerQoptPasses();
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  // Weight-rewriting passes find the store through the module's
  // `qllm.source` (see qopt/Quant/StoreAccess.h).
  qopt::quant::registerQoptQuantPasses();
  qopt::quant::registerQuantizationPipeline();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "qopt optimizer driver\n", registry));
}
