//===- QLLMOps.cpp - verifiers of QLLM ops, attributes, types ----------===//
//
// The verifiers hold the invariants every pass relies on: feature sizes
// that line up, head counts that divide, quantization parameters that
// describe a format that exists.
//
//===----------------------------------------------------------------------===//
#include "qopt/Dialect/QLLM/QLLMOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"

#include <cmath>

using namespace mlir;
using namespace qopt::qllm;

llvm::SmallVector<int64_t, 2> qopt::qllm::getWeightShape(Type type) {
  if (auto t = llvm::dyn_cast<RankedTensorType>(type))
    return llvm::SmallVector<int64_t, 2>(t.getShape());
  if (auto q = llvm::dyn_cast<QWeightType>(type))
    return llvm::SmallVector<int64_t, 2>(q.getShape());
  return {};
}

//===----------------------------------------------------------------------===//
// Attributes and types
//===----------------------------------------------------------------------===//

LogicalResult
QuantAttr::verify(llvm::function_ref<InFlightDiagnostic()> emitError,
                  ElementKind kind, unsigned bits, int64_t groupSize,
                  bool symmetric, Type scaleType, Type zeroType,
                  StringAttr layout) {
  switch (kind) {
  case ElementKind::Int:
    if (bits < 2 || bits > 8)
      return emitError() << "int quantization needs 2..8 bits, got " << bits;
    break;
  case ElementKind::NF4:
    if (bits != 4)
      return emitError() << "nf4 is a 4-bit format, got bits = " << bits;
    if (!symmetric)
      return emitError() << "nf4 is symmetric (absmax scaled)";
    if (groupSize == -1)
      return emitError() << "nf4 needs a block size (group_size), not per-channel";
    break;
  case ElementKind::FP8E4M3:
    if (bits != 8)
      return emitError() << "fp8_e4m3 is an 8-bit format, got bits = " << bits;
    if (!symmetric)
      return emitError() << "fp8_e4m3 is symmetric";
    break;
  }
  if (groupSize != -1 && groupSize < 1)
    return emitError() << "group_size must be -1 (per channel) or positive, got "
                       << groupSize;
  if (!scaleType || !llvm::isa<FloatType>(scaleType))
    return emitError() << "scale_type must be a float type";
  if (symmetric && zeroType)
    return emitError() << "a symmetric format has no zero points";
  if (!symmetric && !zeroType)
    return emitError() << "an asymmetric format needs a zero_type";
  if (zeroType && !zeroType.isIntOrFloat())
    return emitError() << "zero_type must be an integer or float type";
  if (!layout || layout.getValue().empty())
    return emitError() << "layout must name a packed layout";
  return success();
}

LogicalResult
QWeightType::verify(llvm::function_ref<InFlightDiagnostic()> emitError,
                    llvm::ArrayRef<int64_t> shape, QuantAttr quant) {
  if (shape.size() != 2)
    return emitError() << "a quantized weight is 2-D [out, in], got rank "
                       << shape.size();
  if (shape[0] <= 0 || shape[1] <= 0)
    return emitError() << "quantized weight dimensions must be positive";
  return success();
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

/// Two dimensions agree when equal or when either is dynamic.
static bool compatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

static LogicalResult verifyRowsMatch(Operation *op, RankedTensorType in,
                                     RankedTensorType out) {
  if (in.getRank() != out.getRank())
    return op->emitOpError() << "result rank " << out.getRank()
                             << " differs from input rank " << in.getRank();
  for (int64_t i = 0; i + 1 < in.getRank(); ++i)
    if (!compatible(in.getDimSize(i), out.getDimSize(i)))
      return op->emitOpError() << "result dimension " << i << " ("
                               << out.getDimSize(i) << ") differs from input ("
                               << in.getDimSize(i) << ")";
  return success();
}

static LogicalResult verifyLinearLike(Operation *op, Value input, Value weight,
                                      Value result) {
  auto in = llvm::cast<RankedTensorType>(input.getType());
  auto out = llvm::cast<RankedTensorType>(result.getType());
  auto w = getWeightShape(weight.getType());
  if (w.size() != 2)
    return op->emitOpError() << "weight must be 2-D [out_features, in_features]";
  if (in.getRank() < 2)
    return op->emitOpError() << "input must have rank >= 2, got " << in.getRank();
  if (!compatible(in.getShape().back(), w[1]))
    return op->emitOpError() << "input features (" << in.getShape().back()
                             << ") differ from weight in_features (" << w[1] << ")";
  if (!compatible(out.getShape().back(), w[0]))
    return op->emitOpError() << "result features (" << out.getShape().back()
                             << ") differ from weight out_features (" << w[0] << ")";
  return verifyRowsMatch(op, in, out);
}

//===----------------------------------------------------------------------===//
// Ops
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  if (getName().empty())
    return emitOpError() << "needs a non-empty weight name";
  auto t = getResult().getType();
  if (!t.hasStaticShape())
    return emitOpError() << "weight '" << getName() << "' must have a static shape";
  return success();
}

