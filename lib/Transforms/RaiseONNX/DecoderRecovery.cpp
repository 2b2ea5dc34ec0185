//===- DecoderRecovery.cpp - QLLM op graph -> canonical decoder -------===//
#include "DecoderRecovery.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Dialect/QONNX/PrintableName.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Import/ModelConfig.h"
#include "qopt/Weights/WeightStore.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringMap.h"

#include <cmath>
#include <cstring>

using namespace mlir;

namespace qopt {
namespace raise {
namespace {

std::string nameOf(Operation *op) {
  if (auto n = dyn_cast<NameLoc>(op->getLoc()))
    return qonnx::printableName(n.getName().str());
  return op->getName().getStringRef().str();
}

bool dtypeOf(Type t, DType *out) {
  if (t.isF32()) *out = DType::F32;
  else if (t.isF16()) *out = DType::F16;
  else if (t.isBF16()) *out = DType::BF16;
  else if (t.isF64()) *out = DType::F64;
  else return false;
  return true;
}

/// True if two stored tensors hold the same logical values bit for bit
/// (either may be stored transposed). Stops at the first difference, so an
/// untied lm_head costs a few reads.
bool sameLogicalBytes(const WeightEntry &a, const WeightEntry &b) {
  if (a.dtype != b.dtype || a.shape != b.shape || a.shape.size() != 2 || !a.data || !b.data)
    return false;
  size_t rows = size_t(a.shape[0]), cols = size_t(a.shape[1]), es = dtypeSize(a.dtype);
  auto at = [&](const WeightEntry &e, size_t r, size_t c) {
    return e.data + es * (e.transposed ? c * rows + r : r * cols + c);
  };
  if (!a.transposed && !b.transposed)
    return std::memcmp(a.data, b.data, rows * cols * es) == 0;
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c)
      if (std::memcmp(at(a, r, c), at(b, r, c), es) != 0)
        return false;
  return true;
}

struct Recovery {
  func::FuncOp func;
  WeightStore *store;
  std::string *error;
  Operation **where;
  llvm::DenseSet<Operation *> visited;
  /// ONNX tensor name -> canonical name.
  llvm::StringMap<std::string> renames;
  ModelConfig config;
  bool haveEps = false, haveRope = false, haveAttn = false;
  qllm::ParamOp embedParam, headParam;

  bool fail(Operation *op, const std::string &why) {
    *error = why + (op ? " (at " + nameOf(op) + ")" : std::string());
    *where = op;
    return false;
  }

  template <typename OpT>
  OpT expect(Value v, Operation *user, const char *what) {
    auto op = v ? v.getDefiningOp<OpT>() : OpT();
    if (!op) {
      fail(v && v.getDefiningOp() ? v.getDefiningOp() : user,
           std::string("expected ") + what + " in the decoder structure");
      return {};
    }
    visited.insert(op);
    return op;
  }

  bool role(Value w, const std::string &canonical, Operation *user) {
    auto p = w.getDefiningOp<qllm::ParamOp>();
    if (!p)
      return fail(user, "weight of " + canonical + " is not a plain parameter");
    visited.insert(p);
    std::string name = p.getName().str();
    auto [it, inserted] = renames.try_emplace(name, canonical);
    if (!inserted && it->second != canonical)
      return fail(user, "tensor '" + qonnx::printableName(name) + "' serves as both " +
                            it->second + " and " + canonical);
    return true;
  }

  bool epsilon(qllm::RMSNormOp n) {
    double e = n.getEpsilon().convertToDouble();
    if (haveEps && e != config.rmsNormEps)
      return fail(n, "rms_norm epsilons differ between layers (" +
                         std::to_string(config.rmsNormEps) + " vs " + std::to_string(e) + ")");
    config.rmsNormEps = e;
    haveEps = true;
    return true;
  }

