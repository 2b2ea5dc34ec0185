//===- ExecBench.cpp - reference executor prefill vs bare BLAS --------===//
//
// How much of BLAS's speed the executor keeps: one prefill forward of
// [1, seq] tokens with the executor's per-op profile, then bare
// cblas_sgemm calls of exactly the same shapes (same weights, preallocated
// buffers) in the same process. Reported per model: executor GEMM time
// (qllm.linear + qllm.lm_head), BLAS-alone time, their ratio, the whole
// forward and the GEMMs' share of it.
//
// Models: a synthetic Llama with Llama-3.2-1B shapes (random fp32 weights
// built in memory, ~5 GB) and ../shared's austen-llama-7m when present.
// Extra flags: --seq=N (default 512), --models=1b,austen (default both).
//
//===----------------------------------------------------------------------===//
#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Exec/ReferenceExecutor.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Import/ModelConfig.h"
#ifdef QOPT_BENCH_HAVE_HF
#include "qopt/Import/HFImporter.h"
#endif

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"

#include <benchmark/benchmark.h>
#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <sys/stat.h>
#include <thread>

using namespace mlir;

namespace {

int64_t gSeq = 512;
std::string gModels = "1b,austen";

/// Llama-3.2-1B's shapes (tied embeddings, llama3 rope).
qopt::ModelConfig llama1BShapes() {
  qopt::ModelConfig c;
  c.vocabSize = 128256;
  c.hiddenSize = 2048;
  c.intermediateSize = 8192;
  c.numLayers = 16;
  c.numHeads = 32;
  c.numKvHeads = 8;
  c.headDim = 64;
  c.maxPositionEmbeddings = 131072;
  c.rmsNormEps = 1e-5;
  c.ropeTheta = 500000;
  c.ropeScaling.type = "llama3";
  c.ropeScaling.factor = 32;
  c.ropeScaling.lowFreqFactor = 1;
  c.ropeScaling.highFreqFactor = 4;
  c.ropeScaling.originalMaxPositionEmbeddings = 8192;
  c.tieWordEmbeddings = true;
  return c;
}

/// Uniform values of the given standard deviation, filled on all cores
/// (a normal generator would take longer than the benchmark for 1.2 G
/// values).
std::vector<uint8_t> randomF32Bytes(size_t count, float stddev, float mean, uint64_t seed) {
  std::vector<uint8_t> bytes(count * 4);
  float *out = reinterpret_cast<float *>(bytes.data());
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([=] {
      uint64_t s = seed * 0x9E3779B97F4A7C15ull + t + 1;
      const float a = stddev * std::sqrt(3.0f);
      for (size_t i = count * t / threads; i < count * (t + 1) / threads; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        float u = float(s >> 40) * (1.0f / float(1 << 24)); // [0, 1)
        out[i] = mean + a * (2.0f * u - 1.0f);
      }
    });
  for (auto &th : pool)
    th.join();
  return bytes;
}

void synthesizeWeights(const qopt::ModelConfig &c, qopt::WeightStore &store) {
  namespace n = qopt::names;
  uint64_t seed = 1;
  auto put = [&](const std::string &name, std::vector<int64_t> shape, float stddev,
                 float mean = 0) {
    size_t count = 1;
    for (int64_t d : shape)
      count *= size_t(d);
    std::string err;
    store.addOwned(name, qopt::DType::F32, shape, randomF32Bytes(count, stddev, mean, seed++),
                   &err);
  };
  const int64_t D = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
  const int64_t Hq = c.numHeads * c.headDim, Hkv = c.numKvHeads * c.headDim;
  auto sd = [](int64_t fanIn) { return 1.0f / std::sqrt(float(fanIn)); };
  put(n::embedTokens(), {V, D}, 1.0f);
  for (int64_t l = 0; l < c.numLayers; ++l) {
    put(n::inputNorm(l), {D}, 0.0f, 1.0f);
    put(n::postAttentionNorm(l), {D}, 0.0f, 1.0f);
    put(n::attn(l, "q_proj"), {Hq, D}, sd(D));
    put(n::attn(l, "k_proj"), {Hkv, D}, sd(D));
    put(n::attn(l, "v_proj"), {Hkv, D}, sd(D));
    put(n::attn(l, "o_proj"), {D, Hq}, sd(Hq));
    put(n::mlp(l, "gate_proj"), {I, D}, sd(D));
    put(n::mlp(l, "up_proj"), {I, D}, sd(D));
    put(n::mlp(l, "down_proj"), {D, I}, sd(I));
  }
  put(n::finalNorm(), {D}, 0.0f, 1.0f);
  if (!c.tieWordEmbeddings)
    put(n::lmHead(), {V, D}, sd(D));
}

/// One GEMM of the forward: x[M, K] W[N, K]^T with W from the store.
struct Gemm {
  int64_t n, k;
  const float *w;
};

/// A model ready to benchmark.
struct BenchModel {
  std::string label;
  MLIRContext ctx;
  qopt::WeightStore store;
  OwningOpRef<ModuleOp> module;
  std::unique_ptr<qopt::ReferenceExecutor> exec;
  std::vector<Gemm> gemms; ///< in forward order
  int64_t vocab = 0;
  double params = 0;
};

std::unique_ptr<BenchModel> makeModel(const std::string &which, std::string *error) {
  auto m = std::make_unique<BenchModel>();
  qopt::ExecutorOptions opts;
  opts.profile = true;
  if (which == "1b") {
    qopt::ModelConfig c = llama1BShapes();
    m->label = "synthetic Llama-3.2-1B shapes (fp32, tied, 16 layers)";
    synthesizeWeights(c, m->store);
    m->module = qopt::buildDecoderModule(m->ctx, c, m->store, "<llama-1b-shapes>", error);
  } else {
#ifdef QOPT_BENCH_HAVE_HF
    std::string dir = QOPT_SHARED_DIR "/models/austen-llama-7m";
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
      *error = dir + " is absent";
      return nullptr;
    }
    m->label = "austen-llama-7m (bf16 checkpoint, fp32 in the executor)";
    m->module = qopt::importHuggingFaceDir(m->ctx, dir, m->store, error);
    if (m->module) {
      // The bf16 checkpoint is converted by the executor; the BLAS-alone
      // side gets fp32 copies of the same weights under new names.
      for (const std::string &name : m->store.names()) {
        const qopt::WeightEntry *e = m->store.find(name);
        if (e->dtype == qopt::DType::F32 || e->shape.size() != 2)
          continue;
        std::vector<float> f = m->store.readF32(*e);
        std::vector<uint8_t> bytes(f.size() * 4);
        std::memcpy(bytes.data(), f.data(), bytes.size());
        std::vector<int64_t> shape = e->shape;
        m->store.addOwned(name + ".f32", qopt::DType::F32, shape, std::move(bytes), error);
      }
    }
#else
    *error = "built without the Hugging Face importer";
    return nullptr;
#endif
  }
  if (!m->module)
    return nullptr;
  m->exec = qopt::ReferenceExecutor::create(*m->module, m->store, error, opts);
  if (!m->exec)
    return nullptr;
  m->vocab = m->exec->vocabSize();
  auto func = m->module->lookupSymbol<func::FuncOp>("forward");
  for (Operation &op : func.getBody().front()) {
    if (auto p = dyn_cast<qopt::qllm::ParamOp>(op))
      m->params += double(m->store.find(p.getName().str())->numElements());
    if (!isa<qopt::qllm::LinearOp, qopt::qllm::LMHeadOp>(op))
      continue;
    auto param = op.getOperand(1).getDefiningOp<qopt::qllm::ParamOp>();
    std::string name = param.getName().str();
    const qopt::WeightEntry *e = m->store.find(name + ".f32");
    if (!e)
      e = m->store.find(name);
    if (e->dtype != qopt::DType::F32 || e->transposed) {
      *error = "weight '" + name + "' is not plain fp32";
      return nullptr;
    }
    m->gemms.push_back({e->shape[0], e->shape[1], reinterpret_cast<const float *>(e->data)});
  }
  return m;
}

