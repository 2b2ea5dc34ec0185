//===- qopt-synth.cpp - write a Hugging Face model with random weights ===//
//
// Makes Llama-family checkpoints of any shape for tests, benchmarks and the
// demo without downloading anything: config.json, generation_config.json,
// tokenizer.json, and model.safetensors (or shards plus an index), exactly
// as transformers lays them out.
//
// Weights are a pure function of (seed, tensor name): a splitmix64 stream
// per tensor turned into roughly normal values by summing four 16-bit
// uniforms (no libm, no std::normal_distribution, whose output differs
// between standard libraries), so every machine writes the same bytes.
// Tensors are generated and written in chunks: a multi-GB model never sits
// in memory.
//
//===----------------------------------------------------------------------===//
#include "SynthTokenizer.h"

#include "qopt-rt/half.h"
#include "qopt/Import/ModelConfig.h"
#include "qopt/Import/SafeTensors.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <unistd.h>

using namespace llvm;
using namespace qopt;

namespace {

cl::OptionCategory cat("qopt-synth options");

cl::opt<std::string> outDir("o", cl::desc("Output directory (created if missing)"),
                            cl::value_desc("dir"), cl::Required, cl::cat(cat));
cl::opt<std::string> preset("preset",
                            cl::desc("Starting shapes: tiny, llama-3.2-1b, llama-3-8b, "
                                     "qwen2-0.5b-like (flags below override them)"),
                            cl::init("tiny"), cl::cat(cat));
cl::opt<std::string> arch("arch", cl::desc("Family: llama, mistral or qwen2"), cl::cat(cat));
cl::opt<int64_t> hiddenSize("hidden-size", cl::desc("hidden_size"), cl::cat(cat));
cl::opt<int64_t> intermediateSize("intermediate-size", cl::desc("intermediate_size"),
                                  cl::cat(cat));
cl::opt<int64_t> numLayers("num-layers", cl::desc("num_hidden_layers"), cl::cat(cat));
cl::opt<int64_t> numHeads("num-heads", cl::desc("num_attention_heads"), cl::cat(cat));
cl::opt<int64_t> numKvHeads("num-kv-heads", cl::desc("num_key_value_heads (1 = MQA)"),
                            cl::cat(cat));
cl::opt<int64_t> headDim("head-dim",
                         cl::desc("head_dim (default hidden_size / num_attention_heads)"),
                         cl::cat(cat));
cl::opt<int64_t> vocabSize("vocab-size", cl::desc("vocab_size"), cl::cat(cat));
cl::opt<bool> tie("tie-word-embeddings", cl::desc("Tie lm_head to the embeddings"),
                  cl::cat(cat));
cl::opt<std::string> dtypeOpt("dtype", cl::desc("Weight dtype: bf16, fp16 or fp32"),
                              cl::init("bf16"), cl::cat(cat));
cl::opt<double> ropeTheta("rope-theta", cl::desc("rope_theta"), cl::cat(cat));
cl::opt<std::string> ropeType("rope-type", cl::desc("default, linear or llama3"), cl::cat(cat));
cl::opt<double> ropeFactor("rope-factor", cl::desc("Rope scaling factor (linear, llama3)"),
                           cl::cat(cat));
cl::opt<double> ropeLowFreq("rope-low-freq-factor", cl::desc("llama3 low_freq_factor"),
                            cl::init(1.0), cl::cat(cat));
cl::opt<double> ropeHighFreq("rope-high-freq-factor", cl::desc("llama3 high_freq_factor"),
                             cl::init(4.0), cl::cat(cat));
cl::opt<int64_t> ropeOriginalMax("rope-original-max-position-embeddings",
                                 cl::desc("llama3 original_max_position_embeddings"),
                                 cl::init(8192), cl::cat(cat));
cl::opt<double> rmsNormEps("rms-norm-eps", cl::desc("rms_norm_eps"), cl::cat(cat));
cl::opt<int64_t> maxPos("max-position-embeddings", cl::desc("max_position_embeddings"),
                        cl::cat(cat));
cl::opt<uint64_t> seed("seed", cl::desc("Weight seed"), cl::init(0), cl::cat(cat));
cl::opt<unsigned> shards("shards", cl::desc("Number of safetensors shards (1 = model.safetensors)"),
                         cl::init(1), cl::cat(cat));
cl::opt<std::string> configStyle(
    "config-style",
    cl::desc("v4: top-level rope_theta + rope_scaling, torch_dtype (transformers 4.x); "
             "v5: rope_parameters, dtype (transformers 5)"),
    cl::init("v4"), cl::cat(cat));
cl::opt<double> initStd("init-std", cl::desc("Std of linear and embedding weights"),
                        cl::init(0.02), cl::cat(cat));
cl::opt<bool> noTokenizer("no-tokenizer", cl::desc("Do not write tokenizer files"),
                          cl::cat(cat));

[[noreturn]] void die(const std::string &msg) {
  errs() << "qopt-synth: error: " << msg << "\n";
  std::exit(1);
}

struct Preset {
  const char *name;
  const char *arch;
  int64_t hidden, inter, layers, heads, kv, headDim, vocab, maxPos;
  bool tied;
  double theta, eps;
  const char *ropeType;
  double ropeFactor;
};
// Llama-3.2-1B and Llama-3-8B follow Meta's published configs; the Qwen2
// preset follows Qwen2-0.5B's shapes.
constexpr Preset kPresets[] = {
    {"tiny", "llama", 64, 160, 2, 4, 2, 16, 512, 512, false, 10000.0, 1e-5, "default", 1.0},
    {"llama-3.2-1b", "llama", 2048, 8192, 16, 32, 8, 64, 128256, 131072, true, 500000.0, 1e-5,
     "llama3", 32.0},
    {"llama-3-8b", "llama", 4096, 14336, 32, 32, 8, 128, 128256, 8192, false, 500000.0, 1e-5,
     "default", 1.0},
    {"qwen2-0.5b-like", "qwen2", 896, 4864, 24, 14, 2, 64, 151936, 32768, true, 1000000.0, 1e-6,
     "default", 1.0},
};

//===----------------------------------------------------------------------===//
// Deterministic weights
//===----------------------------------------------------------------------===//

uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string &s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s)
    h = (h ^ c) * 0x100000001b3ull;
  return h;
}

