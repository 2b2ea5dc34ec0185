//===- ExecSharedTest.cpp - the executor against transformers' outputs ===//
//
// Ground truth in ../shared (see its README): logits, greedy continuations
// and perplexities that transformers 5.17 produced for austen-llama-7m,
// and llama2.c/transformers greedy ids for stories260K. Skips when
// ../shared is absent.
//
//===----------------------------------------------------------------------===//
#include "qopt/Exec/ReferenceExecutor.h"
#include "qopt/Import/HFImporter.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#ifdef QOPT_HAVE_TOKENIZER
#include "qopt-rt/tokenizer.h"
#endif

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

using qopt::ReferenceExecutor;
using qopt::Tensor;

namespace {

const std::string kShared = QOPT_SHARED_DIR;

bool exists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

#define SKIP_WITHOUT(path)                                                              \
  do {                                                                                  \
    if (!exists(path))                                                                  \
      GTEST_SKIP() << (path) << " is absent (shared data not available)";               \
  } while (0)

std::optional<llvm::json::Value> readJson(const std::string &path) {
  auto buf = llvm::MemoryBuffer::getFile(path);
  if (!buf)
    return std::nullopt;
  auto v = llvm::json::parse((*buf)->getBuffer());
  if (!v) {
    llvm::consumeError(v.takeError());
    return std::nullopt;
  }
  return std::move(*v);
}

std::vector<int32_t> intList(const llvm::json::Array *a) {
  std::vector<int32_t> r;
  if (a)
    for (const llvm::json::Value &v : *a)
      r.push_back(int32_t(v.getAsInteger().value_or(-1)));
  return r;
}

/// A little-endian float32 C-order .npy file; empty on any other content.
bool readNpyF32(const std::string &path, std::vector<int64_t> *shape, std::vector<float> *data) {
  std::ifstream f(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (all.size() < 10 || all.compare(0, 6, "\x93NUMPY") != 0)
    return false;
  size_t headerLen, start;
  if (all[6] == 1) {
    headerLen = uint8_t(all[8]) | (uint8_t(all[9]) << 8);
    start = 10;
  } else {
    headerLen = uint8_t(all[8]) | (uint8_t(all[9]) << 8) | (uint8_t(all[10]) << 16) |
                (size_t(uint8_t(all[11])) << 24);
    start = 12;
  }
  std::string header = all.substr(start, headerLen);
  if (header.find("'<f4'") == std::string::npos ||
      header.find("'fortran_order': False") == std::string::npos)
    return false;
  size_t open = header.find("'shape': (");
  size_t close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos)
    return false;
  std::stringstream dims(header.substr(open + 10, close - open - 10));
  shape->clear();
  int64_t n = 1;
  for (std::string d; std::getline(dims, d, ',');)
    if (d.find_first_not_of(' ') != std::string::npos) {
      shape->push_back(std::stoll(d));
      n *= shape->back();
    }
  size_t offset = start + headerLen;
  if (all.size() - offset != size_t(n) * 4)
    return false;
  data->resize(size_t(n));
  std::memcpy(data->data(), all.data() + offset, size_t(n) * 4);
  return true;
}

/// An imported Hugging Face directory and its executor.
struct Loaded {
  mlir::MLIRContext ctx;
  qopt::WeightStore store;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::unique_ptr<ReferenceExecutor> exec;

