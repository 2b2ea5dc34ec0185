//===- QLLMOps.td - QLLM operations -----------------------*- tablegen -*-===//
//
// Activations: ranked float tensors [batch, seq, features]. Weight operands:
// ranked float tensors [out, in] from `qllm.param`, or `!qllm.qweight` from
// `qllm.qparam`. Verifiers check the feature dimensions and head counts so
// that passes can rely on them.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_DIALECT_QLLM_OPS
#define QOPT_DIALECT_QLLM_OPS

include "qopt/Dialect/QLLM/QLLMDialect.td"
include "qopt/Dialect/QLLM/QLLMTypes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/BuiltinAttributes.td"

def QLLM_Activation : RankedTensorOf<[AnyFloat]>;
def QLLM_Weight : AnyTypeOf<[RankedTensorOf<[AnyFloat]>, QLLM_QWeightType]>;
def QLLM_TokenIds : RankedTensorOf<[I32, I64]>;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def QLLM_ParamOp : QLLM_Op<"param", [Pure]> {
  let summary = "A float tensor of the weight store, by name";
  let arguments = (ins StrAttr:$name);
  let results = (outs RankedTensorOf<[AnyFloat]>:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def QLLM_QParamOp : QLLM_Op<"qparam", [Pure]> {
  let summary = "A quantized weight of the weight store, by name";
  let description = [{
    The store holds `<name>.qweight` (packed codes), `<name>.scales` and,
    for asymmetric formats, `<name>.zeros`, laid out as the type's quant
    attribute says.
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs QLLM_QWeightType:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Decoder building blocks
//===----------------------------------------------------------------------===//

def QLLM_EmbeddingOp : QLLM_Op<"embedding", [Pure]> {
  let summary = "Token embedding lookup: ids [B,S] x table [V,D] -> [B,S,D]";
  let arguments = (ins QLLM_TokenIds:$ids, QLLM_Weight:$table);
  let results = (outs QLLM_Activation:$result);
  let assemblyFormat = [{
    $ids `,` $table attr-dict `:` `(` type($ids) `,` type($table) `)` `->` type($result)
  }];
  let hasVerifier = 1;
}

def QLLM_RMSNormOp : QLLM_Op<"rms_norm", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "x / sqrt(mean(x^2) + epsilon) * weight over the last dim";
  let arguments = (ins QLLM_Activation:$input, RankedTensorOf<[AnyFloat]>:$weight,
                       F64Attr:$epsilon);
  let results = (outs QLLM_Activation:$result);
  let assemblyFormat = [{
    $input `,` $weight attr-dict `:` type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

def QLLM_LinearOp : QLLM_Op<"linear", [Pure]> {
  let summary = "y = x W^T (+ bias), W is [out_features, in_features]";
  let description = [{
    W8A8 (SmoothQuant, FP8): `act_quant` marks the input as quantized before
    the product, "per_token" (a dynamic scale per row: max|x| / qmax) or
    "per_tensor" (the static, calibrated `act_scale`); `act_quant_type` is
    "int8" (the default, symmetric, qmax = 127) or "fp8_e4m3" (qmax = 448).
    The reference executor quantizes and dequantizes the input accordingly,
    so evaluation sees what a W8A8 kernel computes.
  }];
  let arguments = (ins QLLM_Activation:$input, QLLM_Weight:$weight,
                       Optional<RankedTensorOf<[AnyFloat]>>:$bias,
                       OptionalAttr<StrAttr>:$act_quant,
                       OptionalAttr<F32Attr>:$act_scale,
                       OptionalAttr<StrAttr>:$act_quant_type);
  let results = (outs QLLM_Activation:$result);
  // The builder without the optional activation-quantization attributes.
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$input,
                   "::mlir::Value":$weight, "::mlir::Value":$bias), [{
      build($_builder, $_state, result, input, weight, bias, ::mlir::StringAttr(),
            ::mlir::FloatAttr(), ::mlir::StringAttr());
    }]>
  ];
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^ `:` type($bias))? attr-dict `:` type($input) `,` type($weight) `->` type($result)
  }];
  let hasVerifier = 1;
}

def QLLM_LMHeadOp : QLLM_Op<"lm_head", [Pure]> {
  let summary = "Logits = x W^T with W [vocab, hidden]";
  let description = [{
    A linear kept apart so that passes can treat the output projection on
    its own (it stays unquantized unless asked; it may share its weight with
    the embedding).
  }];
  let arguments = (ins QLLM_Activation:$input, QLLM_Weight:$weight);
  let results = (outs QLLM_Activation:$result);
  let assemblyFormat = [{
    $input `,` $weight attr-dict `:` type($input) `,` type($weight) `->` type($result)
  }];
  let hasVerifier = 1;
}

def QLLM_RotaryOp : QLLM_Op<"rotary", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Rotary position embedding on [B,S,heads*head_dim]";
  let description = [{
    Rotates the first `rotary_dim` (default: head_dim) dims of each head in
    the "rotate_half" layout of Hugging Face transformers: pairs (i, i+d/2).
    Positions are 0..S-1 plus the runtime's offset. `scaling` optionally
    holds a rope-scaling dictionary: `rope_type` = "linear" (`factor`) or
    "llama3" (`factor`, `low_freq_factor`, `high_freq_factor`,
    `original_max_position_embeddings`).
  }];
  let arguments = (ins QLLM_Activation:$input, I64Attr:$num_heads,
                       I64Attr:$head_dim, F64Attr:$theta,
                       OptionalAttr<I64Attr>:$rotary_dim,
                       OptionalAttr<DictionaryAttr>:$scaling);
  let results = (outs QLLM_Activation:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let hasVerifier = 1;
  // Two spellings of the same rotation become one: rotary_dim equal to
  // head_dim and a "default" scaling dictionary are dropped.
  let hasCanonicalizeMethod = 1;
}

def QLLM_AttentionOp : QLLM_Op<"attention", [Pure]> {
  let summary = "Causal grouped-query attention";
  let description = [{
    q: [B,S,num_heads*head_dim], k and v: [B,S,num_kv_heads*head_dim];
    query head h reads kv head h / (num_heads / num_kv_heads). Causal: a
    position attends to itself and earlier ones. softmax(q k^T * scale) v.
    Where the keys and values are stored (a KV cache, paged or not) is the
    runtime's business. A quantized KV cache is `kv_cache_dtype` ("int8" or
    "fp8_e4m3") with calibrated per-KV-head scales `k_scales` and `v_scales`
    (num_kv_heads each): the cache holds k / scale rounded to the type. The
    reference executor rounds K and V that way before attending.
  }];
  let arguments = (ins QLLM_Activation:$query, QLLM_Activation:$key,
                       QLLM_Activation:$value, I64Attr:$num_heads,
                       I64Attr:$num_kv_heads, I64Attr:$head_dim,
                       F64Attr:$scale,
                       OptionalAttr<StrAttr>:$kv_cache_dtype,
                       OptionalAttr<DenseF32ArrayAttr>:$k_scales,
                       OptionalAttr<DenseF32ArrayAttr>:$v_scales);
  let results = (outs QLLM_Activation:$result);
  // The builder without the optional KV-cache attributes.
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$query,
                   "::mlir::Value":$key, "::mlir::Value":$value,
                   "::mlir::IntegerAttr":$num_heads, "::mlir::IntegerAttr":$num_kv_heads,
                   "::mlir::IntegerAttr":$head_dim, "::mlir::FloatAttr":$scale), [{
      build($_builder, $_state, result, query, key, value, num_heads, num_kv_heads,
            head_dim, scale, ::mlir::StringAttr(), ::mlir::DenseF32ArrayAttr(),
            ::mlir::DenseF32ArrayAttr());
    }]>
  ];
  let assemblyFormat = [{
    $query `,` $key `,` $value attr-dict `:` type($query) `,` type($key) `,` type($value) `->` type($result)
  }];
  let hasVerifier = 1;
}

def QLLM_SwiGLUOp : QLLM_Op<"swiglu", [Pure, AllTypesMatch<["gate", "up", "result"]>]> {
  let summary = "silu(gate) * up";
  let arguments = (ins QLLM_Activation:$gate, QLLM_Activation:$up);
  let results = (outs QLLM_Activation:$result);
  let assemblyFormat = "$gate `,` $up attr-dict `:` type($gate)";
}

def QLLM_AddOp : QLLM_Op<"add", [Pure, Commutative, AllTypesMatch<["lhs", "rhs", "result"]>]> {
  let summary = "Residual add";
  let arguments = (ins QLLM_Activation:$lhs, QLLM_Activation:$rhs);
  let results = (outs QLLM_Activation:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($lhs)";
}

#endif // QOPT_DIALECT_QLLM_OPS
