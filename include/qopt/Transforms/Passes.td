//===- Passes.td - qopt passes ----------------------------*- tablegen -*-===//
#ifndef QOPT_TRANSFORMS_PASSES
#define QOPT_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Import
//===----------------------------------------------------------------------===//

def RaiseONNX : Pass<"qopt-raise-onnx", "mlir::ModuleOp"> {
  let summary = "Raise generic ONNX nodes into QLLM ops by pattern";
  let description = [{
    Recognizes RMSNorm, rotary, causal attention, SwiGLU, linears, the
    embedding and residual adds among `qonnx.node` ops, rewrites them into
    QLLM ops with canonical weight names, and fails naming the first node
    that is left over.
  }];
  let dependentDialects = ["::qopt::qllm::QLLMDialect", "::mlir::func::FuncDialect"];
}

#endif // QOPT_TRANSFORMS_PASSES
