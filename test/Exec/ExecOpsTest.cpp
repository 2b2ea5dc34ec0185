//===- ExecOpsTest.cpp - each QLLM op against a plain-loop reference --===//
//
// One-op modules on random inputs at odd shapes (batch 1 and 3, seq 1, 7,
// 33, features not a multiple of 8), compared to test/Exec/NaiveOps.h.
//
//===----------------------------------------------------------------------===//
#include "ExecTestUtil.h"
#include "NaiveOps.h"

#include <gtest/gtest.h>

using namespace exectest;
using namespace mlir;
using qopt::ReferenceExecutor;
using qopt::Tensor;

namespace {

/// Runs a finished module on its iota ids; fails the test on an error.
Tensor run(OpModule &m, const qopt::ExecutorOptions &opts = {}) {
  std::string err;
  auto exec = ReferenceExecutor::create(*m.module, m.store, &err, opts);
  EXPECT_TRUE(exec) << err;
  Tensor out;
  if (exec) {
    EXPECT_TRUE(exec->forward(m.iotaIds(), &out, &err)) << err;
  }
  return out;
}

struct Shape {
  int64_t batch, seq;
};
const Shape kShapes[] = {{1, 1}, {1, 7}, {3, 7}, {1, 33}, {3, 33}};

std::string label(const Shape &s) {
  return "batch " + std::to_string(s.batch) + " seq " + std::to_string(s.seq);
}

TEST(ExecOps, Embedding) {
  std::mt19937 rng(1);
  for (Shape s : kShapes) {
    MLIRContext ctx;
    qopt::WeightStore store;
    OpModule m(ctx, store, s.batch, s.seq);
    const int64_t V = 50, D = 172;
    Vec table = randomVec(rng, V * D);
    Value t = m.param(table, {V, D});
    m.finish(m.b.create<qopt::qllm::EmbeddingOp>(m.b.getUnknownLoc(), m.act(D), m.ids, t));
    std::string err;
    auto exec = ReferenceExecutor::create(*m.module, store, &err);
    ASSERT_TRUE(exec) << err;
    std::uniform_int_distribution<int32_t> pick(0, V - 1);
    std::vector<std::vector<int32_t>> ids(s.batch);
    std::vector<int64_t> flat;
    for (auto &row : ids)
      for (int64_t i = 0; i < s.seq; ++i) {
        row.push_back(pick(rng));
        flat.push_back(row.back());
      }
    Tensor out;
    ASSERT_TRUE(exec->forward(ids, &out, &err)) << err;
    EXPECT_EQ(out.shape, (std::vector<int64_t>{s.batch, s.seq, D}));
    EXPECT_EQ(out.data, naive::embedding(flat, table, D)) << label(s);
  }
}

TEST(ExecOps, RMSNorm) {
  std::mt19937 rng(2);
  for (Shape s : kShapes) {
    MLIRContext ctx;
    qopt::WeightStore store;
    OpModule m(ctx, store, s.batch, s.seq);
    const int64_t D = 172;
    Vec x = randomVec(rng, s.batch * s.seq * D, 3.0f, 0.5f);
    Vec w = randomVec(rng, D, 0.2f, 1.0f);
    Value in = m.input(x, D);
    Value wv = m.param(w, {D});
    m.finish(m.b.create<qopt::qllm::RMSNormOp>(m.b.getUnknownLoc(), m.act(D), in, wv,
                                               m.b.getF64FloatAttr(1e-5)));
    Tensor out = run(m);
    Vec ref = naive::rmsNorm(x, w, D, 1e-5);
    EXPECT_LT(naive::maxAbsDiff(out.data, ref), 1e-5 * naive::maxAbs(ref)) << label(s);
  }
}

// Linear and lm_head at odd in/out features, with and without bias.
TEST(ExecOps, LinearAndLMHead) {
  std::mt19937 rng(3);
  for (Shape s : kShapes)
    for (int variant = 0; variant < 3; ++variant) {
      MLIRContext ctx;
      qopt::WeightStore store;
      OpModule m(ctx, store, s.batch, s.seq);
      const int64_t K = 172, N = 97;
      Vec x = randomVec(rng, s.batch * s.seq * K);
      Vec w = randomVec(rng, N * K, 0.1f);
      Vec bias = randomVec(rng, N);
      Value in = m.input(x, K);
      Value wv = m.param(w, {N, K});
      Location loc = m.b.getUnknownLoc();
      Value result;
      if (variant == 0)
        result = m.b.create<qopt::qllm::LinearOp>(loc, m.act(N), in, wv, Value());
      else if (variant == 1)
        result = m.b.create<qopt::qllm::LinearOp>(loc, m.act(N), in, wv, m.param(bias, {N}));
      else
        result = m.b.create<qopt::qllm::LMHeadOp>(loc, m.act(N), in, wv);
      m.finish(result);
      Tensor out = run(m);
      EXPECT_EQ(out.shape, (std::vector<int64_t>{s.batch, s.seq, N}));
      Vec ref = naive::linear(x, w, K, N, variant == 1 ? &bias : nullptr);
      EXPECT_LT(naive::maxAbsDiff(out.data, ref), 1e-5 * naive::maxAbs(ref))
          << label(s) << " variant " << variant;
    }
}

// Weights the store holds transposed (ONNX MatMul layout, used in place by
// the GEMM) and in bf16 (converted once).
TEST(ExecOps, LinearStoredTransposedAndBF16) {
  std::mt19937 rng(4);
  const int64_t K = 172, N = 33, B = 3, S = 7;
  Vec x = randomVec(rng, B * S * K);
  Vec w = randomVec(rng, N * K, 0.1f);
  for (bool bf16 : {false, true}) {
    MLIRContext ctx;
    qopt::WeightStore store;
    OpModule m(ctx, store, B, S);
    Value in = m.input(x, K);
    // Stored as [K, N] with transposed = true: logical [N, K].
    auto wt = std::make_shared<std::vector<uint8_t>>();
    Vec wRounded = w;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) {
        float v = w[n * K + k];
        if (bf16) {
          uint16_t h = qrt::f32ToBf16(v);
          wRounded[n * K + k] = qrt::bf16ToF32(h);
          wt->insert(wt->end(), {uint8_t(h & 0xff), uint8_t(h >> 8)});
        } else {
          uint8_t b4[4];
          std::memcpy(b4, &v, 4);
          wt->insert(wt->end(), b4, b4 + 4);
        }
      }
    qopt::WeightEntry e;
    e.name = "wt";
    e.dtype = bf16 ? qopt::DType::BF16 : qopt::DType::F32;
    e.shape = {N, K};
    e.data = wt->data();
    e.nbytes = wt->size();
    e.transposed = true;
    std::string err;
    ASSERT_TRUE(store.addExternal(e, wt, &err)) << err;
    auto type = RankedTensorType::get({N, K}, bf16 ? Type(m.b.getBF16Type())
                                                   : Type(m.b.getF32Type()));
    Value wv = m.b.create<qopt::qllm::ParamOp>(m.b.getUnknownLoc(), type,
                                               m.b.getStringAttr("wt"));
    m.finish(m.b.create<qopt::qllm::LinearOp>(m.b.getUnknownLoc(), m.act(N), in, wv,
                                              Value()));
    Tensor out = run(m);
    Vec ref = naive::linear(x, wRounded, K, N);
    EXPECT_LT(naive::maxAbsDiff(out.data, ref), 1e-5 * naive::maxAbs(ref)) << "bf16 " << bf16;
  }
}

