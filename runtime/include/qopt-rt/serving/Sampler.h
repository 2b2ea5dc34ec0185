//===- Sampler.h - choosing the next token from logits ---------*- C++ -*-===//
//
// Greedy, temperature, top-k and top-p, in that order (HF's and vLLM's), with
// a counter-based random stream: the uniform number for a request's n-th
// generated token depends only on (seed, n), never on what else ran or on
// preemption, so seeded sampling is batch-invariant by construction.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_SAMPLER_H
#define QOPT_RT_SERVING_SAMPLER_H

#include "qopt-rt/serving/Request.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qrt::serving {

/// splitmix64: a bijective 64-bit mixer, used to seed and to derive streams.
uint64_t splitmix64(uint64_t x);

/// xoshiro256** (Blackman & Vigna): small, fast, and fully specified, so a
/// seed gives the same numbers on every platform (std::distributions don't).
class Rng {
public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  /// Uniform in [0, 1) with 53 random bits.
  double uniform();

private:
  uint64_t s_[4];
};

/// Reusable buffers so sampling does not allocate per token.
struct SamplerScratch {
  std::vector<std::pair<float, int32_t>> cand; ///< (logit, id)
  std::vector<float> weight;                   ///< exp((logit - max) / T)
  double total = 0;                            ///< sum of weight
};

/// "" when the parameters are valid, else a one-line reason.
std::string validateSamplingParams(const SamplingParams &p);

/// The tokens that can be drawn and their probabilities (summing to 1),
/// most likely first (lower id first on ties). Greedy gives the single
/// argmax with probability 1. NaN logits count as -inf. Empty when no token
/// has a finite logit.
void samplingDistribution(const float *logits, int32_t vocab,
                          const SamplingParams &p,
                          std::vector<std::pair<int32_t, double>> *out,
                          SamplerScratch *scratch = nullptr);

/// Draws the token for generated position `index` of a request with `seed`.
/// Returns -1 when no token has a finite logit.
int32_t sampleToken(const float *logits, int32_t vocab,
                    const SamplingParams &p, uint64_t seed, uint64_t index,
                    SamplerScratch *scratch = nullptr);

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_SAMPLER_H
