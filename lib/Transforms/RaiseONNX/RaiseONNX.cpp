//===- RaiseONNX.cpp - qonnx nodes -> canonical QLLM decoder ----------===//
//
// The pass works in three steps:
//  1. Pattern rewrites, each anchored on one node kind and replacing the
//     anchor's result by a QLLM op: linears (MatMul), the embedding
//     (Gather), RMSNorms, SwiGLU (Mul), attention blocks (Softmax, which
//     also yields the two rotary ops), then residual Adds whose operands
//     are both QLLM activations. The rotary tables and the causal mask are
//     consumed by the attention match, after numeric checks.
//  2. Dead generic nodes are erased; any live one left means the graph is
//     not (entirely) a decoder we understand: the error names the first in
//     program order, with the reason the nearest failed attention match
//     gave, since that is where most unsupported exports diverge.
//  3. DecoderRecovery checks the QLLM graph is exactly a layer stack and
//     rebuilds it in the canonical form with canonical weight names.
//
//===----------------------------------------------------------------------===//
#include "DecoderRecovery.h"
#include "Evaluator.h"
#include "Patterns.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Dialect/QONNX/PrintableName.h"
#include "qopt/Dialect/QONNX/QONNXOps.h"
#include "qopt/Transforms/Passes.h"
#include "qopt/Weights/WeightStore.h"

#include "mlir/IR/Builders.h"

namespace qopt {
#define GEN_PASS_DEF_RAISEONNX
#include "qopt/Transforms/Passes.h.inc"
} // namespace qopt

using namespace mlir;

namespace qopt {
namespace {

std::string nodeLabel(Operation *op) {
  using qonnx::printableName;
  if (auto n = dyn_cast<qonnx::NodeOp>(op))
    return printableName(n.getNodeName().str()) + " (" + printableName(n.getOpType().str()) + ")";
  if (auto c = dyn_cast<qonnx::ConstantOp>(op))
    return printableName(c.getTensorName().str()) + " (constant)";
  if (auto p = dyn_cast<qllm::ParamOp>(op))
    return printableName(p.getName().str()) + " (initializer)";
  return op->getName().getStringRef().str();
}

RankedTensorType activation(Builder &b, int64_t features) {
  return RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic, features},
                               b.getF32Type());
}

int64_t featuresOf(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && t.getRank() == 3 ? t.getDimSize(2) : ShapedType::kDynamic;
}

bool isQLLMActivation(Value v) {
  Operation *def = v.getDefiningOp();
  return def && isa<qllm::QLLMDialect>(def->getDialect()) && !isa<qllm::ParamOp>(def) &&
         !isa<qllm::QParamOp>(def);
}

struct RaiseONNXPass : impl::RaiseONNXBase<RaiseONNXPass> {
  RaiseONNXPass() = default;
  explicit RaiseONNXPass(WeightStore *store) : store(store) {}

  void runOnOperation() override;

  /// Replaces `root`'s first result by `v` (which must dominate its uses).
  void replace(Operation *root, Value v, raise::AbsEvaluator &ev) {
    ev.alias(v, root->getResult(0));
    root->getResult(0).replaceAllUsesWith(v);
  }

  WeightStore *store = nullptr;
};