struct RopeCase {
  int64_t heads, headDim, rotaryDim;
  double theta;
  naive::Rope rope;
};

TEST(ExecOps, Rotary) {
  std::mt19937 rng(5);
  naive::Rope def, lin, l3;
  lin.type = "linear";
  lin.factor = 4;
  l3.type = "llama3";
  l3.factor = 8;
  l3.low = 1;
  l3.high = 4;
  l3.originalMax = 8192;
  // With theta 500000 and head_dim 64, llama3's low, medium (smoothed) and
  // high frequency bands are all present.
  const RopeCase cases[] = {{4, 32, 32, 10000, def},     {3, 64, 64, 10000, def},
                            {2, 64, 64, 500000, l3},     {4, 32, 32, 10000, lin},
                            {2, 64, 32, 10000, def},     {2, 64, 48, 500000, l3}};
  std::vector<Shape> shapes(std::begin(kShapes), std::end(kShapes));
  shapes.push_back({1, 300}); // positions where rope's rounding would show
  for (const RopeCase &c : cases)
    for (Shape s : shapes) {
      MLIRContext ctx;
      qopt::WeightStore store;
      OpModule m(ctx, store, s.batch, s.seq);
      const int64_t F = c.heads * c.headDim;
      Vec x = randomVec(rng, s.batch * s.seq * F);
      Value in = m.input(x, F);
      DictionaryAttr scaling;
      if (c.rope.type != "default") {
        SmallVector<NamedAttribute> a;
        a.push_back(m.b.getNamedAttr("rope_type", m.b.getStringAttr(c.rope.type)));
        a.push_back(m.b.getNamedAttr("factor", m.b.getF64FloatAttr(c.rope.factor)));
        if (c.rope.type == "llama3") {
          a.push_back(m.b.getNamedAttr("low_freq_factor", m.b.getF64FloatAttr(c.rope.low)));
          a.push_back(m.b.getNamedAttr("high_freq_factor", m.b.getF64FloatAttr(c.rope.high)));
          a.push_back(m.b.getNamedAttr("original_max_position_embeddings",
                                       m.b.getI64IntegerAttr(int64_t(c.rope.originalMax))));
        }
        scaling = m.b.getDictionaryAttr(a);
      }
      IntegerAttr rd = c.rotaryDim != c.headDim ? m.b.getI64IntegerAttr(c.rotaryDim)
                                                : IntegerAttr();
      m.finish(m.b.create<qopt::qllm::RotaryOp>(
          m.b.getUnknownLoc(), m.act(F), in, m.b.getI64IntegerAttr(c.heads),
          m.b.getI64IntegerAttr(c.headDim), m.b.getF64FloatAttr(c.theta), rd, scaling));
      ASSERT_TRUE(succeeded(m.module->verify()));
      Tensor out = run(m);
      Vec ref = naive::rotary(x, s.batch, s.seq, c.heads, c.headDim, c.rotaryDim, c.theta,
                              c.rope);
      // fp32 angles: error grows with the position.
      double tol = 2e-6 * (s.seq + 4) * naive::maxAbs(x);
      EXPECT_LT(naive::maxAbsDiff(out.data, ref), tol)
          << label(s) << " rope " << c.rope.type << " head_dim " << c.headDim
          << " rotary_dim " << c.rotaryDim;
    }
}

