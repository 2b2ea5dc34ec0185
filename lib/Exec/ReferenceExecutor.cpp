//===- ReferenceExecutor.cpp - fp32 interpreter of QLLM IR -----------===//
//
// create() turns `@forward` into a flat list of steps: each op's operand
// and result slots, its attributes decoded once, and the slots whose last
// use it is (freed right after it, which bounds memory to the live
// activations). Weights are fp32 buffers made once: in place for fp32
// tensors of the store, converted otherwise. forward() then only walks the
// steps.
//
//===----------------------------------------------------------------------===//
#include "qopt/Exec/ReferenceExecutor.h"

#include "FakeQuant.h"
#include "Kernels.h"
#include "ThreadPool.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Quant/Quantizer.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>

using namespace mlir;

namespace qopt {

int64_t Tensor::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

namespace {

enum class Kind { Embedding, RMSNorm, Linear, LMHead, Rotary, Attention, SwiGLU, Add };

/// A weight as the kernels see it: fp32, row-major in its logical shape
/// unless `transposed` (then the bytes are [in, out] and only GEMMs read it).
struct Weight {
  const float *data = nullptr;
  std::vector<int64_t> shape;
  bool transposed = false;
  std::vector<float> owned; ///< the converted copy when not used in place
};

/// One op of `@forward`, decoded.
struct Step {
  Operation *op = nullptr;
  Kind kind = Kind::Add;
  llvm::SmallVector<int, 3> in; ///< operand slots
  int out = -1;                 ///< result slot
  llvm::SmallVector<int, 4> freeAfter;
  int profileIndex = 0;
  // Attributes, by kind.
  double eps = 0;
  int64_t heads = 0, kvHeads = 0, headDim = 0, rotaryDim = 0;
  float scale = 1;
  std::vector<float> invFreq;
  exec::ActQuant actQuant; ///< W8A8 linears (FakeQuant.h)
  exec::KVQuant kvQuant;   ///< quantized KV cache
};

std::string shapeStr(const std::vector<int64_t> &s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i)
    r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

std::string opLabel(Operation *op) {
  std::string r = "'" + op->getName().getStringRef().str() + "'";
  if (auto p = dyn_cast<qllm::ParamOp>(op))
    r += " \"" + p.getName().str() + "\"";
  else if (auto q = dyn_cast<qllm::QParamOp>(op))
    r += " \"" + q.getName().str() + "\"";
  return r;
}

} // namespace

struct ReferenceExecutor::Impl {
  ExecutorOptions options;
  std::unique_ptr<exec::ThreadPool> pool;
  std::vector<Step> steps;
  /// Slots 0..numArgs-1 are the function's arguments (for @forward: slot 0,
  /// the token ids); then one slot per op result. A slot holds either a
  /// weight or (while live) an activation.
  int numSlots = 0;
  int numArgs = 0;
  /// The argument slot holding token ids, -1 if none.
  int idsSlot = -1;
  /// Static dims of float arguments (-1 = dynamic), checked by run().
  std::vector<std::vector<int64_t>> argDims;
  std::vector<Weight *> weightOfSlot;
  std::vector<std::unique_ptr<Weight>> weights;
  /// Embedding tables' row counts, for the token range check.
  std::vector<int64_t> embeddingRows;
  std::vector<int> resultSlots;
  int64_t vocab = 0;
  std::vector<OpProfile> profile;

