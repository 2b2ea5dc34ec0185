//===- AWQSharedTest.cpp - AWQ, SmoothQuant, KV cache on real models --===//
//
// On ../shared's models (skipped when absent):
//  - the folds of AWQ and SmoothQuant keep austen-llama-7m's logits;
//  - the bar: calibrating on the five Austen novels other than Persuasion
//    and evaluating on persuasion.txt (40 windows of 256 tokens), AWQ's
//    mean KL divergence at W4 g128 and W3 g128 is at least 15% below RTN's;
//    the same on stories260K (intermediate 172: a short last group) with
//    TinyStories text;
//  - SmoothQuant W8A8 (int8, fp8) and the int8/fp8 KV cache cost little.
// QOPT_AWQ_CALIB_SAMPLES overrides the calibration samples (default 32 of
// 512 tokens here; the pass's default is 128); QOPT_AWQ_OPTIONS (any of
// "duo", "clipqk", "noclip") varies the AWQ configuration, and
// QOPT_AWQ_VERBOSE prints every set's chosen alpha (the docs' numbers).
//
//===----------------------------------------------------------------------===//
#include "AWQTestUtil.h"

#include "qopt/Import/HFImporter.h"
#include "qopt/Quant/AWQ.h"
#include "qopt/Quant/Calibration.h"
#include "qopt/Quant/KVCache.h"
#include "qopt/Quant/SmoothQuant.h"

#include "qopt-rt/tokenizer.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>

using namespace awqtest;
using namespace mlir;
using namespace qopt;
using namespace qopt::quant;

namespace {

const std::string kShared = QOPT_SHARED_DIR;
const std::string kAusten = kShared + "/models/austen-llama-7m";
const std::string kStories = kShared + "/models/stories260K";
const std::string kText = kShared + "/data/text";

int64_t calibSamples() {
  const char *v = std::getenv("QOPT_AWQ_CALIB_SAMPLES");
  return v ? std::max(1, std::atoi(v)) : 32;
}

std::string readFile(const std::string &path) {
  auto buf = llvm::MemoryBuffer::getFile(path);
  return buf ? (*buf)->getBuffer().str() : std::string();
}

/// llama2.c's tokenizer (run.c's encode): pieces by score, byte fallback
/// <0xNN> = byte + 3, a dummy prefix space; the text is encoded line by
/// line (the merge loop is quadratic) with the newline byte between lines.
struct Llama2cTokenizer {
  std::vector<std::string> pieces;
  std::vector<double> scores;
  std::map<std::string, int32_t> index;

  bool load(const std::string &path) {
    auto json = llvm::json::parse(readFile(path));
    if (!json)
      return llvm::consumeError(json.takeError()), false;
    auto *list = json->getAsObject() ? json->getAsObject()->getArray("pieces") : nullptr;
    if (!list)
      return false;
    for (const llvm::json::Value &p : *list) {
      const llvm::json::Array *pair = p.getAsArray();
      pieces.push_back(std::string(*(*pair)[0].getAsString()));
      scores.push_back(*(*pair)[1].getAsNumber());
      index.emplace(pieces.back(), int32_t(pieces.size() - 1));
    }
    return true;
  }

  void encodeLine(const std::string &text, std::vector<int32_t> &out) const {
    std::vector<int32_t> t;
    for (size_t i = 0; i < text.size();) {
      size_t n = 1;
      unsigned char c = text[i];
      if (c >= 0xF0)
        n = 4;
      else if (c >= 0xE0)
        n = 3;
      else if (c >= 0xC0)
        n = 2;
      std::string ch = text.substr(i, n);
      auto it = index.find(ch);
      if (it != index.end())
        t.push_back(it->second);
      else
        for (unsigned char b : ch)
          t.push_back(int32_t(b) + 3);
      i += n;
    }
    for (;;) {
      double best = -1e30;
      int32_t bestId = -1;
      size_t at = 0;
      for (size_t i = 0; i + 1 < t.size(); ++i) {
        auto it = index.find(pieces[size_t(t[i])] + pieces[size_t(t[i + 1])]);
        if (it != index.end() && scores[size_t(it->second)] > best) {
          best = scores[size_t(it->second)];
          bestId = it->second;
          at = i;
        }
      }
      if (bestId < 0)
        break;
      t[at] = bestId;
      t.erase(t.begin() + long(at) + 1);
    }
    out.insert(out.end(), t.begin(), t.end());
  }

  std::vector<int32_t> encode(const std::string &text) const {
    std::vector<int32_t> out;
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find('\n', start);
      std::string line = text.substr(start, end == std::string::npos ? end : end - start);
      if (!line.empty())
        encodeLine(" " + line, out);
      if (end == std::string::npos)
        break;
      out.push_back(13); // <0x0A>
      start = end + 1;
    }
    return out;
  }
};

