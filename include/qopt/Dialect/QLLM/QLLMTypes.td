//===- QLLMTypes.td - QLLM types --------------------------*- tablegen -*-===//
#ifndef QOPT_DIALECT_QLLM_TYPES
#define QOPT_DIALECT_QLLM_TYPES

include "qopt/Dialect/QLLM/QLLMAttrs.td"
include "mlir/IR/AttrTypeBase.td"

def QLLM_QWeightType : TypeDef<QLLM_Dialect, "QWeight"> {
  let mnemonic = "qweight";
  let summary = "A quantized weight matrix [out_features, in_features]";
  let parameters = (ins ArrayRefParameter<"int64_t">:$shape,
                        "QuantAttr":$quant);
  let assemblyFormat = "`<` `[` $shape `]` `,` $quant `>`";
  let genVerifyDecl = 1;
}

#endif // QOPT_DIALECT_QLLM_TYPES
