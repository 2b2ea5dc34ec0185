//===- ArtifactTest.cpp - qopt's artifact writer vs the runtime's loader ---===//
//
// Writes artifacts from synthesized models (qopt-synth, always available)
// and austen-llama-7m (skipped without ../shared), unquantized and RTN
// int4/int8, opens them with qrt::Artifact and checks the config, every
// float tensor's bytes against the weight store, every packed weight
// unpacked by an independent reading of docs/kernels-cpu.md's layout
// against loadQuantized's codes/scales/zeros, alignment, byte-identical
// output for identical inputs, and the loader's refusals.
//
//===----------------------------------------------------------------------===//
#include "qopt/CodeGen/ArtifactWriter.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Import/HFImporter.h"
#include "qopt/Import/ONNXImporter.h"
#include "qopt/Quant/Pipeline.h"
#include "qopt/Quant/QuantFormat.h"
#include "qopt/Quant/Quantizer.h"
#include "qopt-rt/artifact/Artifact.h"
#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"
#include "qopt-rt/kernels/ThreadPool.h"
#include "qopt-rt/model/CpuModelExecutor.h"
#include "qopt-rt/model/FromArtifact.h"
#include "qopt-rt/serving/KVCache.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/JSON.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <unistd.h>

using namespace qopt;
namespace fs = std::filesystem;

