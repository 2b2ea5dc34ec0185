//===- QONNXOps.td - ONNX nodes, imported 1:1 -------------*- tablegen -*-===//
//
// The ONNX importer first maps every node to one generic `qonnx.node` that
// keeps its op type, name, domain and opset; `qopt-raise-onnx` then rewrites
// decoder subgraphs into QLLM ops by pattern. Nothing of this dialect may be
// left once raising succeeds.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_DIALECT_QONNX_OPS
#define QOPT_DIALECT_QONNX_OPS

include "mlir/IR/OpBase.td"
include "mlir/IR/BuiltinAttributes.td"

def QONNX_Dialect : Dialect {
  let name = "qonnx";
  let summary = "Generic ONNX nodes before raising to QLLM";
  let cppNamespace = "::qopt::qonnx";
}

class QONNX_Op<string mnemonic, list<Trait> traits = []>
    : Op<QONNX_Dialect, mnemonic, traits>;

def QONNX_NodeOp : QONNX_Op<"node"> {
  let summary = "One ONNX node, as the file has it";
  let arguments = (ins Variadic<AnyType>:$inputs, StrAttr:$op_type,
                       StrAttr:$node_name, StrAttr:$domain, I64Attr:$opset,
                       DictionaryAttr:$onnx_attrs);
  let results = (outs Variadic<AnyType>:$outputs);
  let assemblyFormat = [{
    $op_type `(` $inputs `)` attr-dict `:` functional-type($inputs, $outputs)
  }];
}

def QONNX_ConstantOp : QONNX_Op<"constant"> {
  let summary = "A small ONNX initializer or Constant, held inline";
  let arguments = (ins ElementsAttr:$value, StrAttr:$tensor_name);
  let results = (outs AnyType:$result);
  let assemblyFormat = "$tensor_name $value attr-dict `:` type($result)";
}

def QONNX_NoneOp : QONNX_Op<"none"> {
  let summary = "An omitted optional input";
  let results = (outs NoneType:$result);
  let assemblyFormat = "attr-dict";
}

#endif // QOPT_DIALECT_QONNX_OPS
