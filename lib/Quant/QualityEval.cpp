//===- QualityEval.cpp - perplexity, KL divergence, top-1 agreement -----===//
//
// Each window goes through both executors; each predicted row is reduced
// to (NLL float, NLL quantized, KL, argmax agreement) in double right away,
// and the logits are dropped before the next batch of windows.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/QualityEval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unistd.h>

namespace qopt::quant {

/// One forward's logits (per executor) stay under this many bytes.
static constexpr int64_t kLogitsBudgetBytes = int64_t(256) << 20;
static constexpr int64_t kMaxWindowsPerForward = 8;

/// log-softmax of a row in double into `out`; returns the argmax (first).
static int64_t logSoftmax(const float *row, int64_t vocab, std::vector<double> *out) {
  int64_t best = 0;
  for (int64_t j = 1; j < vocab; ++j)
    if (row[j] > row[best])
      best = j;
  double mx = row[best], sum = 0;
  for (int64_t j = 0; j < vocab; ++j)
    sum += std::exp(double(row[j]) - mx);
  double lse = mx + std::log(sum);
  out->resize(size_t(vocab));
  for (int64_t j = 0; j < vocab; ++j)
    (*out)[j] = double(row[j]) - lse;
  return best;
}

bool evaluateQuality(ReferenceExecutor &reference, ReferenceExecutor &quantized,
                     const std::vector<int32_t> &tokens, int64_t ctx, int64_t chunks,
                     QualityResult *result, std::string *error) {
  if (ctx < 2) {
    *error = "quality evaluation needs a context of at least 2 tokens, got " +
             std::to_string(ctx);
    return false;
  }
  if (chunks < 0) {
    *error = "quality evaluation: the number of windows must be >= 0";
    return false;
  }
  if (reference.vocabSize() != quantized.vocabSize()) {
    *error = "quality evaluation: the float and quantized models have different vocabularies (" +
             std::to_string(reference.vocabSize()) + " vs " +
             std::to_string(quantized.vocabSize()) + ")";
    return false;
  }
  const int64_t available = int64_t(tokens.size()) / ctx;
  if (available == 0) {
    *error = "quality evaluation needs at least " + std::to_string(ctx) +
             " tokens (one window), the text has only " + std::to_string(tokens.size());
    return false;
  }
  const int64_t windows = chunks > 0 ? std::min(chunks, available) : available;
  const int64_t vocab = std::max<int64_t>(reference.vocabSize(), 1);
  const int64_t perForward = std::clamp<int64_t>(
      kLogitsBudgetBytes / (ctx * vocab * int64_t(sizeof(float))), 1, kMaxWindowsPerForward);
  const bool progress = isatty(2);

  double nllRef = 0, nllQuant = 0, kldSum = 0;
  int64_t agree = 0, predicted = 0;
  std::vector<double> klds;
  klds.reserve(size_t(windows * (ctx - 1)));
  std::vector<double> lpRef, lpQuant;
  Tensor logitsRef, logitsQuant;
  for (int64_t first = 0; first < windows; first += perForward) {
    const int64_t count = std::min(perForward, windows - first);
    std::vector<std::vector<int32_t>> batch(static_cast<size_t>(count));
    for (int64_t w = 0; w < count; ++w) {
      auto begin = tokens.begin() + (first + w) * ctx;
      batch[w].assign(begin, begin + ctx);
    }
    if (!reference.forward(batch, &logitsRef, error) ||
        !quantized.forward(batch, &logitsQuant, error))
      return false;
    const int64_t v = logitsRef.shape.back();
    if (logitsQuant.shape != logitsRef.shape) {
      *error = "quality evaluation: the two models' logits differ in shape";
      return false;
    }
    for (int64_t w = 0; w < count; ++w)
      for (int64_t pos = 0; pos + 1 < ctx; ++pos) {
        const int32_t target = batch[w][pos + 1];
        if (target < 0 || target >= v) {
          *error = "quality evaluation: token id " + std::to_string(target) +
                   " has no logit (the vocabulary has " + std::to_string(v) + ")";
          return false;
        }
        const int64_t offset = (w * ctx + pos) * v;
        int64_t argRef = logSoftmax(logitsRef.data.data() + offset, v, &lpRef);
        int64_t argQuant = logSoftmax(logitsQuant.data.data() + offset, v, &lpQuant);
        double kld = 0;
        for (int64_t j = 0; j < v; ++j)
          kld += std::exp(lpRef[j]) * (lpRef[j] - lpQuant[j]);
        kld = std::max(kld, 0.0); // rounding can leave a hair below zero
        kldSum += kld;
        klds.push_back(kld);
        nllRef -= lpRef[target];
        nllQuant -= lpQuant[target];
        agree += argRef == argQuant;
        ++predicted;
      }
    if (progress)
      std::fprintf(stderr, "\rquality: windows %lld/%lld", (long long)(first + count),
                   (long long)windows);
  }
  if (progress)
    std::fprintf(stderr, "\n");

  auto fill = [&](PerplexityResult *r, double nll) {
    r->windows = windows;
    r->predicted = predicted;
    r->meanNll = nll / double(predicted);
    r->perplexity = std::exp(r->meanNll);
  };
  fill(&result->reference, nllRef);
  fill(&result->quantized, nllQuant);
  result->windows = windows;
  result->predicted = predicted;
  result->meanKld = kldSum / double(predicted);
  result->top1 = double(agree) / double(predicted);
  std::sort(klds.begin(), klds.end());
  result->maxKld = klds.back();
  result->p99Kld = klds[std::min(klds.size() - 1, size_t(0.99 * double(klds.size())))];
  return true;
}

} // namespace qopt::quant
