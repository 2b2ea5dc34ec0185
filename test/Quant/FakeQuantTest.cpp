//===- FakeQuantTest.cpp - W8A8 and KV-cache rounding in the executor --===//
//
// The reference executor's activation and KV-cache quantization against
// references written from the formats' definitions: fp8 e4m3fn by
// enumerating its 256 codes, int8 as symmetric round-half-even, whole ops
// through test/Exec/NaiveOps.h on the rounded tensors.
//
//===----------------------------------------------------------------------===//
#include "FakeQuant.h"
#include "ExecTestUtil.h"
#include "NaiveOps.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace exectest;
using namespace mlir;
using qopt::ReferenceExecutor;
using qopt::Tensor;

namespace {

/// Every finite e4m3fn value with its code (sign, 4 exponent, 3 mantissa
/// bits, bias 7; exponent 15 with mantissa 7 is NaN).
std::vector<std::pair<double, int>> e4m3Values() {
  std::vector<std::pair<double, int>> v;
  for (int code = 0; code < 256; ++code) {
    int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
    if (e == 15 && m == 7)
      continue;
    double mag = e == 0 ? m * std::ldexp(1.0, -9) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
    v.push_back({sign ? -mag : mag, code});
  }
  return v;
}

/// Nearest e4m3fn value, ties to the even code, saturating at 448.
double refE4M3(double x) {
  static const auto values = e4m3Values();
  if (x >= 448)
    return 448;
  if (x <= -448)
    return -448;
  double best = 0, bestDist = INFINITY;
  int bestCode = 0;
  for (auto [v, code] : values) {
    double d = std::fabs(v - x);
    if (d < bestDist || (d == bestDist && (code & 1) == 0 && (bestCode & 1) == 1)) {
      best = v;
      bestDist = d;
      bestCode = code;
    }
  }
  return best;
}

double refInt8(double x, double scale) {
  return std::clamp(std::nearbyint(x / scale), -127.0, 127.0) * scale;
}

TEST(FakeQuant, Fp8MatchesEnumeration) {
  std::mt19937 rng(1);
  std::vector<float> xs;
  // Every representable value, every midpoint between neighbours (the
  // ties), values beyond the range, and random ones at many scales.
  auto values = e4m3Values();
  std::vector<double> sorted;
  for (auto [v, c] : values)
    sorted.push_back(v);
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    xs.push_back(float(sorted[i]));
    if (i + 1 < sorted.size())
      xs.push_back(float((sorted[i] + sorted[i + 1]) / 2));
  }
  for (float x : {500.0f, -1000.0f, 448.5f, 464.0f, 1e-6f, -3e-3f, 0.0f})
    xs.push_back(x);
  std::uniform_real_distribution<float> exp(-12, 10);
  for (int i = 0; i < 20000; ++i)
    xs.push_back((rng() & 1 ? 1 : -1) * std::exp2(exp(rng)));
  for (float x : xs)
    ASSERT_EQ(qopt::exec::roundToFp8E4M3(x), float(refE4M3(x))) << "x = " << x;
  EXPECT_TRUE(std::isnan(qopt::exec::roundToFp8E4M3(NAN)));
}

struct Shape {
  int64_t batch, seq;
};

/// One linear with activation quantization, against a naive linear on the
/// input rounded by the reference.
void checkLinear(const std::string &mode, const std::string &type, float staticScale) {
  std::mt19937 rng(7);
  for (Shape s : {Shape{1, 1}, Shape{3, 7}, Shape{2, 33}}) {
    MLIRContext ctx;
    qopt::WeightStore store;
    OpModule m(ctx, store, s.batch, s.seq);
    const int64_t K = 172, N = 45;
    Vec x = randomVec(rng, s.batch * s.seq * K);
    for (int64_t r = 0; r < s.batch * s.seq; ++r)
      x[r * K + 5] *= 20; // an outlier channel, as real activations have
    Vec w = randomVec(rng, N * K, 0.1f);
    Value in = m.input(x, K);
    Value wv = m.param(w, {N, K});
    auto lin = m.b.create<qopt::qllm::LinearOp>(m.b.getUnknownLoc(), m.act(N), in, wv, Value());
    lin.setActQuantAttr(m.b.getStringAttr(mode));
    lin.setActQuantTypeAttr(m.b.getStringAttr(type));
    if (mode == "per_tensor")
      lin.setActScaleAttr(m.b.getF32FloatAttr(staticScale));
    m.finish(lin);
    std::string err;
    auto exec = ReferenceExecutor::create(*m.module, store, &err);
    ASSERT_TRUE(exec) << err;
    Tensor out;
    ASSERT_TRUE(exec->forward(m.iotaIds(), &out, &err)) << err;

    const double qmax = type == "int8" ? 127 : 448;
    Vec xq(x.size());
    for (int64_t r = 0; r < s.batch * s.seq; ++r) {
      double scale = staticScale;
      if (mode == "per_token") {
        double amax = 0;
        for (int64_t j = 0; j < K; ++j)
          amax = std::max(amax, double(std::fabs(x[r * K + j])));
        scale = amax / qmax;
      }
      for (int64_t j = 0; j < K; ++j) {
        double v = x[r * K + j];
        xq[r * K + j] = float(type == "int8" ? refInt8(v, float(scale))
                                             : refE4M3(v / float(scale)) * float(scale));
      }
    }
    Vec ref = naive::linear(xq, w, K, N, nullptr);
    Vec plain = naive::linear(x, w, K, N, nullptr);
    EXPECT_LT(naive::maxAbsDiff(out.data, ref), 1e-5 * naive::maxAbs(ref)) << mode << " " << type;
    // The rounding is really applied: the float product differs.
    EXPECT_GT(naive::maxAbsDiff(out.data, plain), 1e-4 * naive::maxAbs(ref)) << mode << " " << type;
  }
}

