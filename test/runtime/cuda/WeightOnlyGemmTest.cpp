//===- WeightOnlyGemmTest.cpp - W4A16/W8A16 kernels vs a CPU reference ---===//
//
// Each kernel against a double-precision reference of the same quantized
// weights (w = (q - z) * s, exactly), at the odd shapes of the issue: M = 1,
// 7, 16 (small-M), 1, 7, 33, 257 (tensor cores); N, K multiples of 64 but
// not of 128; every format the layout has. Outputs are poisoned with NaN
// first. The tolerance follows the error model: each product rounds its
// dequantized weight (tensor cores) to the activation type, an error of
// eps relative, random in sign, so the sum's error grows as eps *
// sqrt(sum (x w)^2); plus the output's own rounding.
//
//===----------------------------------------------------------------------===//
#include "CudaTestUtil.h"

#include "qopt-cuda/WeightOnlyGemm.h"
#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"

#include <array>
#include <cmath>
#include <random>

namespace {

using qcuda::DType;
using qcuda::WeightOnlyKernel;
using qcuda_test::DeviceBuffer;

uint16_t toBits(float v, DType t) { return t == DType::kBF16 ? qrt::f32ToBf16(v) : qrt::f32ToF16(v); }
float fromBits(uint16_t b, DType t) { return t == DType::kBF16 ? qrt::bf16ToF32(b) : qrt::f16ToF32(b); }
float epsOf(DType t) { return t == DType::kBF16 ? 1.f / 256 : t == DType::kF16 ? 1.f / 2048 : 1e-6f; }

struct Format {
  int bits, group;
  bool sym;
};

struct Case {
  Format f;
  DType xType, yType;
  bool bias;
  WeightOnlyKernel kernel;
  bool splitK = false; ///< pass a split-K workspace (tensor cores)
};

std::string caseName(const testing::TestParamInfo<Case> &info) {
  const Case &c = info.param;
  std::string s = "i" + std::to_string(c.f.bits) + (c.f.sym ? "sym" : "asym") + "_" +
                  (c.f.group ? "g" + std::to_string(c.f.group) : std::string("pc")) + "_" +
                  qcuda::dtypeName(c.xType) + "_to_" + qcuda::dtypeName(c.yType) +
                  (c.bias ? "_bias" : "") +
                  (c.kernel == WeightOnlyKernel::kSmallM ? "_smallM" : "_tensorcore") +
                  (c.splitK ? "_splitK" : "");
  return s;
}

class WeightOnlyGemmTest : public testing::TestWithParam<Case> {};

void runShape(const Case &c, int64_t M, int64_t N, int64_t K, uint32_t seed) {
  SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  std::mt19937 rng(seed);
  const int64_t gs = c.f.group == 0 ? K : c.f.group, G = (K + gs - 1) / gs;
  std::vector<uint8_t> codes(size_t(N * K));
  for (auto &q : codes)
    q = uint8_t(rng() % (1u << c.f.bits));
  std::vector<float> scales(size_t(N * G)), zeros(c.f.sym ? 0 : size_t(N * G));
  std::uniform_real_distribution<float> us(0.002f, 0.02f);
  for (auto &s : scales)
    s = qrt::f16ToF32(qrt::f32ToF16(us(rng)));
  for (auto &z : zeros)
    z = float(rng() % (1u << c.f.bits));
  qrt::kernels::RefQuantMatrix ref;
  ref.rows = N, ref.cols = K, ref.bits = c.f.bits, ref.groupSize = c.f.group;
  ref.symmetric = c.f.sym, ref.codes = codes.data(), ref.scales = scales.data();
  ref.zeros = c.f.sym ? nullptr : zeros.data();
  qcuda::GpuPackedHost packed;
  std::string error;
  ASSERT_TRUE(qcuda::packForGpu(ref, &packed, &error)) << error;

  std::uniform_real_distribution<float> ux(-1.f, 1.f);
  std::vector<uint16_t> xBits(size_t(M * K)), biasBits(static_cast<size_t>(N));
  for (auto &b : xBits)
    b = toBits(ux(rng), c.xType);
  for (auto &b : biasBits)
    b = toBits(ux(rng), c.xType);

  DeviceBuffer dCodes(packed.codes.size() * 4), dScales(packed.scales.size() * 2),
      dZeros(packed.zeros.size() * 2), dX(xBits.size() * 2), dBias(biasBits.size() * 2);
  const size_t ySize = c.yType == DType::kF32 ? 4 : 2;
  DeviceBuffer dY(size_t(M * N) * ySize);
  dCodes.upload(packed.codes);
  dScales.upload(packed.scales);
  if (!c.f.sym)
    dZeros.upload(packed.zeros);
  dX.upload(xBits);
  dBias.upload(biasBits);
  dY.poison();

  qcuda::WeightOnlyGemmArgs a;
  a.x = dX.get();
  a.xType = c.xType;
  a.w.format = packed.format;
  a.w.geometry = packed.geometry;
  a.w.codes = dCodes.as<uint32_t>();
  a.w.scales = dScales.as<uint16_t>();
  a.w.zeros = c.f.sym ? nullptr : dZeros.as<uint16_t>();
  a.bias = c.bias ? dBias.get() : nullptr;
  a.y = dY.get();
  a.yType = c.yType;
  a.M = M;
  a.kernel = c.kernel;
  // Split-K: a workspace poisoned too (every partial sum used is written).
  DeviceBuffer dWork(c.splitK ? qcuda::weightOnlyGemmWorkspaceBytes(M, N) : 16);
  if (c.splitK) {
    dWork.poison();
    a.workspace = dWork.get();
    a.workspaceBytes = dWork.bytes();
    int sms = 0, dev = 0;
    ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
    ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), cudaSuccess);
    if (M <= 64 && K >= 2048) {
      EXPECT_GT(qcuda::weightOnlyGemmSplits(M, N, K, dWork.bytes(), sms), 1)
          << "this case is meant to split K";
    }
  }
  ASSERT_TRUE(qcuda::weightOnlyGemm(a, nullptr, &error)) << error;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  std::vector<float> y(size_t(M * N));
  if (c.yType == DType::kF32) {
    y = dY.download<float>();
  } else {
    const auto bits = dY.download<uint16_t>();
    for (size_t i = 0; i < y.size(); ++i)
      y[i] = fromBits(bits[i], c.yType);
  }

  const float zSym = float(1 << (c.f.bits - 1));
  const double eps = epsOf(c.xType), epsOut = epsOf(c.yType);
  int64_t bad = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double sum = c.bias ? fromBits(biasBits[size_t(n)], c.xType) : 0.0, sq = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t gi = n * G + k / gs;
        const double w = (double(codes[size_t(n * K + k)]) - (c.f.sym ? zSym : zeros[size_t(gi)])) *
                         scales[size_t(gi)];
        const double p = double(fromBits(xBits[size_t(m * K + k)], c.xType)) * w;
        sum += p;
        sq += p * p;
      }
      const double tol = 4 * eps * std::sqrt(sq) + 2 * epsOut * std::fabs(sum) + 1e-5;
      const float got = y[size_t(m * N + n)];
      if (!(std::fabs(double(got) - sum) <= tol) && bad++ < 5)
        ADD_FAILURE() << "y[" << m << ", " << n << "] = " << got << ", reference " << sum
                      << ", tolerance " << tol;
    }
  EXPECT_EQ(bad, 0) << "elements out of tolerance";
}

