//===- QGemmTest.cpp - every kernel path against a double reference -------===//
//
// Each instruction set the CPU has (forced one by one) and both activation
// modes, on random data at odd shapes (M = 1, 7, 33; N = 1, 17, 256;
// K = 32, 172, 544, 4096, so groups do not divide K), against y computed in
// double from the reference codes, scales and zeros. Outputs are poisoned
// with NaN before every run (an unwritten element fails), the comparison is
// written so that NaN fails, and the columns between N and ldy carry
// sentinels that must survive.
//
// Tolerances, per output element (m, n), with X = max_k |x[m][k]|,
// W = max_k |w[n][k]|, u = 2^-24:
//  - Float: |err| <= 32 * sqrt(K) * u * X * W. Per 32-column block the
//    kernels sum code * x in fp32 and subtract zero * (sum of x), then add
//    the blocks up: the error is that of short dot products with weights of
//    up to 2^bits - 1 (at most twice W / scale), summed over K / 32 blocks,
//    so it grows like sqrt(K) (one sequential sum over K would grow like K).
//    Simulated with exactly this summation order (1000 rows per K, uniform
//    x, random codes and zeros), |err| / (sqrt(K) u X W) has mean 1.0-1.7
//    and maximum 5.6 / 6.7 / 9.1 at K = 544 / 4096 / 14336; the worst seen
//    here is ~14 at K = 32, where the few roundings of the block sums
//    dominate. 32 leaves a margin of 2 over that and 3.5 over the rest.
//  - Int8: + 8 * sqrt(K) * X * W / 254. The activation rounding errors e_k
//    are independent, zero-mean and bounded by X / 254 each, so by
//    Hoeffding P(|sum_k w_k e_k| > t) <= 2 exp(-2 t^2 / (K (2 W X / 254)^2)),
//    which at t = c sqrt(K) X W / 254 is 2 exp(-c^2 / 2): c = 8 gives 3e-14.
//  - both: + 2 u |y|, the rounding of the result (after the bias is added).
//
//===----------------------------------------------------------------------===//
#include "KernelTestUtil.h"

#include "qopt-rt/kernels/QGemm.h"
#include "qopt-rt/kernels/ThreadPool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <ostream>

using namespace qrt::kernels;
using namespace qrt::kernels::test;

namespace qrt::kernels {
// gtest prints parameters with this (found by argument-dependent lookup).
void PrintTo(const PackedFormat &f, std::ostream *os) { *os << layoutId(f); }
} // namespace qrt::kernels

namespace {

constexpr double kU = 5.9604644775390625e-08; // 2^-24
constexpr double kFloatC = 32.0;
constexpr double kInt8C = 8.0;
constexpr float kSentinel = 12345.0f;

std::vector<Isa> availableIsas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni})
    if (isaSupported(i))
      out.push_back(i);
    else
      std::printf("[ note ] %s kernels not run: this CPU lacks them\n", isaName(i));
  return out;
}

const std::vector<Isa> &isas() {
  static const std::vector<Isa> v = availableIsas();
  return v;
}

/// Random x with rows of different magnitudes (1e-2 .. 1e1).
std::vector<float> randomX(int64_t M, int64_t K, std::mt19937 &rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(size_t(M * K));
  for (int64_t m = 0; m < M; ++m) {
    const float mag = std::pow(10.0f, float(m % 4) - 2.0f);
    for (int64_t k = 0; k < K; ++k)
      x[size_t(m * K + k)] = u(rng) * mag;
  }
  return x;
}

struct Checker {
  const RefQuantMatrix &ref;
  const std::vector<float> &x;
  int64_t M;
  std::vector<double> y;     // reference
  std::vector<double> xmax;  // per row of x
  std::vector<double> wmax;  // per row of W

