//===- Options.cpp - qrun's command-line parsing (no LLVM: hand-rolled) ---===//
#include "Options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace qrun {

const char *usage() {
  return "usage: qrun ART.qopt (-p PROMPT | --token-ids 1,2,3) [-n N] [options]\n"
         "       qrun ART.qopt --prompts FILE.jsonl [--concurrency C]\n"
         "       qrun ART.qopt --perplexity TEXT [--ctx 256] [--chunks 40]\n"
         "options:\n"
         "  -n N               tokens to generate (default 64)\n"
         "  --temperature T    0 = greedy (default)\n"
         "  --top-k K, --top-p P, --seed S\n"
         "  --ignore-eos       do not stop at the end-of-sequence token\n"
         "  --print-ids        print the generated ids as a JSON list\n"
         "  --threads N        worker threads (default: all cores)\n"
         "  --kv-mem MIB       KV cache budget in MiB\n"
         "  --max-model-len N  context length (default: the model's)\n"
         "  --fp32-act         fp32 activations in the quantized GEMMs: what qopt's reference\n"
         "                     executor computes (default: int8 per 32 columns, faster)\n"
         "  --no-prefix-cache  disable prefix caching\n"
         "  --device cpu|cuda  where to run (default: the artifact's target; -target=sm80|sm89|\n"
         "                     sm90 artifacts run on cuda)\n"
         "  --gpu-memory-utilization F  share of the GPU's free memory for the KV cache (0.9)\n"
         "  --no-cuda-graphs   --device cuda: run decode steps kernel by kernel, not as CUDA\n"
         "                     graphs (same results; QCUDA_NO_GRAPHS=1 does the same)\n"
         "  --host-sampling    --device cuda: copy the logits back and sample on the host\n"
         "                     (default: sample on the GPU; seeded draws differ, greedy not)\n"
         "JSONL lines: {\"prompt\": str | \"prompt_ids\": [int], \"max_tokens\", "
         "\"temperature\", \"top_k\", \"top_p\", \"seed\", \"stop\": [str], \"ignore_eos\"}\n";
}