  bool build(ModuleOp module, const WeightStore &store, std::string *error);
  bool buildFunction(func::FuncOp func, const WeightStore &store, std::string *error);
  bool execute(std::vector<std::shared_ptr<Tensor>> &acts, const std::vector<int64_t> &ids,
               std::string *error);
  bool loadWeight(qllm::ParamOp param, const WeightStore &store, bool gemmOnly,
                  std::string *error);
  bool loadQuantizedWeight(qllm::QParamOp qparam, const WeightStore &store,
                           std::string *error);
  bool runStep(const Step &s, std::vector<std::shared_ptr<Tensor>> &acts,
               const std::vector<int64_t> &ids, std::string *error);
};

ReferenceExecutor::ReferenceExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReferenceExecutor::~ReferenceExecutor() = default;

int64_t ReferenceExecutor::vocabSize() const { return impl_->vocab; }

void ReferenceExecutor::setObserver(ExecObserver observer) {
  impl_->options.observer = std::move(observer);
}

std::vector<OpProfile> ReferenceExecutor::profile() const { return impl_->profile; }

void ReferenceExecutor::resetProfile() {
  for (OpProfile &p : impl_->profile) {
    p.seconds = 0;
    p.calls = 0;
  }
}

std::unique_ptr<ReferenceExecutor>
ReferenceExecutor::create(ModuleOp module, const WeightStore &store, std::string *error,
                          const ExecutorOptions &options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  int threads = options.threads > 0 ? options.threads
                                    : int(std::max(1u, std::thread::hardware_concurrency()));
  exec::setBlasThreads(threads);
  impl->pool = std::make_unique<exec::ThreadPool>(threads);
  if (!impl->build(module, store, error))
    return nullptr;
  return std::unique_ptr<ReferenceExecutor>(new ReferenceExecutor(std::move(impl)));
}

std::unique_ptr<ReferenceExecutor>
ReferenceExecutor::createForFunction(func::FuncOp func, const WeightStore &store,
                                     std::string *error, const ExecutorOptions &options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  int threads = options.threads > 0 ? options.threads
                                    : int(std::max(1u, std::thread::hardware_concurrency()));
  exec::setBlasThreads(threads);
  impl->pool = std::make_unique<exec::ThreadPool>(threads);
  if (!func || func.isExternal()) {
    *error = "reference executor: no function body to run";
    return nullptr;
  }
  if (!impl->buildFunction(func, store, error))
    return nullptr;
  return std::unique_ptr<ReferenceExecutor>(new ReferenceExecutor(std::move(impl)));
}

bool ReferenceExecutor::Impl::loadWeight(qllm::ParamOp param, const WeightStore &store,
                                         bool gemmOnly, std::string *error) {
  std::string name = param.getName().str();
  const WeightEntry *e = store.find(name);
  if (!e) {
    *error = "reference executor: weight '" + name + "' is not in the weight store";
    return false;
  }
  if (!isFloat(e->dtype)) {
    *error = "reference executor: weight '" + name + "' has dtype " + dtypeName(e->dtype) +
             ", expected a float type";
    return false;
  }
  auto type = param.getResult().getType();
  std::vector<int64_t> shape(type.getShape().begin(), type.getShape().end());
  if (shape != e->shape) {
    *error = "reference executor: weight '" + name + "' has shape " + shapeStr(e->shape) +
             " in the store but " + shapeStr(shape) + " in the IR";
    return false;
  }
  auto w = std::make_unique<Weight>();
  w->shape = shape;
  bool aligned = reinterpret_cast<uintptr_t>(e->data) % alignof(float) == 0;
  if (e->dtype == DType::F32 && aligned && (!e->transposed || gemmOnly)) {
    // Used in place: no copy of an fp32 model.
    w->data = reinterpret_cast<const float *>(e->data);
    w->transposed = e->transposed;
  } else {
    w->owned = store.readF32(*e);
    w->data = w->owned.data();
  }
  weightOfSlot[numSlots] = w.get();
  weights.push_back(std::move(w));
  return true;
}

/// A quantized weight runs as its dequantized fp32 copy, made once here:
/// the numbers the executor produces are those of the stored codes and
/// scales, decoded by the same code the quantizers use.
bool ReferenceExecutor::Impl::loadQuantizedWeight(qllm::QParamOp qparam,
                                                  const WeightStore &store,
                                                  std::string *error) {
  auto type = qparam.getResult().getType();
  auto shape = type.getShape();
  if (shape.size() != 2) {
    *error = "reference executor: " + opLabel(qparam) + " is not a 2-D quantized weight";
    return false;
  }
  quant::QuantizedMatrix q;
  std::string loadError;
  if (!quant::loadQuantized(store, qparam.getName().str(), type.getQuant(), shape[0], shape[1],
                            &q, &loadError)) {
    *error = "reference executor: " + opLabel(qparam) + ": " + loadError;
    return false;
  }
  auto w = std::make_unique<Weight>();
  w->shape = {shape[0], shape[1]};
  w->owned = quant::dequantize(q);
  w->data = w->owned.data();
  weightOfSlot[numSlots] = w.get();
  weights.push_back(std::move(w));
  return true;
}

bool ReferenceExecutor::Impl::build(ModuleOp module, const WeightStore &store,
                                    std::string *error) {
  auto func = module.lookupSymbol<func::FuncOp>("forward");
  if (!func || func.isExternal()) {
    *error = "reference executor: the module has no func.func @forward with a body";
    return false;
  }
  if (!llvm::hasSingleElement(func.getBody())) {
    *error = "reference executor: @forward must have a single block";
    return false;
  }
  Block &body = func.getBody().front();
  if (body.getNumArguments() != 1) {
    *error = "reference executor: @forward must take exactly one argument (the token "
             "ids), it takes " + std::to_string(body.getNumArguments());
    return false;
  }
  auto idsType = dyn_cast<RankedTensorType>(body.getArgument(0).getType());
  if (!idsType || idsType.getRank() != 2 || !idsType.getElementType().isInteger()) {
    *error = "reference executor: @forward's argument must be integer token ids "
             "[batch, seq]";
    return false;
  }
  if (!buildFunction(func, store, error))
    return false;
  if (resultSlots.size() != 1) {
    *error = "reference executor: @forward must return exactly one tensor";
    return false;
  }
  return true;
}

bool ReferenceExecutor::Impl::buildFunction(func::FuncOp func, const WeightStore &store,
                                            std::string *error) {
  if (!llvm::hasSingleElement(func.getBody())) {
    *error = "reference executor: @" + func.getSymName().str() + " must have a single block";
    return false;
  }
  Block &body = func.getBody().front();
  llvm::DenseMap<Value, int> slotOf;
  numArgs = int(body.getNumArguments());
  for (BlockArgument arg : body.getArguments()) {
    auto type = dyn_cast<RankedTensorType>(arg.getType());
    bool ids = type && type.getRank() == 2 && type.getElementType().isInteger();
    bool act = type && type.getElementType().isF32();
    if ((!ids && !act) || (ids && idsSlot >= 0)) {
      *error = "reference executor: argument " + std::to_string(arg.getArgNumber()) +
               " of @" + func.getSymName().str() +
               " must be an f32 tensor or the (only) integer token ids [batch, seq]";
      return false;
    }
    if (ids)
      idsSlot = int(arg.getArgNumber());
    std::vector<int64_t> dims(type.getShape().begin(), type.getShape().end());
    argDims.push_back(dims);
    slotOf[arg] = int(arg.getArgNumber());
  }
  numSlots = numArgs;
  weightOfSlot.assign(body.getOperations().size() + size_t(numArgs), nullptr);
  llvm::StringMap<int> profileIndex;
  std::vector<int> lastUse(body.getOperations().size() + size_t(numArgs), -1);
  auto isIds = [&](int slot) { return slot == idsSlot; };

  auto operandSlot = [&](Value v) { return slotOf.lookup(v); };
  for (Operation &op : body) {
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      for (Value v : ret.getOperands()) {
        int slot = operandSlot(v);
        if (isIds(slot) || weightOfSlot[slot]) {
          *error = "reference executor: @" + func.getSymName().str() +
                   " must return computed activations";
          return false;
        }
        resultSlots.push_back(slot);
      }
      continue;
    }
    if (auto param = dyn_cast<qllm::ParamOp>(op)) {
      // In place even when stored transposed, if only GEMMs read it.
      bool gemmOnly = llvm::all_of(param->getUses(), [](OpOperand &use) {
        return isa<qllm::LinearOp, qllm::LMHeadOp>(use.getOwner()) &&
               use.getOperandNumber() == 1;
      });
      if (!loadWeight(param, store, gemmOnly, error))
        return false;
      slotOf[param.getResult()] = numSlots++;
      continue;
    }
    if (auto qparam = dyn_cast<qllm::QParamOp>(op)) {
      if (!loadQuantizedWeight(qparam, store, error))
        return false;
      slotOf[qparam.getResult()] = numSlots++;
      continue;
    }
    Step s;
    s.op = &op;
    if (isa<qllm::EmbeddingOp>(op)) {
      s.kind = Kind::Embedding;
    } else if (auto n = dyn_cast<qllm::RMSNormOp>(op)) {
      s.kind = Kind::RMSNorm;
      s.eps = n.getEpsilon().convertToDouble();
    } else if (isa<qllm::LinearOp>(op)) {
      s.kind = Kind::Linear;
      if (!exec::decodeActQuant(&op, &s.actQuant, error))
        return false;
    } else if (isa<qllm::LMHeadOp>(op)) {
      s.kind = Kind::LMHead;
    } else if (auto r = dyn_cast<qllm::RotaryOp>(op)) {
      s.kind = Kind::Rotary;
      s.heads = r.getNumHeads();
      s.headDim = r.getHeadDim();
      s.rotaryDim = r.getRotaryDim() ? int64_t(*r.getRotaryDim()) : s.headDim;
      exec::RopeScalingParams sp;
      if (auto d = r.getScaling()) {
        auto f = [&](StringRef key, double &out) {
          if (auto a = d->getAs<FloatAttr>(key))
            out = a.getValueAsDouble();
          else if (auto i = d->getAs<IntegerAttr>(key))
            out = double(i.getInt());
        };
        if (auto t = d->getAs<StringAttr>("rope_type"))
          sp.type = t.str();
        f("factor", sp.factor);
        f("low_freq_factor", sp.lowFreqFactor);
        f("high_freq_factor", sp.highFreqFactor);
        f("original_max_position_embeddings", sp.originalMaxPositionEmbeddings);
        if (sp.type != "default" && sp.type != "linear" && sp.type != "llama3") {
          *error = "reference executor: 'qllm.rotary' has unsupported rope_type '" +
                   sp.type + "'";
          return false;
        }
      }
      s.invFreq = exec::ropeInvFreq(s.rotaryDim, r.getTheta().convertToDouble(), sp);
    } else if (auto a = dyn_cast<qllm::AttentionOp>(op)) {
      s.kind = Kind::Attention;
      s.heads = a.getNumHeads();
      s.kvHeads = a.getNumKvHeads();
      s.headDim = a.getHeadDim();
      s.scale = float(a.getScale().convertToDouble());
      if (s.heads <= 0 || s.kvHeads <= 0 || s.heads % s.kvHeads) {
        *error = "reference executor: 'qllm.attention' num_heads must be a positive "
                 "multiple of num_kv_heads";
        return false;
      }
      if (!exec::decodeKVQuant(&op, s.kvHeads, &s.kvQuant, error))
        return false;
    } else if (isa<qllm::SwiGLUOp>(op)) {
      s.kind = Kind::SwiGLU;
    } else if (isa<qllm::AddOp>(op)) {
      s.kind = Kind::Add;
    } else {
      *error = "reference executor: unsupported op " + opLabel(&op) + " in @forward";
      return false;
    }
    if (op.getNumResults() != 1) {
      *error = "reference executor: " + opLabel(&op) + " must have one result";
      return false;
    }
    for (Value v : op.getOperands()) {
      auto it = slotOf.find(v);
      if (it == slotOf.end()) {
        *error = "reference executor: an operand of " + opLabel(&op) +
                 " is not defined earlier in @forward";
        return false;
      }
      s.in.push_back(it->second);
    }
    // Operand roles the kernels rely on: ids or weights where expected,
    // activations elsewhere.
    auto isWeight = [&](int slot) { return weightOfSlot[slot] != nullptr; };
    bool ok = true;
    switch (s.kind) {
    case Kind::Embedding:
      ok = isIds(s.in[0]) && isWeight(s.in[1]) && !weightOfSlot[s.in[1]]->transposed &&
           weightOfSlot[s.in[1]]->shape.size() == 2;
      if (ok)
        embeddingRows.push_back(weightOfSlot[s.in[1]]->shape[0]);
      break;
    case Kind::RMSNorm:
      ok = isWeight(s.in[1]) && weightOfSlot[s.in[1]]->shape.size() == 1;
      break;
    case Kind::Linear:
    case Kind::LMHead:
      ok = isWeight(s.in[1]) && weightOfSlot[s.in[1]]->shape.size() == 2 &&
           (s.in.size() < 3 ||
            (isWeight(s.in[2]) && weightOfSlot[s.in[2]]->shape.size() == 1));
      if (ok && s.kind == Kind::LMHead)
        vocab = weightOfSlot[s.in[1]]->shape[0];
      break;
    default:
      break;
    }
    for (size_t i = 0; i < s.in.size(); ++i) {
      bool roleIsWeight = (s.kind == Kind::Embedding || s.kind == Kind::RMSNorm ||
                           s.kind == Kind::Linear || s.kind == Kind::LMHead) && i >= 1;
      if (!roleIsWeight && (isWeight(s.in[i]) || (isIds(s.in[i]) && s.kind != Kind::Embedding)))
        ok = false;
    }
    if (!ok) {
      *error = "reference executor: " + opLabel(&op) +
               " has operands the executor cannot run (expected token ids or weights "
               "from 'qllm.param' where the op takes them, activations elsewhere)";
      return false;
    }
    std::string opName = op.getName().getStringRef().str();
    auto [it, inserted] = profileIndex.try_emplace(opName, int(profile.size()));
    if (inserted)
      profile.push_back(OpProfile{opName, 0, 0});
    s.profileIndex = it->second;
    for (int slot : s.in)
      lastUse[slot] = int(steps.size());
    s.out = numSlots;
    slotOf[op.getResult(0)] = numSlots++;
    steps.push_back(std::move(s));
  }
  if (body.empty() || !isa<func::ReturnOp>(body.back()) || resultSlots.empty()) {
    *error = "reference executor: @" + func.getSymName().str() + " returns nothing";
    return false;
  }
  if (vocab == 0)
    if (auto t = dyn_cast<RankedTensorType>(func.getResultTypes()[0]))
      if (t.getRank() > 0 && !ShapedType::isDynamic(t.getShape().back()))
        vocab = t.getShape().back();
  // Free activations after their last use; the ids and weights stay, and
  // so do the results.
  for (int slot = 0; slot < numSlots; ++slot)
    if (!weightOfSlot[slot] && !isIds(slot) && !llvm::is_contained(resultSlots, slot) &&
        lastUse[slot] >= 0)
      steps[lastUse[slot]].freeAfter.push_back(slot);
  return true;
}