  bool attention(qllm::AttentionOp a, qllm::RotaryOp rq, qllm::RotaryOp rk) {
    int64_t H = a.getNumHeads(), KV = a.getNumKvHeads(), d = a.getHeadDim();
    if (int64_t(rq.getNumHeads()) != H || int64_t(rk.getNumHeads()) != KV ||
        int64_t(rq.getHeadDim()) != d ||
        int64_t(rk.getHeadDim()) != d || rq.getRotaryDim() || rk.getRotaryDim())
      return fail(a, "rotary and attention head layouts disagree");
    double theta = rq.getTheta().convertToDouble();
    if (rk.getTheta().convertToDouble() != theta || rq.getScaling() != rk.getScaling())
      return fail(a, "queries and keys use different rotary parameters");
    // The canonical form, like transformers, scales by 1/sqrt(head_dim);
    // exporters multiply fp32 factors (dynamo: sqrt(scale) on q and on k),
    // so the recovered value is compared with a tolerance.
    double want = 1.0 / std::sqrt(double(d));
    double got = a.getScale().convertToDouble();
    if (std::fabs(got - want) > 1e-6 * want)
      return fail(a, "attention scale " + std::to_string(got) + " is not 1/sqrt(head_dim) = " +
                         std::to_string(want));
    if (haveAttn && (H != config.numHeads || KV != config.numKvHeads || d != config.headDim))
      return fail(a, "layers disagree on the attention head layout");
    RopeScaling rs;
    if (auto dict = rq.getScalingAttr()) {
      if (auto t = dict.getAs<StringAttr>("rope_type"))
        rs.type = t.str();
      if (auto f = dict.getAs<FloatAttr>("factor"))
        rs.factor = f.getValueAsDouble();
    }
    if (haveRope && (theta != config.ropeTheta || rs.type != config.ropeScaling.type ||
                     rs.factor != config.ropeScaling.factor))
      return fail(a, "layers disagree on rope theta or scaling");
    config.numHeads = H;
    config.numKvHeads = KV;
    config.headDim = d;
    config.ropeTheta = theta;
    config.ropeScaling = rs;
    haveAttn = haveRope = true;
    return true;
  }