struct Measured {
  double forward = 0, execGemm = 0, blasGemm = 0;
};

/// The same GEMMs as the forward, bare: preallocated activations/outputs.
double timeBlasAlone(const BenchModel &m, int64_t rows) {
  int64_t maxK = 0, maxN = 0;
  for (const Gemm &g : m.gemms) {
    maxK = std::max(maxK, g.k);
    maxN = std::max(maxN, g.n);
  }
  std::vector<float> x(size_t(rows * maxK)), y(size_t(rows * maxN));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = float(int(i % 17) - 8) * 0.01f;
  auto start = std::chrono::steady_clock::now();
  for (const Gemm &g : m.gemms)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(g.n), int(g.k), 1.0f,
                x.data(), int(g.k), g.w, int(g.k), 0.0f, y.data(), int(g.n));
  benchmark::DoNotOptimize(y.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// One forward and one BLAS-alone pass; `blasFirst` alternates their
/// order across iterations so neither side always runs on a warmer cache.
Measured measureOnce(BenchModel &m, int64_t seq, bool blasFirst = false) {
  Measured r;
  if (blasFirst)
    r.blasGemm = timeBlasAlone(m, seq);
  std::vector<std::vector<int32_t>> ids(1);
  for (int64_t i = 0; i < seq; ++i)
    ids[0].push_back(int32_t((i * 7919) % m.vocab));
  m.exec->resetProfile();
  qopt::Tensor logits;
  std::string err;
  auto start = std::chrono::steady_clock::now();
  if (!m.exec->forward(ids, &logits, &err)) {
    std::fprintf(stderr, "exec_bench: %s\n", err.c_str());
    std::exit(1);
  }
  r.forward = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const qopt::OpProfile &p : m.exec->profile())
    if (p.opName == "qllm.linear" || p.opName == "qllm.lm_head")
      r.execGemm += p.seconds;
  logits = qopt::Tensor(); // free before the BLAS side allocates
  if (!blasFirst)
    r.blasGemm = timeBlasAlone(m, seq);
  return r;
}