/// How a tensor's values are drawn: mean + std * z, z ~ approximately N(0,1).
struct Init {
  float mean, std;
};

/// Fills `out[0..n)` with the next n values of the tensor's stream.
void generate(uint64_t &state, Init init, float *out, size_t n) {
  // Sum of four uniform 16-bit integers: mean 131070, std 65536 / sqrt(3).
  const float scale = float(std::sqrt(3.0) / 65536.0) * init.std;
  for (size_t i = 0; i < n; ++i) {
    uint64_t r = splitmix64(state);
    int32_t s = int32_t(r & 0xffff) + int32_t((r >> 16) & 0xffff) +
                int32_t((r >> 32) & 0xffff) + int32_t(r >> 48) - 131070;
    float z = float(s) * scale; // exact int->float, one rounding: reproducible
    out[i] = z + init.mean;
  }
}

struct TensorPlan {
  SafeTensorSpec spec;
  Init init;
  uint64_t bytes = 0;
};

std::string humanBytes(double b) {
  if (b >= 1e9)
    return formatv("{0:F2} GB", b / 1e9).str();
  if (b >= 1e6)
    return formatv("{0:F1} MB", b / 1e6).str();
  return formatv("{0:F1} KB", b / 1e3).str();
}

/// Progress on stderr, only when it is a terminal.
struct Progress {
  bool enabled = isatty(2);
  uint64_t total = 0, done = 0, lastShown = 0;
  void add(uint64_t n, const std::string &file) {
    done += n;
    if (!enabled || (done - lastShown < (64u << 20) && done != total))
      return;
    lastShown = done;
    std::fprintf(stderr, "\rqopt-synth: writing %s  %s / %s (%3.0f%%)   ", file.c_str(),
                 humanBytes(double(done)).c_str(), humanBytes(double(total)).c_str(),
                 total ? 100.0 * double(done) / double(total) : 100.0);
    if (done == total)
      std::fputc('\n', stderr);
  }
};