LogicalResult QParamOp::verify() {
  if (getName().empty())
    return emitOpError() << "needs a non-empty weight name";
  return success();
}

LogicalResult EmbeddingOp::verify() {
  auto ids = getIds().getType();
  auto out = getResult().getType();
  auto table = getWeightShape(getTable().getType());
  if (ids.getRank() != 2)
    return emitOpError() << "ids must be [batch, seq], got rank " << ids.getRank();
  if (table.size() != 2)
    return emitOpError() << "table must be 2-D [vocab, hidden]";
  if (out.getRank() != 3)
    return emitOpError() << "result must be [batch, seq, hidden]";
  for (int i = 0; i < 2; ++i)
    if (!compatible(ids.getDimSize(i), out.getDimSize(i)))
      return emitOpError() << "result dimension " << i << " differs from ids";
  if (!compatible(out.getDimSize(2), table[1]))
    return emitOpError() << "result hidden size (" << out.getDimSize(2)
                         << ") differs from the table's (" << table[1] << ")";
  return success();
}

LogicalResult RMSNormOp::verify() {
  auto in = getInput().getType();
  auto w = getWeight().getType();
  if (w.getRank() != 1)
    return emitOpError() << "weight must be 1-D, got rank " << w.getRank();
  if (!compatible(in.getShape().back(), w.getDimSize(0)))
    return emitOpError() << "weight size (" << w.getDimSize(0)
                         << ") differs from the normalized dimension ("
                         << in.getShape().back() << ")";
  if (!(getEpsilon().convertToDouble() > 0.0))
    return emitOpError() << "epsilon must be positive";
  return success();
}

/// Element types of quantized activations and KV caches.
static bool isActQuantType(StringRef t) { return t == "int8" || t == "fp8_e4m3"; }

static bool isPositiveFinite(double v) { return v > 0.0 && std::isfinite(v); }

LogicalResult LinearOp::verify() {
  if (failed(verifyLinearLike(*this, getInput(), getWeight(), getResult())))
    return failure();
  if (Value bias = getBias()) {
    auto b = llvm::cast<RankedTensorType>(bias.getType());
    auto w = getWeightShape(getWeight().getType());
    if (b.getRank() != 1 || !compatible(b.getDimSize(0), w[0]))
      return emitOpError() << "bias must be 1-D of out_features (" << w[0] << ")";
  }
  // Activation quantization (W8A8): a static scale exactly when per tensor.
  auto mode = getActQuant();
  if (mode && *mode != "per_token" && *mode != "per_tensor")
    return emitOpError() << "act_quant must be \"per_token\" or \"per_tensor\", got \""
                         << *mode << "\"";
  bool perTensor = mode && *mode == "per_tensor";
  if (perTensor && !getActScale())
    return emitOpError() << "act_quant = \"per_tensor\" needs a calibrated act_scale";
  if (auto scale = getActScale()) {
    if (!perTensor)
      return emitOpError() << "act_scale is only meaningful with act_quant = \"per_tensor\"";
    if (!isPositiveFinite(scale->convertToDouble()))
      return emitOpError() << "act_scale must be positive and finite";
  }
  if (auto type = getActQuantType()) {
    if (!mode)
      return emitOpError() << "act_quant_type needs act_quant";
    if (!isActQuantType(*type))
      return emitOpError() << "act_quant_type must be \"int8\" or \"fp8_e4m3\", got \""
                           << *type << "\"";
  }
  return success();
}

LogicalResult LMHeadOp::verify() {
  return verifyLinearLike(*this, getInput(), getWeight(), getResult());
}

