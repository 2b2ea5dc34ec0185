//===- Patterns.h - decoder subgraph matchers over qonnx nodes -*- C++ -*-===//
//
// Each matcher looks at one anchor node and, when the subgraph around it is
// the one the exporters emit for a decoder building block, returns its
// inputs and hyper-parameters. Matchers only read the IR; RaiseONNX.cpp does
// the rewriting. Shapes and constant data come from the AbsEvaluator, so a
// matcher checks what a Reshape really produces rather than trusting names.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_TRANSFORMS_RAISEONNX_PATTERNS_H
#define QOPT_LIB_TRANSFORMS_RAISEONNX_PATTERNS_H

#include "Evaluator.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Dialect/QONNX/QONNXOps.h"

#include <string>

namespace qopt {
namespace raise {

/// The default-domain qonnx.node defining `v` with op type `type`, or null.
qonnx::NodeOp defNode(mlir::Value v, llvm::StringRef type);
/// Skips float-to-float Casts and Identity nodes (fp16 exports wrap norms
/// and softmax in casts to fp32 and back).
mlir::Value stripCasts(mlir::Value v);
/// The qllm.param `v` reads (through casts), or null.
qllm::ParamOp paramOf(mlir::Value v);

/// The shortest decimal that rounds to the same `type` value (f32, f16,
/// bf16) as `x`, as a double: an fp32 epsilon constant 9.99999974738e-06
/// reads back as 1e-05, which is what the model's config.json said and what
/// the HF importer produces. f64 (or no type) keeps `x`.
double snapToShortest(double x, mlir::Type type);

struct LinearMatch {
  mlir::Operation *root = nullptr; ///< MatMul, or the bias Add
  mlir::Value input;
  qllm::ParamOp weight; ///< [out, in]
  qllm::ParamOp bias;   ///< null without bias
};
/// MatMul(x, Transpose(W)) [+ bias], W a 2-D param, x [B, S, in].
bool matchLinear(qonnx::NodeOp matmul, const AbsEvaluator &ev, LinearMatch *m);

/// Reshape(Gemm(Reshape(x, [B*S, in]), W, bias), [B, S, out]): the 2-D
/// spelling of a linear (alpha = beta = 1, transA = 0; W as [out, in] with
/// transB = 1, or as Transpose(W) with transB = 0).
bool matchGemmLinear(qonnx::NodeOp gemm, const AbsEvaluator &ev, LinearMatch *m);

struct EmbeddingMatch {
  mlir::Operation *root = nullptr;
  mlir::Value ids;
  qllm::ParamOp table;
};
/// Gather(table, ids) on axis 0 with ids the function's token ids.
bool matchEmbedding(qonnx::NodeOp gather, mlir::Value ids, EmbeddingMatch *m);

struct NormMatch {
  mlir::Operation *root = nullptr;
  mlir::Value input;
  qllm::ParamOp weight;
  double epsilon = 0;
};
/// weight * (x / sqrt(mean(x^2) + eps)) in its exporter spellings, or the
/// fused RMSNormalization / SimplifiedLayerNormalization ops.
bool matchRMSNorm(qonnx::NodeOp root, const AbsEvaluator &ev, NormMatch *m);

struct SwiGLUMatch {
  mlir::Operation *root = nullptr;
  mlir::Value gate, up;
};
/// (g * sigmoid(g)) * up, operands in any order.
bool matchSwiGLU(qonnx::NodeOp mul, const AbsEvaluator &ev, SwiGLUMatch *m);

/// Rotary parameters recovered from the cos/sin tables.
struct RopeParams {
  double theta = 0;
  std::string type = "default"; ///< or "linear"
  double factor = 1.0;
};

struct AttentionMatch {
  mlir::Operation *root = nullptr; ///< the Reshape back to [B, S, H*d]
  mlir::Value q, k, v;             ///< [B, S, heads*d] projections
  int64_t numHeads = 0, numKvHeads = 0, headDim = 0;
  double scale = 1.0;
  RopeParams rope;
};
/// The attention block around one Softmax: heads split, rotary on q and k,
/// optional repeat_kv, scaled q k^T, causal mask, softmax, times v, heads
/// merged. On failure *why says what did not fit.
bool matchAttention(qonnx::NodeOp softmax, const AbsEvaluator &ev, AttentionMatch *m,
                    std::string *why);

} // namespace raise
} // namespace qopt

#endif
