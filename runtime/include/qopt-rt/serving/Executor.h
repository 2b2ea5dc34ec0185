//===- Executor.h - what the serving engine needs from a model -*- C++ -*-===//
//
// The seam between scheduling and compute. The engine knows nothing about
// layers or kernels; an executor knows nothing about requests, queues or
// sampling. A step is one call: the StepBatch's flat arrays (tokens,
// positions, slot mapping, block tables, context lengths) are exactly the
// arguments of a paged-attention forward pass, so a compiled model maps
// them straight onto its kernels, and a test can plug in a fake model.
//
// An executor on a GPU may also draw the tokens itself (executeAndSample):
// then only one id per row crosses to the host, not a row of vocab logits
// (33 MB per step at batch 64 with a 128k vocabulary).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_EXECUTOR_H
#define QOPT_RT_SERVING_EXECUTOR_H

#include "qopt-rt/serving/StepBatch.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qrt::serving {

/// What drawing one row's token needs: the engine's host sampler would call
/// sampleToken(row, vocab, params, seed, index) (Sampler.h).
struct SampleSpec {
  SamplingParams params;
  uint64_t seed = 0;
  /// Tokens the request has generated so far (the draw's index).
  uint64_t index = 0;
};

/// A model that runs scheduler steps against a paged KV cache it owns or
/// references (KVCache). Called from one thread at a time.
class ModelExecutor {
public:
  virtual ~ModelExecutor() = default;
  /// Length of a logits row.
  virtual int32_t vocabSize() const = 0;
  /// Runs one forward pass over `batch`: for every token, compute its K and
  /// V and store them at batch.slotMapping; each sequence attends causally
  /// over its positions [0, contextLens[i]) through its block table. Then
  /// write the fp32 logits of the last new token of each sequence listed in
  /// batch.sampleIndices, one row of vocabSize() per entry, in order, to
  /// `logits`. On failure return false and set *error to one line; the
  /// engine then fails this batch's requests and carries on with the rest.
  virtual bool execute(const StepBatch &batch, float *logits,
                       std::string *error) = 0;

  /// Whether executeAndSample can be used; the engine then uses it for
  /// every step (no request reads the logits themselves: there are no
  /// logprobs).
  virtual bool canSampleOnDevice() const { return false; }
  /// execute(), then the token of each logits row drawn where the logits
  /// are: tokens[r] for row r (batch.sampleIndices[r]) with rows[r], -1 when
  /// the row has no finite logit. Greedy rows (temperature 0) must give the
  /// host sampler's token (argmax, lowest id on ties, NaN ignored); seeded
  /// rows may use another random stream than the host's (the executor
  /// documents it) but must depend on (seed, index) only. Errors as
  /// execute().
  virtual bool executeAndSample(const StepBatch &batch, const std::vector<SampleSpec> &rows,
                                int32_t *tokens, std::string *error) {
    (void)batch;
    (void)rows;
    (void)tokens;
    *error = "this executor does not sample";
    return false;
  }
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_EXECUTOR_H
