//===- CpuModelExecutorTest.cpp - the CPU forward pass vs a dense reference ===//
//
// A random small decoder at odd shapes (hidden 48, 3 heads over 1 KV head,
// head_dim 16, intermediate 40, vocab 37) in f32, bf16 and int4/int8 packed
// weights. The oracle is a plain dense fp32 forward written here (full
// causal attention over the whole sequence, no KV cache), so any mistake in
// slot mapping, block tables, chunking or batching changes the logits.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"
#include "qopt-rt/kernels/ThreadPool.h"
#include "qopt-rt/model/CpuModelExecutor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>

using namespace qrt;
using namespace qrt::model;

namespace {

struct Dense {
  std::vector<float> w; // [rows, cols]
  int64_t rows = 0, cols = 0;
};

/// Owns a random model and the views the executor reads.
struct TestModel {
  ModelDims d;
  std::vector<std::unique_ptr<Dense>> dense;          // fp32 truth of every tensor
  std::vector<std::vector<uint16_t>> bf16;            // bf16 copies
  std::vector<std::unique_ptr<kernels::PackedMatrix>> packed;
  ModelWeights weights;
  // Oracle tensors (pointers into `dense`).
  const Dense *emb, *finalNorm, *lmHead;
  struct L { const Dense *in, *post, *q, *k, *v, *o, *gate, *up, *down; };
  std::vector<L> layers;
};

enum class Fmt { F32, BF16, I4, I8 };

const Dense *makeTensor(TestModel &m, std::mt19937 &rng, int64_t rows, int64_t cols,
                        Fmt fmt, bool isNorm, TensorView *view) {
  auto t = std::make_unique<Dense>();
  t->rows = rows;
  t->cols = cols;
  t->w.resize(size_t(rows * cols));
  std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(float(cols)));
  view->rows = rows;
  view->cols = cols;
  if (isNorm) {
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    for (float &x : t->w)
      x = u(rng);
    fmt = Fmt::F32;
  }
  if (fmt == Fmt::I4 || fmt == Fmt::I8) {
    // Random codes/scales/zeros; the truth is the exact dequantization.
    int bits = fmt == Fmt::I4 ? 4 : 8;
    int64_t gs = fmt == Fmt::I4 ? 32 : 0;
    int64_t groups = gs ? (cols + gs - 1) / gs : 1;
    std::vector<uint8_t> codes(size_t(rows * cols));
    std::vector<float> scales(size_t(rows * groups)), zeros(size_t(rows * groups));
    std::uniform_int_distribution<int> cd(0, (1 << bits) - 1);
    for (auto &c : codes)
      c = uint8_t(cd(rng));
    for (size_t i = 0; i < scales.size(); ++i) {
      scales[i] = f16ToF32(f32ToF16(std::uniform_real_distribution<float>(0.5f, 1.5f)(rng) /
                                    float((1 << bits) * std::sqrt(float(cols)))));
      zeros[i] = float(cd(rng));
    }
    kernels::RefQuantMatrix ref;
    ref.rows = rows;
    ref.cols = cols;
    ref.bits = bits;
    ref.groupSize = gs;
    ref.codes = codes.data();
    ref.scales = scales.data();
    ref.zeros = zeros.data();
    kernels::PackedFormat f;
    f.bits = bits;
    f.groupSize = int(gs);
    auto pm = std::make_unique<kernels::PackedMatrix>();
    std::string err;
    EXPECT_TRUE(pm->pack(ref, f, &err)) << err;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        int64_t g = gs ? c / gs : 0;
        t->w[r * cols + c] = (float(codes[r * cols + c]) - zeros[r * groups + g]) * scales[r * groups + g];
      }
    view->format = WeightFormat::Packed;
    view->packed = pm->view();
    m.packed.push_back(std::move(pm));
  } else {
    for (float &x : t->w)
      x = nd(rng);
    if (fmt == Fmt::BF16) {
      std::vector<uint16_t> b(t->w.size());
      for (size_t i = 0; i < b.size(); ++i) {
        b[i] = f32ToBf16(t->w[i]);
        t->w[i] = bf16ToF32(b[i]);
      }
      m.bf16.push_back(std::move(b));
      view->format = WeightFormat::BF16;
      view->data = m.bf16.back().data();
    } else {
      view->format = WeightFormat::F32;
      view->data = t->w.data();
    }
  }
  m.dense.push_back(std::move(t));
  return m.dense.back().get();
}

