//===- ActQuantTest.cpp - W8A8 activation modes against the reference rounding ===//
//
// ActQuantMode::PerToken and ::Static must round x exactly as the compiler's
// reference executor fake-quantizes a W8A8 linear's input
// (lib/Exec/FakeQuant.cpp): scale = max|row| / 127 (or the static scale),
// code = clamp(nearbyint(x / scale), -127, 127). The reference here is
// written from that definition with std::nearbyint (independent of the
// runtime's rounding trick). Checked on every instruction set the CPU has:
//  - the prepared codes equal the reference codes bit for bit, every block
//    scale is the row's scale, the code sums are the sums of the codes;
//  - qgemmPrepared (and qgemm) equal sum_k (code * scale) * w in double, the
//    fake-quantized product, within the fp32 summation tolerance of
//    QGemmTest's float mode (no activation-rounding term: the rounding is
//    the reference's own), at M = 1, 7, 33 and K not a multiple of 32, for
//    W8A8's int8 per-channel symmetric weights and for int4;
//  - all-zero rows give the bias, non-finite rows follow the reference
//    (per token: NaN outputs; static: infinities clamp, NaN poisons);
//  - mismatched preparations and bad static scales are refused.
//
//===----------------------------------------------------------------------===//
#include "KernelTestUtil.h"

#include "qopt-rt/kernels/QGemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

using namespace qrt::kernels;
using namespace qrt::kernels::test;

namespace {

constexpr double kU = 5.9604644775390625e-08; // 2^-24
constexpr double kFloatC = 32.0;              // as QGemmTest's float mode

std::vector<Isa> supportedIsas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni})
    if (isaSupported(i))
      out.push_back(i);
  return out;
}

/// The reference executor's int8 fake quantization of one row: codes and
/// the scale they multiply (NaN scale: a row the reference passes through
/// with a non-finite value in it).
struct RefRow {
  std::vector<float> codes;
  float scale = 0.0f;
};

RefRow referenceRow(const float *x, int64_t K, ActQuantMode mode, float staticScale) {
  RefRow r;
  r.codes.assign(size_t(K), 0.0f);
  if (mode == ActQuantMode::PerToken) {
    float amax = 0.0f;
    bool finite = true;
    for (int64_t k = 0; k < K; ++k) {
      amax = std::max(amax, std::fabs(x[k]));
      finite = finite && std::isfinite(x[k]);
    }
    if (!finite) {
      r.scale = std::numeric_limits<float>::quiet_NaN();
      return r;
    }
    if (!(amax > 0.0f))
      return r; // all zero: passes through as zeros
    r.scale = amax / 127.0f;
  } else {
    r.scale = staticScale;
  }
  for (int64_t k = 0; k < K; ++k) {
    const float c = std::clamp(std::nearbyint(x[k] / r.scale), -127.0f, 127.0f);
    if (std::isnan(c))
      r.scale = std::numeric_limits<float>::quiet_NaN();
    r.codes[size_t(k)] = std::isnan(c) ? 0.0f : c;
  }
  return r;
}

/// Rows of different magnitudes with a few outliers (what SmoothQuant's
/// per-token scales meet), and exact ties (k + 0.5) * scale in row 0.
std::vector<float> randomX(int64_t M, int64_t K, std::mt19937 &rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(size_t(M * K));
  for (int64_t m = 0; m < M; ++m) {
    const float mag = std::pow(10.0f, float(m % 4) - 2.0f);
    for (int64_t k = 0; k < K; ++k)
      x[size_t(m * K + k)] = u(rng) * mag * (k % 37 == 5 ? 20.0f : 1.0f);
  }
  // Row 0: max 127 * 0.25 so the scale is 0.25 exactly; ties at x.5 codes.
  for (int64_t k = 0; k < K; ++k)
    x[size_t(k)] = 0.25f * (float(k % 9) - 4.0f + 0.5f);
  x[0] = 127.0f * 0.25f;
  return x;
}

/// A static scale that clamps the largest values of most rows.
float staticScaleFor(const std::vector<float> &x) {
  float amax = 0.0f;
  for (float v : x)
    amax = std::max(amax, std::fabs(v));
  return 0.6f * amax / 127.0f;
}

struct Case {
  PackedFormat format;
  int64_t N, K;
};

class ActQuantModes : public ::testing::TestWithParam<ActQuantMode> {};

