//===- Executor.h - what the serving engine needs from a model -*- C++ -*-===//
//
// The seam between scheduling and compute. The engine knows nothing about
// layers or kernels; an executor knows nothing about requests, queues or
// sampling. A step is one call: the StepBatch's flat arrays (tokens,
// positions, slot mapping, block tables, context lengths) are exactly the
// arguments of a paged-attention forward pass, so a compiled model maps
// them straight onto its kernels, and a test can plug in a fake model.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_EXECUTOR_H
#define QOPT_RT_SERVING_EXECUTOR_H

#include "qopt-rt/serving/StepBatch.h"

#include <cstdint>
#include <string>

namespace qrt::serving {

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
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_EXECUTOR_H
