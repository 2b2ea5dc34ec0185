//===- QLLMAttrs.td - quantization attributes -------------*- tablegen -*-===//
#ifndef QOPT_DIALECT_QLLM_ATTRS
#define QOPT_DIALECT_QLLM_ATTRS

include "qopt/Dialect/QLLM/QLLMDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def QLLM_ElementKindInt : I32EnumAttrCase<"Int", 0, "int">;
def QLLM_ElementKindNF4 : I32EnumAttrCase<"NF4", 1, "nf4">;
def QLLM_ElementKindFP8E4M3 : I32EnumAttrCase<"FP8E4M3", 2, "fp8_e4m3">;
def QLLM_ElementKind : I32EnumAttr<"ElementKind",
    "element encoding of a quantized weight",
    [QLLM_ElementKindInt, QLLM_ElementKindNF4, QLLM_ElementKindFP8E4M3]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::qopt::qllm";
}
def QLLM_ElementKindAttr : EnumAttr<QLLM_Dialect, QLLM_ElementKind, "kind">;

def QLLM_QuantAttr : AttrDef<QLLM_Dialect, "Quant"> {
  let mnemonic = "quant";
  let summary = "How a weight is quantized";
  let description = [{
    `kind`: int (bits 2..8), nf4 (bits = 4, symmetric, block absmax) or
    fp8_e4m3 (bits = 8, symmetric). `group_size`: elements of one input row
    sharing a scale; -1 means one scale per output channel. `symmetric`:
    no zero point. `scale_type` / `zero_type`: element types of the scales
    and zero points (zero_type only for asymmetric formats). `layout`: the
    packed-layout id that names how the kernels expect the bits in memory.
  }];
  let parameters = (ins
    "ElementKind":$kind,
    "unsigned":$bits,
    "int64_t":$group_size,
    "bool":$symmetric,
    "::mlir::Type":$scale_type,
    OptionalParameter<"::mlir::Type">:$zero_type,
    "::mlir::StringAttr":$layout);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // QOPT_DIALECT_QLLM_ATTRS
