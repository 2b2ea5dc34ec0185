//===- ExecTestUtil.h - building small QLLM modules for tests --*- C++ -*-===//
//
// OpModule builds a one-op `@forward`: every activation input is an
// embedding of the ids 0..B*S-1 into a random table, so any [B, S, N]
// tensor can be fed through the ids-only signature. randomModel builds a
// whole decoder with random weights through buildDecoderModule.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_TEST_EXEC_EXECTESTUTIL_H
#define QOPT_TEST_EXEC_EXECTESTUTIL_H

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Exec/ReferenceExecutor.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Import/ModelConfig.h"
#include "qopt/Weights/WeightStore.h"
#include "qopt-rt/half.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/MLIRContext.h"

#include <cstring>
#include <random>

namespace exectest {

using Vec = std::vector<float>;

inline Vec randomVec(std::mt19937 &rng, size_t n, float stddev = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> d(mean, stddev);
  Vec v(n);
  for (float &x : v)
    x = d(rng);
  return v;
}

inline std::vector<uint8_t> bytesOf(const Vec &v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

/// A one-block `@forward(%ids)` under construction.
struct OpModule {
  mlir::MLIRContext &ctx;
  qopt::WeightStore &store;
  int64_t batch, seq;
  mlir::OpBuilder b;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  mlir::Block *body = nullptr;
  mlir::Value ids;
  int counter = 0;

  OpModule(mlir::MLIRContext &c, qopt::WeightStore &s, int64_t batchSize, int64_t seqLen)
      : ctx(c), store(s), batch(batchSize), seq(seqLen), b(&c) {
    ctx.loadDialect<qopt::qllm::QLLMDialect, mlir::func::FuncDialect>();
    module = mlir::ModuleOp::create(b.getUnknownLoc());
    b.setInsertionPointToEnd(module->getBody());
    auto idsType = mlir::RankedTensorType::get({mlir::ShapedType::kDynamic,
                                                mlir::ShapedType::kDynamic},
                                               b.getI64Type());
    auto func = b.create<mlir::func::FuncOp>(b.getUnknownLoc(), "forward",
                                             b.getFunctionType({idsType}, {}));
    body = func.addEntryBlock();
    ids = body->getArgument(0);
    b.setInsertionPointToEnd(body);
  }

  mlir::RankedTensorType act(int64_t n) {
    return mlir::RankedTensorType::get(
        {mlir::ShapedType::kDynamic, mlir::ShapedType::kDynamic, n}, b.getF32Type());
  }

  /// A `qllm.param` over fp32 `data` of `shape`.
  mlir::Value param(const Vec &data, std::vector<int64_t> shape) {
    std::string name = "w" + std::to_string(counter++);
    std::string err;
    if (!store.addOwned(name, qopt::DType::F32, shape, bytesOf(data), &err))
      return {};
    auto type = mlir::RankedTensorType::get(shape, b.getF32Type());
    return b.create<qopt::qllm::ParamOp>(b.getUnknownLoc(), type, b.getStringAttr(name));
  }

  /// An activation [batch, seq, n] equal to `data` (row r = b * seq + s).
  mlir::Value input(const Vec &data, int64_t n) {
    mlir::Value table = param(data, {batch * seq, n});
    return b.create<qopt::qllm::EmbeddingOp>(b.getUnknownLoc(), act(n), ids, table);
  }

  /// Returns `v` and fixes the function type.
  void finish(mlir::Value v) {
    b.create<mlir::func::ReturnOp>(b.getUnknownLoc(), v);
    auto func = module->lookupSymbol<mlir::func::FuncOp>("forward");
    func.setType(b.getFunctionType({ids.getType()}, {v.getType()}));
  }

  /// The ids 0..B*S-1 that make every `input` equal its data.
  std::vector<std::vector<int32_t>> iotaIds() const {
    std::vector<std::vector<int32_t>> r(batch);
    for (int64_t i = 0; i < batch; ++i)
      for (int64_t s = 0; s < seq; ++s)
        r[i].push_back(int32_t(i * seq + s));
    return r;
  }
};

/// Fills `store` with random weights under the canonical names of `c`
/// (scaled so that activations stay O(1) through the layers).
inline void randomWeights(const qopt::ModelConfig &c, qopt::WeightStore &store,
                          std::mt19937 &rng, qopt::DType dtype = qopt::DType::F32) {
  namespace n = qopt::names;
  auto put = [&](const std::string &name, std::vector<int64_t> shape, float stddev,
                 float mean = 0.0f) {
    size_t count = 1;
    for (int64_t d : shape)
      count *= size_t(d);
    Vec v = randomVec(rng, count, stddev, mean);
    std::vector<uint8_t> bytes;
    if (dtype == qopt::DType::BF16) {
      bytes.resize(count * 2);
      for (size_t i = 0; i < count; ++i) {
        uint16_t h = qrt::f32ToBf16(v[i]);
        std::memcpy(&bytes[2 * i], &h, 2);
      }
    } else {
      bytes = bytesOf(v);
    }
    std::string err;
    store.addOwned(name, dtype, shape, std::move(bytes), &err);
  };
  const int64_t D = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
  const int64_t Hq = c.numHeads * c.headDim, Hkv = c.numKvHeads * c.headDim;
  auto sd = [](int64_t fanIn) { return 1.0f / std::sqrt(float(fanIn)); };
  put(n::embedTokens(), {V, D}, 1.0f);
  for (int64_t l = 0; l < c.numLayers; ++l) {
    put(n::inputNorm(l), {D}, 0.1f, 1.0f);
    put(n::postAttentionNorm(l), {D}, 0.1f, 1.0f);
    put(n::attn(l, "q_proj"), {Hq, D}, sd(D));
    put(n::attn(l, "k_proj"), {Hkv, D}, sd(D));
    put(n::attn(l, "v_proj"), {Hkv, D}, sd(D));
    put(n::attn(l, "o_proj"), {D, Hq}, sd(Hq));
    if (c.attentionBias) {
      put(n::attn(l, "q_proj", "bias"), {Hq}, 0.1f);
      put(n::attn(l, "k_proj", "bias"), {Hkv}, 0.1f);
      put(n::attn(l, "v_proj", "bias"), {Hkv}, 0.1f);
    }
    put(n::mlp(l, "gate_proj"), {I, D}, sd(D));
    put(n::mlp(l, "up_proj"), {I, D}, sd(D));
    put(n::mlp(l, "down_proj"), {D, I}, sd(I));
  }
  put(n::finalNorm(), {D}, 0.1f, 1.0f);
  if (!c.tieWordEmbeddings)
    put(n::lmHead(), {V, D}, sd(D));
}

} // namespace exectest

#endif
