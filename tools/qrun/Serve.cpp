//===- Serve.cpp - qrun: load, stream one prompt, serve a JSONL file -------===//
#include "Serve.h"

#include "qopt-rt/serving/Engine.h"

#include <nlohmann/json.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <type_traits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

namespace qrun {

using namespace qrt;
using Clock = std::chrono::steady_clock;

static double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string kernelsSummary(const Runtime &rt) {
  if (rt.onCuda)
    return "CUDA on " + rt.cudaExecutor->deviceName() + ": " +
           rt.cudaExecutor->kernelsSummary();
  const model::ArtifactModel &m = rt.model;
  const int packed = m.specializedWeights + m.genericWeights;
  if (!m.kernels) {
    if (!packed)
      return "no packed weights";
    return std::string("generic (") + kernels::isaName(kernels::bestIsa()) +
           (m.codegenDisabled ? "; QRT_NO_CODEGEN is set)"
                : "; the artifact has no generated kernels for this path)");
  }
  return std::string("generated for ") + kernels::isaName(m.kernels->isa()) + ", " +
         std::to_string(m.specializedWeights) + " of " + std::to_string(packed) +
         " packed weights";
}

bool Runtime::loadTokenizer(std::string *error) {
  std::string tp = artifact->tokenizerPath();
  if (!tp.empty()) {
    tokenizer = Tokenizer::fromFile(tp, error);
    if (!tokenizer)
      return false;
  }
  return true;
}

void Runtime::sizeFor(const Options &o, int32_t modelMaxPositions) {
  maxModelLen = o.maxModelLen ? o.maxModelLen : modelMaxPositions;
  if (!o.perplexityPath.empty())
    maxModelLen = std::max(maxModelLen, o.ctx);
  maxSeqs = o.promptsPath.empty() ? 1 : o.concurrency;
}

// The engine's step budget (makeEngine's maxNumBatchedTokens).
static int32_t stepTokens(int32_t maxSeqs) { return std::max<int32_t>(512, maxSeqs); }

/// Opens the CUDA plugin: $QOPT_CUDA_BACKEND, else libqopt_cuda_backend.so
/// next to this executable. Null with *error when it is not there or does
/// not load (no CUDA libraries on this machine).
static qopt_cuda_backend_create_fn openCudaBackend(std::string *error) {
  std::string path;
  if (const char *env = std::getenv("QOPT_CUDA_BACKEND"); env && *env) {
    path = env;
  } else {
    char exe[4096];
    ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    std::string self = n > 0 ? std::string(exe, size_t(n)) : std::string();
    path = self.substr(0, self.find_last_of('/') + 1) + qcuda::kCudaBackendFile;
  }
  if (::access(path.c_str(), F_OK) != 0) {
    *error = std::string("this qrun has no CUDA backend (") + path +
             " is missing: qrun was built without CUDA, or the plugin was not copied "
             "beside it; set QOPT_CUDA_BACKEND to its path)";
    return nullptr;
  }
  void *h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = ::dlerror();
    *error = "the CUDA backend " + path + " does not load: " + (why ? why : "unknown error") +
             " (are CUDA 13's libraries installed?)";
    return nullptr;
  }
  auto fn = reinterpret_cast<qopt_cuda_backend_create_fn>(::dlsym(h, qcuda::kCudaBackendFactory));
  if (!fn)
    *error = path + " does not export " + qcuda::kCudaBackendFactory;
  return fn;
}

bool Runtime::loadCuda(const Options &o, std::string *error) {
  artifact = Artifact::openForCuda(o.artifact, error);
  if (!artifact)
    return false;
  qopt_cuda_backend_create_fn create = openCudaBackend(error);
  if (!create)
    return false;
  if (!loadTokenizer(error))
    return false;
  sizeFor(o, int32_t(std::min<int64_t>(artifact->config().maxPositionEmbeddings, 1 << 30)));
  qcuda::CudaExecutorOptions co;
  co.gpuMemoryUtilization = o.gpuMemoryUtilization;
  co.maxBatchedTokens = std::max<int32_t>(stepTokens(maxSeqs), o.perplexityPath.empty() ? 0 : o.ctx);
  // As on the CPU: no more blocks than concurrency x max_model_len can use
  // (the memory share is the other bound).
  co.maxBlocks = int64_t(maxSeqs) * ((int64_t(maxModelLen) + 15) / 16) + 1;
  // The decode graphs: block tables for max_model_len, buckets up to maxSeqs.
  co.maxModelLen = maxModelLen;
  co.maxNumSeqs = maxSeqs;
  co.cudaGraphs = o.cudaGraphs;
  co.deviceSampling = !o.hostSampling;
  cudaExecutor.reset(create(qcuda::kCudaBackendAbi, artifact.get(), &co, error));
  if (!cudaExecutor)
    return false;
  exec = &cudaExecutor->executor();
  numBlocks = cudaExecutor->numBlocks();
  onCuda = true;
  return true;
}