LogicalResult RotaryOp::verify() {
  int64_t heads = getNumHeads(), dim = getHeadDim();
  if (heads <= 0 || dim <= 0)
    return emitOpError() << "num_heads and head_dim must be positive";
  if (dim % 2)
    return emitOpError() << "head_dim must be even, got " << dim;
  if (!compatible(getInput().getType().getShape().back(), heads * dim))
    return emitOpError() << "feature size (" << getInput().getType().getShape().back()
                         << ") is not num_heads * head_dim (" << heads * dim << ")";
  if (auto rd = getRotaryDim())
    if (*rd <= 0 || *rd > dim || *rd % 2)
      return emitOpError() << "rotary_dim must be even and in (0, head_dim], got " << *rd;
  if (!(getTheta().convertToDouble() > 0.0))
    return emitOpError() << "theta must be positive";
  if (auto s = getScaling()) {
    auto type = s->getAs<StringAttr>("rope_type");
    if (!type)
      return emitOpError() << "scaling needs a string 'rope_type'";
    StringRef t = type.getValue();
    if (t != "default" && t != "linear" && t != "llama3")
      return emitOpError() << "unsupported rope_type '" << t
                           << "' (supported: default, linear, llama3)";
    if ((t == "linear" || t == "llama3") && !s->getAs<FloatAttr>("factor"))
      return emitOpError() << "rope_type '" << t << "' needs a float 'factor'";
    if (t == "llama3")
      for (StringRef key : {"low_freq_factor", "high_freq_factor",
                            "original_max_position_embeddings"})
        if (!s->get(key))
          return emitOpError() << "rope_type 'llama3' needs '" << key << "'";
  }
  return success();
}

LogicalResult RotaryOp::canonicalize(RotaryOp op, PatternRewriter &rewriter) {
  bool fullDim = op.getRotaryDim() && *op.getRotaryDim() == op.getHeadDim();
  bool defaultScaling = false;
  if (auto s = op.getScaling())
    if (auto t = s->getAs<StringAttr>("rope_type"))
      defaultScaling = t.getValue() == "default";
  if (!fullDim && !defaultScaling)
    return failure();
  rewriter.modifyOpInPlace(op, [&] {
    if (fullDim)
      op.removeRotaryDimAttr();
    if (defaultScaling)
      op.removeScalingAttr();
  });
  return success();
}

LogicalResult AttentionOp::verify() {
  int64_t h = getNumHeads(), hkv = getNumKvHeads(), d = getHeadDim();
  if (h <= 0 || hkv <= 0 || d <= 0)
    return emitOpError() << "num_heads, num_kv_heads and head_dim must be positive";
  if (h % hkv)
    return emitOpError() << "num_heads (" << h
                         << ") is not a multiple of num_kv_heads (" << hkv << ")";
  auto q = getQuery().getType(), k = getKey().getType(), v = getValue().getType();
  auto out = getResult().getType();
  if (q.getRank() != 3 || k.getRank() != 3 || v.getRank() != 3 || out.getRank() != 3)
    return emitOpError() << "query, key, value and result must be [batch, seq, features]";
  if (!compatible(q.getDimSize(2), h * d))
    return emitOpError() << "query features (" << q.getDimSize(2)
                         << ") are not num_heads * head_dim (" << h * d << ")";
  if (!compatible(k.getDimSize(2), hkv * d) || !compatible(v.getDimSize(2), hkv * d))
    return emitOpError() << "key/value features are not num_kv_heads * head_dim ("
                         << hkv * d << ")";
  if (!compatible(out.getDimSize(2), h * d))
    return emitOpError() << "result features are not num_heads * head_dim";
  for (int i = 0; i < 2; ++i)
    if (!compatible(q.getDimSize(i), k.getDimSize(i)) ||
        !compatible(q.getDimSize(i), v.getDimSize(i)) ||
        !compatible(q.getDimSize(i), out.getDimSize(i)))
      return emitOpError() << "query, key, value and result disagree in dimension " << i;
  if (!(getScale().convertToDouble() > 0.0))
    return emitOpError() << "scale must be positive";
  // Quantized KV cache: a type and one positive scale per KV head for K and V.
  auto dtype = getKvCacheDtype();
  auto ks = getKScales(), vs = getVScales();
  if (!dtype && (ks || vs))
    return emitOpError() << "k_scales and v_scales need kv_cache_dtype";
  if (!dtype)
    return success();
  if (!isActQuantType(*dtype))
    return emitOpError() << "kv_cache_dtype must be \"int8\" or \"fp8_e4m3\", got \""
                         << *dtype << "\"";
  if (!ks || !vs)
    return emitOpError() << "kv_cache_dtype needs both k_scales and v_scales";
  for (auto [name, scales] : {std::pair<StringRef, ArrayRef<float>>{"k_scales", *ks},
                              std::pair<StringRef, ArrayRef<float>>{"v_scales", *vs}}) {
    if (int64_t(scales.size()) != hkv)
      return emitOpError() << name << " has " << scales.size()
                           << " entries, expected num_kv_heads (" << hkv << ")";
    for (float x : scales)
      if (!isPositiveFinite(x))
        return emitOpError() << name << " must be positive and finite, got " << x;
  }
  return success();
}

#define GET_OP_CLASSES
#include "qopt/Dialect/QLLM/QLLMOps.cpp.inc"
