//===- PagedAttentionTest.cpp - paged attention vs a double-precision oracle ===//
//
// Random K/V stored in every pool dtype in scattered blocks, decode tokens
// at context lengths around the block size (1, 15, 16, 17) and long ones
// (300, 1000), and chunked prefill (several new tokens of one sequence
// attending causally). The oracle decodes each stored element on its own
// (half.h, the e4m3 formula) and runs a two-pass softmax in double, token
// by token, head by head; every vector path this CPU has is checked.
//
//===----------------------------------------------------------------------===//
#include "model/PagedAttention.h"

#include "qopt-rt/half.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

using namespace qrt;
using namespace qrt::model;
using serving::KVDType;

namespace {

constexpr int64_t kBlock = 16;

double fp8Value(uint8_t c) {
  const int m = c & 7, e = (c >> 3) & 15;
  if ((c & 0x7f) == 0x7f) // NaN code: the executor reads it as the max (448)
    return (c & 0x80) ? -448.0 : 448.0;
  double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return (c & 0x80) ? -v : v;
}

/// One pool layer's K and V in `dtype`, with the doubles the stored
/// elements stand for (scale applied).
struct Pool {
  KVDType dtype;
  int64_t kvHeads, headDim, numBlocks;
  std::vector<uint8_t> k, v; // raw elements
  std::vector<double> kTrue, vTrue;
  std::vector<float> kScale, vScale;

  Pool(KVDType t, int64_t nKV, int64_t hd, int64_t blocks, std::mt19937 &rng)
      : dtype(t), kvHeads(nKV), headDim(hd), numBlocks(blocks) {
    const int64_t n = blocks * kBlock * nKV * hd;
    const size_t bytes = serving::kvElementBytes(t);
    k.resize(size_t(n) * bytes);
    v.resize(size_t(n) * bytes);
    kTrue.resize(size_t(n));
    vTrue.resize(size_t(n));
    std::uniform_real_distribution<float> sc(0.01f, 0.05f);
    for (int64_t h = 0; h < nKV; ++h) {
      kScale.push_back(sc(rng));
      vScale.push_back(sc(rng));
    }
    fill(k.data(), kTrue.data(), n, kScale, rng);
    fill(v.data(), vTrue.data(), n, vScale, rng);
  }

  void fill(uint8_t *raw, double *truth, int64_t n, const std::vector<float> &scales,
            std::mt19937 &rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<int> pct(0, 99);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t head = (i / headDim) % kvHeads;
      const double s = scales[head];
      float x = nd(rng);
      if (pct(rng) < 3)
        x *= 1e-6f; // f16 subnormals
      switch (dtype) {
      case KVDType::BF16: {
        uint16_t b = f32ToBf16(x);
        std::memcpy(raw + 2 * i, &b, 2);
        truth[i] = bf16ToF32(b);
        break;
      }
      case KVDType::F16: {
        uint16_t b = f32ToF16(x);
        std::memcpy(raw + 2 * i, &b, 2);
        truth[i] = f16ToF32(b);
        break;
      }
      case KVDType::I8: {
        int8_t q = int8_t(std::uniform_int_distribution<int>(-127, 127)(rng));
        raw[i] = uint8_t(q);
        truth[i] = double(q) * s;
        break;
      }
      case KVDType::FP8E4M3: {
        // Mostly small codes (|x| <= ~4) so the scores stay in a sane range,
        // and now and then the NaN code.
        uint8_t c = uint8_t(byte(rng) & 0xbf);
        if (pct(rng) == 0)
          c |= 0x7f;
        raw[i] = c;
        truth[i] = fp8Value(c) * s;
        break;
      }
      }
    }
  }

  serving::KVLayerView view() {
    serving::KVLayerView w;
    w.k = k.data();
    w.v = v.data();
    w.tokenStride = kvHeads * headDim;
    w.blockStride = kBlock * w.tokenStride;
    w.headStride = headDim;
    if (serving::kvIsQuantized(dtype)) {
      w.kScale = kScale.data();
      w.vScale = vScale.data();
    }
    return w;
  }
};

