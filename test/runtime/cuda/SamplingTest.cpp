//===- SamplingTest.cpp - device sampling vs the sampler's definition -----===//
//
// Greedy must equal the host argmax (lowest id on ties, NaN ignored); seeded
// draws must stay inside the top-k / top-p set computed here by sorting, be
// repeatable for a seed, vary across seeds, and follow the softmax
// probabilities (frequencies over many seeds within a few standard
// deviations).
//
//===----------------------------------------------------------------------===//
#include "AttentionTestSupport.h"

#include "qopt-cuda/Sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

namespace qcuda::test {
namespace {

/// Host sampling parameters for a batch, and their device copies.
struct Batch {
  std::vector<float> logits, temperature, topP;
  std::vector<int32_t> topK;
  std::vector<uint64_t> seed, step;
  int vocab = 0;

  std::vector<int32_t> run() const {
    const int batch = int(temperature.size());
    DeviceBuffer<float> dl(logits), dt(temperature), dp(topP);
    DeviceBuffer<int32_t> dk(topK), dtok(std::vector<int32_t>(batch, -7));
    DeviceBuffer<uint64_t> ds(seed), dst(step);
    SamplingParamsDevice p;
    p.temperature = dt.get();
    p.topK = dk.get();
    p.topP = dp.get();
    p.seed = ds.get();
    p.step = dst.get();
    std::string err;
    EXPECT_TRUE(sampleTokens(dl.get(), batch, vocab, vocab, p, dtok.get(), nullptr, &err)) << err;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return dtok.download();
  }
  void add(const std::vector<float> &row, float t, int k, float p, uint64_t s, uint64_t n) {
    logits.insert(logits.end(), row.begin(), row.end());
    temperature.push_back(t);
    topK.push_back(k);
    topP.push_back(p);
    seed.push_back(s);
    step.push_back(n);
  }
};

/// The ids top-k then top-p keep, from a full sort (the sampler's definition).
std::set<int32_t> allowedSet(const std::vector<float> &row, float temperature, int k, float p) {
  std::vector<int32_t> ids(row.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  size_t n = ids.size();
  if (k > 0 && size_t(k) < n)
    n = size_t(k);
  std::vector<double> w(n);
  double z = 0;
  for (size_t j = 0; j < n; ++j)
    z += (w[j] = std::exp((double(row[ids[j]]) - row[ids[0]]) / temperature));
  size_t keep = n;
  double cum = 0;
  for (size_t j = 0; j < n; ++j) {
    if (j > 0 && cum >= double(p)) {
      keep = j;
      break;
    }
    cum += w[j] / z;
  }
  return std::set<int32_t>(ids.begin(), ids.begin() + keep);
}

TEST(DeviceSampling, GreedyIsTheHostArgmax) {
  QCUDA_REQUIRE_DEVICE();
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const int vocab = 50257;
  Batch b;
  b.vocab = vocab;
  std::vector<int32_t> want;
  for (int r = 0; r < 7; ++r) {
    std::vector<float> row(vocab);
    for (float &x : row)
      x = nd(rng);
    if (r == 1) { // a tie at the maximum: the lower id wins
      row[40000] = 100.0f;
      row[123] = 100.0f;
    }
    if (r == 2) // NaN never wins
      for (int i = 0; i < vocab; i += 97)
        row[i] = NAN;
    if (r == 3) // no finite logit: -1
      std::fill(row.begin(), row.end(), -INFINITY);
    if (r == 4) { // -0 and +0 tie at the maximum: the lower id wins
      for (float &x : row)
        x = -std::fabs(x) - 1.0f;
      row[300] = -0.0f;
      row[200] = 0.0f;
      row[100] = -0.0f;
    }
    int32_t best = -1;
    for (int i = 0; i < vocab; ++i)
      if (row[i] > -INFINITY && (best < 0 || row[i] > row[best]))
        best = i;
    want.push_back(best);
    b.add(row, 0.0f, 0, 1.0f, 0, 0);
  }
  EXPECT_EQ(b.run(), want);
}

TEST(DeviceSampling, DrawsStayInsideTopKAndTopPAndRepeatPerSeed) {
  QCUDA_REQUIRE_DEVICE();
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const int vocab = 3001;
  std::vector<float> row(vocab);
  for (float &x : row)
    x = nd(rng);
  struct Setting {
    float temperature;
    int k;
    float p;
  };
  for (Setting s : {Setting{1.0f, 10, 1.0f}, Setting{0.7f, 0, 0.5f}, Setting{1.3f, 50, 0.9f},
                    Setting{1.0f, 1, 1.0f}, Setting{2.0f, 0, 0.95f}}) {
    SCOPED_TRACE("temperature " + std::to_string(s.temperature) + " top_k " +
                 std::to_string(s.k) + " top_p " + std::to_string(s.p));
    const std::set<int32_t> allowed = allowedSet(row, s.temperature, s.k, s.p);
    Batch b;
    b.vocab = vocab;
    for (uint64_t seed = 0; seed < 256; ++seed)
      b.add(row, s.temperature, s.k, s.p, seed * 7919 + 1, seed % 5);
    const std::vector<int32_t> first = b.run(), second = b.run();
    EXPECT_EQ(first, second) << "the same seed and step must give the same token";
    std::set<int32_t> seen;
    for (int32_t t : first) {
      ASSERT_TRUE(allowed.count(t)) << "token " << t << " is outside the allowed set of "
                                    << allowed.size();
      seen.insert(t);
    }
    if (allowed.size() > 1) {
      EXPECT_GT(seen.size(), size_t(1)) << "different seeds never drew different tokens";
    }
  }
}

TEST(DeviceSampling, FrequenciesFollowTheSoftmax) {
  QCUDA_REQUIRE_DEVICE();
  const std::vector<float> row = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -INFINITY, NAN, 1.5f};
  const float temperature = 0.8f;
  const int draws = 8192;
  Batch b;
  b.vocab = int(row.size());
  for (int i = 0; i < draws; ++i)
    b.add(row, temperature, 0, 1.0f, uint64_t(i) * 2654435761u, 3);
  std::vector<int> count(row.size(), 0);
  for (int32_t t : b.run()) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, int(row.size()));
    ++count[t];
  }
  double z = 0;
  for (float x : row)
    if (x > -INFINITY)
      z += std::exp(x / temperature);
  for (size_t i = 0; i < row.size(); ++i) {
    const double p = row[i] > -INFINITY ? std::exp(row[i] / temperature) / z : 0.0;
    const double sd = std::sqrt(draws * p * (1 - p));
    EXPECT_LE(std::fabs(count[i] - draws * p), 5 * sd + 1) << "token " << i << " p " << p;
  }
}

TEST(DeviceSampling, RejectsBadArguments) {
  std::string err;
  SamplingParamsDevice p;
  EXPECT_FALSE(sampleTokens(nullptr, 2, 100, 50, p, nullptr, nullptr, &err));
  EXPECT_NE(err.find("row stride 50"), std::string::npos) << err;
  p.temperature = reinterpret_cast<const float *>(16);
  EXPECT_FALSE(sampleTokens(reinterpret_cast<const float *>(16), 2, 100, 100, p,
                            reinterpret_cast<int32_t *>(16), nullptr, &err));
  EXPECT_NE(err.find("seeds"), std::string::npos) << err;
}

} // namespace
} // namespace qcuda::test