  Checker(const RefQuantMatrix &r, const std::vector<float> &xs, int64_t m)
      : ref(r), x(xs), M(m), y(referenceGemm(r, xs, m)) {
    xmax.assign(size_t(M), 0.0);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < r.cols; ++k)
        xmax[i] = std::max(xmax[i], std::fabs(double(x[size_t(i * r.cols + k)])));
    wmax.assign(size_t(r.rows), 0.0);
    for (int64_t n = 0; n < r.rows; ++n)
      for (int64_t k = 0; k < r.cols; ++k)
        wmax[n] = std::max(wmax[n], std::fabs(refWeight(r, n, k)));
  }

  double tolerance(int64_t m, int64_t n, Activations act) const {
    const double xw = xmax[m] * wmax[n] * std::sqrt(double(ref.cols));
    double tol = kFloatC * kU * xw;
    if (act == Activations::Int8)
      tol += kInt8C * xw / 254.0;
    return tol;
  }

  /// Runs qgemm into a poisoned output and checks every element; returns
  /// the largest |err| / tolerance seen.
  double run(const PackedView &view, const GemmOptions &opt, const float *bias = nullptr,
             std::vector<float> *out = nullptr) const {
    const int64_t N = ref.rows, ldy = N + 3;
    std::vector<float> yk(size_t(M * ldy), std::numeric_limits<float>::quiet_NaN());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = N; n < ldy; ++n)
        yk[size_t(m * ldy + n)] = kSentinel;
    std::string error;
    EXPECT_TRUE(qgemm(view, x.data(), M, ref.cols, yk.data(), ldy, bias, opt, &error)) << error;
    double worst = 0.0;
    int failures = 0;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        const double want = y[size_t(m * N + n)] + (bias ? double(bias[n]) : 0.0);
        const double got = yk[size_t(m * ldy + n)];
        // + the fp32 rounding of the result itself (after adding the bias).
        const double tol = tolerance(m, n, opt.activations) + 2 * kU * std::fabs(want);
        const double err = std::fabs(got - want);
        if (!(err <= tol) && failures++ < 5)
          ADD_FAILURE() << "y[" << m << "][" << n << "] = " << got << ", want " << want
                        << " (tolerance " << tol << ")";
        if (tol > 0)
          worst = std::max(worst, err / tol);
      }
      for (int64_t n = N; n < ldy; ++n)
        if (yk[size_t(m * ldy + n)] != kSentinel && failures++ < 5)
          ADD_FAILURE() << "wrote past N at y[" << m << "][" << n << "]";
    }
    if (out) {
      out->clear();
      for (int64_t m = 0; m < M; ++m)
        out->insert(out->end(), yk.begin() + m * ldy, yk.begin() + m * ldy + N);
    }
    return worst;
  }
};

class QGemmFormats : public ::testing::TestWithParam<PackedFormat> {};

TEST_P(QGemmFormats, AllPathsMatchTheDoubleReference) {
  const PackedFormat f = GetParam();
  std::mt19937 rng(1234 + f.bits * 7 + f.groupSize + (f.symmetric ? 1 : 0));
  double worst[2] = {0, 0};
  for (int64_t K : {32, 172, 544, 4096})
    for (int64_t N : {1, 17, 256}) {
      OwnedRef o = randomRef(N, K, f, rng);
      PackedMatrix p;
      std::string error;
      ASSERT_TRUE(p.pack(o.ref, f, &error)) << error;
      for (int64_t M : {1, 7, 33}) {
        // The largest shapes only for the 4-bit formats: keeps the test fast.
        if (K == 4096 && N == 256 && M == 33 && f.bits == 8)
          continue;
        const std::vector<float> x = randomX(M, K, rng);
        const Checker check(o.ref, x, M);
        for (Isa isa : isas())
          for (Activations act : {Activations::Float, Activations::Int8}) {
            SCOPED_TRACE(layoutId(f) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                         " K=" + std::to_string(K) + " " + isaName(isa) +
                         (act == Activations::Float ? " float" : " int8"));
            GemmOptions opt;
            opt.isa = isa;
            opt.activations = act;
            const double w = check.run(p.view(), opt);
            if (std::getenv("QRT_TEST_VERBOSE"))
              std::printf("%s M=%ld N=%ld K=%ld %s %s worst %.3f\n", layoutId(f).c_str(), long(M),
                          long(N), long(K), isaName(isa),
                          act == Activations::Float ? "float" : "int8", w);
            worst[act == Activations::Int8] = std::max(worst[act == Activations::Int8], w);
          }
      }
    }
  std::printf("[ info ] %s: worst |err|/tolerance float %.3f, int8 %.3f\n", layoutId(f).c_str(),
              worst[0], worst[1]);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, QGemmFormats,
    ::testing::Values(PackedFormat{4, 32, false}, PackedFormat{4, 64, false},
                      PackedFormat{4, 128, false}, PackedFormat{4, 128, true},
                      PackedFormat{4, 0, false}, PackedFormat{8, 32, false},
                      PackedFormat{8, 128, true}, PackedFormat{8, 0, false},
                      PackedFormat{8, 0, true}),
    [](const ::testing::TestParamInfo<PackedFormat> &info) { return layoutId(info.param); });

