//===- Evaluate.cpp - greedy generation and perplexity ---------------===//
//
// Both are thin loops over ReferenceExecutor::forward. Perplexity batches
// windows into one forward (bigger GEMMs) as long as their logits fit a
// fixed budget, and reduces each row to its NLL in double right away.
//
//===----------------------------------------------------------------------===//
#include "qopt/Exec/ReferenceExecutor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unistd.h>

namespace qopt {

/// Logits of one perplexity forward stay under this many bytes.
static constexpr int64_t kLogitsBudgetBytes = int64_t(512) << 20;
/// More windows per forward than this buys no GEMM efficiency.
static constexpr int64_t kMaxWindowsPerForward = 16;

bool greedyGenerate(ReferenceExecutor &exec, std::vector<int32_t> prompt,
                    int maxNewTokens, std::optional<int32_t> eos,
                    std::vector<int32_t> *generated, std::string *error) {
  generated->clear();
  if (prompt.empty()) {
    *error = "greedy generation needs a non-empty prompt";
    return false;
  }
  std::vector<std::vector<int32_t>> batch(1);
  batch[0] = std::move(prompt);
  Tensor logits;
  for (int step = 0; step < maxNewTokens; ++step) {
    if (!exec.forward(batch, &logits, error))
      return false;
    const int64_t vocab = logits.shape.back();
    const float *last = logits.data.data() + logits.numElements() - vocab;
    // First maximum wins, as torch.argmax.
    int32_t best = int32_t(std::max_element(last, last + vocab) - last);
    generated->push_back(best);
    batch[0].push_back(best);
    if (eos && best == *eos)
      break;
  }
  return true;
}

/// -log softmax(row)[target], in double.
static double rowNll(const float *row, int64_t vocab, int32_t target) {
  float mx = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j)
    sum += std::exp(double(row[j]) - double(mx));
  return std::log(sum) + double(mx) - double(row[target]);
}

bool evaluatePerplexity(ReferenceExecutor &exec, const std::vector<int32_t> &tokens,
                        int64_t ctx, int64_t chunks, PerplexityResult *result,
                        std::string *error) {
  if (ctx < 2) {
    *error = "perplexity needs a context of at least 2 tokens, got " + std::to_string(ctx);
    return false;
  }
  if (chunks < 0) {
    *error = "perplexity: the number of windows must be >= 0, got " + std::to_string(chunks);
    return false;
  }
  int64_t available = int64_t(tokens.size()) / ctx;
  if (available == 0) {
    *error = "perplexity needs at least " + std::to_string(ctx) +
             " tokens (one window of the context length), the text has only " +
             std::to_string(tokens.size());
    return false;
  }
  const int64_t windows = chunks > 0 ? std::min(chunks, available) : available;
  const int64_t vocab = std::max<int64_t>(exec.vocabSize(), 1);
  const int64_t perWindowBytes = ctx * vocab * int64_t(sizeof(float));
  const int64_t perForward =
      std::clamp<int64_t>(kLogitsBudgetBytes / perWindowBytes, 1, kMaxWindowsPerForward);
  const bool showProgress = isatty(2);

  double nllSum = 0;
  int64_t predicted = 0;
  Tensor logits;
  for (int64_t first = 0; first < windows; first += perForward) {
    const int64_t count = std::min(perForward, windows - first);
    std::vector<std::vector<int32_t>> batch(static_cast<size_t>(count));
    for (int64_t w = 0; w < count; ++w) {
      auto begin = tokens.begin() + (first + w) * ctx;
      batch[w].assign(begin, begin + ctx);
    }
    if (!exec.forward(batch, &logits, error))
      return false;
    const int64_t v = logits.shape.back();
    for (int64_t w = 0; w < count; ++w)
      for (int64_t pos = 0; pos + 1 < ctx; ++pos) {
        const int32_t target = batch[w][pos + 1];
        if (target >= v) {
          *error = "perplexity: token id " + std::to_string(target) +
                   " has no logit (the model's vocabulary has " + std::to_string(v) + ")";
          return false;
        }
        const float *row = logits.data.data() + (w * ctx + pos) * v;
        nllSum += rowNll(row, v, target);
        ++predicted;
      }
    if (showProgress)
      std::fprintf(stderr, "\rperplexity: windows %lld/%lld", (long long)(first + count),
                   (long long)windows);
  }
  if (showProgress)
    std::fprintf(stderr, "\n");
  result->windows = windows;
  result->predicted = predicted;
  result->meanNll = nllSum / double(predicted);
  result->perplexity = std::exp(result->meanNll);
  return true;
}

} // namespace qopt
