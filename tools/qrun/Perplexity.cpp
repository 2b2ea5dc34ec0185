//===- Perplexity.cpp - qrun --perplexity: the shared protocol -------------===//
//
// Tokens of the whole text without special tokens, non-overlapping windows
// of --ctx tokens from the start, the first --chunks windows, each scored
// alone (its own KV from position 0), mean NLL over every predicted
// position, ppl = exp(mean NLL): the protocol of qopt -eval-ppl.
//
//===----------------------------------------------------------------------===//
#include "Serve.h"

#include <cmath>
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
  const int64_t ctx = o.ctx;
  int64_t windows = std::min<int64_t>(o.chunks, int64_t(ids.size()) / ctx);
  if (windows < 1) {
    *error = o.perplexityPath + " has " + std::to_string(ids.size()) +
             " tokens, fewer than one window of " + std::to_string(ctx);
    return false;
  }
  const int32_t bs = rt.kv->spec().blockSize;
  const int32_t blocks = int32_t((ctx + bs - 1) / bs);
  if (blocks > rt.kv->numBlocks()) {
    *error = "the KV pool holds " + std::to_string(rt.kv->numBlocks()) + " blocks, a window needs " +
             std::to_string(blocks);
    return false;
  }
  const int64_t V = rt.executor->vocabSize();
  std::vector<float> logits(size_t(ctx * V));
  serving::StepBatch b;
  b.blockSize = bs;
  b.seqIds = {0};
  b.queryStart = {0, int32_t(ctx)};
  b.contextLens = {int32_t(ctx)};
  b.blockTableStart = {0, blocks};
  for (int32_t i = 0; i < blocks; ++i)
    b.blockTable.push_back(i);
  for (int32_t p = 0; p < ctx; ++p) {
    b.positions.push_back(p);
    b.slotMapping.push_back(p);
  }
  double nll = 0;
  int64_t count = 0;
  for (int64_t w = 0; w < windows; ++w) {
    b.tokenIds.assign(ids.begin() + w * ctx, ids.begin() + (w + 1) * ctx);
    if (!rt.executor->executeAllLogits(b, logits.data(), error))
      return false;
    for (int64_t t = 0; t + 1 < ctx; ++t) {
      const float *row = logits.data() + t * V;
      float mx = row[0];
      for (int64_t j = 1; j < V; ++j)
        mx = std::max(mx, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < V; ++j)
        sum += std::exp(double(row[j]) - double(mx));
      nll += std::log(sum) + double(mx) - double(row[b.tokenIds[t + 1]]);
      ++count;
    }
  }
  std::printf("perplexity: %.4f\n", std::exp(nll / double(count)));
  std::fprintf(stderr, "qrun: %lld windows of %lld tokens, %lld predictions\n",
               (long long)windows, (long long)ctx, (long long)count);
  return true;
}

} // namespace qrun
