//===- Passes.td - quantization passes --------------------*- tablegen -*-===//
//
// Every method is a pass over a canonical QLLM module whose weights live in
// the context's weight store (QLLMDialect::getWeightStore). Option names are
// the qopt driver's flag names: -wquant=int4 -group-size=128 is
// {wquant=int4 group-size=128} here.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_PASSES
#define QOPT_QUANT_PASSES

include "mlir/Pass/PassBase.td"

// Options every weight-quantizing pass shares.
defvar WeightFormatOptions = [
  Option<"wquant", "wquant", "std::string", /*default=*/"\"int4\"",
         "Weight format: int2..int8, nf4, fp8">,
  Option<"groupSize", "group-size", "int64_t", /*default=*/"128",
         "Elements sharing a scale along K; -1 = per output channel">,
  Option<"symmetric", "symmetric", "bool", /*default=*/"false",
         "Symmetric (no zero points) int formats">,
  ListOption<"overrides", "wquant-override", "std::string",
             "REGEX=FORMAT rules on weight names (first match wins; FORMAT "
             "may be 'none' to keep a weight in float)">,
  Option<"quantizeEmbeddings", "quantize-embeddings", "bool", /*default=*/"false",
         "Also quantize the token embedding">,
  Option<"quantizeLmHead", "quantize-lm-head", "bool", /*default=*/"false",
         "Also quantize the lm_head">
];

defvar CalibrationOptions = [
  Option<"calib", "calib", "std::string", /*default=*/"\"\"",
         "Calibration text file">,
  Option<"tokenizer", "tokenizer", "std::string", /*default=*/"\"\"",
         "tokenizer.json used to encode the calibration text">,
  Option<"calibSamples", "calib-samples", "int64_t", /*default=*/"128",
         "Calibration samples">,
  Option<"calibSeqlen", "calib-seqlen", "int64_t", /*default=*/"512",
         "Tokens per calibration sample">,
  Option<"seed", "seed", "uint64_t", /*default=*/"0",
         "Seed of the calibration sampling">,
  Option<"threads", "threads", "int", /*default=*/"0",
         "Threads, 0 = all cores">
];

//===----------------------------------------------------------------------===//
// Weight quantization
//===----------------------------------------------------------------------===//

def QuantizeRTN : Pass<"qopt-quantize-rtn", "mlir::ModuleOp"> {
  let summary = "Round-to-nearest weight quantization";
  let description = [{
    Replaces the float weight of every decoder linear (and, if asked, the
    embedding and lm_head) with a quantized weight: int2..int8 grouped,
    per-channel, symmetric or asymmetric; NF4 (blocks, double-quantized
    absmax); FP8 E4M3 (per-channel scales).
  }];
  let options = WeightFormatOptions;
  let dependentDialects = ["::qopt::qllm::QLLMDialect"];
}

def GPTQ : Pass<"qopt-gptq", "mlir::ModuleOp"> {
  let summary = "GPTQ: Hessian-aware quantization, layer by layer";
  let description = [{
    Calibrates sequentially (layer i+1 sees layer i's quantized output),
    gathers each linear input's Hessian X^T X, and quantizes column by
    column with lazy block updates, dampening and optional act-order.
  }];
  let options = !listconcat(WeightFormatOptions, CalibrationOptions, [
    Option<"damp", "gptq-damp", "double", /*default=*/"0.01",
           "Dampening as a fraction of the mean Hessian diagonal">,
    Option<"blockSize", "gptq-block-size", "int64_t", /*default=*/"128",
           "Columns per lazy block update">,
    Option<"actOrder", "act-order", "bool", /*default=*/"false",
           "Quantize columns in order of decreasing Hessian diagonal">
  ]);
  let dependentDialects = ["::qopt::qllm::QLLMDialect"];
}

def AWQ : Pass<"qopt-awq", "mlir::ModuleOp"> {
  let summary = "AWQ: activation-aware scaling and clipping, then quantization";
  let description = [{
    For each set of linears sharing an input, searches s = s_x^alpha on a
    grid minimizing the output error, folds s into the preceding rms_norm
    or linear (the float function is unchanged), searches a clipping ratio
    per weight, and quantizes.
  }];
  let options = !listconcat(WeightFormatOptions, CalibrationOptions, [
    Option<"gridSize", "awq-grid", "int64_t", /*default=*/"20",
           "Points of the alpha grid search">,
    Option<"clipSearch", "awq-clip", "bool", /*default=*/"true",
           "Search a clipping ratio per weight after scaling">
  ]);
  let dependentDialects = ["::qopt::qllm::QLLMDialect"];
}

//===----------------------------------------------------------------------===//
// Activations and KV cache
//===----------------------------------------------------------------------===//

def SmoothQuant : Pass<"qopt-smoothquant", "mlir::ModuleOp"> {
  let summary = "SmoothQuant W8A8: migrate activation outliers into weights";
  let description = [{
    Folds per-channel smoothing factors s = max|X|^alpha / max|W|^(1-alpha)
    into the preceding rms_norm weights, then quantizes weights to int8 per
    channel and marks activations for int8 quantization per token (dynamic)
    or per tensor (static, calibrated scale).
  }];
  let options = !listconcat(CalibrationOptions, [
    Option<"wquant", "wquant", "std::string", /*default=*/"\"int8\"",
           "W8A8 element type: int8 (int8 weights per channel, int8 "
           "activations) or fp8 (fp8 e4m3 weights per channel, fp8 e4m3 "
           "activations)">,
    Option<"alpha", "smoothquant-alpha", "double", /*default=*/"0.5",
           "Migration strength">,
    Option<"actQuant", "act-quant", "std::string", /*default=*/"\"per-token\"",
           "Activation quantization: per-token (dynamic) or per-tensor (static)">
  ]);
  let dependentDialects = ["::qopt::qllm::QLLMDialect"];
}

def KVCacheQuant : Pass<"qopt-kv-cache-quant", "mlir::ModuleOp"> {
  let summary = "Calibrated per-head K and V scales for an int8 or fp8 KV cache";
  let options = !listconcat(CalibrationOptions, [
    Option<"kvCache", "kv-cache", "std::string", /*default=*/"\"int8\"",
           "KV cache element type: int8 or fp8">
  ]);
  let dependentDialects = ["::qopt::qllm::QLLMDialect"];
}

#endif // QOPT_QUANT_PASSES
