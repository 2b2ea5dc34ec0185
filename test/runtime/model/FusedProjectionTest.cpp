//===- FusedProjectionTest.cpp - fused qkv / gate_up vs separate GEMMs -----===//
//
// The same random decoder built twice in memory: once with separate
// q/k/v and gate/up weights, once with them fused the way the artifact
// writer fuses them (rows q, k, v and gate, up in one matrix; one bias
// vector with zeros where a part has none). The executor must give the
// same logits either way, at shapes where Q + 2 KV is not a multiple of
// the 16-row tile and K not a multiple of the group, for packed int4 /
// int8, f32 and bf16 weights, both activation modes, a prompt and decode
// steps, and a layer that fuses only one of the two groups.
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

enum class Fmt { F32, BF16, I4, I8 };

/// A projection's random contents, from which separate and fused views are
/// made: quantized (codes / scales / zeros) or float rows.
struct Proj {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;
  std::vector<float> scales, zeros, f32;
  std::vector<uint16_t> bf16;
};

/// Owns every buffer the views point into.
struct Store {
  std::vector<std::unique_ptr<kernels::PackedMatrix>> packed;
  std::vector<std::unique_ptr<std::vector<float>>> floats;
  std::vector<std::unique_ptr<std::vector<uint16_t>>> halves;
};

int bitsOf(Fmt f) { return f == Fmt::I4 ? 4 : 8; }
int groupOf(Fmt f) { return f == Fmt::I4 ? 32 : 0; } // int8: per channel

Proj randomProj(std::mt19937 &rng, int64_t rows, int64_t cols, Fmt fmt) {
  Proj p;
  p.rows = rows;
  p.cols = cols;
  if (fmt == Fmt::I4 || fmt == Fmt::I8) {
    const int bits = bitsOf(fmt);
    const int64_t gs = groupOf(fmt) ? groupOf(fmt) : cols, groups = (cols + gs - 1) / gs;
    std::uniform_int_distribution<int> cd(0, (1 << bits) - 1);
    p.codes.resize(size_t(rows * cols));
    for (auto &c : p.codes)
      c = uint8_t(cd(rng));
    p.scales.resize(size_t(rows * groups));
    p.zeros.resize(size_t(rows * groups));
    for (size_t i = 0; i < p.scales.size(); ++i) {
      p.scales[i] = f16ToF32(f32ToF16(std::uniform_real_distribution<float>(0.5f, 1.5f)(rng) /
                                      float((1 << bits) * std::sqrt(float(cols)))));
      p.zeros[i] = float(cd(rng));
    }
  } else {
    std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(float(cols)));
    p.f32.resize(size_t(rows * cols));
    for (float &x : p.f32)
      x = nd(rng);
    if (fmt == Fmt::BF16) {
      p.bf16.resize(p.f32.size());
      for (size_t i = 0; i < p.f32.size(); ++i)
        p.bf16[i] = f32ToBf16(p.f32[i]);
    }
  }
  return p;
}

/// Rows of the parts one after the other (what the writer's fusion does).
Proj concatRows(const std::vector<const Proj *> &parts) {
  Proj out = *parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    const Proj &p = *parts[i];
    out.rows += p.rows;
    out.codes.insert(out.codes.end(), p.codes.begin(), p.codes.end());
    out.scales.insert(out.scales.end(), p.scales.begin(), p.scales.end());
    out.zeros.insert(out.zeros.end(), p.zeros.begin(), p.zeros.end());
    out.f32.insert(out.f32.end(), p.f32.begin(), p.f32.end());
    out.bf16.insert(out.bf16.end(), p.bf16.begin(), p.bf16.end());
  }
  return out;
}

TensorView viewOf(const Proj &p, Fmt fmt, Store &s) {
  TensorView v;
  v.rows = p.rows;
  v.cols = p.cols;
  if (fmt == Fmt::I4 || fmt == Fmt::I8) {
    kernels::RefQuantMatrix ref;
    ref.rows = p.rows;
    ref.cols = p.cols;
    ref.bits = bitsOf(fmt);
    ref.groupSize = groupOf(fmt);
    ref.codes = p.codes.data();
    ref.scales = p.scales.data();
    ref.zeros = p.zeros.data();
    kernels::PackedFormat f;
    f.bits = bitsOf(fmt);
    f.groupSize = groupOf(fmt);
    auto pm = std::make_unique<kernels::PackedMatrix>();
    std::string err;
    EXPECT_TRUE(pm->pack(ref, f, &err)) << err;
    v.format = WeightFormat::Packed;
    v.packed = pm->view();
    s.packed.push_back(std::move(pm));
  } else if (fmt == Fmt::BF16) {
    s.halves.push_back(std::make_unique<std::vector<uint16_t>>(p.bf16));
    v.format = WeightFormat::BF16;
    v.data = s.halves.back()->data();
  } else {
    s.floats.push_back(std::make_unique<std::vector<float>>(p.f32));
    v.format = WeightFormat::F32;
    v.data = s.floats.back()->data();
  }
  return v;
}

