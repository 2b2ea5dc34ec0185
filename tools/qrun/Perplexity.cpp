//===- Perplexity.cpp - qrun --perplexity: the shared protocol -------------===//
//
// Tokens of the whole text without special tokens, non-overlapping windows
// of --ctx tokens from the start, the first --chunks windows, each scored
// alone (its own KV from position 0), mean NLL over every predicted
// position, ppl = exp(mean NLL): the protocol of qopt -eval-ppl, computed by
// qrt::eval::perplexity (shared with the C API).
//
//===----------------------------------------------------------------------===//
#include "Serve.h"

#include "qopt-rt/eval/Perplexity.h"
#include "qopt-rt/serving/StepBatch.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace qrun {

using namespace qrt;

bool runPerplexity(Runtime &rt, const Options &o, std::string *error) {
  if (!rt.tokenizer) {
    *error = "--perplexity needs the artifact's tokenizer";
    return false;
  }
  std::ifstream in(o.perplexityPath, std::ios::binary);
  if (!in) {
    *error = "cannot read " + o.perplexityPath;
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<int32_t> ids = rt.tokenizer->encode(ss.str(), false);
  eval::PerplexityResult r;
  std::string why;
  bool ok;
  if (rt.onCuda) {
    auto forward = [&](const serving::StepBatch &b, float *logits, std::string *err) {
      return rt.cudaExecutor->executeAllLogits(b, logits, err);
    };
    ok = eval::perplexity(forward, rt.cudaExecutor->executor().vocabSize(),
                          rt.cudaExecutor->blockSize(), rt.numBlocks, ids, o.ctx, o.chunks, &r,
                          &why);
  } else
    ok = eval::perplexity(*rt.executor, *rt.kv, ids, o.ctx, o.chunks, &r, &why);
  if (!ok) {
    *error = o.perplexityPath + ": " + why;
    return false;
  }
  std::printf("perplexity: %.4f\n", r.perplexity());
  std::fprintf(stderr, "qrun: %lld windows of %lld tokens, %lld predictions\n",
               (long long)r.windows, (long long)o.ctx, (long long)r.predictions);
  return true;
}

} // namespace qrun
