//===- HFImportTest.cpp - Hugging Face directories -> QLLM ------------===//
//
// Imports directories written by qopt-synth across the config variants
// real checkpoints use (GQA, MQA, explicit head_dim, tied/untied, the three
// rope spellings, bf16/fp16/fp32, sharding, Qwen2 biases), directories
// broken on purpose (each must fail with one line naming the culprit), and
// the shared real models. Structure is checked with the MLIR verifier and
// op counts derived from the config.
//
//===----------------------------------------------------------------------===//
#include "HFTestUtil.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Import/HFImporter.h"
#include "qopt/Import/SafeTensors.h"
#include "qopt-rt/half.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

using namespace qopt;
using namespace qopt::test;

#ifndef QOPT_SYNTH
#error "QOPT_SYNTH must name the qopt-synth binary"
#endif
#ifndef QOPT_SHARED_DIR
#define QOPT_SHARED_DIR ""
#endif

namespace {

void synth(const std::string &dir, const std::string &args) {
  std::string cmd = std::string(QOPT_SYNTH) + " -o '" + dir + "' " + args + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

struct Imported {
  mlir::MLIRContext ctx;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  WeightStore store;
  std::string error;
  ModelConfig config;

  explicit Imported(const std::string &dir) {
    module = importHuggingFaceDir(ctx, dir, store, &error);
    if (module) {
      std::string e;
      EXPECT_TRUE(getConfigAttr(*module, &config, &e)) << e;
    }
  }
  std::map<std::string, int> opCounts() {
    std::map<std::string, int> n;
    module->walk([&](mlir::Operation *op) { ++n[op->getName().getStringRef().str()]; });
    return n;
  }
};

/// The verifier passes, op counts follow from the config, and every param
/// is in the store with the store's dtype and shape.
void checkStructure(Imported &m) {
  ASSERT_TRUE(m.module) << m.error;
  ASSERT_TRUE(mlir::succeeded(mlir::verify(*m.module)));
  const ModelConfig &c = m.config;
  auto n = m.opCounts();
  int L = int(c.numLayers);
  EXPECT_EQ(n["qllm.embedding"], 1);
  EXPECT_EQ(n["qllm.attention"], L);
  EXPECT_EQ(n["qllm.rotary"], 2 * L);
  EXPECT_EQ(n["qllm.linear"], 7 * L);
  EXPECT_EQ(n["qllm.rms_norm"], 2 * L + 1);
  EXPECT_EQ(n["qllm.swiglu"], L);
  EXPECT_EQ(n["qllm.add"], 2 * L);
  EXPECT_EQ(n["qllm.lm_head"], 1);
  int expectedParams = 1 + 9 * L + 1 + (c.tieWordEmbeddings ? 0 : 1) + (c.attentionBias ? 3 * L : 0);
  EXPECT_EQ(n["qllm.param"], expectedParams);
  EXPECT_EQ(m.store.size(), size_t(expectedParams)) << "store holds tensors the module does not use";
  m.module->walk([&](qllm::ParamOp p) {
    const WeightEntry *e = m.store.find(p.getName().str());
    ASSERT_TRUE(e) << p.getName().str();
    auto t = mlir::cast<mlir::RankedTensorType>(p.getType());
    EXPECT_EQ(std::vector<int64_t>(t.getShape().begin(), t.getShape().end()), e->shape);
    mlir::Type et = t.getElementType();
    EXPECT_TRUE((e->dtype == DType::BF16 && et.isBF16()) || (e->dtype == DType::F16 && et.isF16()) ||
                (e->dtype == DType::F32 && et.isF32()))
        << p.getName().str();
  });
}

void editJSON(const std::string &path, const std::function<void(llvm::json::Object &)> &edit) {
  auto v = llvm::json::parse(readFile(path));
  ASSERT_TRUE(bool(v)) << path;
  edit(*v->getAsObject());
  writeFile(path, llvm::formatv("{0:2}", *v).str());
}

/// Rewrites `file` keeping the tensors `keep` accepts, plus `extra`.
void rewriteSafeTensors(const std::string &file, const std::function<bool(const std::string &)> &keep,
                        std::vector<SafeTensorData> extra = {}) {
  std::string error;
  SafeTensorsFile f;
  ASSERT_TRUE(openSafeTensors(file, &f, &error)) << error;
  std::vector<SafeTensorData> out;
  for (size_t i = 0; i < f.header.tensors.size(); ++i) {
    WeightEntry e = f.entry(i);
    if (keep(e.name))
      out.push_back({{e.name, e.dtype, e.shape}, e.data});
  }
  for (auto &x : extra)
    out.push_back(x);
  ASSERT_TRUE(writeSafeTensors(file + ".tmp", out, {{"format", "pt"}}, &error)) << error;
  ASSERT_EQ(std::rename((file + ".tmp").c_str(), file.c_str()), 0);
}

std::string importError(const std::string &dir) {
  Imported m(dir);
  EXPECT_FALSE(m.module) << "imported a broken model: " << dir;
  EXPECT_EQ(m.error.find('\n'), std::string::npos) << m.error;
  EXPECT_EQ(m.store.size(), 0u) << "the caller's store was touched on failure";
  return m.error;
}

#define EXPECT_CONTAINS(hay, needle)                                                          \
  EXPECT_NE(std::string(hay).find(needle), std::string::npos)                                \
      << "'" << (hay) << "' lacks '" << (needle) << "'"

//===----------------------------------------------------------------------===//
// Shapes and config variants
//===----------------------------------------------------------------------===//

TEST(HFImport, TinyGQA) {
  TempDir d;
  synth(d.path, "-preset=tiny");
  Imported m(d.path);
  checkStructure(m);
  EXPECT_EQ(m.config.numHeads, 4);
  EXPECT_EQ(m.config.numKvHeads, 2);
  EXPECT_EQ(m.config.headDim, 16);
  EXPECT_EQ(m.config.architecture, "LlamaForCausalLM");
  EXPECT_EQ(m.config.bosTokenId, 0);
  EXPECT_EQ(m.config.eosTokenId, 1);
  EXPECT_TRUE(m.store.contains("lm_head.weight"));
}

TEST(HFImport, MQAOneKvHead) {
  TempDir d;
  synth(d.path, "-num-kv-heads=1 -num-layers=3");
  Imported m(d.path);
  checkStructure(m);
  EXPECT_EQ(m.config.numKvHeads, 1);
  EXPECT_EQ(m.store.find("model.layers.2.self_attn.k_proj.weight")->shape,
            (std::vector<int64_t>{16, 64}));
}

TEST(HFImport, ExplicitHeadDimUnlikeHiddenOverHeads) {
  TempDir d;
  synth(d.path, "-hidden-size=48 -num-heads=6 -num-kv-heads=3 -head-dim=10 -intermediate-size=100");
  Imported m(d.path);
  checkStructure(m);
  EXPECT_EQ(m.config.headDim, 10);
  EXPECT_EQ(m.store.find("model.layers.0.self_attn.q_proj.weight")->shape,
            (std::vector<int64_t>{60, 48}));
  EXPECT_EQ(m.store.find("model.layers.0.self_attn.o_proj.weight")->shape,
            (std::vector<int64_t>{48, 60}));
}

TEST(HFImport, HeadDimNullIsDerived) {
  TempDir d;
  synth(d.path, "-hidden-size=96 -num-heads=6 -num-kv-heads=2");
  editJSON(d.path + "/config.json", [](llvm::json::Object &o) { o["head_dim"] = nullptr; });
  Imported m(d.path);
  checkStructure(m);
  EXPECT_EQ(m.config.headDim, 16);
}

TEST(HFImport, TiedAndUntied) {
  TempDir tied, untied;
  synth(tied.path, "-tie-word-embeddings");
  synth(untied.path, "-tie-word-embeddings=false");
  Imported t(tied.path), u(untied.path);
  checkStructure(t);
  checkStructure(u);
  EXPECT_TRUE(t.config.tieWordEmbeddings);
  EXPECT_FALSE(t.store.contains("lm_head.weight"));
  // The tied head reads the embedding table.
  t.module->walk([&](qllm::LMHeadOp op) {
    auto p = op->getOperand(1).getDefiningOp<qllm::ParamOp>();
    ASSERT_TRUE(p);
    EXPECT_EQ(p.getName(), "model.embed_tokens.weight");
  });
  EXPECT_FALSE(u.config.tieWordEmbeddings);
  EXPECT_TRUE(u.store.contains("lm_head.weight"));
}

TEST(HFImport, TiedModelThatAlsoStoresLmHead) {
  TempDir d;
  synth(d.path, "-tie-word-embeddings=false");
  editJSON(d.path + "/config.json",
           [](llvm::json::Object &o) { o["tie_word_embeddings"] = true; });
  Imported m(d.path);
  checkStructure(m);
  EXPECT_FALSE(m.store.contains("lm_head.weight"));
}

struct RopeCase {
  const char *args;
  double theta;
  const char *type;
  double factor;
};

TEST(HFImport, RopeSpellings) {
  const RopeCase cases[] = {
      {"-config-style=v4", 10000, "default", 1},
      {"-config-style=v5", 10000, "default", 1},
      {"-config-style=v4 -rope-theta=123456", 123456, "default", 1},
      {"-config-style=v5 -rope-theta=500000", 500000, "default", 1},
      {"-config-style=v4 -rope-type=llama3 -rope-theta=500000", 500000, "llama3", 32},
      {"-config-style=v5 -rope-type=llama3 -rope-factor=8", 10000, "llama3", 8},
      {"-config-style=v4 -rope-type=linear -rope-factor=4", 10000, "linear", 4},
  };
  for (const RopeCase &rc : cases) {
    SCOPED_TRACE(rc.args);
    TempDir d;
    synth(d.path, rc.args);
    Imported m(d.path);
    checkStructure(m);
    EXPECT_EQ(m.config.ropeTheta, rc.theta);
    EXPECT_EQ(m.config.ropeScaling.type, rc.type);
    if (std::string(rc.type) != "default") {
      EXPECT_EQ(m.config.ropeScaling.factor, rc.factor);
    }
    if (std::string(rc.type) == "llama3") {
      EXPECT_EQ(m.config.ropeScaling.lowFreqFactor, 1.0);
      EXPECT_EQ(m.config.ropeScaling.highFreqFactor, 4.0);
      EXPECT_EQ(m.config.ropeScaling.originalMaxPositionEmbeddings, 8192);
    }
    int withScaling = 0;
    m.module->walk([&](qllm::RotaryOp op) {
      EXPECT_EQ(op->getAttrOfType<mlir::FloatAttr>("theta").getValueAsDouble(), rc.theta);
      if (auto s = op->getAttrOfType<mlir::DictionaryAttr>("scaling")) {
        ++withScaling;
        EXPECT_EQ(s.getAs<mlir::StringAttr>("rope_type").str(), rc.type);
      }
    });
    EXPECT_EQ(withScaling, std::string(rc.type) == "default" ? 0 : 2 * int(m.config.numLayers));
  }
}

TEST(HFImport, LegacyRopeScalingTypeKey) {
  TempDir d;
  synth(d.path, "-config-style=v4");
  editJSON(d.path + "/config.json", [](llvm::json::Object &o) {
    o["rope_scaling"] = llvm::json::Object{{"type", "linear"}, {"factor", 2.5}};
  });
  Imported m(d.path);
  checkStructure(m);
  EXPECT_EQ(m.config.ropeScaling.type, "linear");
  EXPECT_EQ(m.config.ropeScaling.factor, 2.5);
}

TEST(HFImport, DTypesAndTheirValues) {
  TempDir f32, bf16, f16;
  synth(f32.path, "-dtype=fp32 -seed=7");
  synth(bf16.path, "-dtype=bf16 -seed=7");
  synth(f16.path, "-dtype=fp16 -seed=7");
  Imported a(f32.path), b(bf16.path), h(f16.path);
  checkStructure(a);
  checkStructure(b);
  checkStructure(h);
  // Same seed: the bf16/fp16 files hold the fp32 values rounded, and the
  // store's upcast must give exactly those roundings back.
  for (const char *name : {"model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight",
                           "model.layers.0.input_layernorm.weight", "lm_head.weight"}) {
    SCOPED_TRACE(name);
    std::vector<float> x = a.store.readF32(name), xb = b.store.readF32(name),
                       xh = h.store.readF32(name);
    ASSERT_EQ(x.size(), xb.size());
    ASSERT_EQ(x.size(), xh.size());
    size_t bad = 0;
    for (size_t i = 0; i < x.size(); ++i)
      bad += xb[i] != qrt::bf16ToF32(qrt::f32ToBf16(x[i])) ||
             xh[i] != qrt::f16ToF32(qrt::f32ToF16(x[i]));
    EXPECT_EQ(bad, 0u);
  }
  EXPECT_EQ(a.store.find("lm_head.weight")->dtype, DType::F32);
  EXPECT_EQ(b.store.find("lm_head.weight")->dtype, DType::BF16);
  EXPECT_EQ(h.store.find("lm_head.weight")->dtype, DType::F16);
}

TEST(HFImport, ShardedWithIndex) {
  TempDir one, three;
  synth(one.path, "-num-layers=3 -seed=3");
  synth(three.path, "-num-layers=3 -seed=3 -shards=3");
  EXPECT_TRUE(fileExists(three.path + "/model.safetensors.index.json"));
  EXPECT_FALSE(fileExists(three.path + "/model.safetensors"));
  EXPECT_TRUE(fileExists(three.path + "/model-00003-of-00003.safetensors"));
  Imported a(one.path), b(three.path);
  checkStructure(a);
  checkStructure(b);
  std::set<std::string> sources;
  for (const std::string &name : a.store.names()) {
    EXPECT_EQ(a.store.readF32(name), b.store.readF32(name)) << name;
    sources.insert(b.store.find(name)->source);
  }
  EXPECT_EQ(sources.size(), 3u) << "tensors did not come from three shards";
}

TEST(HFImport, ShardErrors) {
  {
    TempDir d;
    synth(d.path, "-shards=3");
    std::remove((d.path + "/model-00002-of-00003.safetensors").c_str());
    std::string e = importError(d.path);
    EXPECT_CONTAINS(e, "model.safetensors.index.json");
    EXPECT_CONTAINS(e, "'model-00002-of-00003.safetensors' is missing");
  }
  {
    TempDir d;
    synth(d.path, "-shards=2");
    editJSON(d.path + "/model.safetensors.index.json", [](llvm::json::Object &o) {
      (*o.getObject("weight_map"))["model.norm.weight"] = "model-00001-of-00002.safetensors";
    });
    std::string e = importError(d.path);
    EXPECT_CONTAINS(e, "'model.norm.weight' is listed in shard 'model-00001-of-00002.safetensors'");
  }
  {
    TempDir d;
    synth(d.path, "-shards=2");
    editJSON(d.path + "/model.safetensors.index.json", [](llvm::json::Object &o) {
      (*o.getObject("weight_map"))["model.norm.weight"] = "../../etc/passwd";
    });
    EXPECT_CONTAINS(importError(d.path), "'../../etc/passwd' is not a plain file name");
  }
}

TEST(HFImport, Qwen2HasQkvBiases) {
  TempDir d;
  synth(d.path, "-arch=qwen2 -num-layers=2");
  // Qwen2 configs do not state attention_bias: the family implies it.
  editJSON(d.path + "/config.json", [](llvm::json::Object &o) { o.erase("attention_bias"); });
  Imported m(d.path);
  checkStructure(m);
  EXPECT_EQ(m.config.architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(m.config.attentionBias);
  int withBias = 0;
  m.module->walk([&](qllm::LinearOp op) { withBias += op.getBias() != nullptr; });
  EXPECT_EQ(withBias, 3 * 2);
  EXPECT_TRUE(m.store.contains("model.layers.1.self_attn.v_proj.bias"));
  EXPECT_FALSE(m.store.contains("model.layers.1.self_attn.o_proj.bias"));
}

TEST(HFImport, MistralAndPresetsShapes) {
  TempDir d;
  synth(d.path, "-arch=mistral -num-layers=1");
  Imported m(d.path);
  checkStructure(m);
  EXPECT_EQ(m.config.architecture, "MistralForCausalLM");
  EXPECT_FALSE(m.config.attentionBias);
}

TEST(HFImport, ExtraTensorsAreDropped) {
  TempDir d;
  synth(d.path, "");
  std::vector<float> inv(8, 1.0f);
  rewriteSafeTensors(d.path + "/model.safetensors", [](const std::string &) { return true; },
                     {{{"model.layers.0.self_attn.rotary_emb.inv_freq", DType::F32, {8}},
                       inv.data()}});
  Imported m(d.path);
  checkStructure(m);
  EXPECT_FALSE(m.store.contains("model.layers.0.self_attn.rotary_emb.inv_freq"));
}

TEST(HFImport, LoneSafetensorsFileWithAnotherName) {
  TempDir d;
  synth(d.path, "");
  std::rename((d.path + "/model.safetensors").c_str(), (d.path + "/weights.safetensors").c_str());
  Imported m(d.path);
  checkStructure(m);
}

//===----------------------------------------------------------------------===//
// Broken directories: one line naming the problem
//===----------------------------------------------------------------------===//

TEST(HFImportErrors, UnknownArchitecture) {
  TempDir d;
  synth(d.path, "");
  editJSON(d.path + "/config.json", [](llvm::json::Object &o) {
    o["architectures"] = llvm::json::Array{"GPT2LMHeadModel"};
  });
  EXPECT_EQ(importError(d.path),
            d.path + "/config.json: unsupported architecture 'GPT2LMHeadModel' (supported: "
                     "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
}

TEST(HFImportErrors, MissingTensor) {
  TempDir d;
  synth(d.path, "");
  rewriteSafeTensors(d.path + "/model.safetensors", [](const std::string &n) {
    return n != "model.layers.1.post_attention_layernorm.weight";
  });
  EXPECT_EQ(importError(d.path),
            d.path + ": missing tensor 'model.layers.1.post_attention_layernorm.weight'");
}

TEST(HFImportErrors, MissingLmHeadWhenUntied) {
  TempDir d;
  synth(d.path, "-tie-word-embeddings=false");
  rewriteSafeTensors(d.path + "/model.safetensors",
                     [](const std::string &n) { return n != "lm_head.weight"; });
  std::string e = importError(d.path);
  EXPECT_CONTAINS(e, "missing tensor 'lm_head.weight'");
  EXPECT_CONTAINS(e, "tie_word_embeddings");
}

TEST(HFImportErrors, ShapeContradictsConfig) {
  TempDir d;
  synth(d.path, "");
  editJSON(d.path + "/config.json", [](llvm::json::Object &o) { o["intermediate_size"] = 161; });
  std::string e = importError(d.path);
  EXPECT_CONTAINS(e, "'model.layers.0.mlp.gate_proj.weight' has shape [160, 64]");
  EXPECT_CONTAINS(e, "config.json implies [161, 64]");
  TempDir k;
  synth(k.path, "");
  editJSON(k.path + "/config.json", [](llvm::json::Object &o) { o["num_key_value_heads"] = 4; });
  EXPECT_CONTAINS(importError(k.path), "'model.layers.0.self_attn.k_proj.weight' has shape");
}

TEST(HFImportErrors, CorruptWeightsFileNamesIt) {
  TempDir d;
  synth(d.path, "");
  std::string bytes = readFile(d.path + "/model.safetensors");
  writeFile(d.path + "/model.safetensors", bytes.substr(0, bytes.size() - 10));
  std::string e = importError(d.path);
  EXPECT_CONTAINS(e, d.path + "/model.safetensors: tensor '");
  EXPECT_CONTAINS(e, "run past the end of the file");
}

TEST(HFImportErrors, DirectoryProblems) {
  EXPECT_EQ(importError("/nonexistent/qopt-model"), "/nonexistent/qopt-model: no such directory");
  TempDir d;
  writeFile(d.path + "/file", "x");
  EXPECT_CONTAINS(importError(d.path + "/file"), "not a directory");
  EXPECT_CONTAINS(importError(d.path), ": no config.json");
  synth(d.path, "");
  std::remove((d.path + "/model.safetensors").c_str());
  EXPECT_CONTAINS(importError(d.path), "no model.safetensors or model.safetensors.index.json");
  writeFile(d.path + "/pytorch_model.bin", "x");
  EXPECT_CONTAINS(importError(d.path), ".bin");
  writeFile(d.path + "/a.safetensors", "x");
  writeFile(d.path + "/b.safetensors", "x");
  EXPECT_CONTAINS(importError(d.path), "2 .safetensors files but no model.safetensors.index.json");
}

TEST(HFImportErrors, CallerStoreIsOnlyTouchedOnSuccess) {
  TempDir d;
  synth(d.path, "");
  mlir::MLIRContext ctx;
  WeightStore store;
  std::string error;
  ASSERT_TRUE(store.addOwned("model.norm.weight", DType::F32, {1}, std::vector<uint8_t>(4), &error));
  EXPECT_FALSE(importHuggingFaceDir(ctx, d.path, store, &error));
  EXPECT_CONTAINS(error, "'model.norm.weight' is already in the weight store");
  EXPECT_EQ(store.size(), 1u);
}

//===----------------------------------------------------------------------===//
// config.json on its own
//===----------------------------------------------------------------------===//

std::string configError(const std::string &json) {
  ModelConfig c;
  std::string e;
  EXPECT_FALSE(parseHFConfigJSON(json, "cfg.json", &c, &e)) << json;
  EXPECT_EQ(e.rfind("cfg.json: ", 0), 0u) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  return e;
}

const char *kBase = R"("vocab_size":512,"hidden_size":64,"intermediate_size":172,)"
                    R"("num_hidden_layers":5,"num_attention_heads":8)";

std::string cfg(const std::string &extra, const char *arch = "\"LlamaForCausalLM\"") {
  return std::string("{\"architectures\":[") + arch + "]," + kBase +
         (extra.empty() ? "" : "," + extra) + "}";
}

TEST(HFConfig, DefaultsLikeTransformers) {
  ModelConfig c;
  std::string e;
  ASSERT_TRUE(parseHFConfigJSON(cfg(""), "cfg.json", &c, &e)) << e;
  EXPECT_EQ(c.numKvHeads, 8);
  EXPECT_EQ(c.headDim, 8);
  EXPECT_EQ(c.rmsNormEps, 1e-6);
  EXPECT_EQ(c.ropeTheta, 10000.0);
  EXPECT_EQ(c.ropeScaling.type, "default");
  EXPECT_FALSE(c.tieWordEmbeddings);
  EXPECT_FALSE(c.attentionBias);
  EXPECT_EQ(c.maxPositionEmbeddings, 2048);
  EXPECT_FALSE(c.bosTokenId.has_value());

  ASSERT_TRUE(parseHFConfigJSON(cfg(R"("eos_token_id":[7,8],"bos_token_id":1,"num_key_value_heads":null)"),
                                "cfg.json", &c, &e))
      << e;
  EXPECT_EQ(c.eosTokenId, 7);
  EXPECT_EQ(c.bosTokenId, 1);
  EXPECT_EQ(c.numKvHeads, 8);
  // model_type alone names the family.
  ASSERT_TRUE(parseHFConfigJSON(std::string("{\"model_type\":\"qwen2\",") + kBase + "}", "cfg.json",
                                &c, &e))
      << e;
  EXPECT_EQ(c.architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(c.attentionBias);
  // Mistral's sliding window is accepted (see HFConfig.cpp).
  ASSERT_TRUE(parseHFConfigJSON(cfg(R"("sliding_window":4096)", "\"MistralForCausalLM\""),
                                "cfg.json", &c, &e))
      << e;
}

TEST(HFConfig, RejectsWhatItCannotCompute) {
  EXPECT_CONTAINS(configError(cfg("", "\"GPT2LMHeadModel\"")),
                  "unsupported architecture 'GPT2LMHeadModel'");
  EXPECT_CONTAINS(configError(std::string("{\"model_type\":\"gpt2\",") + kBase + "}"),
                  "unsupported model_type 'gpt2' (supported: llama, mistral, qwen2)");
  EXPECT_CONTAINS(configError(std::string("{") + kBase + "}"),
                  "neither 'architectures' nor 'model_type'");
  EXPECT_CONTAINS(configError(cfg(R"("mlp_bias":true)")), "mlp_bias");
  EXPECT_CONTAINS(configError(cfg(R"("attention_bias":true)")), "attention_bias");
  EXPECT_CONTAINS(configError(cfg(R"("hidden_act":"gelu")")), "hidden_act");
  EXPECT_CONTAINS(configError(cfg(R"("quantization_config":{"quant_method":"gptq"})")),
                  "quantization_config: gptq");
  EXPECT_CONTAINS(configError(cfg(R"("rope_scaling":{"rope_type":"yarn","factor":4})")),
                  "unsupported rope_type 'yarn'");
  EXPECT_CONTAINS(configError(cfg(R"("rope_parameters":{"rope_type":"llama3","factor":8,"rope_theta":5e5})")),
                  "lacks 'low_freq_factor'");
  EXPECT_CONTAINS(configError(cfg(R"("num_key_value_heads":3)")), "not a multiple");
}

TEST(HFConfig, RejectsBadFields) {
  EXPECT_CONTAINS(configError(R"({"architectures":["LlamaForCausalLM"]})"), "missing 'vocab_size'");
  EXPECT_CONTAINS(configError(R"({"architectures":["LlamaForCausalLM"],"vocab_size":"512"})"),
                  "'vocab_size' must be an integer");
  EXPECT_CONTAINS(configError(cfg(R"("hidden_size":1e30)")), "'hidden_size' must be an integer");
  EXPECT_CONTAINS(configError(cfg(R"("num_hidden_layers":-3)")), "out of range");
  EXPECT_CONTAINS(configError(cfg(R"("head_dim":9223372036854775807)")), "out of range");
  EXPECT_CONTAINS(configError(cfg(R"("num_attention_heads":7)")), "not a multiple");
  EXPECT_CONTAINS(configError(cfg(R"("rms_norm_eps":"small")")), "must be a number");
  EXPECT_CONTAINS(configError(cfg(R"("tie_word_embeddings":1)")), "must be true or false");
  EXPECT_CONTAINS(configError(cfg(R"("architectures":"LlamaForCausalLM")")),
                  "'architectures' must be a non-empty list of strings");
  EXPECT_CONTAINS(configError("[1,2]"), "not a JSON object");
  EXPECT_CONTAINS(configError("{\"a\":"), "invalid JSON");
  // Deep nesting must be an error, not a stack overflow inside the parser.
  EXPECT_CONTAINS(configError(cfg("\"x\":" + std::string(300000, '['))), "nests deeper");
}

//===----------------------------------------------------------------------===//
// The shared real models
//===----------------------------------------------------------------------===//

std::string sharedModel(const char *name) {
  std::string dir = std::string(QOPT_SHARED_DIR) + "/models/" + name;
  return fileExists(dir + "/config.json") ? dir : "";
}

TEST(HFImportShared, AustenLlama7M) {
  std::string dir = sharedModel("austen-llama-7m");
  if (dir.empty())
    GTEST_SKIP() << "shared models not found at " << QOPT_SHARED_DIR;
  Imported m(dir);
  checkStructure(m);
  EXPECT_EQ(m.opCounts()["qllm.attention"], 6);
  EXPECT_EQ(m.config.vocabSize, 4096);
  EXPECT_EQ(m.config.hiddenSize, 256);
  EXPECT_EQ(m.config.numKvHeads, 2);
  EXPECT_EQ(m.config.headDim, 64);
  EXPECT_EQ(m.config.ropeTheta, 10000.0);
  EXPECT_EQ(m.config.rmsNormEps, 1e-5);
  EXPECT_FALSE(m.config.tieWordEmbeddings);
  EXPECT_EQ(m.store.find("model.embed_tokens.weight")->dtype, DType::BF16);
  EXPECT_EQ(m.store.size(), 57u);
}

TEST(HFImportShared, Stories260KWithoutTokenizer) {
  std::string dir = sharedModel("stories260K");
  if (dir.empty())
    GTEST_SKIP() << "shared models not found at " << QOPT_SHARED_DIR;
  Imported m(dir);
  checkStructure(m);
  EXPECT_EQ(m.config.numLayers, 5);
  EXPECT_EQ(m.config.intermediateSize, 172);
  EXPECT_EQ(m.config.numKvHeads, 4);
  EXPECT_EQ(m.config.headDim, 8);
  EXPECT_TRUE(m.config.tieWordEmbeddings);
  EXPECT_EQ(m.config.bosTokenId, 1);
  EXPECT_EQ(m.config.eosTokenId, 2);
  EXPECT_EQ(m.store.size(), 47u);
}

} // namespace