bool Runtime::load(const Options &o, std::string *error) {
  std::string device = o.device;
  if (device.empty()) {
    auto peek = Artifact::openForInspection(o.artifact, error);
    if (!peek)
      return false;
    device = peek->target().isCuda() ? "cuda" : "cpu";
  }
  if (device == "cuda")
    return loadCuda(o, error);
  // Refuses a GPU artifact ("run it with qrun --device cuda").
  artifact = Artifact::open(o.artifact, error);
  if (!artifact)
    return false;
  if (!model::modelFromArtifact(*artifact, &model, error))
    return false;
  if (!loadTokenizer(error))
    return false;
  const model::ModelDims &d = model.weights.dims;
  sizeFor(o, d.maxPositions);
  kv = model::createKVPool(model, model.kvType, maxSeqs, maxModelLen,
                           uint64_t(o.kvMemMiB) << 20, /*exactSize=*/false, error);
  if (!kv)
    return false;
  pool = std::make_unique<kernels::ThreadPool>(o.threads);
  model::ExecutorOptions eo;
  eo.pool = pool.get();
  eo.activations = o.int8Activations ? kernels::Activations::Int8 : kernels::Activations::Float;
  executor = model::CpuModelExecutor::create(model.weights, *kv, eo, error);
  exec = executor.get();
  numBlocks = kv->numBlocks();
  return executor != nullptr;
}

static std::unique_ptr<serving::Engine> makeEngine(Runtime &rt, const Options &o,
                                                   std::string *error) {
  serving::EngineConfig c;
  c.scheduler.blockSize = 16;
  c.scheduler.numBlocks = rt.numBlocks;
  c.scheduler.maxNumSeqs = rt.maxSeqs;
  c.scheduler.maxNumBatchedTokens = stepTokens(rt.maxSeqs);
  c.scheduler.maxModelLen = rt.maxModelLen;
  c.scheduler.enablePrefixCaching = o.prefixCaching;
  const ArtifactConfig &ac = rt.artifact->config();
  if (ac.eosTokenId >= 0)
    c.eosTokenIds.push_back(int32_t(ac.eosTokenId));
  return serving::Engine::create(c, *rt.exec, rt.tokenizer.get(), error);
}

static serving::SamplingParams baseParams(const Options &o) {
  serving::SamplingParams p;
  p.temperature = o.temperature;
  p.topK = o.topK;
  p.topP = o.topP;
  p.seed = o.seed;
  p.maxTokens = o.maxTokens;
  p.ignoreEos = o.ignoreEos;
  return p;
}

static std::string idsJson(const std::vector<int32_t> &ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i)
    s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

bool runSingle(Runtime &rt, const Options &o, std::string *error) {
  auto engine = makeEngine(rt, o, error);
  if (!engine)
    return false;
  serving::SamplingParams p = baseParams(o);
  if (o.prompt && !rt.tokenizer) {
    *error = "the artifact has no tokenizer; give --token-ids";
    return false;
  }
  Clock::time_point t0 = Clock::now();
  if (o.tokenIds)
    engine->addRequest(*o.tokenIds, p);
  else
    engine->addRequest(std::string_view(*o.prompt), p);
  std::vector<int32_t> ids;
  double ttft = -1;
  int32_t promptTokens = 0;
  while (engine->hasUnfinished()) {
    for (const serving::RequestOutput &out : engine->step()) {
      if (!out.newTokenIds.empty() && ttft < 0)
        ttft = secondsSince(t0);
      ids.insert(ids.end(), out.newTokenIds.begin(), out.newTokenIds.end());
      promptTokens = out.numPromptTokens;
      if (!o.printIds && !out.newText.empty()) {
        std::fwrite(out.newText.data(), 1, out.newText.size(), stdout);
        std::fflush(stdout);
      }
      if (out.finished && out.finishReason == serving::FinishReason::Error) {
        *error = out.error;
        return false;
      }
    }
  }
  double total = secondsSince(t0);
  if (o.printIds)
    std::printf("%s\n", idsJson(ids).c_str());
  else
    std::printf("\n");
  std::fflush(stdout); // the text ends before the statistics on stderr start
  double decode = total - ttft;
  std::fprintf(stderr,
               "qrun: %d prompt tokens, %zu generated; first token %.1f ms; %.1f tokens/s after it\n",
               promptTokens, ids.size(), ttft * 1e3,
               ids.size() > 1 && decode > 0 ? double(ids.size() - 1) / decode : 0.0);
  return true;
}