struct AttnCase {
  int64_t heads, kvHeads, headDim;
};

TEST(ExecOps, Attention) {
  std::mt19937 rng(6);
  const AttnCase cases[] = {{8, 4, 32}, {4, 1, 64}, {4, 4, 32}, {6, 2, 64}};
  std::vector<Shape> shapes(std::begin(kShapes), std::end(kShapes));
  shapes.push_back({2, 300}); // several query blocks of the score matrix
  for (const AttnCase &c : cases)
    for (Shape s : shapes)
      for (int threads : {1, 2}) {
        MLIRContext ctx;
        qopt::WeightStore store;
        OpModule m(ctx, store, s.batch, s.seq);
        const int64_t Fq = c.heads * c.headDim, Fkv = c.kvHeads * c.headDim;
        Vec q = randomVec(rng, s.batch * s.seq * Fq, 2.0f);
        Vec k = randomVec(rng, s.batch * s.seq * Fkv, 2.0f);
        Vec v = randomVec(rng, s.batch * s.seq * Fkv);
        Value qv = m.input(q, Fq), kv = m.input(k, Fkv), vv = m.input(v, Fkv);
        double scale = 1.0 / std::sqrt(double(c.headDim));
        m.finish(m.b.create<qopt::qllm::AttentionOp>(
            m.b.getUnknownLoc(), m.act(Fq), qv, kv, vv, m.b.getI64IntegerAttr(c.heads),
            m.b.getI64IntegerAttr(c.kvHeads), m.b.getI64IntegerAttr(c.headDim),
            m.b.getF64FloatAttr(scale)));
        qopt::ExecutorOptions opts;
        opts.threads = threads;
        Tensor out = run(m, opts);
        Vec ref = naive::attention(q, k, v, s.batch, s.seq, c.heads, c.kvHeads, c.headDim,
                                   scale);
        EXPECT_LT(naive::maxAbsDiff(out.data, ref), 2e-5 * naive::maxAbs(v))
            << label(s) << " heads " << c.heads << "/" << c.kvHeads << " d " << c.headDim
            << " threads " << threads;
      }
}

TEST(ExecOps, SwiGLUAndAdd) {
  std::mt19937 rng(7);
  for (Shape s : kShapes)
    for (bool isAdd : {false, true}) {
      MLIRContext ctx;
      qopt::WeightStore store;
      OpModule m(ctx, store, s.batch, s.seq);
      const int64_t N = 172;
      Vec a = randomVec(rng, s.batch * s.seq * N, 4.0f);
      Vec c = randomVec(rng, s.batch * s.seq * N);
      Value av = m.input(a, N), cv = m.input(c, N);
      Location loc = m.b.getUnknownLoc();
      if (isAdd)
        m.finish(m.b.create<qopt::qllm::AddOp>(loc, m.act(N), av, cv));
      else
        m.finish(m.b.create<qopt::qllm::SwiGLUOp>(loc, m.act(N), av, cv));
      Tensor out = run(m);
      Vec ref = isAdd ? naive::add(a, c) : naive::swiglu(a, c);
      EXPECT_LT(naive::maxAbsDiff(out.data, ref), 1e-6 * naive::maxAbs(ref))
          << label(s) << (isAdd ? " add" : " swiglu");
    }
}

} // namespace
