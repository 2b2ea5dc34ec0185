//===- PreparedActivationsTest.cpp - qgemmPrepared vs qgemm, bit for bit --===//
//
// The executor prepares a layer's input once (rms_norm / SwiGLU write it)
// and runs several weights on it with qgemmPrepared. That must give the
// very bits qgemm gives on the plain rows, for every instruction set this
// CPU runs, both activation modes, any padding at least the weight's, and
// rows prepared in pieces; and both must be right against a dense fp32
// product of the dequantized weights (an independent reference).
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"
#include "qopt-rt/kernels/QGemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace qrt::kernels;

namespace {

struct Weight {
  PackedMatrix packed;
  std::vector<float> dense; ///< exact dequantization [rows, cols]
};

void makeWeight(int64_t rows, int64_t cols, int bits, int groupSize, bool symmetric,
                uint32_t seed, Weight *w) {
  std::mt19937 rng(seed);
  const int64_t gs = groupSize ? groupSize : cols;
  const int64_t groups = (cols + gs - 1) / gs;
  std::vector<uint8_t> codes(size_t(rows * cols));
  std::vector<float> scales(size_t(rows * groups)), zeros(size_t(rows * groups));
  std::uniform_int_distribution<int> cd(0, (1 << bits) - 1);
  for (auto &c : codes)
    c = uint8_t(cd(rng));
  for (size_t i = 0; i < scales.size(); ++i) {
    scales[i] = qrt::f16ToF32(qrt::f32ToF16(std::uniform_real_distribution<float>(0.01f, 0.1f)(rng)));
    zeros[i] = symmetric ? float(1 << (bits - 1)) : float(cd(rng));
  }
  RefQuantMatrix ref;
  ref.rows = rows;
  ref.cols = cols;
  ref.bits = bits;
  ref.groupSize = groupSize;
  ref.symmetric = symmetric;
  ref.codes = codes.data();
  ref.scales = scales.data();
  ref.zeros = symmetric ? nullptr : zeros.data();
  PackedFormat f;
  f.bits = bits;
  f.groupSize = groupSize;
  f.symmetric = symmetric;
  std::string err;
  ASSERT_TRUE(w->packed.pack(ref, f, &err)) << err;
  w->dense.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = r * groups + c / gs;
      w->dense[size_t(r * cols + c)] = (float(codes[size_t(r * cols + c)]) - zeros[size_t(g)]) * scales[size_t(g)];
    }
}

std::vector<Isa> supportedIsas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni})
    if (isaSupported(i))
      out.push_back(i);
  return out;
}

struct Shape {
  int64_t N, K;
  int bits, groupSize;
  bool symmetric;
};

class Prepared : public ::testing::TestWithParam<Shape> {};

TEST_P(Prepared, SameBitsAsQgemmAndRightAgainstDense) {
  const Shape s = GetParam();
  Weight w;
  makeWeight(s.N, s.K, s.bits, s.groupSize, s.symmetric, 7, &w);
  const PackedView v = w.packed.view();
  const int64_t Kp = v.geometry.paddedCols;
  for (int64_t M : {int64_t(1), int64_t(5), int64_t(70)}) {
    const int64_t ldx = s.K + 3; // x rows with a stride of their own
    std::vector<float> x(size_t(M * ldx), 1e30f);
    std::mt19937 rng(uint32_t(M * 31 + s.K));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < s.K; ++k)
        x[size_t(m * ldx + k)] = nd(rng);
    for (Isa isa : supportedIsas())
      for (Activations act : {Activations::Float, Activations::Int8}) {
        SCOPED_TRACE(std::string(isaName(isa)) + (act == Activations::Float ? " float" : " int8") +
                     " M=" + std::to_string(M));
        GemmOptions o;
        o.isa = isa;
        o.activations = act;
        std::string err;
        const int64_t ldy = s.N + 1;
        std::vector<float> want(size_t(M * ldy), -7.0f);
        ASSERT_TRUE(qgemm(v, x.data(), M, ldx, want.data(), ldy, nullptr, o, &err)) << err;

        // Padded exactly as the weight, and padded further (a wider
        // consumer of the same input): the same bits either way.
        for (int64_t pad : {Kp, Kp + 64}) {
          PreparedActivations p;
          ASSERT_TRUE(prepareActivations(x.data(), M, ldx, s.K, pad, o, &p, &err)) << err;
          EXPECT_GE(p.paddedCols, pad);
          std::vector<float> got(size_t(M * ldy), -7.0f);
          ASSERT_TRUE(qgemmPrepared(v, p, got.data(), ldy, nullptr, o, &err)) << err;
          EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
              << "pad " << pad;
        }
        // Rows prepared in two pieces, as the executor's row loops do.
        PreparedActivations p;
        ASSERT_TRUE(resizePrepared(&p, M, s.K, Kp, o, &err)) << err;
        const int64_t cut = M / 2;
        prepareRows(&p, x.data(), ldx, 0, cut);
        prepareRows(&p, x.data() + cut * ldx, ldx, cut, M);
        std::vector<float> got(size_t(M * ldy), -7.0f);
        ASSERT_TRUE(qgemmPrepared(v, p, got.data(), ldy, nullptr, o, &err)) << err;
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);

        // The dense reference: fp32 x times the dequantized weight.
        double worst = 0;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < s.N; ++n) {
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < s.K; ++k) {
              double t = double(x[size_t(m * ldx + k)]) * w.dense[size_t(n * s.K + k)];
              ref += t;
              mag += std::fabs(t);
            }
            worst = std::max(worst, std::fabs(got[size_t(m * ldy + n)] - ref) / (mag + 1e-30));
          }
        // fp32 summation: ~1e-6 of the absolute sum; int8 activations add
        // up to half a code step (1/254) per product.
        EXPECT_LT(worst, act == Activations::Float ? 1e-5 : 1e-2);
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Prepared,
                         ::testing::Values(Shape{37, 100, 4, 32, false},
                                           Shape{53, 200, 4, 128, true},
                                           Shape{16, 72, 8, 0, true},
                                           Shape{41, 96, 8, 32, false}));

TEST(PreparedActivations, MismatchesAreRefused) {
  Weight w;
  makeWeight(20, 64, 4, 32, false, 3, &w);
  std::vector<float> x(64 * 2, 0.5f), y(40);
  GemmOptions o;
  std::string err;
  PreparedActivations p;
  // Prepared for 60 columns, the weight has 64.
  ASSERT_TRUE(prepareActivations(x.data(), 2, 64, 60, 0, o, &p, &err)) << err;
  EXPECT_FALSE(qgemmPrepared(w.packed.view(), p, y.data(), 20, nullptr, o, &err));
  EXPECT_NE(err.find("do not fit"), std::string::npos) << err;
  // Prepared as int8, multiplied as float.
  ASSERT_TRUE(prepareActivations(x.data(), 2, 64, 64, 0, o, &p, &err)) << err;
  GemmOptions f = o;
  f.activations = Activations::Float;
  EXPECT_FALSE(qgemmPrepared(w.packed.view(), p, y.data(), 20, nullptr, f, &err));
  EXPECT_TRUE(qgemmPrepared(w.packed.view(), p, y.data(), 20, nullptr, o, &err)) << err;
}

} // namespace