/// Fails with a message naming the op.
static bool opError(Operation *op, const std::string &what, std::string *error) {
  *error = "reference executor: " + opLabel(op) + ": " + what;
  return false;
}

static bool fitsBlasInt(int64_t v) { return v >= 0 && v <= INT_MAX; }

bool ReferenceExecutor::Impl::runStep(const Step &s,
                                      std::vector<std::shared_ptr<Tensor>> &acts,
                                      const std::vector<int64_t> &ids, std::string *error) {
  exec::ThreadPool &p = *pool;
  auto act = [&](int i) -> const Tensor & { return *acts[s.in[i]]; };
  auto weight = [&](int i) -> const Weight & { return *weightOfSlot[s.in[i]]; };
  auto result = std::make_shared<Tensor>();
  auto allocate = [&](std::vector<int64_t> shape) {
    result->shape = std::move(shape);
    result->data.resize(size_t(result->numElements()));
  };
  switch (s.kind) {
  case Kind::Embedding: {
    const Tensor &idsShape = act(0); // shape only: the ids slot holds [B, S]
    const Weight &table = weight(1);
    allocate({idsShape.shape[0], idsShape.shape[1], table.shape[1]});
    exec::embedding(ids.data(), int64_t(ids.size()), table.data, table.shape[1],
                    result->data.data(), p);
    break;
  }
  case Kind::RMSNorm: {
    const Tensor &x = act(0);
    const Weight &w = weight(1);
    int64_t dim = x.shape.empty() ? 0 : x.shape.back();
    if (dim != w.shape[0])
      return opError(s.op, "input features (" + std::to_string(dim) +
                               ") differ from the weight size (" +
                               std::to_string(w.shape[0]) + ")", error);
    allocate(x.shape);
    exec::rmsNorm(x.data.data(), w.data, x.numElements() / std::max<int64_t>(dim, 1), dim,
                  s.eps, result->data.data(), p);
    break;
  }
  case Kind::Linear:
  case Kind::LMHead: {
    const Tensor &x = act(0);
    const Weight &w = weight(1);
    int64_t n = w.shape[0], k = w.shape[1];
    if (x.shape.size() < 2 || x.shape.back() != k)
      return opError(s.op, "input shape " + shapeStr(x.shape) +
                               " does not end in the weight's in_features (" +
                               std::to_string(k) + ")", error);
    const float *bias = nullptr;
    if (s.in.size() > 2) {
      if (weight(2).shape[0] != n)
        return opError(s.op, "bias size differs from out_features", error);
      bias = weight(2).data;
    }
    int64_t m = x.numElements() / k;
    if (!fitsBlasInt(m) || !fitsBlasInt(n) || !fitsBlasInt(k))
      return opError(s.op, "GEMM dimensions exceed BLAS's 32-bit int", error);
    std::vector<int64_t> shape = x.shape;
    shape.back() = n;
    allocate(shape);
    std::vector<float> xq; // W8A8: the input as the int8/fp8 kernel sees it
    const float *xd = exec::applyActQuant(s.actQuant, x.data.data(), m, k, xq, p);
    if (w.transposed)
      exec::linearTransposedWeight(xd, m, k, w.data, n, bias, result->data.data(), p);
    else
      exec::linear(xd, m, k, w.data, n, bias, result->data.data(), p);
    break;
  }
  case Kind::Rotary: {
    const Tensor &x = act(0);
    if (x.shape.size() != 3 || x.shape[2] != s.heads * s.headDim)
      return opError(s.op, "input shape " + shapeStr(x.shape) + " is not [batch, seq, " +
                               std::to_string(s.heads * s.headDim) + "]", error);
    allocate(x.shape);
    exec::rotary(x.data.data(), x.shape[0], x.shape[1], s.heads, s.headDim, s.rotaryDim,
                 s.invFreq, result->data.data(), p);
    break;
  }
  case Kind::Attention: {
    const Tensor &q = act(0), &k = act(1), &v = act(2);
    std::vector<int64_t> kvShape;
    if (q.shape.size() == 3)
      kvShape = {q.shape[0], q.shape[1], s.kvHeads * s.headDim};
    if (q.shape.size() != 3 || q.shape[2] != s.heads * s.headDim || k.shape != kvShape ||
        v.shape != kvShape)
      return opError(s.op, "query " + shapeStr(q.shape) + ", key " + shapeStr(k.shape) +
                               " and value " + shapeStr(v.shape) +
                               " do not match the head counts", error);
    if (!fitsBlasInt(q.shape[1] * 128))
      return opError(s.op, "sequence too long for a block of attention scores", error);
    allocate(q.shape);
    const float *kd = k.data.data(), *vd = v.data.data();
    std::vector<float> kq, vq; // quantized KV cache: K and V as the cache holds them
    if (s.kvQuant.enabled) {
      int64_t rows = k.numElements() / (s.kvHeads * s.headDim);
      kq.resize(k.data.size());
      vq.resize(v.data.size());
      exec::fakeQuantPerHead(kd, rows, s.kvHeads, s.headDim, s.kvQuant.kScales.data(),
                             s.kvQuant.type, kq.data(), p);
      exec::fakeQuantPerHead(vd, rows, s.kvHeads, s.headDim, s.kvQuant.vScales.data(),
                             s.kvQuant.type, vq.data(), p);
      kd = kq.data();
      vd = vq.data();
    }
    exec::attention(q.data.data(), kd, vd, q.shape[0], q.shape[1],
                    s.heads, s.kvHeads, s.headDim, s.scale, result->data.data(), p);
    break;
  }
  case Kind::SwiGLU:
  case Kind::Add: {
    const Tensor &a = act(0), &b = act(1);
    if (a.shape != b.shape)
      return opError(s.op, "operand shapes " + shapeStr(a.shape) + " and " +
                               shapeStr(b.shape) + " differ", error);
    allocate(a.shape);
    if (s.kind == Kind::SwiGLU)
      exec::swiglu(a.data.data(), b.data.data(), a.numElements(), result->data.data(), p);
    else
      exec::add(a.data.data(), b.data.data(), a.numElements(), result->data.data(), p);
    break;
  }
  }
  acts[s.out] = std::move(result);
  return true;
}

