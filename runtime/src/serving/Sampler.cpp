//===- Sampler.cpp - choosing the next token from logits -------------------===//
//
// Weights are exp((logit - max) / T), so large logits and small temperatures
// neither overflow nor lose the winner; they are float (relative error about
// 1e-6, far below what sampling can resolve) and summed in double. Top-p
// orders only as many candidates as it needs, since real vocabularies are
// 32k-256k and the kept set is usually tens of tokens.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/serving/Sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace qrt::serving {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

Rng::Rng(uint64_t seed) {
  for (uint64_t &w : s_) {
    seed += 0x9e3779b97f4a7c15ull;
    w = splitmix64(seed);
  }
}

uint64_t Rng::next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

std::string validateSamplingParams(const SamplingParams &p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    return "temperature must be a finite number >= 0, got " +
           std::to_string(p.temperature);
  if (p.topK < -1)
    return "top_k must be >= 0 (0 or -1: off), got " + std::to_string(p.topK);
  if (!(p.topP > 0 && p.topP <= 1))
    return "top_p must be in (0, 1], got " + std::to_string(p.topP);
  if (p.maxTokens < 1)
    return "max_tokens must be >= 1, got " + std::to_string(p.maxTokens);
  for (const std::string &s : p.stop)
    if (s.empty())
      return "stop strings must not be empty";
  return "";
}

namespace {

/// Higher value first, then lower id: the canonical candidate order.
inline bool before(const std::pair<float, int32_t> &a,
                   const std::pair<float, int32_t> &b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

/// e^x for x <= 0 (Cody-Waite reduction and Cephes' expf polynomial, about
/// 2 ulp), branch-free so the weight loops vectorize: std::exp over a 128k
/// vocabulary costs milliseconds per token, this a fraction of it.
inline float expNonPositive(float x) {
  x = x < -87.0f ? -87.0f : x; // keeps 2^n normal; the weight is ~1e-38
  float n = float(int32_t(x * 1.44269504f - 0.5f)); // round(x / ln 2)
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float q = 1.9875691500e-4f;
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  float e = q * r * r + r + 1.0f;
  int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return e * scale;
}

/// weight[j] = exp((cand[j].logit - maxL) * invT) for j < n; returns the sum.
double computeWeights(SamplerScratch &s, size_t n, float maxL, float invT) {
  s.weight.resize(n);
  const std::pair<float, int32_t> *c = s.cand.data();
  float *w = s.weight.data();
  for (size_t j = 0; j < n; ++j)
    w[j] = expNonPositive((c[j].first - maxL) * invT);
  double z = 0;
  for (size_t j = 0; j < n; ++j)
    z += double(w[j]);
  return z;
}

/// Fills s.cand[0, n) and s.weight[0, n) (summing to s.total) with the
/// tokens that may be drawn; returns n. With top-p the candidates come most
/// likely first; otherwise in no particular order.
size_t buildCandidates(const float *logits, int32_t vocab,
                       const SamplingParams &p, SamplerScratch &s) {
  s.cand.clear();
  s.weight.clear();
  s.total = 0;
  int32_t best = -1;
  float bestV = -std::numeric_limits<float>::infinity();
  for (int32_t i = 0; i < vocab; ++i)
    if (logits[i] > bestV) { // NaN compares false: never chosen
      bestV = logits[i];
      best = i;
    }
  if (best < 0)
    return 0;
  if (p.temperature == 0) {
    s.cand.emplace_back(0.0f, best);
    s.weight.push_back(1.0f);
    s.total = 1;
    return 1;
  }
  // Candidates keep their raw logits (same order as the scaled ones).
  float maxL = bestV, invT = 1.0f / p.temperature;
  if (std::isinf(bestV)) { // +inf logits share all the mass
    for (int32_t i = 0; i < vocab; ++i)
      if (logits[i] == bestV)
        s.cand.emplace_back(0.0f, i);
    maxL = 0;
  } else {
    s.cand.reserve(size_t(vocab));
    for (int32_t i = 0; i < vocab; ++i)
      if (logits[i] > -std::numeric_limits<float>::infinity())
        s.cand.emplace_back(logits[i], i);
  }
  size_t n = s.cand.size();
  if (p.topK > 0 && size_t(p.topK) < n) {
    std::nth_element(s.cand.begin(), s.cand.begin() + (p.topK - 1),
                     s.cand.end(), before);
    float kth = s.cand[size_t(p.topK - 1)].first;
    // Ties with the k-th value stay, as in HF and vLLM.
    n = size_t(std::partition(s.cand.begin(), s.cand.end(),
                              [&](const auto &c) { return c.first >= kth; }) -
               s.cand.begin());
    s.cand.resize(n);
  }
  double z = computeWeights(s, n, maxL, invT);
  if (p.topP < 1) {
    // Bring the m most likely to the front in order, widening m until they
    // reach top_p: real distributions need tens of tokens, not the vocab.
    size_t m = std::min<size_t>(64, n), keep = 0;
    for (;;) {
      if (m < n)
        std::nth_element(s.cand.begin(), s.cand.begin() + (m - 1),
                         s.cand.end(), before);
      std::sort(s.cand.begin(), s.cand.begin() + m, before);
      computeWeights(s, m, maxL, invT);
      double cum = 0;
      for (size_t j = 0; j < m && !keep; ++j) {
        if (j > 0 && cum >= double(p.topP))
          keep = j; // the tokens before j already reach top_p
        cum += double(s.weight[j]) / z;
      }
      if (!keep && m < n && cum >= double(p.topP))
        keep = m;
      if (keep || m == n)
        break;
      m = std::min(n, m * 4);
    }
    n = keep ? keep : n;
    s.cand.resize(n);
    z = computeWeights(s, n, maxL, invT);
  }
  s.total = z;
  return n;
}

} // namespace

void samplingDistribution(const float *logits, int32_t vocab,
                          const SamplingParams &p,
                          std::vector<std::pair<int32_t, double>> *out,
                          SamplerScratch *scratch) {
  SamplerScratch local;
  SamplerScratch &s = scratch ? *scratch : local;
  size_t n = buildCandidates(logits, vocab, p, s);
  out->clear();
  for (size_t j = 0; j < n; ++j)
    out->emplace_back(s.cand[j].second, double(s.weight[j]) / s.total);
  std::sort(out->begin(), out->end(), [](const auto &a, const auto &b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
}

int32_t sampleToken(const float *logits, int32_t vocab,
                    const SamplingParams &p, uint64_t seed, uint64_t index,
                    SamplerScratch *scratch) {
  SamplerScratch local;
  SamplerScratch &s = scratch ? *scratch : local;
  size_t n = buildCandidates(logits, vocab, p, s);
  if (n == 0)
    return -1;
  if (n == 1)
    return s.cand[0].second;
  // A fresh stream per (seed, index): independent of everything else.
  double u = Rng(splitmix64(splitmix64(seed) + index)).uniform() * s.total;
  double cum = 0;
  for (size_t j = 0; j < n; ++j) {
    cum += double(s.weight[j]);
    if (u < cum)
      return s.cand[j].second;
  }
  return s.cand[n - 1].second; // u beyond the rounded total
}

} // namespace qrt::serving
