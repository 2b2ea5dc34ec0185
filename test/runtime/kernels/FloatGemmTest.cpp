//===- FloatGemmTest.cpp - fp32/bf16-weight GEMM against a double reference ===//
//
// Every instruction set the CPU has (forced one by one), fp32 and bf16
// weights, with and without bias, on random data at odd shapes (M = 1, 2:
// the streamed decode path; 3, 4, 7, 16, 33, 70: tiled; N = 1, 17, 256;
// K = 1, 31, 172, 2048: no K is a multiple of a register's columns except
// 2048), with ldx > K and ldy > N, against y computed in double from the
// very weights (bf16 widened exactly).
//
// Outputs: the written region is poisoned with a quiet NaN first (an
// unwritten element fails, and the comparison is written so NaN fails);
// the columns between N and ldy and one extra row after M carry a NaN with
// a distinctive payload that must survive bit for bit.
//
// Tolerance per element (m, n), with X = max_k |x[m][k]|, W = max_k
// |w[n][k]|, u = 2^-24: 32 sqrt(K) u X W + 2 u (|y| + |bias|). Each kernel
// sums K / 16 (or K / 8 on AVX2) products per lane in fp32 sequentially,
// then adds the lanes; for random-sign data that error is about
// u X W K / (16 * 7) (standard deviation), at most 0.35 sqrt(K) u X W for
// the K here, so 32 sqrt(K) leaves a wide margin while still catching a
// wrong column, row or conversion (those are O(X W) errors). The 2 u terms
// are the roundings of the dot product and of adding the bias.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/half.h"
#include "qopt-rt/kernels/FloatGemm.h"
#include "qopt-rt/kernels/ThreadPool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace qrt::kernels;

namespace {

constexpr double kU = 5.9604644775390625e-08; // 2^-24
constexpr double kC = 32.0;
constexpr uint32_t kPoisonBits = 0x7fc0beefu; // a quiet NaN with a payload

float poison() {
  float f;
  std::memcpy(&f, &kPoisonBits, 4);
  return f;
}

uint32_t bitsOf(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

std::vector<Isa> isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (isaSupported(i))
      out.push_back(i);
    else
      std::printf("[ note ] %s path not run: this CPU lacks it\n", isaName(i));
  return out;
}

/// A random [N, K] weight in `format` (values in [-1, 1], bf16 rounded),
/// its exact values as doubles, and the view.
struct Weight {
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<double> exact;
  FloatWeight view;
};

Weight randomWeight(FloatFormat format, int64_t N, int64_t K, std::mt19937 &rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Weight w;
  w.exact.resize(size_t(N * K));
  if (format == FloatFormat::F32) {
    w.f32.resize(size_t(N * K));
    for (size_t i = 0; i < w.f32.size(); ++i)
      w.exact[i] = w.f32[i] = u(rng);
    w.view = {format, N, K, w.f32.data()};
  } else {
    w.bf16.resize(size_t(N * K));
    for (size_t i = 0; i < w.bf16.size(); ++i) {
      w.bf16[i] = qrt::f32ToBf16(u(rng));
      // Widened independently of the runtime's helpers: bits << 16.
      const uint32_t bits = uint32_t(w.bf16[i]) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      w.exact[i] = f;
    }
    w.view = {format, N, K, w.bf16.data()};
  }
  return w;
}

struct Case {
  int64_t M, N, K, ldx, ldy;
  std::vector<float> x;    // [M, ldx], rows of magnitudes 1e-2 .. 1e1
  std::vector<double> ref; // [M, N] without bias
  std::vector<double> xmax, wmax;
};

Case makeCase(const Weight &w, int64_t M, std::mt19937 &rng) {
  Case c;
  c.M = M;
  c.N = w.view.rows;
  c.K = w.view.cols;
  c.ldx = c.K + 5;
  c.ldy = c.N + 3;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // Columns past K hold a NaN: reading one would poison the result.
  c.x.assign(size_t(M * c.ldx), std::numeric_limits<float>::quiet_NaN());
  c.xmax.assign(size_t(M), 0.0);
  for (int64_t m = 0; m < M; ++m) {
    const float mag = std::pow(10.0f, float(m % 4) - 2.0f);
    for (int64_t k = 0; k < c.K; ++k) {
      const float v = u(rng) * mag;
      c.x[size_t(m * c.ldx + k)] = v;
      c.xmax[size_t(m)] = std::max(c.xmax[size_t(m)], std::fabs(double(v)));
    }
  }
  c.wmax.assign(size_t(c.N), 0.0);
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t k = 0; k < c.K; ++k)
      c.wmax[size_t(n)] = std::max(c.wmax[size_t(n)], std::fabs(w.exact[size_t(n * c.K + k)]));
  c.ref.assign(size_t(M * c.N), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < c.N; ++n) {
      double s = 0.0;
      for (int64_t k = 0; k < c.K; ++k)
        s += double(c.x[size_t(m * c.ldx + k)]) * w.exact[size_t(n * c.K + k)];
      c.ref[size_t(m * c.N + n)] = s;
    }
  return c;
}