/// A step: sequences with their block tables and the new tokens of each.
struct Step {
  std::vector<int32_t> positions, seqOf, blockTable, blockTableStart;
};

/// Sequence s of `ctxEnd[s]` tokens whose last `newTokens[s]` are new; block
/// ids are a random permutation of the pool, so tables are scattered.
Step makeStep(const std::vector<int64_t> &ctxEnd, const std::vector<int64_t> &newTokens,
              int64_t numBlocks, std::mt19937 &rng) {
  Step st;
  std::vector<int32_t> ids(static_cast<size_t>(numBlocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  size_t next = 0;
  for (size_t s = 0; s < ctxEnd.size(); ++s) {
    st.blockTableStart.push_back(int32_t(st.blockTable.size()));
    for (int64_t b = 0; b < (ctxEnd[s] + kBlock - 1) / kBlock; ++b)
      st.blockTable.push_back(ids.at(next++));
    for (int64_t p = ctxEnd[s] - newTokens[s]; p < ctxEnd[s]; ++p) {
      st.positions.push_back(int32_t(p));
      st.seqOf.push_back(int32_t(s));
    }
  }
  return st;
}

void checkAgainstReference(KVDType dtype, int64_t heads, int64_t kvHeads, int64_t hd,
                           const std::vector<int64_t> &ctxEnd,
                           const std::vector<int64_t> &newTokens, uint32_t seed) {
  std::mt19937 rng(seed);
  int64_t blocksNeeded = 0;
  for (int64_t c : ctxEnd)
    blocksNeeded += (c + kBlock - 1) / kBlock;
  Pool pool(dtype, kvHeads, hd, blocksNeeded + 3, rng);
  Step st = makeStep(ctxEnd, newTokens, pool.numBlocks, rng);
  const int64_t T = int64_t(st.positions.size());
  const int64_t qStride = heads * hd + 5; // rows wider than the heads, as in the executor
  std::vector<float> q(size_t(T * qStride));
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (float &x : q)
    x = nd(rng);
  std::vector<float> fp8Table;
  for (int c = 0; c < 127; ++c)
    fp8Table.push_back(float(fp8Value(uint8_t(c))));
  const double scale = 1.0 / std::sqrt(double(hd));

  // Oracle: two-pass softmax in double per (token, head).
  const int64_t group = heads / kvHeads;
  std::vector<double> ref(size_t(T * heads * hd), 0.0);
  // fp32 noise the kernel may add to an output of (token, head): a score's
  // rounding error is a few ulps of sum |q k| (measured: under 4), and it
  // moves the softmax weights by that much, relatively; plus relative 1e-5
  // of the output's own scale (RMS of V).
  std::vector<double> noise(size_t(T * heads), 0.0);
  double vMax = 0, vSq = 0;
  for (double x : pool.vTrue) {
    vMax = std::max(vMax, std::fabs(x));
    vSq += x * x;
  }
  const double vRms = std::sqrt(vSq / double(pool.vTrue.size()));
  const serving::KVLayerView kv = pool.view();
  for (int64_t t = 0; t < T; ++t) {
    const int32_t *table = st.blockTable.data() + st.blockTableStart[st.seqOf[t]];
    const int64_t n = st.positions[t] + 1;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / group;
      std::vector<double> s(static_cast<size_t>(n));
      auto at = [&](int64_t p) {
        return table[p / kBlock] * kv.blockStride + (p % kBlock) * kv.tokenStride +
               g * kv.headStride;
      };
      double absDot = 0;
      for (int64_t p = 0; p < n; ++p) {
        double d = 0, a = 0;
        for (int64_t i = 0; i < hd; ++i) {
          d += double(q[t * qStride + h * hd + i]) * pool.kTrue[at(p) + i];
          a += std::fabs(double(q[t * qStride + h * hd + i]) * pool.kTrue[at(p) + i]);
        }
        s[p] = d * scale;
        absDot = std::max(absDot, a * scale);
      }
      noise[t * heads + h] =
          1e-5 * vRms + std::ldexp(absDot, -22) * vMax;
      const double mx = *std::max_element(s.begin(), s.end());
      double sum = 0;
      for (double &x : s)
        sum += (x = std::exp(x - mx));
      for (int64_t p = 0; p < n; ++p)
        for (int64_t i = 0; i < hd; ++i)
          ref[(t * heads + h) * hd + i] += s[p] / sum * pool.vTrue[at(p) + i];
    }
  }

  kernels::ThreadPool threads(2);
  for (kernels::Isa isa : {kernels::Isa::Scalar, kernels::Isa::Avx2, kernels::Isa::Avx512}) {
    if (!kernels::isaSupported(isa))
      continue;
    for (int64_t minItems : {int64_t(1), int64_t(1) << 30}) { // threaded, inline
      const int64_t outStride = heads * hd + 3;
      std::vector<float> out(size_t(T * outStride), std::nanf(""));
      PagedAttentionArgs a;
      a.kv = kv;
      a.dtype = dtype;
      a.fp8Table = fp8Table.data();
      a.numTokens = T;
      a.heads = heads;
      a.kvHeads = kvHeads;
      a.headDim = hd;
      a.blockSize = kBlock;
      a.scale = float(scale);
      a.q = q.data();
      a.qStride = qStride;
      a.positions = st.positions.data();
      a.seqOf = st.seqOf.data();
      a.blockTable = st.blockTable.data();
      a.blockTableStart = st.blockTableStart.data();
      a.out = out.data();
      a.outStride = outStride;
      a.isa = isa;
      pagedAttention(a, threads, minItems);
      int bad = 0;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t i = 0; i < hd; ++i) {
            const double r = ref[(t * heads + h) * hd + i];
            const double got = out[t * outStride + h * hd + i];
            const double tol = 1e-5 * std::fabs(r) + noise[t * heads + h];
            if (!(std::fabs(got - r) <= tol) && bad++ < 5)
              ADD_FAILURE() << serving::kvDTypeName(dtype) << " isa " << kernels::isaName(isa)
                            << " token " << t << " (pos " << st.positions[t] << ") head " << h
                            << " [" << i << "]: " << got << " vs " << r;
          }
    }
  }
}