namespace {

std::string tempDir(const std::string &tag) {
  fs::path p = fs::temp_directory_path() /
               ("qopt-artifact-test-" + std::to_string(::getpid()) + "-" + tag);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string readAll(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeAll(const std::string &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

/// A model imported (and optionally quantized) in its own context.
struct Model {
  mlir::MLIRContext ctx;
  WeightStore store;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  ModelConfig config;
  std::string dir;
  /// -wquant-override rules (mixed precision).
  std::vector<std::string> overrides;

  bool load(const std::string &modelDir, const std::string &wquant, int64_t groupSize,
            bool symmetric, std::string *error) {
    const bool onnx = modelDir.size() > 5 && modelDir.substr(modelDir.size() - 5) == ".onnx";
    dir = onnx ? fs::path(modelDir).parent_path().string() : modelDir;
    ctx.loadDialect<qllm::QLLMDialect, mlir::func::FuncDialect>();
    module = onnx ? importONNX(ctx, modelDir, store, error)
                  : importHuggingFaceDir(ctx, modelDir, store, error);
    if (!module)
      return false;
    ctx.getLoadedDialect<qllm::QLLMDialect>()->setWeightStore(&store);
    if (!getConfigAttr(*module, &config, error))
      return false;
    if (wquant.empty())
      return true;
    quant::QuantPipelineOptions o;
    o.wquant = wquant;
    o.groupSize = groupSize;
    o.symmetric = symmetric;
    o.overrides = overrides;
    if (!quant::validateQuantPipelineOptions(o, error))
      return false;
    mlir::PassManager pm(&ctx);
    quant::buildQuantizationPipeline(pm, o);
    if (mlir::failed(pm.run(*module))) {
      *error = "quantization failed";
      return false;
    }
    return true;
  }

  ArtifactOptions options(const std::string &out, const std::string &target = "cpu") const {
    ArtifactOptions a;
    a.outputPath = out;
    a.target = target;
    a.tokenizerPath = dir + "/tokenizer.json";
    a.generationConfigPath = dir + "/generation_config.json";
    return a;
  }
};

std::string synthModel(const std::string &tag, const std::string &extraArgs) {
  std::string dir = tempDir("synth-" + tag);
  std::string cmd = std::string(QOPT_SYNTH_PATH) + " -preset=tiny " + extraArgs + " -o " + dir +
                    " > /dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    return "";
  return dir;
}

std::string sharedModel(const char *name) {
  std::string dir = std::string(QOPT_SHARED_DIR) + "/models/" + name;
  return fs::exists(dir + "/config.json") ? dir : "";
}

/// Codes, scales and zeros of a packed matrix, read back following the
/// layout as docs/kernels-cpu.md describes it (not the runtime's code).
void unpackIndependently(const uint8_t *data, const qrt::kernels::PackedFormat &f,
                         const qrt::kernels::PackedGeometry &g, std::vector<uint8_t> *codes,
                         std::vector<float> *scales, std::vector<float> *zeros) {
  const int64_t N = g.rows, K = g.cols, G = g.groups, gs = g.groupSize;
  codes->assign(size_t(N * K), 0);
  scales->assign(size_t(N * G), 0);
  zeros->assign(size_t(N * G), 0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t tile = n / 16, r = n % 16;
    const uint8_t *t = data + tile * g.tileStride;
    for (int64_t grp = 0; grp < G; ++grp) {
      const uint8_t *sb = t + (grp / 4) * g.superblockStride;
      const int64_t slot = grp % 4;
      uint16_t h;
      std::memcpy(&h, sb + 32 * slot + 2 * r, 2);
      (*scales)[size_t(n * G + grp)] = qrt::f16ToF32(h);
      (*zeros)[size_t(n * G + grp)] =
          f.symmetric ? float(1 << (f.bits - 1)) : float(sb[128 + 16 * slot + r]);
      const uint8_t *c = sb + g.metaBytes + slot * g.groupCodeBytes;
      for (int64_t k = grp * gs; k < std::min((grp + 1) * gs, K); ++k) {
        const int64_t local = k - grp * gs;
        uint8_t code;
        if (f.bits == 4) {
          const int64_t chunk = local / 8, within = local % 8;
          const uint8_t byte = c[chunk * 64 + 4 * r + (within % 4)];
          code = within < 4 ? (byte & 15) : (byte >> 4);
        } else {
          const int64_t chunk = local / 4, within = local % 4;
          code = c[chunk * 64 + 4 * r + within];
        }
        (*codes)[size_t(n * K + k)] = code;
      }
    }
  }
}

/// Where a projection fused by the writer lives: its rows
/// [rowOffset, rowOffset + rows) of tensor `fused`.
struct FusedSlice {
  std::string fused;
  int64_t rowOffset = 0, rows = 0;
};

/// The writer's fusion as docs/artifact.md names it: qkv_proj holds the
/// rows of q_proj, k_proj, v_proj (and its bias theirs, zeros for a
/// missing one); gate_up_proj those of gate_proj, up_proj. Maps each part
/// (weight or bias name) to its slice, and each fused tensor to its parts.
void fusedSlices(const qrt::Artifact &a, std::map<std::string, FusedSlice> *slices,
                 std::map<std::string, std::vector<std::pair<std::string, int64_t>>> *parts) {
  for (size_t i = 0; i < a.layers().size(); ++i) {
    const qrt::ArtifactLayer &L = a.layers()[i];
    const int64_t li = int64_t(i);
    auto add = [&](const qrt::ArtifactLinear &l, std::vector<std::string> weights,
                   std::vector<std::string> biases) {
      ASSERT_EQ(l.parts.size(), weights.size());
      int64_t off = 0;
      for (size_t j = 0; j < weights.size(); ++j) {
        (*slices)[weights[j]] = {l.name, off, l.parts[j]};
        (*parts)[l.name].push_back({weights[j], l.parts[j]});
        if (l.bias) {
          (*slices)[biases[j]] = {l.bias->name, off, l.parts[j]};
          (*parts)[l.bias->name].push_back({biases[j], l.parts[j]});
        }
        off += l.parts[j];
      }
    };
    if (L.fusedQkv()) {
      EXPECT_EQ(L.qkv.name, names::attn(li, "qkv_proj"));
      add(L.qkv, {names::attn(li, "q_proj"), names::attn(li, "k_proj"), names::attn(li, "v_proj")},
          {names::attn(li, "q_proj", "bias"), names::attn(li, "k_proj", "bias"),
           names::attn(li, "v_proj", "bias")});
    }
    if (L.fusedGateUp()) {
      EXPECT_EQ(L.gateUp.name, names::mlp(li, "gate_up_proj"));
      add(L.gateUp, {names::mlp(li, "gate_proj"), names::mlp(li, "up_proj")}, {"", ""});
    }
  }
}

/// Every check that compares an opened artifact with the model it came from.
void checkArtifact(Model &m, const std::string &path, int *packedSeen) {
  std::string error;
  auto a = qrt::Artifact::open(path, &error);
  ASSERT_TRUE(a) << error;
  const qrt::ArtifactConfig &c = a->config();
  EXPECT_EQ(c.vocabSize, m.config.vocabSize);
  EXPECT_EQ(c.hiddenSize, m.config.hiddenSize);
  EXPECT_EQ(c.intermediateSize, m.config.intermediateSize);
  EXPECT_EQ(c.numLayers, m.config.numLayers);
  EXPECT_EQ(c.numHeads, m.config.numHeads);
  EXPECT_EQ(c.numKvHeads, m.config.numKvHeads);
  EXPECT_EQ(c.headDim, m.config.headDim);
  EXPECT_EQ(c.maxPositionEmbeddings, m.config.maxPositionEmbeddings);
  EXPECT_EQ(c.rmsNormEps, m.config.rmsNormEps);
  EXPECT_EQ(c.ropeTheta, m.config.ropeTheta);
  EXPECT_EQ(c.ropeType, m.config.ropeScaling.type);
  EXPECT_EQ(c.tieWordEmbeddings, m.config.tieWordEmbeddings);
  EXPECT_EQ(c.bosTokenId, m.config.bosTokenId.value_or(-1));
  EXPECT_EQ(c.eosTokenId, m.config.eosTokenId.value_or(-1));
  ASSERT_EQ(int64_t(a->layers().size()), m.config.numLayers);
  EXPECT_EQ(a->embedding().name, names::embedTokens());
  EXPECT_EQ(a->finalNorm().name, names::finalNorm());
  const qrt::ArtifactLayer &L0 = a->layers()[0];
  EXPECT_EQ(L0.fusedQkv() ? L0.qkv.parts.front() : L0.q.outFeatures,
            m.config.numHeads * m.config.headDim);
  if (!L0.fusedQkv()) {
    EXPECT_EQ(L0.q.name, names::attn(0, "q_proj"));
  }
  EXPECT_EQ(L0.down.name, names::mlp(0, "down_proj"));
  std::map<std::string, FusedSlice> slices;
  std::map<std::string, std::vector<std::pair<std::string, int64_t>>> fusedParts;
  fusedSlices(*a, &slices, &fusedParts);
  if (m.config.tieWordEmbeddings) {
    EXPECT_EQ(a->lmHead().packed, &a->embedding());
  }
  EXPECT_EQ(a->tokenizerPath().empty(), !fs::exists(m.dir + "/tokenizer.json"));

  const uint8_t *base = nullptr;
  for (const qrt::ArtifactTensor &t : a->tensors())
    if (!base || t.data < base)
      base = t.data;
  for (const qrt::ArtifactTensor &t : a->tensors()) {
    SCOPED_TRACE(t.name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % qrt::kArtifactAlign, 0u);
    EXPECT_EQ(size_t(t.data - base) % qrt::kArtifactAlign, 0u);
    if (t.layout == "row_major" && fusedParts.count(t.name)) {
      // A fused float tensor: its parts' rows (or zeros for a missing
      // bias), in order, in its dtype.
      std::string want;
      for (const auto &[part, rows] : fusedParts[t.name]) {
        const WeightEntry *e = part.empty() ? nullptr : m.store.find(part);
        if (!e) {
          want.append(size_t(rows) * sizeof(float), '\0');
        } else if (t.dtype == "f32") {
          std::vector<float> f = m.store.readF32(*e);
          want.append(reinterpret_cast<const char *>(f.data()), f.size() * sizeof(float));
        } else {
          ASSERT_EQ(t.dtype, qopt::dtypeName(e->dtype));
          want.append(reinterpret_cast<const char *>(e->data), e->nbytes);
        }
      }
      ASSERT_EQ(t.nbytes, want.size());
      EXPECT_EQ(std::memcmp(t.data, want.data(), t.nbytes), 0);
    } else if (t.layout == "row_major") {
      const WeightEntry *e = m.store.find(t.name);
      ASSERT_TRUE(e);
      EXPECT_EQ(t.shape, e->shape);
      if (t.dtype == qopt::dtypeName(e->dtype) && !e->transposed) {
        ASSERT_EQ(t.nbytes, e->nbytes);
        EXPECT_EQ(std::memcmp(t.data, e->data, t.nbytes), 0);
      } else {
        ASSERT_EQ(t.dtype, "f32");
        std::vector<float> want = m.store.readF32(*e);
        ASSERT_EQ(t.nbytes, want.size() * 4);
        EXPECT_EQ(std::memcmp(t.data, want.data(), t.nbytes), 0);
      }
    }
  }

  // Packed weights: against the qparam's codes / scales / zeros.
  auto func = m.module->lookupSymbol<mlir::func::FuncOp>("forward");
  func.walk([&](qllm::QParamOp q) {
    const std::string name = q.getName().str();
    SCOPED_TRACE(name);
    // A fused projection: its rows of the fused tensor.
    FusedSlice slice{name, 0, q.getResult().getType().getShape()[0]};
    if (slices.count(name))
      slice = slices[name];
    const qrt::ArtifactTensor *t = a->tensor(slice.fused);
    ASSERT_TRUE(t);
    auto type = q.getResult().getType();
    quant::QuantizedMatrix ref;
    std::string err;
    ASSERT_TRUE(quant::loadQuantized(m.store, name, type.getQuant(), type.getShape()[0],
                                     type.getShape()[1], &ref, &err))
        << err;
    qrt::kernels::PackedFormat f;
    ASSERT_TRUE(qrt::kernels::parseLayoutId(t->layout, &f, &err)) << err;
    EXPECT_EQ(f.bits, int(ref.format.bits));
    EXPECT_EQ(f.symmetric, ref.format.symmetric);
    EXPECT_EQ(f.groupSize, ref.format.groupSize == -1 ? 0 : ref.format.groupSize);
    int64_t fusedRows = slice.rowOffset + slice.rows;
    if (fusedParts.count(slice.fused)) {
      fusedRows = 0;
      for (const auto &part : fusedParts[slice.fused])
        fusedRows += part.second;
    }
    ASSERT_EQ(slice.rows, ref.rows);
    qrt::kernels::PackedGeometry g;
    ASSERT_TRUE(qrt::kernels::computeGeometry(f, fusedRows, ref.cols, &g, &err)) << err;
    ASSERT_EQ(size_t(g.totalBytes), t->nbytes);
    std::vector<uint8_t> codes;
    std::vector<float> scales, zeros;
    unpackIndependently(t->data, f, g, &codes, &scales, &zeros);
    // This projection's rows of the (possibly fused) matrix.
    const size_t r0 = size_t(slice.rowOffset), nr = size_t(ref.rows);
    const size_t K = size_t(ref.cols), G = size_t(g.groups);
    auto rowsOf = [&](const auto &v, size_t width) {
      return std::vector<typename std::decay_t<decltype(v)>::value_type>(
          v.begin() + r0 * width, v.begin() + (r0 + nr) * width);
    };
    EXPECT_EQ(rowsOf(codes, K), ref.codes);
    EXPECT_EQ(rowsOf(scales, G), ref.scales);
    if (!f.symmetric) {
      EXPECT_EQ(rowsOf(zeros, G), ref.zeros);
    }
    // And the runtime's own dequantizer agrees with the compiler's.
    std::vector<float> got(size_t(fusedRows) * K);
    qrt::kernels::dequantizePacked({f, g, t->data}, got.data());
    EXPECT_EQ(rowsOf(got, K), quant::dequantize(ref));
    ++*packedSeen;
  });
  for (const qrt::ArtifactLayer &L : a->layers())
    for (const qrt::ArtifactLinear *l :
         {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.qkv, &L.gateUp}) {
      if (l->name.empty()) // fused away, or not fused
        continue;
      qrt::kernels::PackedView v;
      std::string err;
      bool isPacked = l->format == "int4" || l->format == "int8";
      EXPECT_EQ(qrt::packedView(*l, &v, &err), isPacked) << err;
      if (isPacked) {
        EXPECT_EQ(v.data, l->packed->data);
        EXPECT_EQ(size_t(v.geometry.totalBytes), l->packed->nbytes);
        EXPECT_EQ(v.geometry.rows, l->outFeatures);
      }
    }
}

void expectSameTree(const std::string &x, const std::string &y) {
  std::vector<std::string> nx, ny;
  for (auto &e : fs::directory_iterator(x))
    nx.push_back(e.path().filename().string());
  for (auto &e : fs::directory_iterator(y))
    ny.push_back(e.path().filename().string());
  std::sort(nx.begin(), nx.end());
  std::sort(ny.begin(), ny.end());
  ASSERT_EQ(nx, ny);
  for (const std::string &n : nx)
    EXPECT_TRUE(readAll(x + "/" + n) == readAll(y + "/" + n)) << n << " differs";
}

void roundTrip(const std::string &modelDir, const std::string &wquant, int64_t groupSize,
               bool symmetric, bool expectPacked) {
  Model m;
  std::string error;
  ASSERT_TRUE(m.load(modelDir, wquant, groupSize, symmetric, &error)) << error;
  std::string out = tempDir("out") + "/model.qopt";
  ASSERT_TRUE(writeArtifact(*m.module, m.store, m.options(out), &error)) << error;
  int packed = 0;
  checkArtifact(m, out, &packed);
  if (expectPacked)
    EXPECT_EQ(packed, 7 * m.config.numLayers);
  else
    EXPECT_EQ(packed, 0);
  // Same inputs, same bytes; writing over an artifact replaces it.
  std::string again = tempDir("again") + "/model.qopt";
  ASSERT_TRUE(writeArtifact(*m.module, m.store, m.options(again), &error)) << error;
  expectSameTree(out, again);
  ASSERT_TRUE(writeArtifact(*m.module, m.store, m.options(again), &error)) << error;
  expectSameTree(out, again);
  EXPECT_TRUE(fs::exists(out + "/model.mlir"));
  EXPECT_EQ(fs::exists(out + "/report.json"), expectPacked);
}

TEST(Artifact, SynthFloat) {
  std::string dir = synthModel("float", "");
  ASSERT_FALSE(dir.empty());
  roundTrip(dir, "", 0, false, false);
}

TEST(Artifact, SynthInt4G32Asym) {
  std::string dir = synthModel("i4", "");
  ASSERT_FALSE(dir.empty());
  roundTrip(dir, "int4", 32, false, true);
}

TEST(Artifact, SynthInt4G128ShortLastGroup) {
  // intermediate 160: down_proj's K is not a multiple of the group.
  std::string dir = synthModel("i4g128", "");
  ASSERT_FALSE(dir.empty());
  roundTrip(dir, "int4", 128, true, true);
}

TEST(Artifact, SynthInt8PerChannelQwenBiasTied) {
  std::string dir = synthModel("qwen", "-arch=qwen2 -tie-word-embeddings -dtype=fp16");
  ASSERT_FALSE(dir.empty());
  roundTrip(dir, "int8", -1, true, true);
  // Qwen2's q/k/v biases reach the artifact.
  Model m;
  std::string error;
  ASSERT_TRUE(m.load(dir, "", 0, false, &error)) << error;
  std::string out = tempDir("qwen-bias") + "/m.qopt";
  ASSERT_TRUE(writeArtifact(*m.module, m.store, m.options(out), &error)) << error;
  auto a = qrt::Artifact::open(out, &error);
  ASSERT_TRUE(a) << error;
  for (const qrt::ArtifactLayer &L : a->layers()) {
    // Fused: one bias over q, k and v (checked value by value in checkArtifact).
    ASSERT_TRUE(L.fusedQkv());
    ASSERT_TRUE(L.qkv.bias);
    EXPECT_EQ(L.qkv.bias->shape, std::vector<int64_t>{L.qkv.outFeatures});
    EXPECT_TRUE(m.config.attentionBias);
    EXPECT_FALSE(L.o.bias);
  }
  EXPECT_EQ(a->lmHead().packed, &a->embedding());
}

TEST(Artifact, AustenFloat) {
  std::string dir = sharedModel("austen-llama-7m");
  if (dir.empty())
    GTEST_SKIP() << "../shared/models/austen-llama-7m absent";
  roundTrip(dir, "", 0, false, false);
}

TEST(Artifact, AustenInt4G128) {
  std::string dir = sharedModel("austen-llama-7m");
  if (dir.empty())
    GTEST_SKIP() << "../shared/models/austen-llama-7m absent";
  roundTrip(dir, "int4", 128, false, true);
}

TEST(Artifact, AustenOnnxInt8G64) {
  // ONNX stores MatMul weights transposed: float ones become f32 row-major.
  std::string dir = sharedModel("austen-llama-7m");
  if (dir.empty() || !fs::exists(dir + "/model.onnx"))
    GTEST_SKIP() << "../shared/models/austen-llama-7m/model.onnx absent";
  roundTrip(dir + "/model.onnx", "int8", 64, false, true);
  roundTrip(dir + "/model.onnx", "", 0, false, false);
}

TEST(Artifact, UnsupportedFormatsAreRefused) {
  std::string dir = synthModel("unsup", "");
  ASSERT_FALSE(dir.empty());
  for (const char *fmt : {"nf4", "int3", "int4:g48"}) {
    SCOPED_TRACE(fmt);
    Model m;
    std::string error;
    ASSERT_TRUE(m.load(dir, fmt, 128, false, &error)) << error;
    std::string out = tempDir("unsup-out") + "/x.qopt";
    EXPECT_FALSE(writeArtifact(*m.module, m.store, m.options(out), &error));
    EXPECT_NE(error.find("not supported by -target=cpu yet"), std::string::npos) << error;
    EXPECT_NE(error.find("weight 'model."), std::string::npos) << error;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out + ".tmp-" + std::to_string(::getpid())));
  }
}

TEST(Artifact, TargetsAndOutputPath) {
  std::string dir = synthModel("targets", "");
  ASSERT_FALSE(dir.empty());
  Model m;
  std::string error;
  ASSERT_TRUE(m.load(dir, "int4", 32, false, &error)) << error;
  std::string root = tempDir("targets-out");
  EXPECT_FALSE(writeArtifact(*m.module, m.store, m.options(root + "/a.qopt", "arm64"), &error));
  EXPECT_NE(error.find("unknown target 'arm64'"), std::string::npos) << error;
  // x86-64-v3 records its features; a CPU without them is refused at open.
  ASSERT_TRUE(writeArtifact(*m.module, m.store, m.options(root + "/v3.qopt", "x86-64-v3"), &error))
      << error;
  auto a = qrt::Artifact::openForInspection(root + "/v3.qopt", &error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->target().isa, "x86-64-v3");
  EXPECT_EQ(a->target().features, qrt::isaFeatures("x86-64-v3"));
  // Something that is not an artifact is never replaced.
  writeAll(root + "/file.qopt", "precious");
  EXPECT_FALSE(writeArtifact(*m.module, m.store, m.options(root + "/file.qopt"), &error));
  EXPECT_NE(error.find("not a qopt artifact"), std::string::npos) << error;
  EXPECT_EQ(readAll(root + "/file.qopt"), "precious");
  EXPECT_TRUE(isArtifactPath("x/model.qopt"));
  EXPECT_TRUE(isArtifactPath("model.qopt/"));
  EXPECT_FALSE(isArtifactPath("model.mlir"));
}

class BadArtifact : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    std::string dir = synthModel("bad", "");
    ASSERT_FALSE(dir.empty());
    Model m;
    std::string error;
    ASSERT_TRUE(m.load(dir, "int4", 32, false, &error)) << error;
    good_ = new std::string(tempDir("bad-good") + "/good.qopt");
    ASSERT_TRUE(writeArtifact(*m.module, m.store, m.options(*good_), &error)) << error;
  }
  static void TearDownTestSuite() { delete good_; }
  /// A fresh copy of the good artifact.
  std::string copy() {
    std::string dst = tempDir("bad-copy") + "/c.qopt";
    fs::copy(*good_, dst, fs::copy_options::recursive);
    return dst;
  }
  std::string openError(const std::string &path) {
    std::string error;
    auto a = qrt::Artifact::open(path, &error);
    EXPECT_FALSE(a);
    return error;
  }
  void editManifest(const std::string &path, const std::string &from, const std::string &to) {
    std::string text = readAll(path + "/manifest.json");
    size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    writeAll(path + "/manifest.json", text);
  }
  static std::string *good_;
};
std::string *BadArtifact::good_ = nullptr;

