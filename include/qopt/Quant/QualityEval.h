//===- QualityEval.h - what quantization cost, measured -------*- C++ -*-===//
//
// The three numbers llama.cpp's perplexity tool reports for a quantized
// model, under the shared perplexity protocol (windows of `ctx` tokens from
// the start, the first `chunks`, each scored alone): perplexity of both
// models, the mean KL divergence KL(float || quantized) of the next-token
// distributions over every predicted position, and the share of positions
// whose argmax agrees. Both models run window by window side by side, so
// memory is two windows' logits, never the whole text's.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_QUALITYEVAL_H
#define QOPT_QUANT_QUALITYEVAL_H

#include "qopt/Exec/ReferenceExecutor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qopt::quant {

struct QualityResult {
  PerplexityResult reference; ///< the float model
  PerplexityResult quantized;
  /// Mean over predicted positions of sum_v p(v) (log p(v) - log q(v)),
  /// log-softmax in double.
  double meanKld = 0;
  /// Largest and 99th-percentile per-position KL divergence.
  double maxKld = 0, p99Kld = 0;
  /// Share of positions where both argmaxes agree (ties: lowest id).
  double top1 = 0;
  int64_t windows = 0, predicted = 0;
};

/// Runs `reference` and `quantized` on the same windows of `tokens`.
/// False with *error (too few tokens, vocabularies that differ, a forward
/// that fails). Shows "windows i/N" on stderr when it is a terminal.
bool evaluateQuality(ReferenceExecutor &reference, ReferenceExecutor &quantized,
                     const std::vector<int32_t> &tokens, int64_t ctx, int64_t chunks,
                     QualityResult *result, std::string *error);

} // namespace qopt::quant

#endif