/// Runs floatGemm into a poisoned output, checks every element and the
/// untouched region; returns the worst |err| / tolerance. `out` gets y.
double check(const Weight &w, const Case &c, const float *bias, const FloatGemmOptions &opt,
             std::vector<float> *out = nullptr) {
  const int64_t rows = c.M + 1; // one row past M must stay untouched too
  std::vector<float> y(size_t(rows * c.ldy), poison());
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = 0; n < c.N; ++n)
      y[size_t(m * c.ldy + n)] = std::numeric_limits<float>::quiet_NaN();
  std::string error;
  EXPECT_TRUE(floatGemm(w.view, c.x.data(), c.M, c.ldx, y.data(), c.ldy, bias, opt, &error))
      << error;
  double worst = 0.0;
  int failures = 0;
  for (int64_t m = 0; m < rows; ++m)
    for (int64_t n = 0; n < c.ldy; ++n) {
      const float got = y[size_t(m * c.ldy + n)];
      if (m >= c.M || n >= c.N) {
        if (bitsOf(got) != kPoisonBits && failures++ < 5)
          ADD_FAILURE() << "wrote outside M x N at y[" << m << "][" << n << "]";
        continue;
      }
      const double b = bias ? double(bias[n]) : 0.0;
      const double want = c.ref[size_t(m * c.N + n)] + b;
      const double tol = kC * std::sqrt(double(c.K)) * kU * c.xmax[size_t(m)] *
                             c.wmax[size_t(n)] +
                         2 * kU * (std::fabs(want) + std::fabs(b));
      const double err = std::fabs(double(got) - want);
      if (!(err <= tol) && failures++ < 5)
        ADD_FAILURE() << "y[" << m << "][" << n << "] = " << got << ", want " << want
                      << " (tolerance " << tol << ")";
      if (tol > 0)
        worst = std::max(worst, err / tol);
    }
  if (out) {
    out->clear();
    for (int64_t m = 0; m < c.M; ++m)
      out->insert(out->end(), y.begin() + m * c.ldy, y.begin() + m * c.ldy + c.N);
  }
  return worst;
}

class FloatGemmFormats : public ::testing::TestWithParam<FloatFormat> {};

TEST_P(FloatGemmFormats, AllPathsMatchTheDoubleReference) {
  const FloatFormat f = GetParam();
  std::mt19937 rng(f == FloatFormat::BF16 ? 77 : 78);
  ThreadPool pool(2);
  double worst = 0.0;
  for (int64_t K : {1, 31, 172, 2048})
    for (int64_t N : {1, 17, 256}) {
      const Weight w = randomWeight(f, N, K, rng);
      std::vector<float> bias(static_cast<size_t>(N));
      std::uniform_real_distribution<float> ub(-2.0f, 2.0f);
      for (float &b : bias)
        b = ub(rng);
      for (int64_t M : {1, 2, 3, 4, 7, 16, 33, 70}) {
        if (M == 70 && K == 2048) // 2 panels of x are covered at smaller K
          continue;
        const Case c = makeCase(w, M, rng);
        for (Isa isa : isas())
          for (bool withBias : {false, true}) {
            SCOPED_TRACE(std::string(f == FloatFormat::BF16 ? "bf16" : "f32") +
                         " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                         " K=" + std::to_string(K) + " " + isaName(isa) +
                         (withBias ? " bias" : ""));
            FloatGemmOptions opt;
            opt.isa = isa;
            opt.pool = &pool;
            worst = std::max(worst, check(w, c, withBias ? bias.data() : nullptr, opt));
          }
      }
    }
  std::printf("[ info ] %s: worst |err|/tolerance %.4f\n",
              f == FloatFormat::BF16 ? "bf16" : "f32", worst);
}