bool ReferenceExecutor::forward(const std::vector<std::vector<int32_t>> &batch,
                                Tensor *logits, std::string *error) {
  Impl &m = *impl_;
  if (m.numArgs != 1 || m.idsSlot != 0) {
    *error = "reference executor: forward() runs @forward; use run() for a function";
    return false;
  }
  if (batch.empty() || batch[0].empty()) {
    *error = "reference executor: empty batch (no tokens to run)";
    return false;
  }
  const int64_t B = int64_t(batch.size()), S = int64_t(batch[0].size());
  std::vector<int64_t> ids;
  ids.reserve(size_t(B * S));
  for (int64_t b = 0; b < B; ++b) {
    if (int64_t(batch[b].size()) != S) {
      *error = "reference executor: ragged batch: sequence " + std::to_string(b) + " has " +
               std::to_string(batch[b].size()) + " tokens, sequence 0 has " +
               std::to_string(S) + " (all must have the same length)";
      return false;
    }
    for (int64_t t = 0; t < S; ++t) {
      int32_t id = batch[b][t];
      for (int64_t rows : m.embeddingRows)
        if (id < 0 || id >= rows) {
          *error = "reference executor: token id " + std::to_string(id) + " (sequence " +
                   std::to_string(b) + ", position " + std::to_string(t) +
                   ") is out of range for a vocabulary of " + std::to_string(rows);
          return false;
        }
      ids.push_back(id);
    }
  }

  std::vector<std::shared_ptr<Tensor>> acts(size_t(m.numSlots));
  // Slot 0 carries the ids' shape (and, for the observer, their values).
  auto idsTensor = std::make_shared<Tensor>();
  idsTensor->shape = {B, S};
  if (m.options.observer)
    idsTensor->data.assign(ids.begin(), ids.end());
  acts[0] = idsTensor;
  if (!m.execute(acts, ids, error))
    return false;
  *logits = std::move(*acts[m.resultSlots[0]]);
  return true;
}