TEST_F(BadArtifact, GoodOneOpens) {
  std::string error;
  EXPECT_TRUE(qrt::Artifact::open(*good_, &error)) << error;
}

TEST_F(BadArtifact, Missing) {
  EXPECT_NE(openError("/nonexistent/x.qopt").find("no such artifact"), std::string::npos);
}

TEST_F(BadArtifact, CorruptManifest) {
  std::string p = copy();
  writeAll(p + "/manifest.json", "{\"format\": \"qopt-artifact\", ");
  std::string e = openError(p);
  EXPECT_NE(e.find("manifest.json: not valid JSON"), std::string::npos) << e;
}

TEST_F(BadArtifact, ForeignFormat) {
  std::string p = copy();
  editManifest(p, "\"qopt-artifact\"", "\"gguf\"");
  std::string e = openError(p);
  EXPECT_NE(e.find("format is 'gguf'"), std::string::npos) << e;
}

TEST_F(BadArtifact, WrongVersion) {
  std::string p = copy();
  editManifest(p, "\"version\": 2", "\"version\": 1");
  std::string e = openError(p);
  EXPECT_NE(e.find("artifact version 1, this runtime reads version 2"), std::string::npos) << e;
}

TEST_F(BadArtifact, TruncatedWeights) {
  std::string p = copy();
  fs::resize_file(p + "/weights.bin", fs::file_size(p + "/weights.bin") - 100);
  std::string e = openError(p);
  EXPECT_NE(e.find("weights.bin"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST_F(BadArtifact, TensorOutOfBoundsOrMisaligned) {
  std::string p = copy();
  editManifest(p, "\"offset\": 0", "\"offset\": 4000");
  std::string e = openError(p);
  EXPECT_NE(e.find("is not 4096-byte aligned"), std::string::npos) << e;
  p = copy();
  editManifest(p, "\"offset\": 0", "\"offset\": 4096000000");
  e = openError(p);
  EXPECT_NE(e.find("outside weights.bin"), std::string::npos) << e;
}

TEST_F(BadArtifact, UnknownCpuFeature) {
  std::string p = copy();
  editManifest(p, "\"features\": [", "\"features\": [\n      \"avx1024\",");
  std::string e = openError(p);
  EXPECT_NE(e.find("requires CPU feature 'avx1024'"), std::string::npos) << e;
}

TEST_F(BadArtifact, FeatureThisCpuLacks) {
  std::vector<std::string> host = qrt::hostCpuFeatures();
  std::string missing;
  for (const std::string &f : qrt::isaFeatures("x86-64-v4"))
    if (std::find(host.begin(), host.end(), f) == host.end())
      missing = f;
  for (const char *f : {"avx512vnni"})
    if (missing.empty() && std::find(host.begin(), host.end(), f) == host.end())
      missing = f;
  if (missing.empty())
    GTEST_SKIP() << "this CPU has every feature the runtime knows";
  std::string p = copy();
  editManifest(p, "\"features\": [", "\"features\": [\n      \"" + missing + "\",");
  std::string e = openError(p);
  EXPECT_NE(e.find("requires CPU feature '" + missing + "', which this CPU lacks"),
            std::string::npos)
      << e;
}

TEST_F(BadArtifact, MaskedFeatureIsRefused) {
  // The good artifact targets this host; hide one of its features.
  std::string error;
  auto a = qrt::Artifact::open(*good_, &error);
  ASSERT_TRUE(a) << error;
  if (a->target().features.empty())
    GTEST_SKIP() << "the host target records no features (not x86?)";
  const std::string f = a->target().features.back();
  ::setenv("QRT_DISABLE_CPU_FEATURES", ("sse9," + f).c_str(), 1);
  std::string e = openError(*good_);
  ::unsetenv("QRT_DISABLE_CPU_FEATURES");
  EXPECT_NE(e.find("target 'host' requires CPU feature '" + f + "', which this CPU lacks"),
            std::string::npos)
      << e;
  EXPECT_TRUE(qrt::Artifact::openForInspection(*good_, &error)) << error;
}

TEST_F(BadArtifact, ShapeDisagreesWithConfig) {
  std::string p = copy();
  editManifest(p, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
  std::string e = openError(p);
  EXPECT_NE(e.find("model.layers has 2 entries, config says 3"), std::string::npos) << e;
}

TEST_F(BadArtifact, FusedPartsDisagree) {
  std::string p = copy();
  std::string text = readAll(p + "/manifest.json");
  size_t at = text.find("\"parts\": [");
  ASSERT_NE(at, std::string::npos);
  size_t digit = text.find_first_of("0123456789", at);
  text.insert(digit, "1"); // e.g. 32 -> 132
  writeAll(p + "/manifest.json", text);
  std::string e = openError(p);
  // gate_up is the first fused linear of the (key-sorted) layer.
  EXPECT_NE(e.find("model.layers[0].gate_up.parts is [1"), std::string::npos) << e;
  EXPECT_NE(e.find("(summing to out_features"), std::string::npos) << e;
}

TEST_F(BadArtifact, FusedAndSeparateTogether) {
  std::string p = copy();
  editManifest(p, "\"qkv\": {", "\"q\": {}, \"qkv\": {");
  std::string e = openError(p);
  EXPECT_NE(e.find("model.layers[0] has both 'qkv' and 'q'"), std::string::npos) << e;
}

/// Logits of every position of `ids` from an artifact through the runtime's
/// CPU executor.
std::vector<float> artifactLogits(const std::string &path, const std::vector<int32_t> &ids) {
  std::string err;
  auto a = qrt::Artifact::open(path, &err);
  EXPECT_TRUE(a) << err;
  if (!a)
    return {};
  qrt::model::ArtifactModel m;
  EXPECT_TRUE(qrt::model::modelFromArtifact(*a, &m, &err)) << err;
  qrt::serving::KVCacheSpec spec;
  spec.numLayers = m.weights.dims.layers;
  spec.numKVHeads = m.weights.dims.kvHeads;
  spec.headDim = m.weights.dims.headDim;
  spec.blockSize = 16;
  spec.dtype = qrt::serving::KVDType::F16;
  auto kv = qrt::serving::KVCache::create(
      spec, qrt::serving::KVCache::bytesPerBlock(spec) * 4, &err);
  EXPECT_TRUE(kv) << err;
  qrt::kernels::ThreadPool pool(2);
  qrt::model::ExecutorOptions o;
  o.pool = &pool;
  auto ex = qrt::model::CpuModelExecutor::create(m.weights, *kv, o, &err);
  EXPECT_TRUE(ex) << err;
  if (!kv || !ex)
    return {};
  qrt::serving::StepBatch b;
  b.blockSize = 16;
  const int32_t T = int32_t(ids.size());
  for (int32_t t = 0; t < T; ++t) {
    b.tokenIds.push_back(ids[size_t(t)]);
    b.positions.push_back(t);
    b.slotMapping.push_back(t);
  }
  b.seqIds = {0};
  b.queryStart = {0, T};
  b.contextLens = {T};
  b.blockTable = {0, 1, 2, 3};
  b.blockTableStart = {0, (T + 15) / 16};
  b.sampleIndices = {0};
  std::vector<float> logits(size_t(T) * size_t(m.weights.dims.vocab));
  EXPECT_TRUE(ex->executeAllLogits(b, logits.data(), &err)) << err;
  return logits;
}

/// The layer objects of an artifact's manifest.
llvm::json::Array manifestLayers(const std::string &path) {
  auto v = llvm::json::parse(readAll(path + "/manifest.json"));
  EXPECT_TRUE(bool(v));
  if (!v)
    return {};
  llvm::json::Object *root = v->getAsObject();
  EXPECT_EQ(root->getInteger("version"), std::optional<int64_t>(2));
  return *root->getObject("model")->getArray("layers");
}

TEST(ArtifactFusion, FusedManifestAndSameLogitsAsUnfused) {
  // Qwen2 shapes with q/k/v biases; int4 g32.
  std::string dir = synthModel("fusion", "-arch=qwen2");
  ASSERT_FALSE(dir.empty());
  Model m;
  std::string error;
  ASSERT_TRUE(m.load(dir, "int4", 32, false, &error)) << error;
  const std::string root = tempDir("fusion-out");
  ASSERT_TRUE(writeArtifact(*m.module, m.store, m.options(root + "/fused.qopt"), &error)) << error;
  ::setenv("QOPT_ARTIFACT_NO_FUSION", "1", 1);
  bool wrote = writeArtifact(*m.module, m.store, m.options(root + "/apart.qopt"), &error);
  ::unsetenv("QOPT_ARTIFACT_NO_FUSION");
  ASSERT_TRUE(wrote) << error;

  const int64_t Q = m.config.numHeads * m.config.headDim,
                KV = m.config.numKvHeads * m.config.headDim, I = m.config.intermediateSize;
  for (const llvm::json::Value &lv : manifestLayers(root + "/fused.qopt")) {
    const llvm::json::Object &l = *lv.getAsObject();
    for (const char *gone : {"q", "k", "v", "gate", "up"})
      EXPECT_FALSE(l.get(gone)) << gone;
    const llvm::json::Object *qkv = l.getObject("qkv"), *gu = l.getObject("gate_up");
    ASSERT_TRUE(qkv && gu);
    EXPECT_EQ(*qkv->get("parts"), llvm::json::Value(llvm::json::Array{Q, KV, KV}));
    EXPECT_EQ(qkv->getInteger("out_features"), std::optional<int64_t>(Q + 2 * KV));
    EXPECT_TRUE(qkv->getString("bias"));
    EXPECT_EQ(*gu->get("parts"), llvm::json::Value(llvm::json::Array{I, I}));
    EXPECT_EQ(qkv->getString("layout"), std::optional<llvm::StringRef>("x86_i4_g32_n16"));
  }
  for (const llvm::json::Value &lv : manifestLayers(root + "/apart.qopt")) {
    const llvm::json::Object &l = *lv.getAsObject();
    EXPECT_FALSE(l.get("qkv"));
    EXPECT_FALSE(l.get("gate_up"));
    EXPECT_TRUE(l.get("q") && l.get("up"));
  }
  int packed = 0;
  checkArtifact(m, root + "/fused.qopt", &packed);
  EXPECT_EQ(packed, 7 * m.config.numLayers);
  packed = 0;
  checkArtifact(m, root + "/apart.qopt", &packed);
  EXPECT_EQ(packed, 7 * m.config.numLayers);

  std::vector<int32_t> ids;
  for (int i = 0; i < 11; ++i)
    ids.push_back(int32_t((i * 37 + 5) % m.config.vocabSize));
  std::vector<float> fused = artifactLogits(root + "/fused.qopt", ids),
                     apart = artifactLogits(root + "/apart.qopt", ids);
  ASSERT_EQ(fused.size(), apart.size());
  ASSERT_FALSE(fused.empty());
  double mx = 0, diff = 0;
  for (size_t i = 0; i < fused.size(); ++i) {
    mx = std::max(mx, std::fabs(double(apart[i])));
    diff = std::max(diff, std::fabs(double(fused[i]) - apart[i]));
  }
  EXPECT_GT(mx, 0.0);
  EXPECT_LE(diff, 1e-5 * mx) << "max |diff| " << diff << " of " << mx;
}

TEST(ArtifactFusion, MixedFormatsStayApart) {
  // k_proj in int8, q/v in int4: q/k/v cannot share a matrix; gate/up can.
  std::string dir = synthModel("mixed", "");
  ASSERT_FALSE(dir.empty());
  Model m;
  m.overrides = {"k_proj=int8"};
  std::string error;
  ASSERT_TRUE(m.load(dir, "int4", 32, false, &error)) << error;
  const std::string out = tempDir("mixed-out") + "/m.qopt";
  ASSERT_TRUE(writeArtifact(*m.module, m.store, m.options(out), &error)) << error;
  for (const llvm::json::Value &lv : manifestLayers(out)) {
    const llvm::json::Object &l = *lv.getAsObject();
    EXPECT_TRUE(l.get("q") && l.get("k") && l.get("v"));
    EXPECT_FALSE(l.get("qkv"));
    EXPECT_TRUE(l.get("gate_up"));
  }
  int packed = 0;
  checkArtifact(m, out, &packed);
  EXPECT_EQ(packed, 7 * m.config.numLayers);
  EXPECT_EQ(artifactLogits(out, {1, 2, 3}).size(), size_t(3 * m.config.vocabSize));
}

/// Removes this process's temporary directories.
class CleanUp : public ::testing::Environment {
public:
  void TearDown() override {
    const std::string prefix = "qopt-artifact-test-" + std::to_string(::getpid()) + "-";
    std::error_code ec;
    for (auto &e : fs::directory_iterator(fs::temp_directory_path(), ec))
      if (e.path().filename().string().rfind(prefix, 0) == 0)
        fs::remove_all(e.path(), ec);
  }
};
const auto *cleanUp = ::testing::AddGlobalTestEnvironment(new CleanUp);

} // namespace