/// Windows of `seqlen` tokens at seeded offsets of `stream`.
std::vector<std::vector<int32_t>> windows(const std::vector<int32_t> &stream, int64_t n,
                                          int64_t seqlen, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> r;
  for (int64_t i = 0; i < n; ++i) {
    size_t off = rng() % (stream.size() - size_t(seqlen));
    r.emplace_back(stream.begin() + long(off), stream.begin() + long(off + size_t(seqlen)));
  }
  return r;
}

/// A model with its own store.
struct Loaded {
  MLIRContext ctx;
  WeightStore store;
  OwningOpRef<ModuleOp> module;
  explicit Loaded(const std::string &dir) {
    ctx.loadDialect<qllm::QLLMDialect, func::FuncDialect>();
    std::string err;
    module = importHuggingFaceDir(ctx, dir, store, &err);
    EXPECT_TRUE(module) << err;
  }
};

/// Calibration windows and evaluation tokens of a model's texts.
struct Data {
  std::vector<std::vector<int32_t>> calib;
  std::vector<int32_t> eval;
};

Data austenData(int64_t samples) {
  Data d;
  std::string err;
  auto tok = qrt::Tokenizer::fromFile(kAusten + "/tokenizer.json", &err);
  EXPECT_TRUE(tok) << err;
  if (!tok)
    return d;
  CalibrationOptions co;
  for (const char *book :
       {"emma", "mansfieldpark", "northangerabbey", "prideprejudice", "sensesensibility"})
    co.file += (co.file.empty() ? "" : ",") + kText + "/austen/" + book + ".txt";
  co.samples = samples;
  co.seqlen = 512;
  EXPECT_TRUE(sampleCalibration(*tok, co, &d.calib, &err)) << err;
  d.eval = tok->encode(readFile(kText + "/austen/persuasion.txt"), false);
  return d;
}

Data storiesData(int64_t samples) {
  Data d;
  Llama2cTokenizer tok;
  EXPECT_TRUE(tok.load(kStories + "/llama2c_vocab.json"));
  // The first 80% of tinystories_val.txt was training text: calibrate on
  // it, evaluate on the held-out tail.
  std::string train = readFile(kText + "/tinystories_val.txt").substr(0, 634613);
  d.calib = windows(tok.encode(train), samples, 512, 1);
  d.eval = tok.encode(readFile(kText + "/tinystories_eval_split.txt"));
  return d;
}

Format fmt(const std::string &name, int64_t group) {
  Format f;
  std::string err;
  EXPECT_TRUE(parseFormat(name, group, false, &f, &err)) << err;
  return f;
}

bool have(const std::string &dir) { return llvm::sys::fs::exists(dir + "/model.safetensors"); }

//===----------------------------------------------------------------------===//

TEST(AWQShared, FoldsKeepAustenLogits) {
  if (!have(kAusten))
    GTEST_SKIP() << kAusten << " is absent";
  Data d = austenData(8);
  std::vector<std::vector<int32_t>> eval = {
      std::vector<int32_t>(d.eval.begin(), d.eval.begin() + 256)};
  for (const char *method : {"awq", "smoothquant"}) {
    Loaded m(kAusten);
    Tensor before = logitsOf(*m.module, m.store, eval);
    std::string err;
    if (std::string(method) == "awq") {
      WeightSelection sel;
      ASSERT_TRUE(WeightSelection::create(fmt("int3", 128), {}, false, false, &sel, &err));
      AWQConfig config;
      config.foldOnly = true;
      std::vector<AWQSetChoice> choices;
      ASSERT_TRUE(runAWQ(*m.module, m.store, sel, d.calib, config, &choices, &err)) << err;
      int scaled = 0;
      for (const AWQSetChoice &c : choices)
        scaled += c.alpha > 0;
      EXPECT_GT(scaled, 0);
    } else {
      SmoothQuantConfig config;
      config.foldOnly = true;
      ASSERT_TRUE(runSmoothQuant(*m.module, m.store, d.calib, config, &err)) << err;
    }
    double rel = relDiff(before, logitsOf(*m.module, m.store, eval));
    std::cout << "  austen " << method << " fold-only: relative logit change " << rel << "\n";
    EXPECT_LT(rel, 1e-4) << method;
  }
}