namespace {
struct Job {
  int line = 0;
  bool bad = false;
  std::string badReason;
  std::optional<std::string> prompt;
  std::vector<int32_t> promptIds;
  serving::SamplingParams params;
  // Results.
  Clock::time_point start;
  std::vector<double> tokenTimes;
  std::vector<int32_t> ids;
  std::string text, finish, error;
  int32_t cachedTokens = 0; ///< prompt tokens served by the prefix cache
};

/// One JSONL line -> a job (a bad line becomes a failed job, not an error).
Job parseJob(const std::string &line, int lineNo, const Options &o) {
  Job j;
  j.line = lineNo;
  j.params = baseParams(o);
  nlohmann::json v = nlohmann::json::parse(line, nullptr, false);
  auto fail = [&](const std::string &why) {
    j.bad = true;
    j.badReason = "line " + std::to_string(lineNo) + ": " + why;
    return j;
  };
  if (v.is_discarded() || !v.is_object())
    return fail("not a JSON object");
  if (v.contains("prompt")) {
    if (!v["prompt"].is_string())
      return fail("\"prompt\" must be a string");
    j.prompt = v["prompt"].get<std::string>();
  } else if (v.contains("prompt_ids")) {
    if (!v["prompt_ids"].is_array())
      return fail("\"prompt_ids\" must be a list of ids");
    for (auto &x : v["prompt_ids"]) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
        return fail("\"prompt_ids\" must be a list of ids");
      j.promptIds.push_back(int32_t(x.get<int64_t>()));
    }
  } else {
    return fail("needs \"prompt\" or \"prompt_ids\"");
  }
  // Numbers are read as double and range-checked before any conversion
  // (a huge or fractional value for an integer field is an error).
  auto num = [&](const char *k, auto *out) {
    using T = std::remove_pointer_t<decltype(out)>;
    if (!v.contains(k))
      return true;
    if (!v[k].is_number())
      return false;
    double x = v[k].get<double>();
    if (std::is_integral_v<T>) {
      if (!(x >= -1 && x <= 2147483647.0) || x != std::floor(x))
        return false;
    } else if (!std::isfinite(x)) {
      return false;
    }
    *out = T(x);
    return true;
  };
  int64_t seed = -1;
  if (!num("max_tokens", &j.params.maxTokens) || !num("temperature", &j.params.temperature) ||
      !num("top_k", &j.params.topK) || !num("top_p", &j.params.topP) || !num("seed", &seed))
    return fail("max_tokens, top_k and seed must be integers (up to 2^31-1), temperature "
                "and top_p finite numbers");
  if (seed >= 0)
    j.params.seed = uint64_t(seed);
  if (v.contains("ignore_eos")) {
    if (!v["ignore_eos"].is_boolean())
      return fail("\"ignore_eos\" must be true or false");
    j.params.ignoreEos = v["ignore_eos"].get<bool>();
  }
  if (v.contains("stop")) {
    auto &s = v["stop"];
    if (s.is_string())
      j.params.stop.push_back(s.get<std::string>());
    else if (s.is_array()) {
      for (auto &x : s) {
        if (!x.is_string())
          return fail("\"stop\" must be a string or a list of strings");
        j.params.stop.push_back(x.get<std::string>());
      }
    } else {
      return fail("\"stop\" must be a string or a list of strings");
    }
  }
  return j;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  size_t i = size_t(std::min<double>(double(v.size() - 1), p * double(v.size() - 1) + 0.5));
  return v[i];
}
} // namespace

