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

    Shapes of dynamic Reshapes, the rotary cos/sin tables (whence theta and
    linear rope scaling) and the causal mask are found by evaluating the
    graph abstractly for a few sequence lengths. The result is exactly the
    canonical form of DecoderBuilder.h (buildDecoderModule), with the
    `qllm.config` module attribute. Run from C++ with a WeightStore
    (createRaiseONNXPass(store), as importONNX does), small initializers
    such as inv_freq are read from the store and the weights are renamed in
    it; run standalone (qopt-opt), tables must be inline `qonnx.constant`s.
  }];
  let dependentDialects = ["::qopt::qllm::QLLMDialect", "::mlir::func::FuncDialect"];
}

#endif // QOPT_TRANSFORMS_PASSES