  bool run() {
    Block &body = func.getBody().front();
    auto ret = dyn_cast<func::ReturnOp>(body.getTerminator());
    if (!ret || ret.getNumOperands() != 1)
      return fail(nullptr, "the function must return the logits alone");
    if (func.getNumArguments() != 1)
      return fail(nullptr, "the function must take the token ids alone");
    Value ids = func.getArgument(0);

    auto head = expect<qllm::LinearOp>(ret.getOperand(0), ret, "the lm_head linear");
    if (!head) return false;
    if (head.getBias())
      return fail(head, "the lm_head has a bias, which the canonical form does not allow");
    auto fnorm = expect<qllm::RMSNormOp>(head.getInput(), head, "the final rms_norm");
    if (!fnorm || !epsilon(fnorm) || !role(fnorm.getWeight(), names::finalNorm(), fnorm))
      return false;
    headParam = head.getWeight().getDefiningOp<qllm::ParamOp>();
    if (!headParam)
      return fail(head, "the lm_head weight is not a plain parameter");
    visited.insert(headParam);

    // Layers, from the last one back.
    struct Layer {
      qllm::RMSNormOp n1, n2;
      qllm::LinearOp q, k, v, o, gate, up, down;
    };
    std::vector<Layer> layers;
    Value h = fnorm.getInput();
    for (int guard = 0; guard < 100000; ++guard) {
      if (h.getDefiningOp<qllm::EmbeddingOp>())
        break;
      Layer L;
      auto add2 = expect<qllm::AddOp>(h, fnorm, "a residual add (after the MLP)");
      if (!add2) return false;
      Value hm;
      for (int o = 0; o < 2 && !L.down; ++o) {
        auto lin = add2->getOperand(o).getDefiningOp<qllm::LinearOp>();
        if (lin && lin.getInput().getDefiningOp<qllm::SwiGLUOp>()) {
          L.down = lin;
          hm = add2->getOperand(1 - o);
        }
      }
      if (!L.down)
        return fail(add2, "the residual add has no MLP (down_proj of a swiglu) operand");
      visited.insert(L.down);
      auto sw = expect<qllm::SwiGLUOp>(L.down.getInput(), L.down, "swiglu");
      if (!sw) return false;
      L.gate = expect<qllm::LinearOp>(sw.getGate(), sw, "the gate_proj linear");
      L.up = expect<qllm::LinearOp>(sw.getUp(), sw, "the up_proj linear");
      if (!L.gate || !L.up) return false;
      if (L.gate.getInput() != L.up.getInput())
        return fail(sw, "gate_proj and up_proj read different inputs");
      L.n2 = expect<qllm::RMSNormOp>(L.gate.getInput(), L.gate, "the post-attention rms_norm");
      if (!L.n2) return false;
      if (L.n2.getInput() != hm)
        return fail(L.n2, "the MLP's norm does not read the residual stream it is added to");

      auto add1 = expect<qllm::AddOp>(hm, L.n2, "a residual add (after attention)");
      if (!add1) return false;
      Value hp;
      for (int o = 0; o < 2 && !L.o; ++o) {
        auto lin = add1->getOperand(o).getDefiningOp<qllm::LinearOp>();
        if (lin && lin.getInput().getDefiningOp<qllm::AttentionOp>()) {
          L.o = lin;
          hp = add1->getOperand(1 - o);
        }
      }
      if (!L.o)
        return fail(add1, "the residual add has no attention (o_proj) operand");
      visited.insert(L.o);
      auto att = expect<qllm::AttentionOp>(L.o.getInput(), L.o, "attention");
      if (!att) return false;
      auto rq = expect<qllm::RotaryOp>(att.getQuery(), att, "rotary on the queries");
      auto rk = expect<qllm::RotaryOp>(att.getKey(), att, "rotary on the keys");
      if (!rq || !rk) return false;
      L.q = expect<qllm::LinearOp>(rq.getInput(), rq, "the q_proj linear");
      L.k = expect<qllm::LinearOp>(rk.getInput(), rk, "the k_proj linear");
      L.v = expect<qllm::LinearOp>(att.getValue(), att, "the v_proj linear");
      if (!L.q || !L.k || !L.v) return false;
      if (L.q.getInput() != L.k.getInput() || L.q.getInput() != L.v.getInput())
        return fail(att, "q, k and v projections read different inputs");
      L.n1 = expect<qllm::RMSNormOp>(L.q.getInput(), L.q, "the input rms_norm");
      if (!L.n1) return false;
      if (L.n1.getInput() != hp)
        return fail(L.n1, "the attention's norm does not read the residual stream it is added to");
      if (!attention(att, rq, rk) || !epsilon(L.n1) || !epsilon(L.n2))
        return false;
      layers.push_back(L);
      h = hp;
    }
    auto emb = expect<qllm::EmbeddingOp>(h, fnorm, "the token embedding");
    if (!emb) return false;
    if (emb.getIds() != ids)
      return fail(emb, "the embedding does not read the token ids");
    embedParam = emb.getTable().getDefiningOp<qllm::ParamOp>();
    if (!embedParam)
      return fail(emb, "the embedding table is not a plain parameter");
    if (layers.empty())
      return fail(emb, "the graph has no decoder layer");
    std::reverse(layers.begin(), layers.end());

    // Every QLLM op must be part of the structure: nothing is dropped silently.
    for (Operation &op : body)
      if (!isa<func::ReturnOp, qllm::ParamOp>(op) && !visited.contains(&op))
        return fail(&op, "'" + op.getName().getStringRef().str() +
                             "' is not part of any decoder layer");

    auto shape = [](qllm::ParamOp p) { return p.getResult().getType().getShape(); };
    config.vocabSize = shape(embedParam)[0];
    config.hiddenSize = shape(embedParam)[1];
    config.numLayers = int64_t(layers.size());
    config.intermediateSize =
        cast<RankedTensorType>(layers[0].gate.getWeight().getType()).getDimSize(0);
    bool bias = bool(layers[0].q.getBias());
    config.attentionBias = bias;
    config.architecture = bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";

    if (!role(emb.getTable(), names::embedTokens(), emb))
      return false;
    for (size_t l = 0; l < layers.size(); ++l) {
      Layer &L = layers[l];
      int64_t i = int64_t(l);
      if (!role(L.n1.getWeight(), names::inputNorm(i), L.n1) ||
          !role(L.n2.getWeight(), names::postAttentionNorm(i), L.n2))
        return false;
      struct {
        qllm::LinearOp op;
        std::string name;
        bool mayHaveBias;
      } lins[] = {{L.q, names::attn(i, "q_proj"), true},
                  {L.k, names::attn(i, "k_proj"), true},
                  {L.v, names::attn(i, "v_proj"), true},
                  {L.o, names::attn(i, "o_proj"), false},
                  {L.gate, names::mlp(i, "gate_proj"), false},
                  {L.up, names::mlp(i, "up_proj"), false},
                  {L.down, names::mlp(i, "down_proj"), false}};
      for (auto &x : lins) {
        if (!role(x.op.getWeight(), x.name, x.op))
          return false;
        if (x.op.getBias() && !x.mayHaveBias)
          return fail(x.op, x.name + " has a bias, which the canonical Llama form does not allow");
        if (x.mayHaveBias && bool(x.op.getBias()) != bias)
          return fail(x.op, "q, k and v projections do not all have (or all lack) a bias");
        if (x.op.getBias()) {
          std::string b = x.name.substr(0, x.name.size() - std::strlen("weight")) + "bias";
          if (!role(x.op.getBias(), b, x.op))
            return false;
        }
      }
    }

    // Tied embeddings: the same tensor, or (with a store) an lm_head copy
    // holding the same bytes, as exporters that fold the transpose write.
    bool tied = headParam.getName() == embedParam.getName();
    std::string headName = headParam.getName().str();
    if (!tied && store) {
      const WeightEntry *a = store->find(embedParam.getName().str());
      const WeightEntry *b = store->find(headName);
      tied = a && b && sameLogicalBytes(*a, *b);
    }
    config.tieWordEmbeddings = tied;
    if (!tied && !role(head.getWeight(), names::lmHead(), head))
      return false;
    if (std::string why = config.validate(); !why.empty())
      return fail(nullptr, why);
    return true;
  }
};

} // namespace

bool rebuildCanonicalDecoder(ModuleOp module, func::FuncOp func, WeightStore *store,
                             std::string *error, Operation **where) {
  *where = nullptr;
  Recovery r{func, store, error, where, {}, {}, {}, false, false, false, {}, {}};
  if (!r.run())
    return false;
  MLIRContext *ctx = module.getContext();
  std::string source = "<module>";
  if (auto s = module->getAttrOfType<StringAttr>("qonnx.source"))
    source = s.str();

  // Rename in two steps so that a graph whose names already collide with
  // canonical ones (a tensor called model.norm.weight playing another role)
  // cannot make a rename fail halfway.
  WeightStore shapes;
  WeightStore *target = store ? store : &shapes;
  if (store) {
    std::vector<std::pair<std::string, std::string>> staged;
    for (auto &kv : r.renames) {
      std::string tmp = "\x01qopt-rename." + std::to_string(staged.size());
      if (!store->rename(kv.getKey().str(), tmp)) {
        *error = source + ": weight '" + kv.getKey().str() + "' is missing from the weight store";
        return false;
      }
      staged.push_back({tmp, kv.getValue()});
    }
    for (auto &[tmp, canonical] : staged) {
      if (store->contains(canonical))
        store->erase(canonical); // an unused tensor that happened to bear the name
      store->rename(tmp, canonical);
    }
    if (r.config.tieWordEmbeddings && r.headParam.getName() != r.embedParam.getName())
      store->erase(r.headParam.getName().str());
  } else {
    // Shapes and dtypes only, which is all buildDecoderModule reads.
    llvm::StringMap<qllm::ParamOp> params;
    func.walk([&](qllm::ParamOp q) { params[q.getName()] = q; });
    for (auto &kv : r.renames) {
      qllm::ParamOp p = params.lookup(kv.getKey());
      WeightEntry e;
      e.name = kv.getValue();
      auto type = p.getResult().getType();
      if (!dtypeOf(type.getElementType(), &e.dtype)) {
        *error = source + ": weight '" + kv.getKey().str() + "' is not a float tensor";
        return false;
      }
      e.shape.assign(type.getShape().begin(), type.getShape().end());
      e.nbytes = size_t(e.numElements()) * dtypeSize(e.dtype);
      e.source = source;
      if (!shapes.addExternal(std::move(e), nullptr, error))
        return false;
    }
  }
  std::string buildError;
  OwningOpRef<ModuleOp> built = buildDecoderModule(*ctx, r.config, *target, source, &buildError);
  if (!built) {
    *error = buildError;
    return false;
  }
  auto fresh = cast<func::FuncOp>(built->getBody()->front());
  fresh->remove();
  func.erase();
  module.getBody()->push_back(fresh);
  SmallVector<StringAttr> drop;
  for (NamedAttribute a : module->getAttrs())
    if (a.getName().getValue().starts_with("qonnx."))
      drop.push_back(a.getName());
  for (StringAttr a : drop)
    module->removeAttr(a);
  module->setAttr("qllm.config", (*built)->getAttr("qllm.config"));
  return true;
}

} // namespace raise
} // namespace qopt