static bool parseInt(const std::string &s, int64_t lo, int64_t hi, int64_t *out) {
  if (s.empty())
    return false;
  errno = 0;
  char *end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno || *end || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

static bool parseFloat(const std::string &s, float *out) {
  if (s.empty())
    return false;
  char *end = nullptr;
  errno = 0;
  float v = std::strtof(s.c_str(), &end);
  if (errno || *end || !std::isfinite(v))
    return false;
  *out = v;
  return true;
}

bool parseOptions(int argc, char **argv, Options *o, std::string *error) {
  auto need = [&](int &i, const std::string &flag, std::string *val) {
    if (i + 1 >= argc) {
      *error = flag + " needs a value";
      return false;
    }
    *val = argv[++i];
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v;
    // Accept --flag=value too.
    size_t eq = a.find('=');
    bool inlineVal = a.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inlineVal) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto value = [&](std::string *out) {
      if (inlineVal) {
        *out = v;
        return true;
      }
      return need(i, a, out);
    };
    auto intFlag = [&](int64_t lo, int64_t hi, int64_t *out) {
      std::string s;
      if (!value(&s))
        return false;
      if (!parseInt(s, lo, hi, out)) {
        *error = a + ": '" + s + "' is not an integer in [" + std::to_string(lo) + ", " +
                 std::to_string(hi) + "]";
        return false;
      }
      return true;
    };
    auto floatFlag = [&](float *out) {
      std::string s;
      if (!value(&s))
        return false;
      if (!parseFloat(s, out)) {
        *error = a + ": '" + s + "' is not a number";
        return false;
      }
      return true;
    };
    int64_t n;
    if (a == "-h" || a == "--help") {
      o->help = true;
    } else if (a == "-p" || a == "--prompt") {
      std::string s;
      if (!value(&s))
        return false;
      o->prompt = s;
    } else if (a == "--token-ids") {
      std::string s;
      if (!value(&s))
        return false;
      std::vector<int32_t> ids;
      size_t pos = 0;
      while (pos <= s.size()) {
        size_t c = s.find(',', pos);
        std::string item = s.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
        if (!parseInt(item, 0, INT32_MAX, &n)) {
          *error = "--token-ids: '" + item + "' is not a token id";
          return false;
        }
        ids.push_back(int32_t(n));
        if (c == std::string::npos)
          break;
        pos = c + 1;
      }
      o->tokenIds = ids;
    } else if (a == "-n" || a == "--max-tokens") {
      if (!intFlag(1, 1 << 24, &n))
        return false;
      o->maxTokens = int32_t(n);
    } else if (a == "--temperature") {
      if (!floatFlag(&o->temperature))
        return false;
    } else if (a == "--top-k") {
      if (!intFlag(0, INT32_MAX, &n))
        return false;
      o->topK = int32_t(n);
    } else if (a == "--top-p") {
      if (!floatFlag(&o->topP))
        return false;
    } else if (a == "--seed") {
      if (!intFlag(0, INT64_MAX, &n))
        return false;
      o->seed = uint64_t(n);
    } else if (a == "--prompts") {
      if (!value(&o->promptsPath))
        return false;
    } else if (a == "--concurrency") {
      if (!intFlag(1, 4096, &n))
        return false;
      o->concurrency = int32_t(n);
    } else if (a == "--perplexity") {
      if (!value(&o->perplexityPath))
        return false;
    } else if (a == "--ctx") {
      if (!intFlag(2, 1 << 20, &n))
        return false;
      o->ctx = int32_t(n);
    } else if (a == "--chunks") {
      if (!intFlag(1, 1 << 20, &n))
        return false;
      o->chunks = int32_t(n);
    } else if (a == "--threads") {
      if (!intFlag(1, 1024, &n))
        return false;
      o->threads = int(n);
    } else if (a == "--kv-mem") {
      if (!intFlag(1, int64_t(1) << 24, &n))
        return false;
      o->kvMemMiB = n;
    } else if (a == "--max-model-len") {
      if (!intFlag(2, 1 << 24, &n))
        return false;
      o->maxModelLen = int32_t(n);
    } else if (a == "--print-ids") {
      o->printIds = true;
    } else if (a == "--ignore-eos") {
      o->ignoreEos = true;
    } else if (a == "--int8-act") {
      o->int8Activations = true; // the default; kept for old command lines
    } else if (a == "--fp32-act") {
      o->int8Activations = false;
    } else if (a == "--no-prefix-cache") {
      o->prefixCaching = false;
    } else if (a == "--device") {
      if (!value(&o->device))
        return false;
      if (o->device != "cpu" && o->device != "cuda") {
        *error = "--device must be cpu or cuda, got '" + o->device + "'";
        return false;
      }
    } else if (a == "--gpu-memory-utilization") {
      std::string v;
      if (!value(&v))
        return false;
      if (!parseFloat(v, &o->gpuMemoryUtilization) || !(o->gpuMemoryUtilization > 0.0f) ||
          o->gpuMemoryUtilization > 1.0f) {
        *error = "--gpu-memory-utilization must be a number in (0, 1], got '" + v + "'";
        return false;
      }
    } else if (a == "--no-cuda-graphs") {
      o->cudaGraphs = false;
    } else if (a == "--host-sampling") {
      o->hostSampling = true;
    } else if (!a.empty() && a[0] == '-') {
      *error = "unknown option '" + a + "' (see --help)";
      return false;
    } else if (o->artifact.empty()) {
      o->artifact = a;
    } else {
      *error = "unexpected argument '" + a + "' (one artifact only)";
      return false;
    }
  }
  if (o->help)
    return true;
  if (o->artifact.empty()) {
    *error = "no artifact given (usage: qrun ART.qopt -p PROMPT)";
    return false;
  }
  int modes = (o->prompt || o->tokenIds) + !o->promptsPath.empty() + !o->perplexityPath.empty();
  if (modes != 1) {
    *error = modes == 0 ? "nothing to do: give -p PROMPT, --token-ids, --prompts FILE or --perplexity TEXT"
                        : "give only one of -p/--token-ids, --prompts and --perplexity";
    return false;
  }
  if (o->prompt && o->tokenIds) {
    *error = "give -p or --token-ids, not both";
    return false;
  }
  return true;
}

} // namespace qrun