void writeShard(const std::string &path, const std::vector<TensorPlan> &tensors, DType dtype,
                Progress &progress) {
  std::vector<SafeTensorSpec> specs;
  for (const TensorPlan &t : tensors)
    specs.push_back(t.spec);
  SafeTensorsWriter w;
  std::string error;
  if (!w.open(path, specs, {{"format", "pt"}}, &error))
    die(error);
  const size_t chunk = 1 << 20;
  std::vector<float> f(chunk);
  std::vector<uint16_t> h(chunk);
  std::string file = sys::path::filename(path).str();
  for (const TensorPlan &t : tensors) {
    uint64_t state = fnv1a(t.spec.name) ^ (seed * 0xd1342543de82ef95ull);
    uint64_t n = t.bytes / dtypeSize(dtype);
    for (uint64_t i = 0; i < n; i += chunk) {
      size_t m = size_t(std::min<uint64_t>(chunk, n - i));
      generate(state, t.init, f.data(), m);
      bool ok;
      if (dtype == DType::F32) {
        ok = w.append(f.data(), m * 4, &error);
      } else {
        for (size_t k = 0; k < m; ++k)
          h[k] = dtype == DType::BF16 ? qrt::f32ToBf16(f[k]) : qrt::f32ToF16(f[k]);
        ok = w.append(h.data(), m * 2, &error);
      }
      if (!ok)
        die(error);
      progress.add(m * dtypeSize(dtype), file);
    }
  }
  if (!w.close(&error))
    die(error);
}

void writeText(const std::string &path, const std::string &text) {
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  if (ec)
    die(path + ": cannot create: " + ec.message());
  os << text;
  os.close();
  if (os.has_error())
    die(path + ": write failed");
}

std::string pretty(json::Value v) { return formatv("{0:2}", v).str() + "\n"; }

} // namespace