std::unique_ptr<TestModel> makeModel(Fmt fmt, uint32_t seed) {
  auto m = std::make_unique<TestModel>();
  m->bf16.reserve(64);
  std::mt19937 rng(seed);
  ModelDims &d = m->d;
  d.hidden = 48;
  d.layers = 2;
  d.heads = 3;
  d.kvHeads = 1;
  d.headDim = 16;
  d.intermediate = 40;
  d.vocab = 37;
  d.rmsEps = 1e-5;
  d.ropeTheta = 10000.0;
  ModelWeights &w = m->weights;
  w.dims = d;
  const int64_t H = d.hidden, Q = d.heads * d.headDim, KV = d.kvHeads * d.headDim,
                I = d.intermediate;
  Fmt embFmt = fmt == Fmt::BF16 ? Fmt::BF16 : Fmt::F32;
  m->emb = makeTensor(*m, rng, d.vocab, H, embFmt, false, &w.embedding);
  // Embedding rows scaled up so activations are O(1).
  for (int l = 0; l < d.layers; ++l) {
    LayerWeights L;
    TestModel::L o;
    o.in = makeTensor(*m, rng, 1, H, Fmt::F32, true, &L.inputNorm);
    o.post = makeTensor(*m, rng, 1, H, Fmt::F32, true, &L.postAttentionNorm);
    o.q = makeTensor(*m, rng, Q, H, fmt, false, &L.q);
    o.k = makeTensor(*m, rng, KV, H, fmt, false, &L.k);
    o.v = makeTensor(*m, rng, KV, H, fmt, false, &L.v);
    o.o = makeTensor(*m, rng, H, Q, fmt, false, &L.o);
    o.gate = makeTensor(*m, rng, I, H, fmt, false, &L.gate);
    o.up = makeTensor(*m, rng, I, H, fmt, false, &L.up);
    o.down = makeTensor(*m, rng, H, I, fmt, false, &L.down);
    w.layers.push_back(L);
    m->layers.push_back(o);
  }
  m->finalNorm = makeTensor(*m, rng, 1, H, Fmt::F32, true, &w.finalNorm);
  m->lmHead = makeTensor(*m, rng, d.vocab, H, fmt, false, &w.lmHead);
  return m;
}

// --- the oracle: dense fp32 forward over a whole sequence -------------------

std::vector<float> matmulT(const std::vector<float> &x, int64_t m, const Dense &w) {
  std::vector<float> y(size_t(m * w.rows));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < w.rows; ++r) {
      double s = 0;
      for (int64_t c = 0; c < w.cols; ++c)
        s += double(x[i * w.cols + c]) * double(w.w[r * w.cols + c]);
      y[i * w.rows + r] = float(s);
    }
  return y;
}

std::vector<float> norm(const std::vector<float> &x, int64_t m, const Dense &w, double eps) {
  std::vector<float> y(x.size());
  int64_t n = w.cols;
  for (int64_t i = 0; i < m; ++i) {
    double ss = 0;
    for (int64_t c = 0; c < n; ++c)
      ss += double(x[i * n + c]) * x[i * n + c];
    double inv = 1.0 / std::sqrt(ss / double(n) + eps);
    for (int64_t c = 0; c < n; ++c)
      y[i * n + c] = float(x[i * n + c] * inv * w.w[c]);
  }
  return y;
}

/// Logits [T, vocab] of every position of `ids`.
std::vector<float> oracle(const TestModel &m, const std::vector<int32_t> &ids) {
  const ModelDims &d = m.d;
  const int64_t T = int64_t(ids.size()), H = d.hidden, hd = d.headDim, nH = d.heads,
                nKV = d.kvHeads, half = hd / 2;
  std::vector<float> x(size_t(T * H));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < H; ++c)
      x[t * H + c] = m.emb->w[ids[t] * H + c];
  auto rope = [&](std::vector<float> &v, int64_t heads) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < half; ++i) {
          double f = std::pow(d.ropeTheta, -double(2 * i) / double(hd));
          double a = double(t) * f;
          float *p = &v[(t * heads + h) * hd];
          float x0 = p[i], x1 = p[i + half];
          p[i] = float(x0 * std::cos(a) - x1 * std::sin(a));
          p[i + half] = float(x1 * std::cos(a) + x0 * std::sin(a));
        }
  };
  for (const auto &L : m.layers) {
    auto h = norm(x, T, *L.in, d.rmsEps);
    auto q = matmulT(h, T, *L.q), k = matmulT(h, T, *L.k), v = matmulT(h, T, *L.v);
    rope(q, nH);
    rope(k, nKV);
    std::vector<float> att(size_t(T * nH * hd));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t hh = 0; hh < nH; ++hh) {
        int64_t g = hh / (nH / nKV);
        std::vector<double> s(size_t(t + 1));
        double mx = -1e300, sum = 0;
        for (int64_t p = 0; p <= t; ++p) {
          double dd = 0;
          for (int64_t i = 0; i < hd; ++i)
            dd += double(q[(t * nH + hh) * hd + i]) * k[(p * nKV + g) * hd + i];
          s[p] = dd / std::sqrt(double(hd));
          mx = std::max(mx, s[p]);
        }
        for (auto &e : s)
          sum += (e = std::exp(e - mx));
        for (int64_t i = 0; i < hd; ++i) {
          double a = 0;
          for (int64_t p = 0; p <= t; ++p)
            a += s[p] / sum * v[(p * nKV + g) * hd + i];
          att[(t * nH + hh) * hd + i] = float(a);
        }
      }
    auto o = matmulT(att, T, *L.o);
    for (size_t i = 0; i < x.size(); ++i)
      x[i] += o[i];
    h = norm(x, T, *L.post, d.rmsEps);
    auto g = matmulT(h, T, *L.gate), u = matmulT(h, T, *L.up);
    for (size_t i = 0; i < g.size(); ++i)
      g[i] = float(g[i] / (1.0 + std::exp(-double(g[i]))) * u[i]);
    auto dn = matmulT(g, T, *L.down);
    for (size_t i = 0; i < x.size(); ++i)
      x[i] += dn[i];
  }
  auto h = norm(x, T, *m.finalNorm, d.rmsEps);
  return matmulT(h, T, *m.lmHead);
}