TEST(FakeQuant, LinearPerTokenInt8) { checkLinear("per_token", "int8", 0); }
TEST(FakeQuant, LinearPerTokenFp8) { checkLinear("per_token", "fp8_e4m3", 0); }
// A static scale smaller than the range saturates the outlier channel.
TEST(FakeQuant, LinearPerTensorInt8) { checkLinear("per_tensor", "int8", 0.05f); }
TEST(FakeQuant, LinearPerTensorFp8) { checkLinear("per_tensor", "fp8_e4m3", 0.01f); }

TEST(FakeQuant, AttentionKVCache) {
  std::mt19937 rng(11);
  struct Case {
    int64_t heads, kvHeads, headDim;
  };
  for (Case c : {Case{4, 2, 32}, Case{4, 1, 16}, Case{3, 3, 8}})
    for (const char *type : {"int8", "fp8_e4m3"}) {
      Shape s{2, 19};
      MLIRContext ctx;
      qopt::WeightStore store;
      OpModule m(ctx, store, s.batch, s.seq);
      const int64_t Fq = c.heads * c.headDim, Fkv = c.kvHeads * c.headDim;
      Vec q = randomVec(rng, s.batch * s.seq * Fq, 2.0f);
      Vec k = randomVec(rng, s.batch * s.seq * Fkv, 2.0f);
      Vec v = randomVec(rng, s.batch * s.seq * Fkv);
      // Per-head ranges that differ, and scales that clip one head.
      std::vector<float> ks, vs;
      for (int64_t h = 0; h < c.kvHeads; ++h) {
        for (int64_t r = 0; r < s.batch * s.seq; ++r)
          for (int64_t d = 0; d < c.headDim; ++d)
            k[(r * c.kvHeads + h) * c.headDim + d] *= float(h + 1);
        const double qmax = std::string(type) == "int8" ? 127 : 448;
        ks.push_back(float(8.0 * (h + 1) / qmax));
        vs.push_back(float((h == 0 ? 1.5 : 4.0) / qmax));
      }
      Value qv = m.input(q, Fq), kv = m.input(k, Fkv), vv = m.input(v, Fkv);
      double scale = 1.0 / std::sqrt(double(c.headDim));
      auto att = m.b.create<qopt::qllm::AttentionOp>(
          m.b.getUnknownLoc(), m.act(Fq), qv, kv, vv, m.b.getI64IntegerAttr(c.heads),
          m.b.getI64IntegerAttr(c.kvHeads), m.b.getI64IntegerAttr(c.headDim),
          m.b.getF64FloatAttr(scale));
      att.setKvCacheDtypeAttr(m.b.getStringAttr(type));
      att.setKScalesAttr(m.b.getDenseF32ArrayAttr(ks));
      att.setVScalesAttr(m.b.getDenseF32ArrayAttr(vs));
      m.finish(att);
      std::string err;
      auto exec = ReferenceExecutor::create(*m.module, store, &err);
      ASSERT_TRUE(exec) << err;
      Tensor out;
      ASSERT_TRUE(exec->forward(m.iotaIds(), &out, &err)) << err;

      auto round = [&](const Vec &t, const std::vector<float> &sc) {
        Vec r(t.size());
        for (size_t i = 0; i < t.size(); ++i) {
          float h = sc[(i / size_t(c.headDim)) % size_t(c.kvHeads)];
          r[i] = float(std::string(type) == "int8" ? refInt8(t[i], h) : refE4M3(t[i] / h) * h);
        }
        return r;
      };
      Vec ref = naive::attention(q, round(k, ks), round(v, vs), s.batch, s.seq, c.heads, c.kvHeads,
                                 c.headDim, scale);
      Vec plain = naive::attention(q, k, v, s.batch, s.seq, c.heads, c.kvHeads, c.headDim, scale);
      EXPECT_LT(naive::maxAbsDiff(out.data, ref), 2e-5 * naive::maxAbs(v)) << type;
      EXPECT_GT(naive::maxAbsDiff(out.data, plain), 1e-3 * naive::maxAbs(v)) << type;
    }
}

} // namespace
