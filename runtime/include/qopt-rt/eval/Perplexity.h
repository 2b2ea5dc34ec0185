//===- Perplexity.h - perplexity over fixed windows (the shared protocol) -*- C++ -*-===//
//
// The protocol of qopt -eval-ppl, qrun --perplexity and qopt_perplexity:
// the text's tokens (no special tokens: the caller tokenizes), non-overlapping
// windows of `ctx` tokens from the start, the first `maxWindows`, each scored
// alone (its own KV from position 0), mean NLL over every predicted position,
// perplexity = exp(mean NLL). Lives in the runtime so every front end uses
// one implementation.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_EVAL_PERPLEXITY_H
#define QOPT_RT_EVAL_PERPLEXITY_H

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qrt::model {
class CpuModelExecutor;
}
namespace qrt::serving {
class KVCache;
struct StepBatch;
}

namespace qrt::eval {

struct PerplexityResult {
  double meanNll = 0;      ///< nats per predicted position
  int64_t windows = 0;     ///< windows scored
  int64_t predictions = 0; ///< windows * (ctx - 1)
  double perplexity() const;
};

/// Scores `ids` with `executor`, whose KV pool `kv` must hold one window
/// (blocks 0 .. ceil(ctx / block_size) are overwritten). maxWindows <= 0
/// means every full window. False with *error (one line) when there is no
/// full window, the pool is too small or the forward pass fails.
bool perplexity(model::CpuModelExecutor &executor, const serving::KVCache &kv,
                const std::vector<int32_t> &ids, int64_t ctx, int64_t maxWindows,
                PerplexityResult *out, std::string *error);

/// A forward pass writing the logits of every token of the batch (rows in
/// batch order), as CpuModelExecutor::executeAllLogits.
using AllLogitsFn =
    std::function<bool(const serving::StepBatch &batch, float *logits, std::string *error)>;

/// The same protocol over any executor (the CUDA one): `vocab` logits per
/// row, a KV pool of `numBlocks` blocks of `blockSize` tokens.
bool perplexity(const AllLogitsFn &forward, int64_t vocab, int32_t blockSize,
                int64_t numBlocks, const std::vector<int32_t> &ids, int64_t ctx,
                int64_t maxWindows, PerplexityResult *out, std::string *error);

} // namespace qrt::eval

#endif // QOPT_RT_EVAL_PERPLEXITY_H
