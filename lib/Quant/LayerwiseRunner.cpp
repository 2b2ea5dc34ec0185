//===- LayerwiseRunner.cpp - decoder layers one at a time -----------===//
//
// Each step (the embedding, one decoder layer, the final norm + lm_head)
// is outlined into a scratch function: its ops are cloned with the params
// they read, and the hidden state becomes the block argument. The reference
// executor then runs that function alone, so it converts only that layer's
// weights to fp32, and drops them when the step ends: peak memory is one
// layer plus the hidden states. Because the clone is made each time a layer
// runs, a method's rewrite of layer i (a qllm.qparam in place of a
// qllm.param) is what advance(i) executes.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/Calibration.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseMap.h"

#include <algorithm>
#include <cstring>

using namespace mlir;

namespace qopt::quant {

namespace {

/// Users of `v` of op type T that take `v` as operand `index`.
template <typename T>
llvm::SmallVector<T> usersAt(Value v, unsigned index) {
  llvm::SmallVector<T> result;
  for (OpOperand &use : v.getUses())
    if (auto op = dyn_cast<T>(use.getOwner()))
      if (use.getOperandNumber() == index && !llvm::is_contained(result, op))
        result.push_back(op);
  return result;
}

/// The one user of `v` of type T at operand `index`, or null.
template <typename T>
T onlyUserAt(Value v, unsigned index) {
  auto users = usersAt<T>(v, index);
  return users.size() == 1 ? users[0] : T();
}

/// The add op combining `residual` with `branch` (either operand order).
qllm::AddOp residualAdd(Value residual, Value branch) {
  for (Operation *user : branch.getUsers())
    if (auto add = dyn_cast<qllm::AddOp>(user))
      if ((add.getLhs() == residual && add.getRhs() == branch) ||
          (add.getRhs() == residual && add.getLhs() == branch))
        return add;
  return {};
}

/// The pieces of `@forward` around the layers.
struct DecoderSkeleton {
  func::FuncOp func;
  qllm::EmbeddingOp embedding;
  std::vector<DecoderLayer> layers;
  qllm::RMSNormOp finalNorm;
  qllm::LMHeadOp lmHead;
};

/// Matches one layer whose input is `h` and whose input norm is `norm`.
bool matchLayer(Value h, qllm::RMSNormOp norm, int64_t index, DecoderLayer *layer,
                std::string *error) {
  auto fail = [&](const std::string &what) {
    *error = "calibration: decoder layer " + std::to_string(index) +
             " is not in the canonical form: " + what;
    return false;
  };
  layer->index = index;
  layer->inputNorm = norm;
  auto qkv = usersAt<qllm::LinearOp>(norm.getResult(), 0);
  if (qkv.size() != 3)
    return fail("expected 3 linears (q, k, v) on the input norm, found " +
                std::to_string(qkv.size()));
  for (qllm::LinearOp lin : qkv) {
    Value out = lin.getResult();
    if (auto rot = onlyUserAt<qllm::RotaryOp>(out, 0)) {
      Value r = rot.getResult();
      if (auto att = onlyUserAt<qllm::AttentionOp>(r, 0)) {
        layer->q = lin, layer->qRotary = rot, layer->attention = att;
        continue;
      }
      if (auto att = onlyUserAt<qllm::AttentionOp>(r, 1)) {
        layer->k = lin, layer->kRotary = rot;
        continue;
      }
    } else if (onlyUserAt<qllm::AttentionOp>(out, 2)) {
      layer->v = lin;
      continue;
    }
    return fail("a linear on the input norm feeds neither a rotary nor the attention's value");
  }
  if (!layer->q || !layer->k || !layer->v || !layer->attention ||
      layer->attention.getKey() != layer->kRotary.getResult() ||
      layer->attention.getValue() != layer->v.getResult())
    return fail("q, k and v do not meet in one attention op");
  layer->o = onlyUserAt<qllm::LinearOp>(layer->attention.getResult(), 0);
  if (!layer->o)
    return fail("the attention output does not feed one linear (o_proj)");
  layer->attnResidual = residualAdd(h, layer->o.getResult());
  if (!layer->attnResidual)
    return fail("no residual add after o_proj");
  Value mid = layer->attnResidual.getResult();
  layer->postAttentionNorm = onlyUserAt<qllm::RMSNormOp>(mid, 0);
  if (!layer->postAttentionNorm)
    return fail("no post-attention rms_norm");
  for (qllm::LinearOp lin : usersAt<qllm::LinearOp>(layer->postAttentionNorm.getResult(), 0)) {
    if (auto sw = onlyUserAt<qllm::SwiGLUOp>(lin.getResult(), 0))
      layer->gate = lin, layer->swiglu = sw;
    else if (onlyUserAt<qllm::SwiGLUOp>(lin.getResult(), 1))
      layer->up = lin;
  }
  if (!layer->gate || !layer->up || layer->swiglu.getUp() != layer->up.getResult())
    return fail("gate and up do not meet in one swiglu");
  layer->down = onlyUserAt<qllm::LinearOp>(layer->swiglu.getResult(), 0);
  if (!layer->down)
    return fail("the swiglu does not feed one linear (down_proj)");
  layer->mlpResidual = residualAdd(mid, layer->down.getResult());
  if (!layer->mlpResidual)
    return fail("no residual add after down_proj");
  return true;
}

bool matchSkeleton(ModuleOp module, DecoderSkeleton *sk, std::string *error) {
  sk->func = module.lookupSymbol<func::FuncOp>("forward");
  if (!sk->func || sk->func.isExternal() || !llvm::hasSingleElement(sk->func.getBody()) ||
      sk->func.getNumArguments() != 1) {
    *error = "calibration: the module has no canonical func.func @forward(ids)";
    return false;
  }
  sk->embedding = onlyUserAt<qllm::EmbeddingOp>(sk->func.getArgument(0), 0);
  if (!sk->embedding) {
    *error = "calibration: @forward's token ids do not feed one qllm.embedding";
    return false;
  }
  Value h = sk->embedding.getResult();
  for (int64_t i = 0;; ++i) {
    auto norm = onlyUserAt<qllm::RMSNormOp>(h, 0);
    if (!norm) {
      *error = "calibration: the hidden state after " +
               (i ? "decoder layer " + std::to_string(i - 1) : std::string("the embedding")) +
               " does not feed one rms_norm";
      return false;
    }
    if (auto head = onlyUserAt<qllm::LMHeadOp>(norm.getResult(), 0)) {
      sk->finalNorm = norm;
      sk->lmHead = head;
      break;
    }
    DecoderLayer layer;
    if (!matchLayer(h, norm, i, &layer, error))
      return false;
    h = layer.mlpResidual.getResult();
    sk->layers.push_back(layer);
  }
  if (sk->layers.empty()) {
    *error = "calibration: @forward has no decoder layers";
    return false;
  }
  return true;
}

/// The ops of one layer, in program order.
std::vector<Operation *> layerOps(const DecoderLayer &l) {
  std::vector<Operation *> ops = {
      l.inputNorm, l.q, l.k, l.v, l.qRotary, l.kRotary, l.attention, l.o,
      l.attnResidual, l.postAttentionNorm, l.gate, l.up, l.swiglu, l.down, l.mlpResidual};
  std::sort(ops.begin(), ops.end(),
            [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  return ops;
}

/// A step outlined into its own module.
struct Outlined {
  OwningOpRef<ModuleOp> module;
  func::FuncOp func;
  /// Clone -> the op of `@forward` it copies (what observers are shown).
  llvm::DenseMap<Operation *, Operation *> original;
};

/// Clones `ops` (program order) with the params they read into
/// `@step(input) -> output`. False if an op reads anything else from
/// outside.
bool outline(ArrayRef<Operation *> ops, Value input, Value output, Outlined *out,
             std::string *error) {
  MLIRContext *ctx = input.getContext();
  Location loc = UnknownLoc::get(ctx);
  out->module = ModuleOp::create(loc);
  OpBuilder b(ctx);
  b.setInsertionPointToEnd(out->module->getBody());
  out->func = b.create<func::FuncOp>(
      loc, "step", b.getFunctionType({input.getType()}, {output.getType()}));
  Block *entry = out->func.addEntryBlock();
  IRMapping map;
  map.map(input, entry->getArgument(0));
  b.setInsertionPointToEnd(entry);
  for (Operation *op : ops) {
    for (Value operand : op->getOperands()) {
      if (map.contains(operand))
        continue;
      Operation *def = operand.getDefiningOp();
      if (!def || !isa<qllm::ParamOp, qllm::QParamOp>(def)) {
        *error = "calibration: '" + op->getName().getStringRef().str() +
                 "' reads a value from outside its decoder layer that is not a weight";
        return false;
      }
      b.clone(*def, map);
    }
    out->original[b.clone(*op, map)] = op;
  }
  b.create<func::ReturnOp>(loc, map.lookup(output));
  return true;
}

} // namespace

bool findDecoderLayers(ModuleOp module, std::vector<DecoderLayer> *layers, std::string *error) {
  DecoderSkeleton sk;
  if (!matchSkeleton(module, &sk, error))
    return false;
  *layers = std::move(sk.layers);
  return true;
}

struct LayerwiseRunner::Impl {
  ModuleOp module;
  WeightStore *store = nullptr;
  std::vector<std::vector<int32_t>> samples;
  int threads = 0;
  DecoderSkeleton skeleton;
  Tensor hidden;
  int64_t batch = 1;

  /// Runs `step` over the samples a mini-batch at a time. The argument is
  /// the ids (when `ids`) or the hidden states; when `out` is given, the
  /// results are written there, sample for sample.
  bool runBatches(Outlined &step, bool ids, const ExecObserver &observer, Tensor *out,
                  std::string *error);
  bool runLayer(int64_t i, const ExecObserver &observer, bool advance, std::string *error);
};

LayerwiseRunner::LayerwiseRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LayerwiseRunner::~LayerwiseRunner() = default;

const std::vector<DecoderLayer> &LayerwiseRunner::layers() const {
  return impl_->skeleton.layers;
}
const Tensor &LayerwiseRunner::hidden() const { return impl_->hidden; }
int64_t LayerwiseRunner::batchSize() const { return impl_->batch; }

bool LayerwiseRunner::Impl::runBatches(Outlined &step, bool ids, const ExecObserver &observer,
                                       Tensor *out, std::string *error) {
  ExecutorOptions options;
  options.threads = threads;
  if (observer)
    options.observer = [&](Operation *op, const Tensor &in, const Tensor &result) {
      auto it = step.original.find(op);
      if (it != step.original.end())
        observer(it->second, in, result);
    };
  // The executor converts this step's weights (and only these) to fp32;
  // they go when it does, at the end of this function.
  auto exec = ReferenceExecutor::createForFunction(step.func, *store, error, options);
  if (!exec)
    return false;
  const int64_t n = int64_t(samples.size());
  const int64_t seq = int64_t(samples[0].size());
  const int64_t width = ids ? 1 : hidden.shape[2];
  for (int64_t b0 = 0; b0 < n; b0 += batch) {
    const int64_t nb = std::min(batch, n - b0);
    Tensor arg;
    if (ids) {
      arg.shape = {nb, seq};
      arg.data.reserve(size_t(nb * seq));
      for (int64_t s = b0; s < b0 + nb; ++s)
        arg.data.insert(arg.data.end(), samples[size_t(s)].begin(), samples[size_t(s)].end());
    } else {
      arg.shape = {nb, seq, width};
      const float *src = hidden.data.data() + b0 * seq * width;
      arg.data.assign(src, src + nb * seq * width);
    }
    std::vector<Tensor> results;
    std::vector<Tensor> args;
    args.push_back(std::move(arg));
    if (!exec->run(std::move(args), &results, error))
      return false;
    if (!out)
      continue;
    const Tensor &r = results[0];
    if (r.shape.size() != 3 || r.shape[0] != nb || r.shape[1] != seq) {
      *error = "calibration: a step returned an unexpected shape";
      return false;
    }
    if (out->data.empty()) {
      out->shape = {n, seq, r.shape[2]};
      out->data.resize(size_t(n * seq * r.shape[2]));
    } else if (out->shape[2] != r.shape[2]) {
      *error = "calibration: a step changed the hidden size";
      return false;
    }
    std::memcpy(out->data.data() + b0 * seq * r.shape[2], r.data.data(),
                r.data.size() * sizeof(float));
  }
  return true;
}

std::unique_ptr<LayerwiseRunner> LayerwiseRunner::create(ModuleOp module, WeightStore &store,
                                                         std::vector<std::vector<int32_t>> samples,
                                                         int threads, std::string *error) {
  auto impl = std::make_unique<Impl>();
  impl->module = module;
  impl->store = &store;
  impl->threads = threads;
  if (samples.empty() || samples[0].empty()) {
    *error = "calibration: no calibration samples";
    return nullptr;
  }
  for (const auto &s : samples)
    if (s.size() != samples[0].size()) {
      *error = "calibration: calibration samples differ in length";
      return nullptr;
    }
  impl->samples = std::move(samples);
  // About 4096 tokens per mini-batch: the activations inside a layer stay
  // small next to the hidden states of all samples.
  impl->batch = std::max<int64_t>(1, 4096 / int64_t(impl->samples[0].size()));
  if (!matchSkeleton(module, &impl->skeleton, error))
    return nullptr;
  Outlined embed;
  qllm::EmbeddingOp emb = impl->skeleton.embedding;
  if (!outline({emb.getOperation()}, emb.getIds(), emb.getResult(), &embed, error) ||
      !impl->runBatches(embed, /*ids=*/true, nullptr, &impl->hidden, error))
    return nullptr;
  return std::unique_ptr<LayerwiseRunner>(new LayerwiseRunner(std::move(impl)));
}

bool LayerwiseRunner::Impl::runLayer(int64_t i, const ExecObserver &observer, bool advance,
                                     std::string *error) {
  if (i < 0 || i >= int64_t(skeleton.layers.size())) {
    *error = "calibration: no decoder layer " + std::to_string(i);
    return false;
  }
  DecoderLayer layer = skeleton.layers[size_t(i)];
  Outlined step;
  if (!outline(layerOps(layer), layer.inputNorm.getInput(), layer.mlpResidual.getResult(), &step,
               error))
    return false;
  // In place: each mini-batch is copied into the executor's argument
  // before its output overwrites it.
  return runBatches(step, false, observer, advance ? &hidden : nullptr, error);
}

bool LayerwiseRunner::observe(int64_t i, const ExecObserver &observer, std::string *error) {
  return impl_->runLayer(i, observer, /*advance=*/false, error);
}

bool LayerwiseRunner::advance(int64_t i, std::string *error) {
  return impl_->runLayer(i, nullptr, /*advance=*/true, error);
}

bool LayerwiseRunner::finalLogits(Tensor *logits, std::string *error) {
  Impl &m = *impl_;
  Outlined step;
  qllm::RMSNormOp norm = m.skeleton.finalNorm;
  qllm::LMHeadOp head = m.skeleton.lmHead;
  *logits = Tensor();
  return outline({norm.getOperation(), head.getOperation()}, norm.getInput(), head.getResult(),
                 &step, error) &&
         m.runBatches(step, false, nullptr, logits, error);
}

} // namespace qopt::quant
