//===- QLLMDialect.td - the QLLM dialect ------------------*- tablegen -*-===//
//
// QLLM models a decoder-only language model at the level an LLM compiler
// reasons about: embeddings, norms, linears, rotary, attention, SwiGLU.
// Weights live outside the IR in a weight store and are referenced by name.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_DIALECT_QLLM_DIALECT
#define QOPT_DIALECT_QLLM_DIALECT

include "mlir/IR/OpBase.td"

def QLLM_Dialect : Dialect {
  let name = "qllm";
  let summary = "Decoder-only LLM operations with weights held by name";
  let description = [{
    Activations are ranked tensors `[batch, seq, features]` whose first two
    dimensions are usually dynamic. Weights are produced by `qllm.param`
    (a float tensor) or `qllm.qparam` (a quantized weight), which refer to a
    tensor of the weight store by name, so a multi-GB model prints in a few
    kilobytes.
  }];
  let cppNamespace = "::qopt::qllm";
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
    void registerTypes();

    /// The weight store holding the tensors that `qllm.param` /
    /// `qllm.qparam` of this context name (not owned). Set by whoever
    /// imported the module; read by passes that rewrite weights.
    ::qopt::WeightStore *getWeightStore() const { return weightStore; }
    void setWeightStore(::qopt::WeightStore *store) { weightStore = store; }

  private:
    ::qopt::WeightStore *weightStore = nullptr;

  public:
  }];
}

class QLLM_Op<string mnemonic, list<Trait> traits = []>
    : Op<QLLM_Dialect, mnemonic, traits>;

#endif // QOPT_DIALECT_QLLM_DIALECT
