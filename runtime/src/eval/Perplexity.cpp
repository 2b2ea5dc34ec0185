//===- Perplexity.cpp - perplexity over fixed windows ----------------------===//
#include "qopt-rt/eval/Perplexity.h"

#include "qopt-rt/model/CpuModelExecutor.h"
#include "qopt-rt/serving/KVCache.h"
#include "qopt-rt/serving/StepBatch.h"

#include <algorithm>
#include <cmath>

namespace qrt::eval {

double PerplexityResult::perplexity() const { return std::exp(meanNll); }

bool perplexity(model::CpuModelExecutor &executor, const serving::KVCache &kv,
                const std::vector<int32_t> &ids, int64_t ctx, int64_t maxWindows,
                PerplexityResult *out, std::string *error) {
  auto forward = [&](const serving::StepBatch &b, float *logits, std::string *err) {
    return executor.executeAllLogits(b, logits, err);
  };
  return perplexity(forward, executor.vocabSize(), kv.spec().blockSize, kv.numBlocks(), ids,
                    ctx, maxWindows, out, error);
}

bool perplexity(const AllLogitsFn &forward, int64_t vocab, int32_t blockSize,
                int64_t numBlocks, const std::vector<int32_t> &ids, int64_t ctx,
                int64_t maxWindows, PerplexityResult *out, std::string *error) {
  if (ctx < 2) {
    *error = "a perplexity window needs at least 2 tokens, got " + std::to_string(ctx);
    return false;
  }
  int64_t windows = int64_t(ids.size()) / ctx;
  if (maxWindows > 0)
    windows = std::min(windows, maxWindows);
  if (windows < 1) {
    *error = "the text has " + std::to_string(ids.size()) +
             " tokens, fewer than one window of " + std::to_string(ctx);
    return false;
  }
  const int32_t bs = blockSize;
  const int64_t blocks = (ctx + bs - 1) / bs;
  if (blocks > numBlocks) {
    *error = "the KV pool holds " + std::to_string(numBlocks) + " blocks, a window needs " +
             std::to_string(blocks);
    return false;
  }
  const int64_t V = vocab;
  std::vector<float> logits(size_t(ctx * V));
  serving::StepBatch b;
  b.blockSize = bs;
  b.seqIds = {0};
  b.queryStart = {0, int32_t(ctx)};
  b.contextLens = {int32_t(ctx)};
  b.blockTableStart = {0, int32_t(blocks)};
  for (int32_t i = 0; i < int32_t(blocks); ++i)
    b.blockTable.push_back(i);
  for (int32_t p = 0; p < int32_t(ctx); ++p) {
    b.positions.push_back(p);
    b.slotMapping.push_back(p);
  }
  // Accumulated in double: 10k+ predictions of ~4 nats each.
  double nll = 0;
  int64_t count = 0;
  for (int64_t w = 0; w < windows; ++w) {
    b.tokenIds.assign(ids.begin() + w * ctx, ids.begin() + (w + 1) * ctx);
    if (!forward(b, logits.data(), error))
      return false;
    for (int64_t t = 0; t + 1 < ctx; ++t) {
      const float *row = logits.data() + t * V;
      float mx = row[0];
      for (int64_t j = 1; j < V; ++j)
        mx = std::max(mx, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < V; ++j)
        sum += std::exp(double(row[j]) - double(mx));
      nll += std::log(sum) + double(mx) - double(row[b.tokenIds[size_t(t + 1)]]);
      ++count;
    }
  }
  out->meanNll = nll / double(count);
  out->windows = windows;
  out->predictions = count;
  return true;
}

} // namespace qrt::eval