std::unique_ptr<serving::KVCache> makeKV(const ModelDims &d, serving::KVDType t, int32_t bs,
                                         int32_t blocks, float kvScale = 0.0f) {
  serving::KVCacheSpec s;
  s.numLayers = d.layers;
  s.numKVHeads = d.kvHeads;
  s.headDim = d.headDim;
  s.blockSize = bs;
  s.dtype = t;
  std::string err;
  auto kv = serving::KVCache::create(s, serving::KVCache::bytesPerBlock(s) * blocks, &err);
  EXPECT_TRUE(kv) << err;
  if (kv && kvScale > 0) {
    std::vector<float> sc(size_t(d.kvHeads), kvScale);
    for (int32_t l = 0; l < d.layers; ++l)
      EXPECT_TRUE(kv->setScales(l, sc.data(), sc.data(), &err)) << err;
  }
  return kv;
}

/// Max |a - b| / (1 + max |b|) over a row.
double relErr(const float *a, const float *b, int64_t n) {
  double mx = 0, e = 0;
  for (int64_t i = 0; i < n; ++i)
    mx = std::max(mx, std::fabs(double(b[i])));
  for (int64_t i = 0; i < n; ++i)
    e = std::max(e, std::fabs(double(a[i]) - b[i]));
  return e / (1.0 + mx);
}

std::vector<int32_t> randomIds(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(n);
  for (auto &x : v)
    x = int32_t(rng() % uint32_t(vocab));
  return v;
}

/// A step over several sequences: seq i computes positions [from[i], to[i])
/// of ids[i], with block table tables[i].
serving::StepBatch makeStep(const std::vector<std::vector<int32_t>> &ids,
                            const std::vector<int> &from, const std::vector<int> &to,
                            const std::vector<std::vector<int32_t>> &tables, int32_t bs) {
  serving::StepBatch b;
  b.blockSize = bs;
  b.queryStart.push_back(0);
  b.blockTableStart.push_back(0);
  for (size_t s = 0; s < ids.size(); ++s) {
    for (int p = from[s]; p < to[s]; ++p) {
      b.tokenIds.push_back(ids[s][p]);
      b.positions.push_back(p);
      b.slotMapping.push_back(int64_t(tables[s][p / bs]) * bs + p % bs);
    }
    b.seqIds.push_back(int64_t(s));
    b.queryStart.push_back(b.numTokens());
    b.contextLens.push_back(to[s]);
    int nb = (to[s] + bs - 1) / bs;
    b.blockTable.insert(b.blockTable.end(), tables[s].begin(), tables[s].begin() + nb);
    b.blockTableStart.push_back(int32_t(b.blockTable.size()));
    b.sampleIndices.push_back(int32_t(s));
  }
  return b;
}

struct Case {
  Fmt fmt;
  serving::KVDType kv;
  double tol;
  float kvScale = 0.0f; ///< static KV scale for int8/fp8 pools
};

class ExecutorVsOracle : public ::testing::TestWithParam<Case> {};

