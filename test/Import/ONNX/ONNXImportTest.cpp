//===- ONNXImportTest.cpp - ONNX importer against independent references ===//
//
// - The shared austen-llama-7m export (torch.onnx dynamo) must import to
//   the very IR the Hugging Face importer makes of the same model's
//   directory (modulo bf16 -> f32 weights), with bit-identical weights
//   (the ONNX fp32 weights are the bf16 checkpoint upcast).
// - The graphs make_graphs.py writes (several exporter styles, checked
//   there against a numpy Llama and onnxruntime) must recover the config
//   and every weight it recorded, and map every node 1:1 generically.
// - Corrupt files, unsupported ops, non-causal masks and broken external
//   data must fail with one line naming the file, node or tensor.
//
//===----------------------------------------------------------------------===//
#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Dialect/QONNX/QONNXOps.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Import/ONNXImporter.h"
#ifdef QOPT_HAVE_HF_IMPORT
#include "qopt/Import/HFImporter.h"
#endif

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sys/stat.h>

using namespace mlir;

namespace {

bool exists(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string sharedModelDir() { return std::string(QOPT_SHARED_DIR) + "/models/austen-llama-7m"; }

/// Where make_graphs.py wrote its graphs (ctest sets it; a fixture runs it).
std::string graphsDir() {
  const char *d = std::getenv("QOPT_ONNX_TEST_GRAPHS");
  return d ? d : "";
}

std::string printModule(ModuleOp m) {
  std::string s;
  llvm::raw_string_ostream os(s);
  m.print(os);
  return s;
}

std::string replaceAll(std::string s, const std::string &from, const std::string &to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

std::vector<std::string> paramNames(ModuleOp m) {
  std::vector<std::string> out;
  m.walk([&](qopt::qllm::ParamOp p) { out.push_back(p.getName().str()); });
  return out;
}

#ifdef QOPT_HAVE_HF_IMPORT
TEST(SharedAustenLlama, OnnxImportEqualsHuggingFaceImport) {
  std::string dir = sharedModelDir();
  if (!exists(dir + "/model.onnx") || !exists(dir + "/model.safetensors"))
    GTEST_SKIP() << "shared model not found at " << dir;
  MLIRContext ctx;
  qopt::WeightStore onnxStore, hfStore;
  std::string error;
  auto fromOnnx = qopt::importONNX(ctx, dir + "/model.onnx", onnxStore, &error);
  ASSERT_TRUE(fromOnnx) << error;
  auto fromHF = qopt::importHuggingFaceDir(ctx, dir, hfStore, &error);
  ASSERT_TRUE(fromHF) << error;

  // Whole module: function body and the qllm.config attribute (bos/eos and
  // max_position_embeddings come from the config.json beside model.onnx).
  std::string hfText = replaceAll(printModule(*fromHF), "bf16", "f32");
  EXPECT_EQ(printModule(*fromOnnx), hfText);

  // Weights: the ONNX export holds the bf16 checkpoint upcast to fp32, so
  // every value must be bit-identical, whatever layout each store keeps.
  std::vector<std::string> names = paramNames(*fromOnnx);
  ASSERT_EQ(names.size(), 57u); // 9 per layer x 6, embedding, final norm, lm_head
  for (const std::string &n : names) {
    const qopt::WeightEntry *a = onnxStore.find(n), *b = hfStore.find(n);
    ASSERT_TRUE(a && b) << n;
    EXPECT_EQ(a->dtype, qopt::DType::F32) << n;
    EXPECT_EQ(a->shape, b->shape) << n;
    std::vector<float> x = onnxStore.readF32(*a), y = hfStore.readF32(*b);
    ASSERT_EQ(x.size(), y.size()) << n;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0) << n;
  }
  // Linear weights stay where protobuf parsed them, stored [in, out].
  EXPECT_TRUE(onnxStore.find("model.layers.0.self_attn.q_proj.weight")->transposed);
  // Nothing but the decoder's tensors is left in the store.
  EXPECT_EQ(onnxStore.size(), names.size());
}
#endif

TEST(SharedAustenLlama, GenericImportIsOneToOne) {
  std::string path = sharedModelDir() + "/model.onnx";
  if (!exists(path))
    GTEST_SKIP() << "shared model not found at " << path;
  MLIRContext ctx;
  qopt::WeightStore store;
  std::string error;
  auto m = qopt::importONNXGeneric(ctx, path, store, &error);
  ASSERT_TRUE(m) << error;
  // 483 nodes, plus one Transpose reading each [in, out] linear weight
  // (7 per layer x 6 layers + lm_head).
  int nodes = 0, readBack = 0;
  m->walk([&](qopt::qonnx::NodeOp n) {
    ++nodes;
    readBack += n.getNodeName().ends_with("/as_stored");
  });
  EXPECT_EQ(readBack, 43);
  EXPECT_EQ(nodes - readBack, 483);
}

//===----------------------------------------------------------------------===//
// Generated graphs
//===----------------------------------------------------------------------===//

struct Expected {
  llvm::json::Object config;
  llvm::json::Object weights;
  llvm::json::Array nodes;
  std::string blob;
};

bool loadExpected(const std::string &dir, Expected *e, std::string *why) {
  auto buf = llvm::MemoryBuffer::getFile(dir + "/expected.json");
  auto bin = llvm::MemoryBuffer::getFile(dir + "/expected.bin");
  if (!buf || !bin) {
    *why = "missing expected.json/.bin in " + dir;
    return false;
  }
  auto json = llvm::json::parse((*buf)->getBuffer());
  if (!json) {
    *why = llvm::toString(json.takeError());
    return false;
  }
  auto *o = json->getAsObject();
  e->config = *o->getObject("config");
  e->weights = *o->getObject("weights");
  e->nodes = *o->getArray("nodes");
  e->blob = (*bin)->getBuffer().str();
  return true;
}

class GeneratedGraph : public ::testing::TestWithParam<const char *> {};

TEST_P(GeneratedGraph, RecoversConfigAndWeights) {
  std::string dir = graphsDir() + "/" + GetParam();
  if (graphsDir().empty() || !exists(dir + "/model.onnx"))
    GTEST_SKIP() << "generated graphs not found (run make_graphs.py; ctest does)";
  Expected want;
  std::string why;
  ASSERT_TRUE(loadExpected(dir, &want, &why)) << why;
  MLIRContext ctx;
  qopt::WeightStore store;
  std::string error;
  auto m = qopt::importONNX(ctx, dir + "/model.onnx", store, &error);
  ASSERT_TRUE(m) << error;
  ASSERT_TRUE(succeeded(verify(*m)));

  qopt::ModelConfig c;
  ASSERT_TRUE(qopt::getConfigAttr(*m, &c, &error)) << error;
  auto i = [&](const char *k) { return *want.config.getInteger(k); };
  auto f = [&](const char *k) { return *want.config.getNumber(k); };
  EXPECT_EQ(c.vocabSize, i("vocab_size"));
  EXPECT_EQ(c.hiddenSize, i("hidden_size"));
  EXPECT_EQ(c.intermediateSize, i("intermediate_size"));
  EXPECT_EQ(c.numLayers, i("num_hidden_layers"));
  EXPECT_EQ(c.numHeads, i("num_attention_heads"));
  EXPECT_EQ(c.numKvHeads, i("num_key_value_heads"));
  EXPECT_EQ(c.headDim, i("head_dim"));
  // Exactly the decimal the config would hold, not the fp32 constant.
  EXPECT_EQ(c.rmsNormEps, f("rms_norm_eps"));
  EXPECT_EQ(c.ropeTheta, f("rope_theta"));
  EXPECT_EQ(c.ropeScaling.type, want.config.getString("rope_type")->str());
  if (c.ropeScaling.type != "default") {
    EXPECT_EQ(c.ropeScaling.factor, f("rope_factor"));
  }
  EXPECT_EQ(c.tieWordEmbeddings, *want.config.getBoolean("tie_word_embeddings"));
  EXPECT_EQ(c.attentionBias, *want.config.getBoolean("attention_bias"));

  // The IR is the canonical form for that config over the same store.
  qopt::WeightStore &s = store;
  auto canonical = qopt::buildDecoderModule(ctx, c, s, "canonical", &error);
  ASSERT_TRUE(canonical) << error;
  EXPECT_EQ(printModule(*m), printModule(*canonical));

  // Every recorded weight, exactly; and nothing else in the store.
  std::string dtype = want.config.getString("weight_dtype")->str();
  std::vector<std::string> params = paramNames(*m);
  EXPECT_EQ(params.size(), want.weights.size());
  EXPECT_EQ(store.size(), want.weights.size());
  for (auto &kv : want.weights) {
    std::string name = kv.first.str();
    const qopt::WeightEntry *e = store.find(name);
    ASSERT_TRUE(e) << name;
    EXPECT_EQ(qopt::dtypeName(e->dtype), dtype) << name;
    auto *w = kv.second.getAsObject();
    std::vector<int64_t> shape;
    for (auto &d : *w->getArray("shape"))
      shape.push_back(*d.getAsInteger());
    EXPECT_EQ(e->shape, shape) << name;
    std::vector<float> got = store.readF32(*e);
    size_t off = size_t(*w->getInteger("offset"));
    ASSERT_LE(off + got.size() * 4, want.blob.size());
    EXPECT_EQ(std::memcmp(got.data(), want.blob.data() + off, got.size() * 4), 0) << name;
  }
}

TEST_P(GeneratedGraph, GenericImportMapsEveryNode) {
  std::string dir = graphsDir() + "/" + GetParam();
  if (graphsDir().empty() || !exists(dir + "/model.onnx"))
    GTEST_SKIP() << "generated graphs not found (run make_graphs.py; ctest does)";
  Expected want;
  std::string why;
  ASSERT_TRUE(loadExpected(dir, &want, &why)) << why;
  MLIRContext ctx;
  qopt::WeightStore store;
  std::string error;
  auto m = qopt::importONNXGeneric(ctx, dir + "/model.onnx", store, &error);
  ASSERT_TRUE(m) << error;
  ASSERT_TRUE(succeeded(verify(*m)));
  std::vector<std::pair<std::string, std::string>> got;
  m->walk([&](qopt::qonnx::NodeOp n) {
    if (!n.getNodeName().ends_with("/as_stored"))
      got.push_back({n.getNodeName().str(), n.getOpType().str()});
  });
  // Constant nodes become qonnx.constant ops named after their output.
  std::vector<std::pair<std::string, std::string>> nodes;
  int constants = 0;
  for (auto &n : want.nodes) {
    auto *pair = n.getAsArray();
    std::string type = (*pair)[1].getAsString()->str();
    if (type == "Constant")
      ++constants;
    else
      nodes.push_back({(*pair)[0].getAsString()->str(), type});
  }
  EXPECT_EQ(got, nodes);
  int constOps = 0;
  m->walk([&](qopt::qonnx::ConstantOp) { ++constOps; });
  EXPECT_GE(constOps, constants);
}

INSTANTIATE_TEST_SUITE_P(Styles, GeneratedGraph,
                         ::testing::Values("ts14_cos_cache", "ts17_gqa_bias", "fp16_dynamo",
                                           "ext_data", "mqa_tied", "rope_linear", "bf16_cast"));

//===----------------------------------------------------------------------===//
// Bad inputs
//===----------------------------------------------------------------------===//

std::string importError(const std::string &path) {
  MLIRContext ctx;
  qopt::WeightStore store;
  std::string error;
  auto m = qopt::importONNX(ctx, path, store, &error);
  EXPECT_FALSE(m) << path << " imported";
  EXPECT_EQ(store.size(), 0u) << "a failed import left tensors in the store";
  EXPECT_EQ(error.find('\n'), std::string::npos) << "the message is not one line: " << error;
  return error;
}

std::string tempPath(const char *name) {
  return ::testing::TempDir() + "/qopt_onnx_" + std::to_string(::getpid()) + "_" + name;
}

void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

TEST(BadInput, TruncatedFiles) {
  std::string src = graphsDir() + "/ts14_cos_cache/model.onnx";
  if (graphsDir().empty() || !exists(src))
    GTEST_SKIP() << "generated graphs not found";
  auto buf = llvm::MemoryBuffer::getFile(src);
  ASSERT_TRUE(bool(buf));
  std::string whole = (*buf)->getBuffer().str();
  // Cuts at odd places: inside headers, inside tensor payloads, one byte short.
  for (size_t cut : {size_t(1), size_t(7), whole.size() / 3, whole.size() / 2, whole.size() - 1}) {
    std::string path = tempPath("truncated.onnx");
    writeFile(path, whole.substr(0, cut));
    std::string e = importError(path);
    EXPECT_EQ(e.rfind(path + ": not a valid ONNX model: ", 0), 0u) << "cut " << cut << ": " << e;
    std::remove(path.c_str());
  }
}

TEST(BadInput, RandomBytesAndEmptyFile) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    std::string bytes(size_t(1 + rng() % 4096), '\0');
    for (char &c : bytes)
      c = char(rng());
    std::string path = tempPath("random.onnx");
    writeFile(path, bytes);
    std::string e = importError(path);
    EXPECT_EQ(e.rfind(path + ": not a valid ONNX model: ", 0), 0u) << e;
    std::remove(path.c_str());
  }
  std::string path = tempPath("empty.onnx");
  writeFile(path, "");
  EXPECT_NE(importError(path).find("not a valid ONNX model: the file is empty"), std::string::npos);
  std::remove(path.c_str());
  EXPECT_NE(importError(tempPath("does-not-exist.onnx")).find("cannot open"), std::string::npos);
}