const float *floats(Store &s, std::vector<float> v) {
  s.floats.push_back(std::make_unique<std::vector<float>>(std::move(v)));
  return s.floats.back()->data();
}

/// The model twice: `separate` and `fused` weights over the same numbers.
struct Pair {
  Store store;
  ModelWeights separate, fused;
};

std::unique_ptr<Pair> makePair(Fmt fmt, bool fuseQkv, bool fuseGateUp, uint32_t seed) {
  auto m = std::make_unique<Pair>();
  std::mt19937 rng(seed);
  ModelDims d;
  // Q + 2 KV = 50 (not a multiple of 16), hidden 72 and intermediate 44
  // (not multiples of the int4 group, 32).
  d.hidden = 72;
  d.layers = 2;
  d.heads = 3;
  d.kvHeads = 1;
  d.headDim = 10;
  d.intermediate = 44;
  d.vocab = 29;
  const int64_t H = d.hidden, Q = d.heads * d.headDim, KV = d.kvHeads * d.headDim,
                I = d.intermediate;
  Store &s = m->store;
  auto normView = [&]() {
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    std::vector<float> w(static_cast<size_t>(H));
    for (float &x : w)
      x = u(rng);
    TensorView v;
    v.rows = 1;
    v.cols = H;
    v.data = floats(s, std::move(w));
    return v;
  };
  for (ModelWeights *w : {&m->separate, &m->fused})
    w->dims = d;
  Proj emb = randomProj(rng, d.vocab, H, Fmt::F32);
  for (float &x : emb.f32)
    x *= 8.0f; // activations of O(1)
  m->separate.embedding = m->fused.embedding = viewOf(emb, Fmt::F32, s);
  for (int l = 0; l < d.layers; ++l) {
    LayerWeights a;
    a.inputNorm = normView();
    a.postAttentionNorm = normView();
    Proj q = randomProj(rng, Q, H, fmt), k = randomProj(rng, KV, H, fmt),
         v = randomProj(rng, KV, H, fmt), o = randomProj(rng, H, Q, fmt),
         gate = randomProj(rng, I, H, fmt), up = randomProj(rng, I, H, fmt),
         down = randomProj(rng, H, I, fmt);
    a.o = viewOf(o, fmt, s);
    a.down = viewOf(down, fmt, s);
    LayerWeights b = a;
    a.q = viewOf(q, fmt, s);
    a.k = viewOf(k, fmt, s);
    a.v = viewOf(v, fmt, s);
    a.gate = viewOf(gate, fmt, s);
    a.up = viewOf(up, fmt, s);
    // Biases on q and v only: the fused bias has zeros for k.
    std::normal_distribution<float> nd(0.0f, 0.5f);
    std::vector<float> qb(static_cast<size_t>(Q)), vb(static_cast<size_t>(KV));
    for (float &x : qb)
      x = nd(rng);
    for (float &x : vb)
      x = nd(rng);
    a.qBias = floats(s, qb);
    a.vBias = floats(s, vb);
    if (fuseQkv) {
      b.qkv = viewOf(concatRows({&q, &k, &v}), fmt, s);
      std::vector<float> fb = qb;
      fb.resize(size_t(Q + KV), 0.0f);
      fb.insert(fb.end(), vb.begin(), vb.end());
      b.qkvBias = floats(s, fb);
    } else {
      b.q = a.q;
      b.k = a.k;
      b.v = a.v;
      b.qBias = a.qBias;
      b.vBias = a.vBias;
    }
    if (fuseGateUp) {
      b.gateUp = viewOf(concatRows({&gate, &up}), fmt, s);
    } else {
      b.gate = a.gate;
      b.up = a.up;
    }
    m->separate.layers.push_back(a);
    m->fused.layers.push_back(b);
  }
  m->separate.finalNorm = m->fused.finalNorm = normView();
  m->separate.lmHead = m->fused.lmHead = viewOf(randomProj(rng, d.vocab, H, fmt), fmt, s);
  return m;
}