TEST_P(WeightOnlyGemmTest, MatchesReferenceAtOddShapes) {
  QCUDA_SKIP_WITHOUT_DEVICE();
  const Case c = GetParam();
  const std::vector<int64_t> ms = c.kernel == WeightOnlyKernel::kSmallM
                                      ? std::vector<int64_t>{1, 7, 16}
                                      : std::vector<int64_t>{1, 7, 33, 257};
  // Split-K cases add a long K (35 k-tiles: 8 splits of 5 leave the last
  // one empty) to the odd shapes.
  std::vector<std::array<int64_t, 2>> shapes = {{192, 320}, {320, 576}, {576, 192}};
  if (c.splitK)
    shapes.push_back({192, 2240});
  uint32_t seed = 11;
  for (int64_t M : ms)
    for (const auto &nk : shapes)
      runShape(c, M, nk[0], nk[1], seed++);
}

std::vector<Case> allCases() {
  const Format formats[] = {{4, 128, false}, {4, 128, true}, {4, 64, true}, {4, 32, false},
                            {4, 0, false},   {8, 0, true},   {8, 128, false}};
  std::vector<Case> out;
  for (WeightOnlyKernel k : {WeightOnlyKernel::kSmallM, WeightOnlyKernel::kTensorCore}) {
    for (const Format &f : formats)
      out.push_back({f, DType::kBF16, DType::kF32, false, k});
    // Activation/output types and bias on two formats.
    out.push_back({{4, 128, false}, DType::kF16, DType::kF16, true, k});
    out.push_back({{4, 128, false}, DType::kBF16, DType::kBF16, true, k});
    out.push_back({{8, 0, true}, DType::kF16, DType::kF32, true, k});
  }
  // Split-K (tensor cores with a workspace): plain, with bias, int8 per-channel.
  out.push_back({{4, 128, false}, DType::kBF16, DType::kF32, false, WeightOnlyKernel::kTensorCore, true});
  out.push_back({{4, 32, false}, DType::kBF16, DType::kBF16, true, WeightOnlyKernel::kTensorCore, true});
  out.push_back({{8, 0, true}, DType::kF16, DType::kF32, true, WeightOnlyKernel::kTensorCore, true});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Formats, WeightOnlyGemmTest, testing::ValuesIn(allCases()), caseName);