const KVDType kAllTypes[] = {KVDType::BF16, KVDType::F16, KVDType::I8, KVDType::FP8E4M3};

TEST(PagedAttention, DecodeAtBlockEdgesAndLongContexts) {
  // One new token per sequence; several sequences with their own tables.
  const std::vector<int64_t> ctx = {1, 15, 16, 17, 300, 1000};
  const std::vector<int64_t> one(ctx.size(), 1);
  uint32_t seed = 1;
  for (KVDType t : kAllTypes)
    for (int64_t hd : {64, 128}) {
      checkAgainstReference(t, 8, 2, hd, ctx, one, seed++); // GQA
      checkAgainstReference(t, 4, 1, hd, ctx, one, seed++); // MQA
    }
}

TEST(PagedAttention, ChunkedPrefillIsCausal) {
  // A chunk of 37 new tokens after 280 cached ones, beside a fresh 20-token
  // prompt and a decode token: each new token sees only positions <= its own.
  for (KVDType t : kAllTypes)
    for (int64_t hd : {64, 128}) {
      checkAgainstReference(t, 8, 2, hd, {317, 20, 33}, {37, 20, 1}, 100 + uint32_t(hd));
      checkAgainstReference(t, 4, 1, hd, {317, 20, 33}, {37, 20, 1}, 200 + uint32_t(hd));
    }
}

TEST(PagedAttention, OddHeadDimAndPlainMultiHead) {
  // head_dim 40 (not a multiple of the vector width), one query head per KV head.
  for (KVDType t : kAllTypes)
    checkAgainstReference(t, 3, 3, 40, {17, 50}, {3, 50}, 7);
}

} // namespace
