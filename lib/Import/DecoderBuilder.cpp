//===- DecoderBuilder.cpp - the canonical QLLM form of a decoder ------===//
#include "qopt/Import/DecoderBuilder.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <cmath>

using namespace mlir;

namespace qopt {

static Type elementTypeOf(MLIRContext &ctx, DType t) {
  switch (t) {
  case DType::F32: return Float32Type::get(&ctx);
  case DType::F16: return Float16Type::get(&ctx);
  case DType::BF16: return BFloat16Type::get(&ctx);
  case DType::F64: return Float64Type::get(&ctx);
  default: return {};
  }
}

namespace {
/// Emits `qllm.param` ops after checking each tensor against the config.
struct ParamEmitter {
  OpBuilder &b;
  const WeightStore &store;
  const std::string &source;
  std::string *error;
  llvm::StringMap<Value> emitted;

  Value get(const std::string &name, llvm::ArrayRef<int64_t> expected) {
    if (auto it = emitted.find(name); it != emitted.end())
      return it->second;
    const WeightEntry *e = store.find(name);
    if (!e) {
      *error = source + ": missing tensor '" + name + "'";
      return {};
    }
    Type et = elementTypeOf(*b.getContext(), e->dtype);
    if (!et) {
      *error = source + ": tensor '" + name + "' has dtype " + dtypeName(e->dtype) +
               ", expected a float type";
      return {};
    }
    if (llvm::ArrayRef<int64_t>(e->shape) != expected) {
      auto fmt = [](llvm::ArrayRef<int64_t> s) {
        std::string r = "[";
        for (size_t i = 0; i < s.size(); ++i)
          r += (i ? ", " : "") + std::to_string(s[i]);
        return r + "]";
      };
      *error = source + ": tensor '" + name + "' has shape " + fmt(e->shape) +
               " but config.json implies " + fmt(expected);
      return {};
    }
    auto type = RankedTensorType::get(expected, et);
    Value v = b.create<qllm::ParamOp>(b.getUnknownLoc(), type, b.getStringAttr(name));
    emitted[name] = v;
    return v;
  }
};
} // namespace

void setConfigAttr(ModuleOp module, const ModelConfig &c) {
  Builder b(module.getContext());
  SmallVector<NamedAttribute> a;
  auto i = [&](const char *k, int64_t v) { a.push_back(b.getNamedAttr(k, b.getI64IntegerAttr(v))); };
  auto f = [&](const char *k, double v) { a.push_back(b.getNamedAttr(k, b.getF64FloatAttr(v))); };
  a.push_back(b.getNamedAttr("architecture", b.getStringAttr(c.architecture)));
  i("vocab_size", c.vocabSize);
  i("hidden_size", c.hiddenSize);
  i("intermediate_size", c.intermediateSize);
  i("num_hidden_layers", c.numLayers);
  i("num_attention_heads", c.numHeads);
  i("num_key_value_heads", c.numKvHeads);
  i("head_dim", c.headDim);
  i("max_position_embeddings", c.maxPositionEmbeddings);
  f("rms_norm_eps", c.rmsNormEps);
  f("rope_theta", c.ropeTheta);
  a.push_back(b.getNamedAttr("rope_type", b.getStringAttr(c.ropeScaling.type)));
  if (c.ropeScaling.type != "default") {
    f("rope_factor", c.ropeScaling.factor);
    f("rope_low_freq_factor", c.ropeScaling.lowFreqFactor);
    f("rope_high_freq_factor", c.ropeScaling.highFreqFactor);
    i("rope_original_max_position_embeddings", c.ropeScaling.originalMaxPositionEmbeddings);
  }
  a.push_back(b.getNamedAttr("tie_word_embeddings", b.getBoolAttr(c.tieWordEmbeddings)));
  a.push_back(b.getNamedAttr("attention_bias", b.getBoolAttr(c.attentionBias)));
  if (c.bosTokenId) i("bos_token_id", *c.bosTokenId);
  if (c.eosTokenId) i("eos_token_id", *c.eosTokenId);
  module->setAttr("qllm.config", b.getDictionaryAttr(a));
}

bool getConfigAttr(ModuleOp module, ModelConfig *c, std::string *error) {
  auto d = module->getAttrOfType<DictionaryAttr>("qllm.config");
  if (!d) {
    *error = "module has no 'qllm.config' attribute";
    return false;
  }
  bool ok = true;
  auto i = [&](const char *k, int64_t &out, bool required = true) {
    if (auto v = d.getAs<IntegerAttr>(k))
      out = v.getInt();
    else if (required) {
      *error = std::string("qllm.config lacks integer '") + k + "'";
      ok = false;
    }
  };
  auto f = [&](const char *k, double &out) {
    if (auto v = d.getAs<FloatAttr>(k))
      out = v.getValueAsDouble();
  };
  if (auto s = d.getAs<StringAttr>("architecture"))
    c->architecture = s.str();
  i("vocab_size", c->vocabSize);
  i("hidden_size", c->hiddenSize);
  i("intermediate_size", c->intermediateSize);
  i("num_hidden_layers", c->numLayers);
  i("num_attention_heads", c->numHeads);
  i("num_key_value_heads", c->numKvHeads);
  i("head_dim", c->headDim);
  i("max_position_embeddings", c->maxPositionEmbeddings, false);
  f("rms_norm_eps", c->rmsNormEps);
  f("rope_theta", c->ropeTheta);
  if (auto s = d.getAs<StringAttr>("rope_type"))
    c->ropeScaling.type = s.str();
  f("rope_factor", c->ropeScaling.factor);
  f("rope_low_freq_factor", c->ropeScaling.lowFreqFactor);
  f("rope_high_freq_factor", c->ropeScaling.highFreqFactor);
  i("rope_original_max_position_embeddings", c->ropeScaling.originalMaxPositionEmbeddings, false);
  if (auto v = d.getAs<BoolAttr>("tie_word_embeddings"))
    c->tieWordEmbeddings = v.getValue();
  if (auto v = d.getAs<BoolAttr>("attention_bias"))
    c->attentionBias = v.getValue();
  if (auto v = d.getAs<IntegerAttr>("bos_token_id"))
    c->bosTokenId = v.getInt();
  if (auto v = d.getAs<IntegerAttr>("eos_token_id"))
    c->eosTokenId = v.getInt();
  return ok;
}

/// The rope-scaling dictionary a `qllm.rotary` carries, or null for default.
static DictionaryAttr ropeScalingAttr(Builder &b, const RopeScaling &s) {
  if (s.type == "default")
    return {};
  SmallVector<NamedAttribute> a;
  a.push_back(b.getNamedAttr("rope_type", b.getStringAttr(s.type)));
  a.push_back(b.getNamedAttr("factor", b.getF64FloatAttr(s.factor)));
  if (s.type == "llama3") {
    a.push_back(b.getNamedAttr("low_freq_factor", b.getF64FloatAttr(s.lowFreqFactor)));
    a.push_back(b.getNamedAttr("high_freq_factor", b.getF64FloatAttr(s.highFreqFactor)));
    a.push_back(b.getNamedAttr("original_max_position_embeddings",
                               b.getI64IntegerAttr(s.originalMaxPositionEmbeddings)));
  }
  return b.getDictionaryAttr(a);
}

OwningOpRef<ModuleOp> buildDecoderModule(MLIRContext &ctx, const ModelConfig &c,
                                         const WeightStore &store,
                                         const std::string &source, std::string *error) {
  ctx.loadDialect<qllm::QLLMDialect, func::FuncDialect>();
  if (std::string why = c.validate(); !why.empty()) {
    *error = source + ": " + why;
    return {};
  }
  OpBuilder b(&ctx);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  setConfigAttr(*module, c);

  const int64_t D = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
  const int64_t Hq = c.numHeads * c.headDim, Hkv = c.numKvHeads * c.headDim;
  const int64_t dyn = ShapedType::kDynamic;
  auto f32 = b.getF32Type();
  auto act = [&](int64_t n) { return RankedTensorType::get({dyn, dyn, n}, f32); };
  auto idsType = RankedTensorType::get({dyn, dyn}, b.getI64Type());

  b.setInsertionPointToEnd(module->getBody());
  auto func = b.create<func::FuncOp>(loc, "forward",
                                     b.getFunctionType({idsType}, {act(V)}));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToEnd(body);
  ParamEmitter p{b, store, source, error, {}};
  auto fail = [&]() { return OwningOpRef<ModuleOp>(); };

  Value embed = p.get(names::embedTokens(), {V, D});
  if (!embed) return fail();
  Value h = b.create<qllm::EmbeddingOp>(loc, act(D), body->getArgument(0), embed);
  auto eps = b.getF64FloatAttr(c.rmsNormEps);
  auto theta = b.getF64FloatAttr(c.ropeTheta);
  DictionaryAttr scaling = ropeScalingAttr(b, c.ropeScaling);
  auto linear = [&](Value x, const std::string &name, int64_t out, int64_t in,
                    const std::string &biasName = "") -> Value {
    Value w = p.get(name, {out, in});
    if (!w) return {};
    Value bias;
    if (!biasName.empty() && !(bias = p.get(biasName, {out})))
      return {};
    return b.create<qllm::LinearOp>(loc, act(out), x, w, bias);
  };

  for (int64_t l = 0; l < c.numLayers; ++l) {
    Value ln1 = p.get(names::inputNorm(l), {D});
    if (!ln1) return fail();
    Value x = b.create<qllm::RMSNormOp>(loc, act(D), h, ln1, eps);
    auto bias = [&](const char *proj) {
      return c.attentionBias ? names::attn(l, proj, "bias") : std::string();
    };
    Value q = linear(x, names::attn(l, "q_proj"), Hq, D, bias("q_proj"));
    if (!q) return fail();
    Value k = linear(x, names::attn(l, "k_proj"), Hkv, D, bias("k_proj"));
    if (!k) return fail();
    Value v = linear(x, names::attn(l, "v_proj"), Hkv, D, bias("v_proj"));
    if (!v) return fail();
    auto rot = [&](Value t, int64_t heads, int64_t n) -> Value {
      auto op = b.create<qllm::RotaryOp>(loc, act(n), t, b.getI64IntegerAttr(heads),
                                         b.getI64IntegerAttr(c.headDim), theta,
                                         IntegerAttr(), scaling);
      return op.getResult();
    };
    q = rot(q, c.numHeads, Hq);
    k = rot(k, c.numKvHeads, Hkv);
    Value a = b.create<qllm::AttentionOp>(
        loc, act(Hq), q, k, v, b.getI64IntegerAttr(c.numHeads),
        b.getI64IntegerAttr(c.numKvHeads), b.getI64IntegerAttr(c.headDim),
        b.getF64FloatAttr(1.0 / std::sqrt(double(c.headDim))));
    Value o = linear(a, names::attn(l, "o_proj"), D, Hq);
    if (!o) return fail();
    h = b.create<qllm::AddOp>(loc, h.getType(), h, o);
    Value ln2 = p.get(names::postAttentionNorm(l), {D});
    if (!ln2) return fail();
    x = b.create<qllm::RMSNormOp>(loc, act(D), h, ln2, eps);
    Value g = linear(x, names::mlp(l, "gate_proj"), I, D);
    if (!g) return fail();
    Value u = linear(x, names::mlp(l, "up_proj"), I, D);
    if (!u) return fail();
    Value s = b.create<qllm::SwiGLUOp>(loc, g.getType(), g, u);
    Value d = linear(s, names::mlp(l, "down_proj"), D, I);
    if (!d) return fail();
    h = b.create<qllm::AddOp>(loc, h.getType(), h, d);
  }
  Value fn = p.get(names::finalNorm(), {D});
  if (!fn) return fail();
  h = b.create<qllm::RMSNormOp>(loc, act(D), h, fn, eps);
  Value head = c.tieWordEmbeddings ? embed : p.get(names::lmHead(), {V, D});
  if (!head) return fail();
  Value logits = b.create<qllm::LMHeadOp>(loc, act(V), h, head);
  b.create<func::ReturnOp>(loc, logits);
  canonicalizeParamOrder(func);
  return module;
}

void canonicalizeParamOrder(Operation *funcOp) {
  auto func = llvm::cast<func::FuncOp>(funcOp);
  Block &body = func.getBody().front();
  // Merge params naming the same tensor, then order by first use.
  llvm::StringMap<Operation *> first;
  SmallVector<Operation *> params;
  for (Operation &op : llvm::make_early_inc_range(body)) {
    StringRef name;
    if (auto p = llvm::dyn_cast<qllm::ParamOp>(op))
      name = p.getName();
    else if (auto q = llvm::dyn_cast<qllm::QParamOp>(op))
      name = q.getName();
    else
      continue;
    auto [it, inserted] = first.try_emplace(name, &op);
    if (!inserted && it->second->getResult(0).getType() == op.getResult(0).getType()) {
      op.getResult(0).replaceAllUsesWith(it->second->getResult(0));
      op.erase();
      continue;
    }
    params.push_back(&op);
  }
  llvm::DenseMap<Operation *, unsigned> position;
  unsigned n = 0;
  for (Operation &op : body)
    position[&op] = n++;
  auto firstUse = [&](Operation *p) {
    unsigned best = ~0u;
    for (Operation *user : p->getResult(0).getUsers())
      best = std::min(best, position[user]);
    return best;
  };
  std::stable_sort(params.begin(), params.end(), [&](Operation *a, Operation *b) {
    return firstUse(a) < firstUse(b);
  });
  Operation *insertBefore = &body.front();
  for (Operation *p : llvm::reverse(params)) {
    p->moveBefore(insertBefore);
    insertBefore = p;
  }
}

} // namespace qopt