bool runPromptsFile(Runtime &rt, const Options &o, std::string *error) {
  std::ifstream in(o.promptsPath);
  if (!in) {
    *error = "cannot read " + o.promptsPath;
    return false;
  }
  std::vector<Job> jobs;
  std::string line;
  int lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    jobs.push_back(parseJob(line, lineNo, o));
  }
  auto engine = makeEngine(rt, o, error);
  if (!engine)
    return false;
  std::map<serving::RequestId, size_t> live;
  size_t next = 0, done = 0;
  Clock::time_point t0 = Clock::now();
  auto submit = [&]() {
    while (next < jobs.size() && int32_t(live.size()) < o.concurrency) {
      Job &j = jobs[next];
      j.start = Clock::now();
      if (j.bad) {
        j.finish = "error";
        j.error = j.badReason;
        ++next;
        ++done;
        continue;
      }
      serving::RequestId id;
      if (j.prompt) {
        if (!rt.tokenizer) {
          j.finish = "error";
          j.error = "line " + std::to_string(j.line) + ": a text prompt needs the artifact's tokenizer";
          ++next;
          ++done;
          continue;
        }
        id = engine->addRequest(std::string_view(*j.prompt), j.params);
      } else {
        id = engine->addRequest(j.promptIds, j.params);
      }
      live[id] = next++;
    }
  };
  submit();
  int64_t generated = 0;
  while (!live.empty()) {
    for (const serving::RequestOutput &out : engine->step()) {
      auto it = live.find(out.id);
      if (it == live.end())
        continue;
      Job &j = jobs[it->second];
      double now = std::chrono::duration<double>(Clock::now() - j.start).count();
      for (size_t k = 0; k < out.newTokenIds.size(); ++k)
        j.tokenTimes.push_back(now);
      generated += int64_t(out.newTokenIds.size());
      j.ids.insert(j.ids.end(), out.newTokenIds.begin(), out.newTokenIds.end());
      j.text += out.newText;
      j.cachedTokens = std::max(j.cachedTokens, out.numCachedTokens);
      if (out.finished) {
        j.finish = serving::finishReasonName(out.finishReason);
        if (out.finishReason == serving::FinishReason::Error)
          j.error = "line " + std::to_string(j.line) + ": " + out.error;
        live.erase(it);
        ++done;
      }
    }
    submit();
  }
  double wall = secondsSince(t0);
  std::vector<double> ttft, itl;
  int failed = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    Job &j = jobs[i];
    nlohmann::json r;
    r["line"] = j.line;
    r["finish_reason"] = j.finish;
    if (!j.error.empty()) {
      r["error"] = j.error;
      ++failed;
      std::fprintf(stderr, "qrun: error: %s\n", j.error.c_str());
    }
    r["token_ids"] = j.ids;
    r["cached_tokens"] = j.cachedTokens;
    r["text"] = j.text;
    std::printf("%s\n", r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    if (!j.tokenTimes.empty()) {
      ttft.push_back(j.tokenTimes[0]);
      for (size_t k = 1; k < j.tokenTimes.size(); ++k)
        itl.push_back(j.tokenTimes[k] - j.tokenTimes[k - 1]);
    }
  }
  double meanTtft = 0, meanItl = 0;
  for (double x : ttft) meanTtft += x;
  for (double x : itl) meanItl += x;
  meanTtft = ttft.empty() ? 0 : meanTtft / double(ttft.size());
  meanItl = itl.empty() ? 0 : meanItl / double(itl.size());
  std::fprintf(stderr,
               "qrun: %zu requests (%d failed), concurrency %d, %d threads, %.2f s\n"
               "qrun: time to first token: mean %.1f ms, p50 %.1f ms, p99 %.1f ms\n"
               "qrun: inter-token latency: mean %.2f ms, p50 %.2f ms, p99 %.2f ms\n"
               "qrun: throughput: %.1f generated tokens/s\n",
               jobs.size(), failed, o.concurrency, rt.pool ? rt.pool->size() : 0, wall,
               meanTtft * 1e3,
               percentile(ttft, 0.5) * 1e3, percentile(ttft, 0.99) * 1e3, meanItl * 1e3,
               percentile(itl, 0.5) * 1e3, percentile(itl, 0.99) * 1e3,
               wall > 0 ? double(generated) / wall : 0.0);
  uint64_t weightBytes = 0, kvBytes = rt.kv ? rt.kv->allocatedBytes() : 0;
  for (const ArtifactTensor &t : rt.artifact->tensors())
    weightBytes += t.nbytes;
  if (rt.onCuda) {
    weightBytes = rt.cudaExecutor->weightBytes();
    kvBytes = rt.cudaExecutor->kvBytes();
  }
  std::fprintf(stderr, "qrun: memory: %.1f MiB of %s weights, %.1f MiB KV pool (%d blocks)\n",
               double(weightBytes) / 1048576.0, rt.onCuda ? "GPU" : "mapped",
               double(kvBytes) / 1048576.0, rt.numBlocks);
  std::fprintf(stderr, "qrun: kernels: %s\n", kernelsSummary(rt).c_str());
  (void)done;
  return true;
}

} // namespace qrun
