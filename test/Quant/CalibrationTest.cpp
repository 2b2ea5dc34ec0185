//===- CalibrationTest.cpp - sampling and the layer-by-layer runner -===//
//
// Sampling against the published splitmix64 sequence and the byte stream
// of the text (the byte tokenizer's ids are the bytes); the runner against
// the reference executor's full forward on random decoders of several
// shapes (GQA, MQA, biases, bf16 weights) and, when ../shared is there, on
// austen-llama-7m.
//
//===----------------------------------------------------------------------===//
#include "CalibrationTestUtil.h"

#include "../Exec/ExecTestUtil.h"

#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Import/HFImporter.h"
#include "qopt/Quant/Calibration.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <set>

using namespace calibtest;
using namespace mlir;
using namespace qopt;
using namespace qopt::quant;

namespace {

/// Where in `stream` the window `w` starts (-1 if it is not a substring).
int64_t findWindow(const std::vector<int32_t> &stream, const std::vector<int32_t> &w) {
  auto it = std::search(stream.begin(), stream.end(), w.begin(), w.end());
  return it == stream.end() ? -1 : int64_t(it - stream.begin());
}

std::vector<int32_t> bytesOf(const std::string &s) {
  std::vector<int32_t> r;
  for (unsigned char c : s)
    r.push_back(c);
  return r;
}

uint64_t mulhi(uint64_t a, uint64_t b) {
  return uint64_t((static_cast<unsigned __int128>(a) * b) >> 64);
}

TEST(CalibrationSampling, FollowsSplitMix64) {
  auto tok = byteTokenizer();
  ASSERT_TRUE(tok);
  TempDir dir;
  std::string text = randomText(5000, 1);
  CalibrationOptions o;
  o.file = dir.file("a.txt", text);
  o.samples = 3;
  o.seqlen = 100;
  o.seed = 0;
  std::vector<std::vector<int32_t>> s;
  std::string err;
  ASSERT_TRUE(sampleCalibration(*tok, o, &s, &err)) << err;
  ASSERT_EQ(s.size(), 3u);
  // splitmix64 from state 0 (Vigna's reference outputs).
  const uint64_t expected[] = {0xE220A8397B1DCDAFull, 0x6E789E6AA1B965F4ull,
                               0x06C45D188009454Full};
  std::vector<int32_t> stream = bytesOf(text);
  const uint64_t starts = stream.size() - 100 + 1;
  for (int i = 0; i < 3; ++i) {
    int64_t off = int64_t(mulhi(expected[i], starts));
    std::vector<int32_t> want(stream.begin() + off, stream.begin() + off + 100);
    EXPECT_EQ(s[size_t(i)], want) << "sample " << i;
  }
}

TEST(CalibrationSampling, DeterministicAndSeeded) {
  auto tok = byteTokenizer();
  TempDir dir;
  std::string text = randomText(20000, 2);
  CalibrationOptions o;
  o.file = dir.file("a.txt", text);
  o.samples = 16;
  o.seqlen = 77;
  o.seed = 1234;
  std::vector<std::vector<int32_t>> a, b, c;
  std::string err;
  ASSERT_TRUE(sampleCalibration(*tok, o, &a, &err)) << err;
  ASSERT_TRUE(sampleCalibration(*tok, o, &b, &err)) << err;
  EXPECT_EQ(a, b);
  o.seed = 1235;
  ASSERT_TRUE(sampleCalibration(*tok, o, &c, &err)) << err;
  EXPECT_NE(a, c);
  std::vector<int32_t> stream = bytesOf(text);
  std::set<int64_t> offsets;
  for (const auto &w : a) {
    ASSERT_EQ(w.size(), 77u);
    int64_t off = findWindow(stream, w);
    EXPECT_GE(off, 0);
    offsets.insert(off);
  }
  EXPECT_GT(offsets.size(), 12u) << "windows should spread over the text";
}

TEST(CalibrationSampling, SeveralFilesAndDirectories) {
  auto tok = byteTokenizer();
  TempDir dir;
  std::string t1 = randomText(3000, 3), t2 = randomText(4000, 4);
  std::string f1 = dir.file("b1.txt", t1);
  std::string f2 = dir.file("b2.txt", t2);
  dir.file("ignored.md", "not a calibration text");
  // The documents are joined by a blank line.
  std::vector<int32_t> stream = bytesOf(t1 + "\n\n" + t2);
  CalibrationOptions o;
  o.samples = 64;
  o.seqlen = 300;
  o.seed = 7;
  std::vector<std::vector<int32_t>> listed, fromDir;
  std::string err;
  o.file = f1 + "," + f2;
  ASSERT_TRUE(sampleCalibration(*tok, o, &listed, &err)) << err;
  o.file = dir.path;
  ASSERT_TRUE(sampleCalibration(*tok, o, &fromDir, &err)) << err;
  EXPECT_EQ(listed, fromDir);
  // Every window lies in the joined stream; some come from each file.
  bool fromFirst = false, fromSecond = false;
  for (const auto &w : listed) {
    int64_t off = findWindow(stream, w);
    ASSERT_GE(off, 0);
    fromFirst |= off + 300 <= int64_t(t1.size());
    fromSecond |= off > int64_t(t1.size());
  }
  EXPECT_TRUE(fromFirst && fromSecond);
}

TEST(CalibrationSampling, BadFiles) {
  auto tok = byteTokenizer();
  TempDir dir;
  CalibrationOptions o;
  o.samples = 4;
  o.seqlen = 512;
  std::vector<std::vector<int32_t>> s;
  std::string err;

  o.file = dir.path + "/missing.txt";
  EXPECT_FALSE(sampleCalibration(*tok, o, &s, &err));
  EXPECT_NE(err.find("missing.txt"), std::string::npos) << err;
  EXPECT_NE(err.find("cannot read"), std::string::npos) << err;

  o.file = dir.file("empty.txt", "");
  EXPECT_FALSE(sampleCalibration(*tok, o, &s, &err));
  EXPECT_NE(err.find("empty.txt: the calibration text is empty"), std::string::npos) << err;

  o.file = dir.file("blank.txt", " \n\n \n");
  EXPECT_FALSE(sampleCalibration(*tok, o, &s, &err));
  EXPECT_NE(err.find("is empty"), std::string::npos) << err;

  o.file = dir.file("short.txt", std::string(100, 'x'));
  EXPECT_FALSE(sampleCalibration(*tok, o, &s, &err));
  EXPECT_NE(err.find("short.txt"), std::string::npos) << err;
  EXPECT_NE(err.find("has 100 tokens"), std::string::npos) << err;
  EXPECT_NE(err.find("512"), std::string::npos) << err;

  // Two short files are too short together as well (100 + 2 + 100 < 512).
  std::string other = dir.file("short2.txt", std::string(100, 'y'));
  o.file = dir.path + "/short.txt," + other;
  EXPECT_FALSE(sampleCalibration(*tok, o, &s, &err));
  EXPECT_NE(err.find("has 202 tokens"), std::string::npos) << err;

  o.file = dir.file("ok.txt", std::string(1000, 'z'));
  o.samples = 0;
  EXPECT_FALSE(sampleCalibration(*tok, o, &s, &err));
  EXPECT_NE(err.find("must be positive"), std::string::npos) << err;
  o.samples = 2;
  o.file = "";
  EXPECT_FALSE(sampleCalibration(*tok, o, &s, &err));
  EXPECT_NE(err.find("-calib"), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos);
}

//===----------------------------------------------------------------------===//
// LayerwiseRunner
//===----------------------------------------------------------------------===//

ModelConfig smallConfig() {
  ModelConfig c;
  c.vocabSize = 67;
  c.hiddenSize = 48;
  c.intermediateSize = 136;
  c.numLayers = 3;
  c.numHeads = 6;
  c.numKvHeads = 2;
  c.headDim = 8;
  c.rmsNormEps = 1e-5;
  return c;
}

std::vector<std::vector<int32_t>> randomSamples(std::mt19937 &rng, int64_t n, int64_t seq,
                                                int64_t vocab) {
  std::vector<std::vector<int32_t>> r(static_cast<size_t>(n));
  for (auto &s : r)
    for (int64_t t = 0; t < seq; ++t)
      s.push_back(int32_t(rng() % uint32_t(vocab)));
  return r;
}

/// Runs every layer through the runner and compares the final logits with
/// one full forward of the executor.
void expectRunnerMatchesForward(ModuleOp module, WeightStore &store,
                                const std::vector<std::vector<int32_t>> &samples, double tol) {
  std::string err;
  auto exec = ReferenceExecutor::create(module, store, &err);
  ASSERT_TRUE(exec) << err;
  Tensor full;
  ASSERT_TRUE(exec->forward(samples, &full, &err)) << err;

  auto runner = LayerwiseRunner::create(module, store, samples, 0, &err);
  ASSERT_TRUE(runner) << err;
  std::vector<DecoderLayer> layers;
  ASSERT_TRUE(findDecoderLayers(module, &layers, &err)) << err;
  ASSERT_EQ(runner->layers().size(), layers.size());
  for (size_t i = 0; i < layers.size(); ++i)
    ASSERT_TRUE(runner->advance(int64_t(i), &err)) << err;
  Tensor logits;
  ASSERT_TRUE(runner->finalLogits(&logits, &err)) << err;
  ASSERT_EQ(logits.shape, full.shape);
  double maxDiff = 0, maxAbs = 0;
  for (size_t i = 0; i < full.data.size(); ++i) {
    maxDiff = std::max(maxDiff, double(std::fabs(full.data[i] - logits.data[i])));
    maxAbs = std::max(maxAbs, double(std::fabs(full.data[i])));
  }
  EXPECT_LE(maxDiff, tol * std::max(1.0, maxAbs)) << "max |logit| " << maxAbs;
  EXPECT_GT(maxAbs, 0.1) << "degenerate logits";
  std::cout << "  runner vs forward: max |diff| " << maxDiff << ", max |logit| " << maxAbs
            << "\n";
}

struct RandomModel {
  MLIRContext ctx;
  WeightStore store;
  OwningOpRef<ModuleOp> module;
  RandomModel(const ModelConfig &c, uint32_t seed, DType dtype = DType::F32) {
    std::mt19937 rng(seed);
    exectest::randomWeights(c, store, rng, dtype);
    std::string err;
    module = buildDecoderModule(ctx, c, store, "<random>", &err);
    EXPECT_TRUE(module) << err;
  }
};

TEST(LayerwiseRunner, MatchesFullForwardOnRandomDecoders) {
  struct Case {
    const char *name;
    void (*apply)(ModelConfig &);
    DType dtype;
    int64_t samples, seq;
  };
  const Case cases[] = {
      {"gqa", [](ModelConfig &) {}, DType::F32, 5, 33},
      {"mqa-bias", [](ModelConfig &c) { c.numHeads = 3; c.numKvHeads = 1; c.headDim = 16;
                                         c.attentionBias = true; }, DType::F32, 3, 20},
      {"bf16-tied", [](ModelConfig &c) { c.tieWordEmbeddings = true; }, DType::BF16, 4, 17},
      // More samples than one mini-batch holds (4096 tokens): 3 batches.
      {"batches", [](ModelConfig &c) { c.numLayers = 2; }, DType::F32, 19, 512},
  };
  for (const Case &k : cases) {
    SCOPED_TRACE(k.name);
    ModelConfig c = smallConfig();
    k.apply(c);
    RandomModel m(c, 11, k.dtype);
    ASSERT_TRUE(m.module);
    std::mt19937 rng(5);
    expectRunnerMatchesForward(*m.module, m.store, randomSamples(rng, k.samples, k.seq, c.vocabSize),
                               2e-5);
  }
}

TEST(LayerwiseRunner, ObserverSeesTheModulesOwnOps) {
  ModelConfig c = smallConfig();
  RandomModel m(c, 3);
  std::mt19937 rng(9);
  std::string err;
  auto runner = LayerwiseRunner::create(*m.module, m.store, randomSamples(rng, 3, 16, c.vocabSize),
                                        1, &err);
  ASSERT_TRUE(runner) << err;
  DecoderLayer l1 = runner->layers()[1];
  llvm::DenseMap<Operation *, int> seen;
  int64_t rows = 0;
  ASSERT_TRUE(runner->advance(0, &err)) << err;
  Tensor before = runner->hidden();
  ASSERT_TRUE(runner->observe(1, [&](Operation *op, const Tensor &in, const Tensor &out) {
    ++seen[op];
    if (op == l1.q.getOperation()) {
      EXPECT_EQ(in.shape.back(), c.hiddenSize);
      EXPECT_EQ(out.shape.back(), c.numHeads * c.headDim);
      rows += in.numElements() / in.shape.back();
    }
    if (op == l1.down.getOperation())
      EXPECT_EQ(in.shape.back(), c.intermediateSize);
  }, &err)) << err;
  // Each of the 15 ops of layer 1, and nothing else, once per mini-batch.
  EXPECT_EQ(seen.size(), 15u);
  for (Operation *op : {l1.q.getOperation(), l1.k.getOperation(), l1.v.getOperation(),
                        l1.o.getOperation(), l1.gate.getOperation(), l1.up.getOperation(),
                        l1.down.getOperation(), l1.attention.getOperation()})
    EXPECT_EQ(seen.lookup(op), 1) << op->getName().getStringRef().str();
  EXPECT_EQ(rows, 3 * 16);
  // observe() does not advance.
  EXPECT_EQ(runner->hidden().data, before.data);
}

TEST(LayerwiseRunner, RefusesNonCanonicalModules) {
  MLIRContext ctx;
  WeightStore store;
  exectest::OpModule om(ctx, store, 1, 4);
  std::mt19937 rng(1);
  Value x = om.input(exectest::randomVec(rng, 4 * 8), 8);
  Value w = om.param(exectest::randomVec(rng, 8 * 8), {8, 8});
  Value y = om.b.create<qllm::LinearOp>(om.b.getUnknownLoc(), om.act(8), x, w, Value());
  om.finish(y);
  std::vector<DecoderLayer> layers;
  std::string err;
  EXPECT_FALSE(findDecoderLayers(*om.module, &layers, &err));
  EXPECT_NE(err.find("calibration:"), std::string::npos) << err;
  EXPECT_FALSE(LayerwiseRunner::create(*om.module, store, {{0, 1, 2, 3}}, 1, &err));
}

TEST(LayerwiseRunner, MatchesFullForwardOnAustenLlama) {
  std::string dir = std::string(QOPT_SHARED_DIR) + "/models/austen-llama-7m";
  if (!llvm::sys::fs::exists(dir + "/model.safetensors"))
    GTEST_SKIP() << dir << " is absent";
  MLIRContext ctx;
  WeightStore store;
  std::string err;
  auto module = importHuggingFaceDir(ctx, dir, store, &err);
  ASSERT_TRUE(module) << err;
  std::mt19937 rng(21);
  expectRunnerMatchesForward(*module, store, randomSamples(rng, 10, 128, 4096), 1e-5);
}


//===----------------------------------------------------------------------===//
// ReferenceExecutor::createForFunction / run
//===----------------------------------------------------------------------===//

TEST(FunctionRunner, RunsAFunctionOfActivations) {
  MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect, func::FuncDialect>();
  WeightStore store;
  std::mt19937 rng(3);
  exectest::Vec w = exectest::randomVec(rng, 5 * 8);
  std::string err;
  ASSERT_TRUE(store.addOwned("w", DType::F32, {5, 8}, exectest::bytesOf(w), &err)) << err;
  OpBuilder b(&ctx);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  auto act = [&](int64_t n) {
    return RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic, n},
                                 b.getF32Type());
  };
  // f(x, y) = (x + y, linear(x + y, w)).
  auto fn = b.create<func::FuncOp>(loc, "f",
                                   b.getFunctionType({act(8), act(8)}, {act(8), act(5)}));
  Block *body = fn.addEntryBlock();
  b.setInsertionPointToEnd(body);
  Value sum = b.create<qllm::AddOp>(loc, act(8), body->getArgument(0), body->getArgument(1));
  Value wv = b.create<qllm::ParamOp>(loc, RankedTensorType::get({5, 8}, b.getF32Type()),
                                     b.getStringAttr("w"));
  Value y = b.create<qllm::LinearOp>(loc, act(5), sum, wv, Value());
  b.create<func::ReturnOp>(loc, ValueRange{sum, y});

  auto exec = ReferenceExecutor::createForFunction(fn, store, &err);
  ASSERT_TRUE(exec) << err;
  Tensor x{{2, 3, 8}, exectest::randomVec(rng, 48)}, z{{2, 3, 8}, exectest::randomVec(rng, 48)};
  std::vector<Tensor> results;
  ASSERT_TRUE(exec->run({x, z}, &results, &err)) << err;
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].shape, (std::vector<int64_t>{2, 3, 8}));
  EXPECT_EQ(results[1].shape, (std::vector<int64_t>{2, 3, 5}));
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t o = 0; o < 5; ++o) {
      double ref = 0;
      for (int64_t k = 0; k < 8; ++k) {
        float sk = x.data[size_t(r * 8 + k)] + z.data[size_t(r * 8 + k)];
        EXPECT_EQ(results[0].data[size_t(r * 8 + k)], sk);
        ref += double(sk) * w[size_t(o * 8 + k)];
      }
      EXPECT_NEAR(results[1].data[size_t(r * 5 + o)], ref, 1e-4);
    }
  // Bad calls are errors, not crashes.
  EXPECT_FALSE(exec->run({x}, &results, &err));
  EXPECT_NE(err.find("takes 2 arguments"), std::string::npos) << err;
  Tensor wrong{{2, 3, 7}, std::vector<float>(42)};
  EXPECT_FALSE(exec->run({x, wrong}, &results, &err));
  EXPECT_NE(err.find("argument 1 has shape [2, 3, 7]"), std::string::npos) << err;
  Tensor ragged{{2, 3, 8}, std::vector<float>(47)};
  EXPECT_FALSE(exec->run({x, ragged}, &results, &err));
  Tensor logits;
  EXPECT_FALSE(exec->forward({{1, 2}}, &logits, &err));
  EXPECT_NE(err.find("use run()"), std::string::npos) << err;
}

} // namespace