TEST(QGemm, LargeMUsesSeveralPanelsAndBias) {
  std::mt19937 rng(99);
  const PackedFormat f{4, 64, false};
  const int64_t M = 130, N = 40, K = 200;
  OwnedRef o = randomRef(N, K, f, rng);
  PackedMatrix p;
  std::string error;
  ASSERT_TRUE(p.pack(o.ref, f, &error)) << error;
  const std::vector<float> x = randomX(M, K, rng);
  std::vector<float> bias(N);
  for (auto &b : bias)
    b = std::uniform_real_distribution<float>(-1, 1)(rng);
  const Checker check(o.ref, x, M);
  for (Isa isa : isas())
    for (Activations act : {Activations::Float, Activations::Int8}) {
      SCOPED_TRACE(std::string(isaName(isa)) + (act == Activations::Float ? " float" : " int8"));
      GemmOptions opt;
      opt.isa = isa;
      opt.activations = act;
      check.run(p.view(), opt, bias.data());
    }
}

// Saturation corners of the vpmaddubsw paths: the largest codes times the
// largest int8 activations of either sign, every lane, every block.
TEST(QGemm, ExtremeCodesAndActivations) {
  for (int bits : {4, 8}) {
    const PackedFormat f{bits, 32, false};
    const int64_t N = 32, K = 96, M = 4;
    const int top = (1 << bits) - 1;
    for (int zero : {0, top}) {
      std::vector<uint8_t> codes(size_t(N * K));
      for (int64_t i = 0; i < N * K; ++i)
        codes[size_t(i)] = uint8_t(zero == 0 ? top : 0);
      std::vector<float> scales(size_t(N * 3), 0.0078125f), zeros(size_t(N * 3), float(zero));
      RefQuantMatrix ref{N, K, bits, 32, false, codes.data(), scales.data(), zeros.data()};
      PackedMatrix p;
      std::string error;
      ASSERT_TRUE(p.pack(ref, f, &error)) << error;
      std::vector<float> x(size_t(M * K));
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k)
          x[size_t(m * K + k)] = (m % 2 ? -1.0f : 1.0f) * (m >= 2 && k % 2 ? -1.0f : 1.0f);
      const Checker check(ref, x, M);
      for (Isa isa : isas())
        for (Activations act : {Activations::Float, Activations::Int8}) {
          SCOPED_TRACE("bits " + std::to_string(bits) + " zero " + std::to_string(zero) + " " +
                       isaName(isa));
          GemmOptions opt;
          opt.isa = isa;
          opt.activations = act;
          check.run(p.view(), opt);
        }
    }
  }
}

TEST(QGemm, ThreadCountDoesNotChangeTheResult) {
  std::mt19937 rng(5);
  const PackedFormat f{4, 128, false};
  const int64_t M = 3, N = 700, K = 1000;
  OwnedRef o = randomRef(N, K, f, rng);
  PackedMatrix p;
  std::string error;
  ASSERT_TRUE(p.pack(o.ref, f, &error)) << error;
  const std::vector<float> x = randomX(M, K, rng);
  const Checker check(o.ref, x, M);
  ThreadPool pool(3);
  for (Isa isa : isas())
    for (Activations act : {Activations::Float, Activations::Int8}) {
      SCOPED_TRACE(isaName(isa));
      std::vector<float> one, many;
      GemmOptions opt;
      opt.isa = isa;
      opt.activations = act;
      opt.threads = 1;
      check.run(p.view(), opt, nullptr, &one);
      opt.pool = &pool;
      opt.threads = 0;
      check.run(p.view(), opt, nullptr, &many);
      ASSERT_EQ(one.size(), many.size());
      EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)), 0);
    }
}

