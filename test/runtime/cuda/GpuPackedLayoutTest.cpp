//===- GpuPackedLayoutTest.cpp - the GPU weight packer, on the CPU --------===//
//
// Packs random reference matrices and unpacks them with an unpacker written
// here from the layout's description (GpuPackedLayout.h), independent of the
// packer: every code, scale and zero must come back; bad input is refused
// with a message naming what is wrong.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/GpuPackedLayout.h"

#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace {

struct RefData {
  std::vector<uint8_t> codes;
  std::vector<float> scales, zeros;
  qrt::kernels::RefQuantMatrix ref;
};

RefData makeRef(int64_t N, int64_t K, int bits, int group, bool sym, uint32_t seed) {
  RefData d;
  std::mt19937 rng(seed);
  const int64_t gs = group == 0 ? K : group;
  const int64_t G = (K + gs - 1) / gs;
  d.codes.resize(size_t(N * K));
  for (auto &c : d.codes)
    c = uint8_t(rng() % (1u << bits));
  d.scales.resize(size_t(N * G));
  std::uniform_real_distribution<float> u(0.001f, 0.05f);
  for (auto &s : d.scales)
    s = qrt::f16ToF32(qrt::f32ToF16(u(rng)));
  if (!sym) {
    d.zeros.resize(size_t(N * G));
    for (auto &z : d.zeros)
      z = float(rng() % (1u << bits));
  }
  d.ref.rows = N;
  d.ref.cols = K;
  d.ref.bits = bits;
  d.ref.groupSize = group;
  d.ref.symmetric = sym;
  d.ref.codes = d.codes.data();
  d.ref.scales = d.scales.data();
  d.ref.zeros = sym ? nullptr : d.zeros.data();
  return d;
}

// The layout as documented: row n's word j holds columns j*(32/bits) + i;
// 8-bit: column i at bit offset 8i; 4-bit: even columns 2p in nibbles p =
// 0..3, odd columns 2p+1 in nibbles p + 4; scales/zeros are [groups][N].
uint32_t unpackCode(const qcuda::GpuPackedHost &p, int64_t n, int64_t k) {
  const int bits = p.format.bits, perWord = 32 / bits;
  const uint32_t word = p.codes[size_t(n * (p.geometry.cols * bits / 32) + k / perWord)];
  const int i = int(k % perWord);
  const int slot = bits == 8 ? i : (i % 2 == 0 ? i / 2 : 4 + i / 2);
  return (word >> (bits * slot)) & ((1u << bits) - 1);
}

struct Case {
  int64_t N, K;
  int bits, group;
  bool sym;
};

class GpuPackRoundTrip : public testing::TestWithParam<Case> {};

TEST_P(GpuPackRoundTrip, UnpacksToTheReference) {
  const Case c = GetParam();
  RefData d = makeRef(c.N, c.K, c.bits, c.group, c.sym, uint32_t(c.N * 31 + c.K + c.bits));
  qcuda::GpuPackedHost p;
  std::string error;
  ASSERT_TRUE(qcuda::packForGpu(d.ref, &p, &error)) << error;
  const int64_t gs = c.group == 0 ? c.K : c.group;
  const int64_t G = (c.K + gs - 1) / gs;
  EXPECT_EQ(p.geometry.groups, G);
  EXPECT_EQ(p.geometry.groupSize, gs);
  ASSERT_EQ(p.codes.size(), size_t(c.N * c.K * c.bits / 32));
  ASSERT_EQ(p.scales.size(), size_t(G * c.N));
  ASSERT_EQ(p.zeros.size(), c.sym ? size_t(0) : size_t(G * c.N));
  int64_t bad = 0;
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t k = 0; k < c.K; ++k)
      bad += unpackCode(p, n, k) != d.codes[size_t(n * c.K + k)];
  EXPECT_EQ(bad, 0) << "codes that did not round-trip";
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      ASSERT_EQ(qrt::f16ToF32(p.scales[size_t(g * c.N + n)]), d.scales[size_t(n * G + g)])
          << "scale of row " << n << " group " << g;
      if (!c.sym) {
        ASSERT_EQ(qrt::f16ToF32(p.zeros[size_t(g * c.N + n)]), d.zeros[size_t(n * G + g)])
            << "zero of row " << n << " group " << g;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, GpuPackRoundTrip,
    testing::Values(Case{192, 320, 4, 128, false}, Case{320, 576, 4, 64, true},
                    Case{64, 192, 4, 32, false}, Case{576, 192, 4, 0, false},
                    Case{128, 320, 8, 0, true}, Case{192, 576, 8, 128, false},
                    Case{64, 64, 4, 128, true}));

TEST(GpuPackErrors, RefusesShapesTheKernelsDoNotTake) {
  RefData d = makeRef(64, 96, 4, 32, false, 1);
  qcuda::GpuPackedHost p;
  std::string error;
  EXPECT_FALSE(qcuda::packForGpu(d.ref, &p, &error));
  EXPECT_NE(error.find("multiples of 64"), std::string::npos) << error;
  EXPECT_NE(error.find("K=96"), std::string::npos) << error;
}

TEST(GpuPackErrors, RefusesShapesPastIntIndexing) {
  // N = 2^31 is a multiple of 64 but wraps the kernels' int N.
  qcuda::GpuQuantFormat f;
  qcuda::GpuPackedGeometry g;
  std::string error;
  EXPECT_FALSE(qcuda::computeGpuGeometry(f, int64_t(1) << 31, 64, &g, &error));
  EXPECT_NE(error.find("2^31"), std::string::npos) << error;
  EXPECT_TRUE(qcuda::computeGpuGeometry(f, (int64_t(1) << 31) - 64, 64, &g, &error)) << error;
}

TEST(GpuPackErrors, RefusesGroupNotMultipleOf32) {
  RefData d = makeRef(64, 64, 4, 48, false, 2);
  qcuda::GpuPackedHost p;
  std::string error;
  EXPECT_FALSE(qcuda::packForGpu(d.ref, &p, &error));
  EXPECT_NE(error.find("group size"), std::string::npos) << error;
}

TEST(GpuPackErrors, NamesRowOfCodeOutOfRange) {
  RefData d = makeRef(64, 64, 4, 32, false, 3);
  d.codes[5 * 64 + 7] = 16;
  qcuda::GpuPackedHost p;
  std::string error;
  EXPECT_FALSE(qcuda::packForGpu(d.ref, &p, &error));
  EXPECT_NE(error.find("row 5 column 7"), std::string::npos) << error;
}

TEST(GpuPackErrors, NamesGroupOfInexactScaleAndBadZero) {
  RefData d = makeRef(64, 128, 4, 32, false, 4);
  d.scales[2 * 4 + 1] = 0.1f; // 0.1 is not an fp16 value
  qcuda::GpuPackedHost p;
  std::string error;
  EXPECT_FALSE(qcuda::packForGpu(d.ref, &p, &error));
  EXPECT_NE(error.find("row 2 group 1"), std::string::npos) << error;
  EXPECT_NE(error.find("fp16"), std::string::npos) << error;

  RefData e = makeRef(64, 128, 4, 32, false, 5);
  e.zeros[3 * 4 + 2] = 2.5f;
  EXPECT_FALSE(qcuda::packForGpu(e.ref, &p, &error));
  EXPECT_NE(error.find("row 3 group 2"), std::string::npos) << error;
  EXPECT_NE(error.find("zero point"), std::string::npos) << error;
}

} // namespace