TEST_P(ActQuantModes, CodesAndProductsEqualTheFakeQuantizedReference) {
  const ActQuantMode mode = GetParam();
  std::mt19937 rng(mode == ActQuantMode::PerToken ? 17 : 29);
  const Case cases[] = {
      {{8, 0, true}, 17, 172},   // W8A8's weights: int8 per channel, symmetric
      {{8, 0, true}, 40, 544},
      {{4, 32, true}, 17, 172},  // int4 too
      {{4, 128, false}, 33, 300},
  };
  for (const Case &c : cases) {
    OwnedRef o = randomRef(c.N, c.K, c.format, rng);
    PackedMatrix packed;
    std::string error;
    ASSERT_TRUE(packed.pack(o.ref, c.format, &error)) << error;
    std::vector<float> bias(size_t(c.N));
    for (float &b : bias)
      b = std::uniform_real_distribution<float>(-1, 1)(rng);
    for (int64_t M : {1, 7, 33}) {
      const std::vector<float> x = randomX(M, c.K, rng);
      const float staticScale = staticScaleFor(x);
      // The reference: codes, and y in double from the dequantized x.
      std::vector<RefRow> ref;
      std::vector<float> xq(size_t(M * c.K));
      for (int64_t m = 0; m < M; ++m) {
        ref.push_back(referenceRow(x.data() + m * c.K, c.K, mode, staticScale));
        for (int64_t k = 0; k < c.K; ++k)
          xq[size_t(m * c.K + k)] = ref.back().codes[size_t(k)] * ref.back().scale;
      }
      const std::vector<double> want = referenceGemm(o.ref, xq, M);
      for (Isa isa : supportedIsas()) {
        SCOPED_TRACE(layoutId(c.format) + " M=" + std::to_string(M) + " K=" +
                     std::to_string(c.K) + " " + isaName(isa) + " " + actQuantName(mode));
        GemmOptions opt;
        opt.isa = isa;
        opt.actQuant = mode;
        opt.staticScale = staticScale;
        PreparedActivations p;
        ASSERT_TRUE(prepareActivations(x.data(), M, c.K, c.K, packed.view().geometry.paddedCols,
                                       opt, &p, &error))
            << error;
        const int64_t blocks = p.paddedCols / kActBlock;
        int bad = 0;
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t k = 0; k < p.paddedCols; ++k) {
            const float wantCode = k < c.K ? ref[size_t(m)].codes[size_t(k)] : 0.0f;
            if (float(p.q[size_t(m * p.paddedCols + k)]) != wantCode && bad++ < 5)
              ADD_FAILURE() << "code [" << m << "][" << k << "] = "
                            << int(p.q[size_t(m * p.paddedCols + k)]) << ", want " << wantCode;
          }
          for (int64_t b = 0; b < blocks; ++b) {
            EXPECT_EQ(p.sx[size_t(m * blocks + b)], ref[size_t(m)].scale) << m << " " << b;
            int32_t sum = 0;
            for (int64_t k = b * kActBlock; k < (b + 1) * kActBlock; ++k)
              sum += p.q[size_t(m * p.paddedCols + k)];
            EXPECT_EQ(p.bsum[size_t(m * blocks + b)], sum) << m << " " << b;
          }
        }
        std::vector<float> y(size_t(M * c.N), std::numeric_limits<float>::quiet_NaN());
        ASSERT_TRUE(qgemmPrepared(packed.view(), p, y.data(), c.N, bias.data(), opt, &error))
            << error;
        for (int64_t m = 0; m < M; ++m) {
          double xmax = 0.0;
          for (int64_t k = 0; k < c.K; ++k)
            xmax = std::max(xmax, std::fabs(double(xq[size_t(m * c.K + k)])));
          for (int64_t n = 0; n < c.N; ++n) {
            double wmax = 0.0;
            for (int64_t k = 0; k < c.K; ++k)
              wmax = std::max(wmax, std::fabs(refWeight(o.ref, n, k)));
            const double w = want[size_t(m * c.N + n)] + double(bias[size_t(n)]);
            const double tol =
                kFloatC * kU * std::sqrt(double(c.K)) * xmax * wmax + 2 * kU * std::fabs(w);
            const double got = y[size_t(m * c.N + n)];
            if (!(std::fabs(got - w) <= tol) && bad++ < 5)
              ADD_FAILURE() << "y[" << m << "][" << n << "] = " << got << ", want " << w
                            << " (tolerance " << tol << ")";
          }
        }
        // qgemm quantizes the same way itself: the same bits.
        std::vector<float> y2(y.size());
        ASSERT_TRUE(qgemm(packed.view(), x.data(), M, c.K, y2.data(), c.N, bias.data(), opt,
                          &error))
            << error;
        EXPECT_EQ(std::memcmp(y.data(), y2.data(), y.size() * sizeof(float)), 0);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ActQuantModes,
                         ::testing::Values(ActQuantMode::PerToken, ActQuantMode::Static),
                         [](const ::testing::TestParamInfo<ActQuantMode> &info) {
                           return std::string(actQuantName(info.param));
                         });

TEST(ActQuant, ZeroAndNonFiniteRowsFollowTheReference) {
  std::mt19937 rng(3);
  const PackedFormat f{8, 0, true};
  const int64_t N = 20, K = 70, M = 4;
  OwnedRef o = randomRef(N, K, f, rng);
  PackedMatrix packed;
  std::string error;
  ASSERT_TRUE(packed.pack(o.ref, f, &error)) << error;
  std::vector<float> bias(static_cast<size_t>(N));
  for (float &b : bias)
    b = std::uniform_real_distribution<float>(-1, 1)(rng);
  std::vector<float> x(size_t(M * K));
  for (int64_t k = 0; k < K; ++k) {
    x[size_t(0 * K + k)] = 0.0f;                                  // all zero
    x[size_t(1 * K + k)] = 0.01f * float(k % 13) - 0.06f;         // finite
    x[size_t(2 * K + k)] = 0.02f * float(k % 7) - 0.05f;          // + one infinity
    x[size_t(3 * K + k)] = 0.03f * float(k % 5) - 0.04f;          // + one NaN
  }
  x[size_t(2 * K + 40)] = -std::numeric_limits<float>::infinity();
  x[size_t(3 * K + 66)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(size_t(M * N));
  for (Isa isa : supportedIsas())
    for (ActQuantMode mode : {ActQuantMode::PerToken, ActQuantMode::Static}) {
      SCOPED_TRACE(std::string(isaName(isa)) + " " + actQuantName(mode));
      GemmOptions opt;
      opt.isa = isa;
      opt.actQuant = mode;
      opt.staticScale = 0.001f;
      ASSERT_TRUE(qgemm(packed.view(), x.data(), M, K, y.data(), N, bias.data(), opt, &error))
          << error;
      for (int64_t n = 0; n < N; ++n) {
        EXPECT_EQ(y[size_t(0 * N + n)], bias[size_t(n)]) << n;
        EXPECT_TRUE(std::isfinite(y[size_t(1 * N + n)])) << n;
        EXPECT_TRUE(std::isnan(y[size_t(3 * N + n)])) << n;
        if (mode == ActQuantMode::PerToken) {
          EXPECT_TRUE(std::isnan(y[size_t(2 * N + n)])) << n;
        } else {
          // -inf / scale clamps to -127, as nearbyint + clamp does.
          const RefRow r = referenceRow(x.data() + 2 * K, K, mode, opt.staticScale);
          ASSERT_EQ(r.codes[40], -127.0f);
          double want = bias[size_t(n)];
          for (int64_t k = 0; k < K; ++k)
            want += double(r.codes[size_t(k)] * r.scale) * refWeight(o.ref, n, k);
          EXPECT_NEAR(y[size_t(2 * N + n)], want, 1e-4 * (1.0 + std::fabs(want))) << n;
        }
      }
    }
}

TEST(ActQuant, MismatchedPreparationsAndBadScalesAreRefused) {
  std::mt19937 rng(8);
  const PackedFormat f{8, 0, true};
  OwnedRef o = randomRef(16, 64, f, rng);
  PackedMatrix packed;
  std::string error;
  ASSERT_TRUE(packed.pack(o.ref, f, &error)) << error;
  std::vector<float> x(64, 0.5f), y(16);
  GemmOptions perToken;
  perToken.actQuant = ActQuantMode::PerToken;
  PreparedActivations p;
  ASSERT_TRUE(prepareActivations(x.data(), 1, 64, 64, 64, perToken, &p, &error)) << error;
  GemmOptions other = perToken;
  other.actQuant = ActQuantMode::Block32;
  EXPECT_FALSE(qgemmPrepared(packed.view(), p, y.data(), 16, nullptr, other, &error));
  EXPECT_NE(error.find("per_token"), std::string::npos) << error;
  GemmOptions st = perToken;
  st.actQuant = ActQuantMode::Static;
  st.staticScale = 0.01f;
  ASSERT_TRUE(prepareActivations(x.data(), 1, 64, 64, 64, st, &p, &error)) << error;
  st.staticScale = 0.02f; // prepared with another scale
  EXPECT_FALSE(qgemmPrepared(packed.view(), p, y.data(), 16, nullptr, st, &error));
  for (float bad : {0.0f, -1.0f, std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    st.staticScale = bad;
    EXPECT_FALSE(qgemm(packed.view(), x.data(), 1, 64, y.data(), 16, nullptr, st, &error));
    EXPECT_NE(error.find("static activation scale"), std::string::npos) << error;
  }
}

} // namespace