std::map<std::string, std::unique_ptr<BenchModel>> gLoaded;

void BM_Prefill(benchmark::State &state, std::string which) {
  auto &m = gLoaded[which];
  if (!m) {
    std::string err;
    m = makeModel(which, &err);
    if (!m) {
      state.SkipWithError(("model '" + which + "' unavailable: " + err).c_str());
      return;
    }
    measureOnce(*m, std::min<int64_t>(gSeq, 16)); // warm up: page in weights, BLAS threads
  }
  Measured total;
  int64_t iters = 0;
  for (auto _ : state) {
    Measured r = measureOnce(*m, gSeq, iters % 2 == 1);
    state.SetIterationTime(r.forward);
    total.forward += r.forward;
    total.execGemm += r.execGemm;
    total.blasGemm += r.blasGemm;
    ++iters;
  }
  double flops = 0;
  for (const Gemm &g : m->gemms)
    flops += 2.0 * double(gSeq) * double(g.n) * double(g.k);
  state.counters["exec_gemm_s"] = total.execGemm / iters;
  state.counters["blas_gemm_s"] = total.blasGemm / iters;
  state.counters["ratio"] = total.execGemm / total.blasGemm;
  state.counters["gemm_share"] = total.execGemm / total.forward;
  state.counters["gemm_gflops"] = flops / (total.execGemm / iters) * 1e-9;
  state.counters["params_M"] = m->params * 1e-6;
  state.SetLabel(m->label + ", prefill 1x" + std::to_string(gSeq));
  std::printf("\n[exec_bench] %s, prefill 1x%lld: forward %.3f s, executor GEMMs %.3f s, "
              "BLAS alone %.3f s, ratio %.3f, GEMM share %.1f%%, %.1f GFLOP/s\n",
              m->label.c_str(), (long long)gSeq, total.forward / iters,
              total.execGemm / iters, total.blasGemm / iters, total.execGemm / total.blasGemm,
              100.0 * total.execGemm / total.forward, flops / (total.execGemm / iters) * 1e-9);
  // Free the model before the next benchmark builds its own.
  m.reset();
  gLoaded.erase(which);
}

} // namespace

int main(int argc, char **argv) {
  std::vector<char *> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--seq=", 6) == 0)
      gSeq = std::atoll(argv[i] + 6);
    else if (std::strncmp(argv[i], "--models=", 9) == 0)
      gModels = argv[i] + 9;
    else
      rest.push_back(argv[i]);
  }
  if (gSeq < 1) {
    std::fprintf(stderr, "exec_bench: --seq must be positive\n");
    return 1;
  }
  for (const char *which : {"1b", "austen"})
    if (gModels.find(which) != std::string::npos)
      benchmark::RegisterBenchmark((std::string("Prefill/") + which).c_str(), BM_Prefill,
                                   std::string(which))
          ->UseManualTime()
          ->Unit(benchmark::kSecond)
          ->Iterations(which == std::string("1b") ? 2 : 5);
  int n = int(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