INSTANTIATE_TEST_SUITE_P(Formats, FloatGemmFormats,
                         ::testing::Values(FloatFormat::F32, FloatFormat::BF16),
                         [](const ::testing::TestParamInfo<FloatFormat> &info) {
                           return std::string(info.param == FloatFormat::BF16 ? "bf16" : "f32");
                         });

TEST(FloatGemm, ResultsDoNotDependOnTheThreadCount) {
  std::mt19937 rng(5);
  ThreadPool pool(3);
  const Weight w = randomWeight(FloatFormat::BF16, 1001, 300, rng);
  for (int64_t M : {1, 16}) {
    const Case c = makeCase(w, M, rng);
    std::vector<float> one, three;
    FloatGemmOptions opt;
    opt.pool = &pool;
    opt.threads = 1;
    check(w, c, nullptr, opt, &one);
    opt.threads = 3;
    check(w, c, nullptr, opt, &three);
    ASSERT_EQ(one.size(), three.size());
    for (size_t i = 0; i < one.size(); ++i)
      ASSERT_EQ(bitsOf(one[i]), bitsOf(three[i])) << "element " << i << ", M=" << M;
  }
}

TEST(FloatGemm, NonFiniteInputsPropagate) {
  // An infinity in x must give +-inf or NaN in the rows it touches, not be
  // lost in a padded lane; a zero weight times a finite x stays finite.
  std::vector<float> wv = {1.0f, 2.0f, 3.0f, 0.0f, 0.0f, 0.0f};
  const FloatWeight w{FloatFormat::F32, 2, 3, wv.data()};
  std::vector<float> x = {1.0f, std::numeric_limits<float>::infinity(), 1.0f};
  std::vector<float> y(2, 0.0f);
  for (Isa isa : isas()) {
    FloatGemmOptions opt;
    opt.isa = isa;
    std::string error;
    ASSERT_TRUE(floatGemm(w, x.data(), 1, 3, y.data(), 2, nullptr, opt, &error)) << error;
    EXPECT_TRUE(std::isinf(y[0])) << isaName(isa);
    EXPECT_TRUE(std::isnan(y[1])) << isaName(isa) << ": 0 * inf is NaN in IEEE arithmetic";
  }
}

TEST(FloatGemm, RejectsBadArgumentsWithoutWriting) {
  std::vector<float> wv(12, 1.0f), x(8, 1.0f), y(8, poison());
  const FloatWeight w{FloatFormat::F32, 3, 4, wv.data()};
  FloatGemmOptions opt;
  std::string error;
  EXPECT_FALSE(floatGemm(w, x.data(), 2, 3, y.data(), 3, nullptr, opt, &error)); // ldx < K
  EXPECT_NE(error.find("ldx 3"), std::string::npos) << error;
  EXPECT_NE(error.find("f32 3x4"), std::string::npos) << error;
  error.clear();
  EXPECT_FALSE(floatGemm(w, x.data(), 2, 4, y.data(), 2, nullptr, opt, &error)); // ldy < N
  EXPECT_NE(error.find("ldy 2"), std::string::npos) << error;
  error.clear();
  const FloatWeight noData{FloatFormat::BF16, 3, 4, nullptr};
  EXPECT_FALSE(floatGemm(noData, x.data(), 1, 4, y.data(), 3, nullptr, opt, &error));
  EXPECT_NE(error.find("bf16 3x4"), std::string::npos) << error;
  for (float v : y)
    EXPECT_EQ(bitsOf(v), kPoisonBits);
}

} // namespace