void RaiseONNXPass::runOnOperation() {
  ModuleOp module = getOperation();
  SmallVector<func::FuncOp> funcs(module.getOps<func::FuncOp>());
  bool generic = false;
  module.walk([&](Operation *op) {
    if (isa<qonnx::QONNXDialect>(op->getDialect()))
      generic = true;
  });
  if (!generic)
    return; // already QLLM
  if (funcs.size() != 1) {
    module.emitError("expected exactly one function, the imported graph");
    return signalPassFailure();
  }
  func::FuncOp func = funcs.front();
  if (func.isExternal()) {
    func.emitError("the imported graph's function has no body");
    return signalPassFailure();
  }
  Block &body = func.getBody().front();
  auto ret = body.empty() ? func::ReturnOp() : dyn_cast<func::ReturnOp>(body.back());
  if (!ret) {
    func.emitError("the imported graph's function does not end in a return");
    return signalPassFailure();
  }
  if (func.getNumArguments() != 1 ||
      !isa<RankedTensorType>(func.getArgument(0).getType()) ||
      cast<RankedTensorType>(func.getArgument(0).getType()).getRank() != 2 ||
      !cast<RankedTensorType>(func.getArgument(0).getType()).getElementType().isInteger()) {
    func.emitError("the graph must take one input, the [batch, sequence] integer token ids "
                   "(graphs with attention_mask, position_ids or past key/value inputs are "
                   "not supported)");
    return signalPassFailure();
  }
  if (ret.getNumOperands() != 1) {
    func.emitError("the graph must have one output, the logits (got ")
        << ret.getNumOperands() << "; export without KV-cache outputs)";
    return signalPassFailure();
  }
  // fp16 exports cast the logits to fp32 at the end: the QLLM form is fp32.
  ret->setOperand(0, raise::stripCasts(ret.getOperand(0)));

  raise::AbsEvaluator ev(func, store);
  Value ids = func.getArgument(0);
  OpBuilder b(&getContext());
  auto nodes = [&](StringRef type) {
    SmallVector<qonnx::NodeOp> out;
    for (auto n : body.getOps<qonnx::NodeOp>())
      if (n.getOpType() == type)
        out.push_back(n);
    return out;
  };

  SmallVector<qonnx::NodeOp> linearRoots = nodes("MatMul");
  linearRoots.append(nodes("Gemm"));
  for (auto mm : linearRoots) {
    raise::LinearMatch m;
    if (!raise::matchLinear(mm, ev, &m) && !raise::matchGemmLinear(mm, ev, &m))
      continue;
    b.setInsertionPointAfter(m.root);
    int64_t out = m.weight.getResult().getType().getDimSize(0);
    Value v = b.create<qllm::LinearOp>(m.root->getLoc(), activation(b, out), m.input,
                                       m.weight.getResult(),
                                       m.bias ? m.bias.getResult() : Value());
    replace(m.root, v, ev);
  }
  for (auto g : nodes("Gather")) {
    raise::EmbeddingMatch m;
    if (!raise::matchEmbedding(g, ids, &m))
      continue;
    b.setInsertionPointAfter(m.root);
    int64_t dim = m.table.getResult().getType().getDimSize(1);
    Value v = b.create<qllm::EmbeddingOp>(m.root->getLoc(), activation(b, dim), ids,
                                          m.table.getResult());
    replace(m.root, v, ev);
  }
  SmallVector<qonnx::NodeOp> normRoots = nodes("Mul");
  for (StringRef fused : {"RMSNormalization", "SimplifiedLayerNormalization"})
    for (auto n : nodes(fused))
      normRoots.push_back(n);
  for (auto n : normRoots) {
    raise::NormMatch m;
    if (!raise::matchRMSNorm(n, ev, &m))
      continue;
    b.setInsertionPointAfter(m.root);
    int64_t dim = m.weight.getResult().getType().getDimSize(0);
    Value v = b.create<qllm::RMSNormOp>(m.root->getLoc(), activation(b, dim), m.input,
                                        m.weight.getResult(), b.getF64FloatAttr(m.epsilon));
    replace(m.root, v, ev);
  }
  for (auto mul : nodes("Mul")) {
    raise::SwiGLUMatch m;
    if (mul->use_empty() || !raise::matchSwiGLU(mul, ev, &m))
      continue;
    b.setInsertionPointAfter(m.root);
    int64_t dim = featuresOf(m.gate);
    if (ShapedType::isDynamic(dim))
      dim = ev.get(m.gate, 0).shape.back();
    Value v = b.create<qllm::SwiGLUOp>(m.root->getLoc(), activation(b, dim), m.gate, m.up);
    replace(m.root, v, ev);
  }
  // The first attention that failed to match, for the leftover message.
  std::string attentionWhy;
  for (auto sm : nodes("Softmax")) {
    raise::AttentionMatch m;
    std::string why;
    if (!raise::matchAttention(sm, ev, &m, &why)) {
      if (attentionWhy.empty())
        attentionWhy = "attention at " + qonnx::printableName(sm.getNodeName().str()) +
                       " not recognized: " + why;
      continue;
    }
    b.setInsertionPointAfter(m.root);
    Location loc = m.root->getLoc();
    DictionaryAttr scaling;
    if (m.rope.type != "default")
      scaling = b.getDictionaryAttr(
          {b.getNamedAttr("rope_type", b.getStringAttr(m.rope.type)),
           b.getNamedAttr("factor", b.getF64FloatAttr(m.rope.factor))});
    int64_t hq = m.numHeads * m.headDim, hkv = m.numKvHeads * m.headDim;
    auto rotary = [&](Value x, int64_t heads, int64_t n) {
      return b.create<qllm::RotaryOp>(loc, activation(b, n), x, b.getI64IntegerAttr(heads),
                                      b.getI64IntegerAttr(m.headDim),
                                      b.getF64FloatAttr(m.rope.theta), IntegerAttr(), scaling)
          .getResult();
    };
    Value q = rotary(m.q, m.numHeads, hq);
    Value k = rotary(m.k, m.numKvHeads, hkv);
    Value a = b.create<qllm::AttentionOp>(
        loc, activation(b, hq), q, k, m.v, b.getI64IntegerAttr(m.numHeads),
        b.getI64IntegerAttr(m.numKvHeads), b.getI64IntegerAttr(m.headDim),
        b.getF64FloatAttr(m.scale));
    replace(m.root, a, ev);
  }
  // Residual adds, in program order so that chains of them resolve.
  for (auto add : nodes("Add")) {
    if (add.getInputs().size() != 2 || add->use_empty())
      continue;
    Value l = add.getInputs()[0], r = add.getInputs()[1];
    if (!isQLLMActivation(l) || !isQLLMActivation(r) || featuresOf(l) != featuresOf(r) ||
        ShapedType::isDynamic(featuresOf(l)))
      continue;
    b.setInsertionPointAfter(add);
    Value v = b.create<qllm::AddOp>(add.getLoc(), l.getType(), l, r);
    replace(add, v, ev);
  }

  // Dead code: generic nodes (and anything else without uses) go.
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(body)))
    if (!op.hasTrait<OpTrait::IsTerminator>() && op.use_empty())
      op.erase();
  // Constants stay alive only through the nodes using them, and the
  // importer's "<weight>/as_stored" Transposes only through the MatMul
  // reading them: report the first node of the file itself.
  Operation *leftover = nullptr, *syntheticLeftover = nullptr;
  for (Operation &op : body) {
    auto n = dyn_cast<qonnx::NodeOp>(op);
    if (!n)
      continue;
    bool synthetic = n.getNodeName().ends_with("/as_stored") && !n.getInputs().empty() &&
                     n.getInputs()[0].getDefiningOp<qllm::ParamOp>();
    if (!synthetic) {
      leftover = &op;
      break;
    }
    if (!syntheticLeftover)
      syntheticLeftover = &op;
  }
  if (!leftover)
    leftover = syntheticLeftover;
  if (leftover) {
    auto diag = leftover->emitError("first node left over: ") << nodeLabel(leftover);
    if (!attentionWhy.empty())
      diag << "; " << attentionWhy;
    return signalPassFailure();
  }

  std::string error;
  Operation *where = nullptr;
  if (!raise::rebuildCanonicalDecoder(module, func, store, &error, &where)) {
    (where ? where : module.getOperation())->emitError(error);
    return signalPassFailure();
  }
}

} // namespace

std::unique_ptr<Pass> createRaiseONNXPass(WeightStore *store) {
  return std::make_unique<RaiseONNXPass>(store);
}

} // namespace qopt