TEST_P(ExecutorVsOracle, WholePromptAllLogits) {
  Case c = GetParam();
  auto m = makeModel(c.fmt, 11);
  auto kv = makeKV(m->d, c.kv, 4, 8, c.kvScale);
  kernels::ThreadPool pool(2);
  ExecutorOptions o;
  o.pool = &pool;
  std::string err;
  auto ex = CpuModelExecutor::create(m->weights, *kv, o, &err);
  ASSERT_TRUE(ex) << err;
  auto ids = randomIds(13, m->d.vocab, 5);
  auto ref = oracle(*m, ids);
  // Blocks deliberately out of order.
  auto b = makeStep({ids}, {0}, {13}, {{5, 2, 7, 0}}, 4);
  std::vector<float> logits(13 * m->d.vocab);
  ASSERT_TRUE(ex->executeAllLogits(b, logits.data(), &err)) << err;
  for (int t = 0; t < 13; ++t)
    EXPECT_LT(relErr(&logits[t * m->d.vocab], &ref[t * m->d.vocab], m->d.vocab), c.tol)
        << "position " << t;
}

TEST_P(ExecutorVsOracle, ChunkedAndBatchedSequences) {
  Case c = GetParam();
  auto m = makeModel(c.fmt, 23);
  auto kv = makeKV(m->d, c.kv, 3, 16, c.kvScale);
  kernels::ThreadPool pool(2);
  ExecutorOptions o;
  o.pool = &pool;
  std::string err;
  auto ex = CpuModelExecutor::create(m->weights, *kv, o, &err);
  ASSERT_TRUE(ex) << err;
  auto a = randomIds(10, m->d.vocab, 1), bIds = randomIds(7, m->d.vocab, 2);
  auto ra = oracle(*m, a), rb = oracle(*m, bIds);
  std::vector<std::vector<int32_t>> tables = {{9, 1, 14, 3}, {0, 12, 6}};
  const int V = m->d.vocab;
  // Steps: a[0,4) alone; a[4,5) + b[0,6); a[5,10) + b[6,7).
  std::vector<float> logits(2 * V);
  auto s1 = makeStep({a}, {0}, {4}, {tables[0]}, 3);
  ASSERT_TRUE(ex->execute(s1, logits.data(), &err)) << err;
  EXPECT_LT(relErr(&logits[0], &ra[3 * V], V), c.tol);
  auto s2 = makeStep({a, bIds}, {4, 0}, {5, 6}, tables, 3);
  ASSERT_TRUE(ex->execute(s2, logits.data(), &err)) << err;
  EXPECT_LT(relErr(&logits[0], &ra[4 * V], V), c.tol);
  EXPECT_LT(relErr(&logits[V], &rb[5 * V], V), c.tol);
  auto s3 = makeStep({a, bIds}, {5, 6}, {10, 7}, tables, 3);
  ASSERT_TRUE(ex->execute(s3, logits.data(), &err)) << err;
  EXPECT_LT(relErr(&logits[0], &ra[9 * V], V), c.tol);
  EXPECT_LT(relErr(&logits[V], &rb[6 * V], V), c.tol);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ExecutorVsOracle,
    ::testing::Values(Case{Fmt::F32, serving::KVDType::F16, 3e-3},
                      Case{Fmt::BF16, serving::KVDType::BF16, 2e-2},
                      Case{Fmt::I4, serving::KVDType::F16, 3e-3},
                      Case{Fmt::I8, serving::KVDType::F16, 3e-3},
                      // Quantized KV: int8 steps of 1/64, fp8's 3-bit mantissa.
                      Case{Fmt::F32, serving::KVDType::I8, 3e-2, 1.0f / 64},
                      Case{Fmt::F32, serving::KVDType::FP8E4M3, 6e-2, 1.0f / 16}));

TEST(CpuModelExecutor, RefusesBadBatchAndMismatchedPool) {
  auto m = makeModel(Fmt::F32, 3);
  std::string err;
  ModelDims other = m->d;
  other.kvHeads = 3;
  auto wrongKV = makeKV(other, serving::KVDType::BF16, 4, 4);
  EXPECT_FALSE(CpuModelExecutor::create(m->weights, *wrongKV, {}, &err));
  EXPECT_NE(err.find("KV pool"), std::string::npos) << err;
  auto kv = makeKV(m->d, serving::KVDType::BF16, 4, 4);
  auto ex = CpuModelExecutor::create(m->weights, *kv, {}, &err);
  ASSERT_TRUE(ex) << err;
  std::vector<float> logits(m->d.vocab);
  auto b = makeStep({{1, 2, 40}}, {0}, {3}, {{0}}, 4);
  EXPECT_FALSE(ex->execute(b, logits.data(), &err));
  EXPECT_NE(err.find("vocabulary"), std::string::npos) << err;
  auto b2 = makeStep({{1, 2, 3}}, {0}, {3}, {{4}}, 4);
  EXPECT_FALSE(ex->execute(b2, logits.data(), &err));
  EXPECT_NE(err.find("outside the pool"), std::string::npos) << err;
}

} // namespace