// The split-K choice is host arithmetic: tested everywhere.
TEST(WeightOnlyGemmSplits, SplitsOnlyWhenTilesLeaveSmsIdle) {
  const size_t big = qcuda::weightOnlyGemmWorkspaceBytes(128, 14336);
  // 4096 x 4096 at M = 16: 32 tiles on 132 SMs -> ceil(132 / 32) = 5 splits.
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(16, 4096, 4096, big, 132), 5);
  // 14336 x 4096 at M = 16: 112 tiles -> 2.
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(16, 14336, 4096, big, 132), 2);
  // A full wave already, or M past the split-K range: none.
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(64, 28672, 4096, big, 132), 1);
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(256, 4096, 4096, big, 132), 1);
  // At most 8, and at least 4 k-tiles per split.
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(1, 128, 14336, big, 132), 8);
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(1, 128, 512, big, 132), 2);
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(1, 128, 192, big, 132), 1);
  // The workspace bounds it; none without one.
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(16, 4096, 4096, 3 * 16 * 4096 * 4, 132), 3);
  EXPECT_EQ(qcuda::weightOnlyGemmSplits(16, 4096, 4096, 0, 132), 1);
}

// Argument checks run before anything touches a device: tested everywhere.
TEST(WeightOnlyGemmArgs, RefusesBadCallsWithOneLine) {
  qcuda::WeightOnlyGemmArgs a;
  a.w.format = {4, 128, true};
  std::string error;
  ASSERT_TRUE(qcuda::computeGpuGeometry(a.w.format, 192, 320, &a.w.geometry, &error)) << error;
  alignas(16) static uint32_t fake[16];
  a.x = fake;
  a.y = fake;
  a.w.codes = fake;
  a.w.scales = reinterpret_cast<const uint16_t *>(fake);
  a.M = 0;
  EXPECT_FALSE(qcuda::weightOnlyGemm(a, nullptr, &error));
  EXPECT_NE(error.find("M must be"), std::string::npos) << error;

  a.M = 17;
  a.kernel = WeightOnlyKernel::kSmallM;
  EXPECT_FALSE(qcuda::weightOnlyGemm(a, nullptr, &error));
  EXPECT_NE(error.find("small-M"), std::string::npos) << error;

  a.kernel = WeightOnlyKernel::kAuto;
  a.xType = DType::kF32;
  EXPECT_FALSE(qcuda::weightOnlyGemm(a, nullptr, &error));
  EXPECT_NE(error.find("f16 or bf16"), std::string::npos) << error;

  a.xType = DType::kBF16;
  a.w.format.symmetric = false; // asymmetric without zeros
  EXPECT_FALSE(qcuda::weightOnlyGemm(a, nullptr, &error));
  EXPECT_NE(error.find("zeros"), std::string::npos) << error;

  a.w.format.symmetric = true;
  a.w.geometry.cols = 100;
  EXPECT_FALSE(qcuda::weightOnlyGemm(a, nullptr, &error));
  EXPECT_NE(error.find("K=100"), std::string::npos) << error;
}

} // namespace
