//===- Sampling.h - choosing next tokens on the GPU ------------*- C++ -*-===//
//
// The device counterpart of runtime/include/qopt-rt/serving/Sampler.h:
// greedy, or temperature then top-k then top-p, from fp32 logits, one row per
// request, without copying the logits to the host. The random number for a
// request's n-th generated token is Philox-4x32-10 with key = seed and
// counter = (n, 0): it depends on (seed, n) only, so a seeded request draws
// the same tokens whatever else is in the batch. Same semantics as the CPU
// sampler (NaN logits count as -inf; ties with the k-th value stay in top-k)
// but not the same random stream: the CPU uses xoshiro, so seeded GPU and
// CPU runs draw different (equally distributed) tokens.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_SAMPLING_H
#define QOPT_CUDA_SAMPLING_H

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace qcuda {

/// Per-request parameters, device arrays of `batch` entries.
struct SamplingParamsDevice {
  /// 0: greedy (argmax, lowest id on ties). Null: every row greedy.
  const float *temperature = nullptr;
  /// <= 0 or >= vocab: off. Null: off for every row.
  const int32_t *topK = nullptr;
  /// In (0, 1]; 1: off. Null: off for every row.
  const float *topP = nullptr;
  /// Philox key and counter (needed unless every row is greedy).
  const uint64_t *seed = nullptr;
  const uint64_t *step = nullptr;
};

/// tokens[b] = the token drawn from row b of logits [batch, ldLogits] (the
/// first `vocab` entries), -1 when the row has no finite logit. Top-p keeps
/// the most likely tokens up to the first whose cumulative probability
/// reaches top_p; tokens tied with that boundary value all stay (the CPU
/// sampler breaks such ties by id).
bool sampleTokens(const float *logits, int32_t batch, int32_t vocab, int64_t ldLogits,
                  const SamplingParamsDevice &params, int32_t *tokens, cudaStream_t stream,
                  std::string *error);

} // namespace qcuda

#endif // QOPT_CUDA_SAMPLING_H