bool ReferenceExecutor::Impl::execute(std::vector<std::shared_ptr<Tensor>> &acts,
                                      const std::vector<int64_t> &ids, std::string *error) {
  using Clock = std::chrono::steady_clock;
  for (const Step &s : steps) {
    Clock::time_point start;
    if (options.profile)
      start = Clock::now();
    if (!runStep(s, acts, ids, error))
      return false;
    if (options.profile) {
      OpProfile &p = profile[s.profileIndex];
      p.seconds += std::chrono::duration<double>(Clock::now() - start).count();
      ++p.calls;
    }
    // build() guarantees the first operand is the ids or an activation.
    if (options.observer)
      options.observer(s.op, *acts[s.in[0]], *acts[s.out]);
    for (int slot : s.freeAfter)
      acts[slot].reset();
  }
  return true;
}

bool ReferenceExecutor::run(std::vector<Tensor> args, std::vector<Tensor> *results,
                            std::string *error) {
  Impl &m = *impl_;
  if (int(args.size()) != m.numArgs) {
    *error = "reference executor: the function takes " + std::to_string(m.numArgs) +
             " arguments, " + std::to_string(args.size()) + " given";
    return false;
  }
  std::vector<std::shared_ptr<Tensor>> acts(size_t(m.numSlots));
  std::vector<int64_t> ids;
  for (int a = 0; a < m.numArgs; ++a) {
    Tensor &t = args[size_t(a)];
    const std::vector<int64_t> &dims = m.argDims[size_t(a)];
    bool shapeOk = t.shape.size() == dims.size() &&
                   int64_t(t.data.size()) == t.numElements();
    for (size_t d = 0; shapeOk && d < dims.size(); ++d)
      shapeOk = t.shape[d] >= 0 && (dims[d] < 0 || dims[d] == t.shape[d]);
    if (!shapeOk) {
      *error = "reference executor: argument " + std::to_string(a) + " has shape " +
               shapeStr(t.shape) + " (" + std::to_string(t.data.size()) +
               " values), expected " + shapeStr(dims) + " (-1 = any)";
      return false;
    }
    if (a == m.idsSlot) {
      ids.reserve(t.data.size());
      for (float f : t.data) {
        int64_t id = int64_t(f);
        bool inRange = float(id) == f;
        for (int64_t rows : m.embeddingRows)
          inRange = inRange && id >= 0 && id < rows;
        if (!inRange) {
          *error = "reference executor: token id " + std::to_string(f) +
                   " is not an id of the vocabulary";
          return false;
        }
        ids.push_back(id);
      }
      if (!m.options.observer)
        t.data.clear();
    }
    acts[size_t(a)] = std::make_shared<Tensor>(std::move(t));
  }
  if (!m.execute(acts, ids, error))
    return false;
  results->clear();
  for (size_t r = 0; r < m.resultSlots.size(); ++r) {
    int slot = m.resultSlots[r];
    // Moved out by its last mention, copied by earlier ones.
    bool again = std::find(m.resultSlots.begin() + long(r) + 1, m.resultSlots.end(), slot) !=
                 m.resultSlots.end();
    results->push_back(again ? *acts[size_t(slot)] : std::move(*acts[size_t(slot)]));
  }
  return true;
}

} // namespace qopt