std::unique_ptr<serving::KVCache> makeKV(const ModelDims &d) {
  serving::KVCacheSpec s;
  s.numLayers = d.layers;
  s.numKVHeads = d.kvHeads;
  s.headDim = d.headDim;
  s.blockSize = 4;
  s.dtype = serving::KVDType::F16;
  std::string err;
  auto kv = serving::KVCache::create(s, serving::KVCache::bytesPerBlock(s) * 8, &err);
  EXPECT_TRUE(kv) << err;
  return kv;
}

/// Logits of every token of a 9-token prompt, then of 3 decode steps.
std::vector<float> runModel(const ModelWeights &w, kernels::Activations act) {
  auto kv = makeKV(w.dims);
  kernels::ThreadPool pool(2);
  ExecutorOptions o;
  o.pool = &pool;
  o.activations = act;
  std::string err;
  auto ex = CpuModelExecutor::create(w, *kv, o, &err);
  EXPECT_TRUE(ex) << err;
  if (!ex)
    return {};
  const int V = w.dims.vocab, prompt = 9, total = 12;
  std::vector<int32_t> ids;
  std::mt19937 rng(99);
  for (int i = 0; i < total; ++i)
    ids.push_back(int32_t(rng() % uint32_t(V)));
  const std::vector<int32_t> table = {6, 1, 3};
  auto step = [&](int from, int to) {
    serving::StepBatch b;
    b.blockSize = 4;
    b.queryStart = {0};
    b.blockTableStart = {0};
    for (int p = from; p < to; ++p) {
      b.tokenIds.push_back(ids[p]);
      b.positions.push_back(p);
      b.slotMapping.push_back(int64_t(table[p / 4]) * 4 + p % 4);
    }
    b.seqIds = {0};
    b.queryStart.push_back(b.numTokens());
    b.contextLens = {to};
    b.blockTable.assign(table.begin(), table.begin() + (to + 3) / 4);
    b.blockTableStart.push_back(int32_t(b.blockTable.size()));
    b.sampleIndices = {0};
    return b;
  };
  std::vector<float> out(static_cast<size_t>(prompt * V));
  EXPECT_TRUE(ex->executeAllLogits(step(0, prompt), out.data(), &err)) << err;
  for (int p = prompt; p < total; ++p) {
    std::vector<float> row(static_cast<size_t>(V));
    EXPECT_TRUE(ex->execute(step(p, p + 1), row.data(), &err)) << err;
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

struct Case {
  Fmt fmt;
  kernels::Activations act;
  bool fuseQkv, fuseGateUp;
};

class FusedProjections : public ::testing::TestWithParam<Case> {};

TEST_P(FusedProjections, SameLogitsAsSeparateProjections) {
  const Case c = GetParam();
  auto m = makePair(c.fmt, c.fuseQkv, c.fuseGateUp, 17);
  EXPECT_EQ(validateWeights(m->fused), "");
  auto want = runModel(m->separate, c.act);
  auto got = runModel(m->fused, c.act);
  ASSERT_EQ(got.size(), want.size());
  ASSERT_FALSE(want.empty());
  double mx = 0, worst = 0;
  for (float x : want)
    mx = std::max(mx, std::fabs(double(x)));
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
  EXPECT_LT(worst / mx, 1e-5) << "max |diff| " << worst << " of max |logit| " << mx;
  EXPECT_GT(mx, 1e-3); // the logits are not trivially zero
}

INSTANTIATE_TEST_SUITE_P(
    Formats, FusedProjections,
    ::testing::Values(Case{Fmt::I4, kernels::Activations::Float, true, true},
                      Case{Fmt::I4, kernels::Activations::Int8, true, true},
                      Case{Fmt::I8, kernels::Activations::Float, true, true},
                      Case{Fmt::I8, kernels::Activations::Int8, true, false},
                      Case{Fmt::F32, kernels::Activations::Float, true, true},
                      Case{Fmt::BF16, kernels::Activations::Float, false, true}));

TEST(FusedProjections, WrongShapeIsNamed) {
  auto m = makePair(Fmt::I4, true, true, 5);
  // A qkv matrix missing the v rows.
  Proj q = randomProj(*std::make_unique<std::mt19937>(1), 40, 72, Fmt::I4);
  m->fused.layers[1].qkv = viewOf(q, Fmt::I4, m->store);
  std::string e = validateWeights(m->fused);
  EXPECT_NE(e.find("layer 1 qkv_proj"), std::string::npos) << e;
  EXPECT_NE(e.find("expected [50, 72]"), std::string::npos) << e;
}

} // namespace