int main(int argc, char **argv) {
  cl::HideUnrelatedOptions(cat);
  cl::ParseCommandLineOptions(argc, argv,
                              "qopt-synth: write a Hugging Face Llama-family model directory "
                              "with deterministic random weights\n");

  const Preset *p = nullptr;
  for (const Preset &q : kPresets)
    if (preset == q.name)
      p = &q;
  if (!p)
    die("unknown -preset '" + preset + "' (tiny, llama-3.2-1b, llama-3-8b, qwen2-0.5b-like)");

  auto pick = [](auto &opt, auto dflt) {
    return opt.getNumOccurrences() ? decltype(dflt)(opt.getValue()) : dflt;
  };
  std::string family = pick(arch, std::string(p->arch));
  ModelConfig c;
  if (family == "llama")
    c.architecture = "LlamaForCausalLM";
  else if (family == "mistral")
    c.architecture = "MistralForCausalLM";
  else if (family == "qwen2")
    c.architecture = "Qwen2ForCausalLM";
  else
    die("unknown -arch '" + family + "' (llama, mistral, qwen2)");
  c.hiddenSize = pick(hiddenSize, p->hidden);
  c.intermediateSize = pick(intermediateSize, p->inter);
  c.numLayers = pick(numLayers, p->layers);
  c.numHeads = pick(numHeads, p->heads);
  // The preset's KV heads when they still divide the heads, else plain MHA.
  c.numKvHeads = pick(numKvHeads, c.numHeads % p->kv == 0 ? p->kv : c.numHeads);
  int64_t defaultHeadDim = hiddenSize.getNumOccurrences() || numHeads.getNumOccurrences()
                               ? (c.numHeads > 0 ? c.hiddenSize / c.numHeads : 0)
                               : p->headDim;
  c.headDim = pick(headDim, defaultHeadDim);
  c.vocabSize = pick(vocabSize, p->vocab);
  c.maxPositionEmbeddings = pick(maxPos, p->maxPos);
  c.tieWordEmbeddings = pick(tie, p->tied);
  c.ropeTheta = pick(ropeTheta, p->theta);
  c.rmsNormEps = pick(rmsNormEps, p->eps);
  c.attentionBias = family == "qwen2";
  c.ropeScaling.type = pick(ropeType, std::string(p->ropeType));
  if (c.ropeScaling.type != "default") {
    double dfltFactor = c.ropeScaling.type == p->ropeType ? p->ropeFactor
                        : c.ropeScaling.type == "llama3"    ? 32.0
                                                            : 2.0;
    c.ropeScaling.factor = pick(ropeFactor, dfltFactor);
    c.ropeScaling.lowFreqFactor = ropeLowFreq;
    c.ropeScaling.highFreqFactor = ropeHighFreq;
    c.ropeScaling.originalMaxPositionEmbeddings = ropeOriginalMax;
  }
  c.bosTokenId = kSynthBosId;
  c.eosTokenId = kSynthEosId;
  if (std::string why = c.validate(); !why.empty())
    die(why);
  if (c.numLayers > 1000 || c.vocabSize > (1 << 24) || c.hiddenSize > (1 << 20) ||
      c.intermediateSize > (1 << 22))
    die("refusing implausibly large shapes");
  if (shards < 1 || shards > 9999)
    die("-shards must be between 1 and 9999");

  DType dtype;
  std::string torchDtype;
  if (dtypeOpt == "bf16")
    dtype = DType::BF16, torchDtype = "bfloat16";
  else if (dtypeOpt == "fp16")
    dtype = DType::F16, torchDtype = "float16";
  else if (dtypeOpt == "fp32")
    dtype = DType::F32, torchDtype = "float32";
  else
    die("unknown -dtype '" + dtypeOpt + "' (bf16, fp16, fp32)");
  if (configStyle != "v4" && configStyle != "v5")
    die("unknown -config-style '" + configStyle + "' (v4, v5)");

  // ---- The tensors, in model order ----
  const int64_t D = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
  const int64_t Hq = c.numHeads * c.headDim, Hkv = c.numKvHeads * c.headDim;
  const float s = float(initStd.getValue());
  const Init linear{0.0f, s}, norm{1.0f, 0.1f}, bias{0.0f, s};
  std::vector<TensorPlan> plan;
  auto add = [&](std::string name, std::vector<int64_t> shape, Init init) {
    TensorPlan t;
    t.spec = {std::move(name), dtype, std::move(shape)};
    t.init = init;
    if (!safeTensorByteSize(t.spec.shape, dtype, &t.bytes))
      die("tensor '" + t.spec.name + "' is too large");
    plan.push_back(std::move(t));
  };
  add(names::embedTokens(), {V, D}, linear);
  for (int64_t l = 0; l < c.numLayers; ++l) {
    add(names::inputNorm(l), {D}, norm);
    for (auto [proj, out] : {std::pair<const char *, int64_t>{"q_proj", Hq},
                             {"k_proj", Hkv},
                             {"v_proj", Hkv}}) {
      add(names::attn(l, proj), {out, D}, linear);
      if (c.attentionBias)
        add(names::attn(l, proj, "bias"), {out}, bias);
    }
    add(names::attn(l, "o_proj"), {D, Hq}, linear);
    add(names::postAttentionNorm(l), {D}, norm);
    add(names::mlp(l, "gate_proj"), {I, D}, linear);
    add(names::mlp(l, "up_proj"), {I, D}, linear);
    add(names::mlp(l, "down_proj"), {D, I}, linear);
  }
  add(names::finalNorm(), {D}, norm);
  if (!c.tieWordEmbeddings)
    add(names::lmHead(), {V, D}, linear);

  uint64_t totalBytes = 0, params = 0;
  for (const TensorPlan &t : plan) {
    totalBytes += t.bytes;
    params += t.bytes / dtypeSize(dtype);
  }

  // ---- Output directory: drop weight files of an earlier run ----
  if (std::error_code ec = sys::fs::create_directories(outDir))
    die(outDir + ": cannot create: " + ec.message());
  auto path = [&](const std::string &f) {
    SmallString<256> r(outDir.getValue());
    sys::path::append(r, f);
    return std::string(r);
  };
  {
    std::error_code ec;
    std::vector<std::string> stale;
    for (sys::fs::directory_iterator it(outDir, ec), end; it != end && !ec; it.increment(ec)) {
      StringRef n = sys::path::filename(it->path());
      if (n == "model.safetensors" || n == "model.safetensors.index.json" ||
          (n.starts_with("model-") && n.ends_with(".safetensors")))
        stale.push_back(it->path());
    }
    for (const std::string &f : stale)
      sys::fs::remove(f);
  }

  auto start = std::chrono::steady_clock::now();

  // ---- config.json ----
  json::Object cfg{
      {"architectures", json::Array{c.architecture}},
      {"model_type", family},
      {"vocab_size", c.vocabSize},
      {"hidden_size", c.hiddenSize},
      {"intermediate_size", c.intermediateSize},
      {"num_hidden_layers", c.numLayers},
      {"num_attention_heads", c.numHeads},
      {"num_key_value_heads", c.numKvHeads},
      {"head_dim", c.headDim},
      {"hidden_act", "silu"},
      {"max_position_embeddings", c.maxPositionEmbeddings},
      {"initializer_range", initStd.getValue()},
      {"rms_norm_eps", c.rmsNormEps},
      {"tie_word_embeddings", c.tieWordEmbeddings},
      {"attention_dropout", 0.0},
      {"bos_token_id", *c.bosTokenId},
      {"eos_token_id", *c.eosTokenId},
      {"use_cache", true},
      {"transformers_version", configStyle == "v5" ? "5.0.0" : "4.46.0"},
  };
  if (family == "llama") {
    cfg["attention_bias"] = false;
    cfg["mlp_bias"] = false;
    cfg["pretraining_tp"] = 1;
  } else if (family == "mistral") {
    cfg["sliding_window"] = nullptr;
  } else {
    cfg["use_sliding_window"] = false;
    cfg["sliding_window"] = c.maxPositionEmbeddings;
    cfg["max_window_layers"] = c.numLayers;
  }
  json::Object rope;
  rope["rope_type"] = c.ropeScaling.type;
  if (c.ropeScaling.type != "default") {
    rope["factor"] = c.ropeScaling.factor;
    if (c.ropeScaling.type == "llama3") {
      rope["low_freq_factor"] = c.ropeScaling.lowFreqFactor;
      rope["high_freq_factor"] = c.ropeScaling.highFreqFactor;
      rope["original_max_position_embeddings"] = c.ropeScaling.originalMaxPositionEmbeddings;
    }
  }
  if (configStyle == "v5") {
    rope["rope_theta"] = c.ropeTheta;
    cfg["rope_parameters"] = std::move(rope);
    cfg["dtype"] = torchDtype;
  } else {
    cfg["rope_theta"] = c.ropeTheta;
    if (c.ropeScaling.type == "default")
      cfg["rope_scaling"] = nullptr;
    else
      cfg["rope_scaling"] = std::move(rope);
    cfg["torch_dtype"] = torchDtype;
  }
  writeText(path("config.json"), pretty(json::Value(std::move(cfg))));
  writeText(path("generation_config.json"),
            pretty(json::Object{{"_from_model_config", true},
                                {"bos_token_id", *c.bosTokenId},
                                {"eos_token_id", *c.eosTokenId},
                                {"transformers_version", "4.46.0"}}));

  // ---- tokenizer ----
  if (!noTokenizer) {
    if (c.vocabSize < kSynthMinVocab) {
      errs() << "qopt-synth: note: vocab_size " << c.vocabSize << " < " << kSynthMinVocab
             << ": no room for a byte-level tokenizer, none written\n";
    } else {
      int64_t tokVocab;
      writeText(path("tokenizer.json"), synthTokenizerJSON(c.vocabSize, &tokVocab));
      writeText(path("tokenizer_config.json"),
                pretty(json::Object{{"bos_token", "<s>"},
                                    {"eos_token", "</s>"},
                                    {"add_bos_token", true},
                                    {"model_max_length", c.maxPositionEmbeddings},
                                    {"tokenizer_class", "PreTrainedTokenizerFast"}}));
    }
  }

  // ---- weights ----
  Progress progress;
  progress.total = totalBytes;
  unsigned n = std::min<unsigned>(shards, unsigned(plan.size()));
  if (n == 1) {
    writeShard(path("model.safetensors"), plan, dtype, progress);
  } else {
    // Contiguous runs of tensors of about totalBytes / n each.
    std::vector<std::vector<TensorPlan>> groups(n);
    uint64_t acc = 0;
    size_t g = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      size_t left = plan.size() - i;
      while (g + 1 < n && !groups[g].empty() &&
             (acc >= totalBytes * (g + 1) / n || left <= n - 1 - g))
        ++g;
      groups[g].push_back(plan[i]);
      acc += plan[i].bytes;
    }
    json::Object weightMap;
    for (unsigned k = 0; k < n; ++k) {
      std::string file = formatv("model-{0:D5}-of-{1:D5}.safetensors", k + 1, n).str();
      for (const TensorPlan &t : groups[k])
        weightMap[t.spec.name] = file;
      writeShard(path(file), groups[k], dtype, progress);
    }
    writeText(path("model.safetensors.index.json"),
              pretty(json::Object{{"metadata", json::Object{{"total_size", int64_t(totalBytes)}}},
                                  {"weight_map", std::move(weightMap)}}));
  }

  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string count = params >= 1e9   ? formatv("{0:F2}B", double(params) / 1e9).str()
                      : params >= 1e6 ? formatv("{0:F1}M", double(params) / 1e6).str()
                                      : formatv("{0:F1}K", double(params) / 1e3).str();
  errs() << formatv("qopt-synth: wrote {0}: {1} ({2} parameters, {3} {4}, {5} shard{6}) "
                    "in {7:F1} s\n",
                    outDir.getValue(), c.architecture, count,
                    humanBytes(double(totalBytes)), dtypeOpt.getValue(), n, n == 1 ? "" : "s",
                    secs);
  return 0;
}