  explicit Loaded(const std::string &dir) {
    std::string err;
    module = qopt::importHuggingFaceDir(ctx, dir, store, &err);
    EXPECT_TRUE(module) << err;
    if (!module)
      return;
    exec = ReferenceExecutor::create(*module, store, &err);
    EXPECT_TRUE(exec) << err;
  }
};

const std::string kAusten = kShared + "/models/austen-llama-7m";
const std::string kStories = kShared + "/models/stories260K";

TEST(ExecShared, AustenPrompt0Logits) {
  SKIP_WITHOUT(kAusten + "/reference/prompt0_logits.npy");
  auto ref = readJson(kAusten + "/reference/reference.json");
  ASSERT_TRUE(ref);
  const auto *prompts = ref->getAsObject()->getArray("prompts");
  ASSERT_TRUE(prompts && !prompts->empty());
  std::vector<int32_t> ids = intList((*prompts)[0].getAsObject()->getArray("ids"));
  std::vector<int64_t> shape;
  std::vector<float> expected;
  ASSERT_TRUE(readNpyF32(kAusten + "/reference/prompt0_logits.npy", &shape, &expected));
  ASSERT_EQ(shape, (std::vector<int64_t>{int64_t(ids.size()), 4096}));

  Loaded m(kAusten);
  ASSERT_TRUE(m.exec);
  Tensor logits;
  std::string err;
  ASSERT_TRUE(m.exec->forward({ids}, &logits, &err)) << err;
  ASSERT_EQ(logits.data.size(), expected.size());
  double maxDiff = 0;
  for (size_t i = 0; i < expected.size(); ++i)
    maxDiff = std::max(maxDiff, double(std::fabs(logits.data[i] - expected[i])));
  std::cout << "austen-llama-7m prompt 0: max |logit - transformers| = " << maxDiff << "\n";
  EXPECT_LT(maxDiff, 1e-3);
}

TEST(ExecShared, AustenGreedy) {
  SKIP_WITHOUT(kAusten + "/reference/reference.json");
  auto ref = readJson(kAusten + "/reference/reference.json");
  ASSERT_TRUE(ref);
  Loaded m(kAusten);
  ASSERT_TRUE(m.exec);
  // generation_config.json: eos_token_id 1 (prompt 3 stops on it).
  const int32_t eos = 1;
  int index = 0;
  for (const llvm::json::Value &p : *ref->getAsObject()->getArray("prompts")) {
    std::vector<int32_t> ids = intList(p.getAsObject()->getArray("ids"));
    std::vector<int32_t> expected = intList(p.getAsObject()->getArray("greedy_ids"));
    std::vector<int32_t> got;
    std::string err;
    ASSERT_TRUE(qopt::greedyGenerate(*m.exec, ids, int(expected.size()), eos, &got, &err))
        << err;
    EXPECT_EQ(got, expected) << "prompt " << index;
    ++index;
  }
  EXPECT_EQ(index, 4);
}

TEST(ExecShared, Stories260KGreedyFromBos) {
  SKIP_WITHOUT(kStories + "/reference/reference.json");
  auto ref = readJson(kStories + "/reference/reference.json");
  ASSERT_TRUE(ref);
  const auto *obj = ref->getAsObject();
  int32_t bos = int32_t(obj->getInteger("bos_id").value_or(1));
  std::vector<int32_t> expected = intList(obj->getArray("greedy_ids"));
  ASSERT_FALSE(expected.empty());
  Loaded m(kStories);
  ASSERT_TRUE(m.exec);
  std::vector<int32_t> got;
  std::string err;
  ASSERT_TRUE(qopt::greedyGenerate(*m.exec, {bos}, int(expected.size()), std::nullopt, &got,
                                   &err))
      << err;
  EXPECT_EQ(got, expected);
}

#ifdef QOPT_HAVE_TOKENIZER
void checkPerplexity(const std::string &textPath, const char *refKey) {
  SKIP_WITHOUT(textPath);
  SKIP_WITHOUT(kAusten + "/reference/reference.json");
  auto ref = readJson(kAusten + "/reference/reference.json");
  ASSERT_TRUE(ref);
  const auto *entry = ref->getAsObject()->getObject("ppl")->getObject(refKey);
  ASSERT_TRUE(entry);
  double expected = entry->getNumber("fp32").value_or(0);

  std::string err;
  auto tok = qrt::Tokenizer::fromFile(kAusten + "/tokenizer.json", &err);
  ASSERT_TRUE(tok) << err;
  std::ifstream f(textPath, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<int32_t> tokens = tok->encode(text, /*addSpecial=*/false);

  Loaded m(kAusten);
  ASSERT_TRUE(m.exec);
  qopt::PerplexityResult r;
  ASSERT_TRUE(qopt::evaluatePerplexity(*m.exec, tokens, 256, 40, &r, &err)) << err;
  std::cout << refKey << ": perplexity " << r.perplexity << " (transformers " << expected
            << ")\n";
  EXPECT_EQ(r.windows, 40);
  EXPECT_EQ(r.predicted, 40 * 255);
  EXPECT_NEAR(r.perplexity, expected, 0.02);
}

TEST(ExecShared, AustenPerplexityPersuasion) {
  checkPerplexity(kShared + "/data/text/austen/persuasion.txt", "austen_persuasion");
}

TEST(ExecShared, AustenPerplexityTinyStories) {
  checkPerplexity(kShared + "/data/text/tinystories_eval_split.txt", "tinystories_eval");
}
#endif

} // namespace