/// RTN and AWQ of `format` on a model; returns {rtn, awq} quality.
std::pair<QualityResult, QualityResult> rtnVsAwq(const std::string &dir, const Data &d,
                                                 const Format &format) {
  Loaded rtn(dir), awq(dir);
  OwningOpRef<ModuleOp> floatModule = awq.module->clone();
  WeightSelection sel;
  std::string err;
  EXPECT_TRUE(WeightSelection::create(format, {}, false, false, &sel, &err)) << err;
  std::vector<SelectedWeight> selected;
  EXPECT_TRUE(sel.collect(*rtn.module, &selected, &err)) << err;
  for (SelectedWeight &s : selected) {
    std::vector<float> w = rtn.store.readF32(s.name);
    auto shape = s.param.getResult().getType().getShape();
    EXPECT_TRUE(replaceWithQuantized(s.param, rtn.store,
                                     quantizeRTN(w.data(), shape[0], shape[1], s.format), &err))
        << err;
  }
  auto t0 = std::chrono::steady_clock::now();
  AWQConfig config;
  if (const char *v = std::getenv("QOPT_AWQ_OPTIONS")) {
    std::string e = v;
    config.duoScaling = e.find("duo") != std::string::npos;
    config.clipQK = e.find("clipqk") != std::string::npos;
    config.clipSearch = e.find("noclip") == std::string::npos;
  }
  std::vector<AWQSetChoice> choices;
  EXPECT_TRUE(runAWQ(*awq.module, awq.store, sel, d.calib, config, &choices, &err)) << err;
  if (std::getenv("QOPT_AWQ_VERBOSE"))
    for (const AWQSetChoice &c : choices)
      std::printf("    layer %lld %-8s alpha %.2f error %.4g -> %.4g\n", (long long)c.layer,
                  c.set.c_str(), c.alpha, c.rtnError, c.scaledError);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  QualityResult r = quality(*floatModule, *rtn.module, rtn.store, d.eval, 256, 40);
  QualityResult a = quality(*floatModule, *awq.module, awq.store, d.eval, 256, 40);
  std::printf("  %-10s %s: RTN PPL %.3f KLD %.5f top-1 %.1f%% | AWQ PPL %.3f KLD %.5f "
              "top-1 %.1f%% (float PPL %.3f; AWQ %.1f s on %zu x %zu tokens)\n",
              dir.substr(dir.rfind('/') + 1).c_str(), format.str().c_str(), r.quantized.perplexity,
              r.meanKld, 100 * r.top1, a.quantized.perplexity, a.meanKld, 100 * a.top1,
              r.reference.perplexity, secs, d.calib.size(),
              d.calib.empty() ? size_t(0) : d.calib[0].size());
  return {r, a};
}

TEST(AWQShared, BeatsRTNOnAustenByFifteenPercent) {
  if (!have(kAusten))
    GTEST_SKIP() << kAusten << " is absent";
  Data d = austenData(calibSamples());
  for (const char *bits : {"int4", "int3"}) {
    auto [r, a] = rtnVsAwq(kAusten, d, fmt(bits, 128));
    EXPECT_LE(a.meanKld, 0.85 * r.meanKld) << bits << " g128";
  }
}

TEST(AWQShared, BeatsRTNOnStories260K) {
  if (!have(kStories))
    GTEST_SKIP() << kStories << " is absent";
  Data d = storiesData(calibSamples());
  ASSERT_GT(d.eval.size(), size_t(40 * 256));
  for (const char *bits : {"int4", "int3"}) {
    auto [r, a] = rtnVsAwq(kStories, d, fmt(bits, 128));
    EXPECT_LE(a.meanKld, 0.85 * r.meanKld) << bits << " g128";
  }
}

TEST(AWQShared, W8A8AndKVCacheCostLittleOnAusten) {
  if (!have(kAusten))
    GTEST_SKIP() << kAusten << " is absent";
  Data d = austenData(calibSamples());
  struct Case {
    const char *name;
    double maxKld;
    std::function<bool(Loaded &, std::string *)> run;
  };
  std::vector<Case> cases = {
      {"W8A8 int8 per-token", 0.01,
       [&](Loaded &m, std::string *err) {
         return runSmoothQuant(*m.module, m.store, d.calib, SmoothQuantConfig(), err);
       }},
      {"W8A8 int8 per-tensor", 0.05,
       [&](Loaded &m, std::string *err) {
         SmoothQuantConfig c;
         c.perTensor = true;
         return runSmoothQuant(*m.module, m.store, d.calib, c, err);
       }},
      {"W8A8 fp8 per-token", 0.02,
       [&](Loaded &m, std::string *err) {
         SmoothQuantConfig c;
         c.fp8 = true;
         return runSmoothQuant(*m.module, m.store, d.calib, c, err);
       }},
      {"KV int8", 0.005,
       [&](Loaded &m, std::string *err) {
         return runKVCacheQuant(*m.module, m.store, d.calib, KVCacheConfig(), err);
       }},
      {"KV fp8", 0.01,
       [&](Loaded &m, std::string *err) {
         KVCacheConfig c;
         c.dtype = "fp8";
         return runKVCacheQuant(*m.module, m.store, d.calib, c, err);
       }},
  };
  for (const Case &c : cases) {
    Loaded m(kAusten);
    OwningOpRef<ModuleOp> floatModule = m.module->clone();
    std::string err;
    ASSERT_TRUE(c.run(m, &err)) << c.name << ": " << err;
    QualityResult q = quality(*floatModule, *m.module, m.store, d.eval, 256, 40);
    std::printf("  austen %-22s PPL %.3f (float %.3f) KLD %.5f top-1 %.1f%%\n", c.name,
                q.quantized.perplexity, q.reference.perplexity, q.meanKld, 100 * q.top1);
    EXPECT_LT(q.meanKld, c.maxKld) << c.name;
    EXPECT_GT(q.meanKld, 0.0) << c.name << ": nothing was quantized";
  }
}

} // namespace