/// Random byte flips of valid models, through the whole importer (the
/// libFuzzer target covers the MLIR-free loader under ASan; this covers the
/// generic mapping, the evaluator and the patterns): never a crash, and a
/// failure is one line naming the file.
TEST(BadInput, MutatedModelsFailCleanly) {
  if (graphsDir().empty() || !exists(graphsDir() + "/mqa_tied/model.onnx"))
    GTEST_SKIP() << "generated graphs not found";
  std::mt19937 rng(11);
  int imported = 0, rejected = 0;
  for (const char *name : {"mqa_tied", "ts17_gqa_bias"}) {
    auto buf = llvm::MemoryBuffer::getFile(graphsDir() + "/" + name + "/model.onnx");
    ASSERT_TRUE(bool(buf));
    std::string whole = (*buf)->getBuffer().str();
    for (int trial = 0; trial < 150; ++trial) {
      std::string bytes = whole;
      int flips = 1 + int(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        // Bias towards the nodes, serialized before the initializers (whose
        // payloads mostly mutate into mere weight changes).
        size_t pos = rng() % 4 ? rng() % std::min<size_t>(bytes.size(), 16384)
                               : rng() % bytes.size();
        bytes[pos] = char(rng());
      }
      std::string path = tempPath("mutated.onnx");
      writeFile(path, bytes);
      MLIRContext ctx;
      qopt::WeightStore store;
      std::string error;
      auto m = qopt::importONNX(ctx, path, store, &error);
      if (m) {
        ++imported;
        EXPECT_TRUE(succeeded(verify(*m)));
      } else {
        ++rejected;
        EXPECT_EQ(error.rfind(path + ": ", 0), 0u) << error;
        EXPECT_EQ(error.find('\n'), std::string::npos) << error;
        EXPECT_EQ(store.size(), 0u);
      }
      std::remove(path.c_str());
    }
  }
  EXPECT_GT(rejected, 0);
  std::printf("mutated models: %d imported, %d rejected\n", imported, rejected);
}

TEST(BadInput, GeneratedBadGraphs) {
  if (graphsDir().empty() || !exists(graphsDir() + "/bad_tanh/model.onnx"))
    GTEST_SKIP() << "generated graphs not found";
  std::string g = graphsDir();
  std::string e = importError(g + "/bad_tanh/model.onnx");
  EXPECT_NE(e.find("first node left over: the_tanh_node (Tanh)"), std::string::npos) << e;

  e = importError(g + "/bad_mask/model.onnx");
  EXPECT_NE(e.find("first node left over: "), std::string::npos) << e;
  EXPECT_NE(e.find("the attention mask is not causal"), std::string::npos) << e;

  e = importError(g + "/ext_missing/model.onnx");
  EXPECT_NE(e.find("ext_missing/weights.bin"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;

  e = importError(g + "/ext_offset/model.onnx");
  EXPECT_NE(e.find("past the end of"), std::string::npos) << e;

  e = importError(g + "/ext_escape/model.onnx");
  EXPECT_NE(e.find("must be a relative path inside the model's directory"), std::string::npos) << e;
}

} // namespace