TEST(QGemm, NonFiniteActivationsPoisonOnlyTheirRow) {
  std::mt19937 rng(11);
  const PackedFormat f{4, 32, true};
  const int64_t M = 3, N = 20, K = 70;
  OwnedRef o = randomRef(N, K, f, rng);
  PackedMatrix p;
  std::string error;
  ASSERT_TRUE(p.pack(o.ref, f, &error)) << error;
  std::vector<float> x = randomX(M, K, rng);
  x[size_t(1 * K + 65)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(size_t(M * N));
  for (Isa isa : isas())
    for (Activations act : {Activations::Float, Activations::Int8}) {
      SCOPED_TRACE(isaName(isa));
      GemmOptions opt;
      opt.isa = isa;
      opt.activations = act;
      ASSERT_TRUE(qgemm(p.view(), x.data(), M, K, y.data(), N, nullptr, opt, &error)) << error;
      for (int64_t n = 0; n < N; ++n) {
        EXPECT_TRUE(std::isnan(y[size_t(1 * N + n)])) << n;
        EXPECT_TRUE(std::isfinite(y[size_t(0 * N + n)])) << n;
        EXPECT_TRUE(std::isfinite(y[size_t(2 * N + n)])) << n;
      }
    }
}

TEST(QGemm, RejectsBadArguments) {
  std::mt19937 rng(2);
  const PackedFormat f{4, 32, false};
  OwnedRef o = randomRef(20, 64, f, rng);
  PackedMatrix p;
  std::string error;
  ASSERT_TRUE(p.pack(o.ref, f, &error)) << error;
  std::vector<float> x(64 * 2), y(20 * 2, -7.0f);
  GemmOptions opt;
  EXPECT_FALSE(qgemm(p.view(), x.data(), 2, 63, y.data(), 20, nullptr, opt, &error));
  EXPECT_FALSE(qgemm(p.view(), x.data(), 2, 64, y.data(), 19, nullptr, opt, &error));
  EXPECT_FALSE(qgemm(p.view(), nullptr, 2, 64, y.data(), 20, nullptr, opt, &error));
  PackedView bad = p.view();
  bad.geometry.tileStride += 64;
  EXPECT_FALSE(qgemm(bad, x.data(), 2, 64, y.data(), 20, nullptr, opt, &error));
  EXPECT_NE(error.find("inconsistent"), std::string::npos) << error;
  bad = p.view();
  bad.data = nullptr;
  EXPECT_FALSE(qgemm(bad, x.data(), 2, 64, y.data(), 20, nullptr, opt, &error));
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni})
    if (!isaSupported(isa)) {
      opt.isa = isa;
      EXPECT_FALSE(qgemm(p.view(), x.data(), 2, 64, y.data(), 20, nullptr, opt, &error));
      EXPECT_NE(error.find(isaName(isa)), std::string::npos) << error;
    }
  for (float v : y)
    EXPECT_EQ(v, -7.0f); // nothing written on error
  opt = GemmOptions();
  EXPECT_TRUE(qgemm(p.view(), x.data(), 0, 64, y.data(), 20, nullptr, opt, &error)) << error;
}

TEST(QGemm, IsaNames) {
  for (Isa i : {Isa::Auto, Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni}) {
    Isa back;
    ASSERT_TRUE(parseIsa(isaName(i), &back));
    EXPECT_EQ(back, i);
  }
  Isa back;
  EXPECT_FALSE(parseIsa("sse9", &back));
  EXPECT_TRUE(isaSupported(bestIsa()));
  std::printf("[ info ] best kernel path on this CPU: %s\n", isaName(bestIsa()));
}

} // namespace
