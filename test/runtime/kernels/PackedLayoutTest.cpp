//===- PackedLayoutTest.cpp - layout ids, geometry, packer round trip -----===//
#include "KernelTestUtil.h"

#include "qopt-rt/kernels/PackedLayout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace qrt::kernels;
using namespace qrt::kernels::test;

namespace {

const PackedFormat kFormats[] = {
    {4, 32, false}, {4, 64, false}, {4, 128, false}, {4, 128, true}, {4, 0, false},
    {8, 32, false}, {8, 128, true}, {8, 0, false},   {8, 0, true},
};

TEST(PackedLayout, LayoutIdsRoundTrip) {
  EXPECT_EQ(layoutId({4, 128, false}), "x86_i4_g128_n16");
  EXPECT_EQ(layoutId({4, 32, true}), "x86_i4sym_g32_n16");
  EXPECT_EQ(layoutId({8, 0, false}), "x86_i8_pc_n16");
  for (const PackedFormat &f : kFormats) {
    PackedFormat back;
    std::string error;
    ASSERT_TRUE(parseLayoutId(layoutId(f), &back, &error)) << error;
    EXPECT_EQ(back.bits, f.bits);
    EXPECT_EQ(back.groupSize, f.groupSize);
    EXPECT_EQ(back.symmetric, f.symmetric);
  }
}

TEST(PackedLayout, RejectsForeignLayoutIds) {
  for (const char *id : {"", "x86_i4_g128", "x86_i4_g128_n8", "x86_i3_g128_n16", "x86_i4_g100_n16",
                         "x86_i4_g_n16", "arm_i4_g128_n16", "x86_i4sym_pc_n16x",
                         "x86_i4_g99999999999_n16", "x86_i4_g0_n16"}) {
    PackedFormat f;
    std::string error;
    EXPECT_FALSE(parseLayoutId(id, &f, &error)) << id;
    EXPECT_FALSE(error.empty()) << id;
  }
}

TEST(PackedLayout, Geometry) {
  PackedGeometry g;
  std::string error;
  ASSERT_TRUE(computeGeometry({4, 128, false}, 4096, 4096, &g, &error)) << error;
  EXPECT_EQ(g.tiles, 256);
  EXPECT_EQ(g.groups, 32);
  EXPECT_EQ(g.groupCodeBytes, 128 * 16 / 2);
  EXPECT_EQ(g.metaBytes, 4 * (32 + 16));
  EXPECT_EQ(g.superblockStride, 4 * 48 + 4 * 1024);
  EXPECT_EQ(g.tileStride % kPackAlign, 0);
  // codes + fp16 scale + u8 zero per 16x128 group: 4.1875 bits per weight.
  EXPECT_EQ(g.totalBytes, 256 * (32768 + 32 * 48));

  // Short last group: K = 172 with g128 pads to 256; per-channel to 32.
  ASSERT_TRUE(computeGeometry({4, 128, false}, 17, 172, &g, &error)) << error;
  EXPECT_EQ(g.paddedCols, 256);
  EXPECT_EQ(g.groups, 2);
  EXPECT_EQ(g.tiles, 2);
  ASSERT_TRUE(computeGeometry({8, 0, true}, 17, 172, &g, &error)) << error;
  EXPECT_EQ(g.paddedCols, 192);
  EXPECT_EQ(g.groups, 1);
  EXPECT_EQ(g.groupSize, 192);
  EXPECT_EQ(g.metaBytes, 4 * 32); // symmetric: scales only
  EXPECT_EQ(g.tileStride, 4 * 32 + 192 * 16);
  // 5 groups: one full superblock and one with a single group.
  ASSERT_TRUE(computeGeometry({4, 32, false}, 16, 160, &g, &error)) << error;
  EXPECT_EQ(g.tileStride, 2 * 192 + 5 * 256);

  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{0, 32}, {-1, 32}, {16, 0},
                           {int64_t(1) << 40, 32}, {int64_t(1) << 31, int64_t(1) << 31}}) {
    EXPECT_FALSE(computeGeometry({4, 128, false}, rows, cols, &g, &error)) << rows << "x" << cols;
  }
  EXPECT_FALSE(computeGeometry({5, 128, false}, 16, 32, &g, &error));
  EXPECT_FALSE(computeGeometry({4, 48, false}, 16, 32, &g, &error));
}

TEST(PackedLayout, PackThenDequantizeGivesTheReferenceWeights) {
  std::mt19937 rng(7);
  for (const PackedFormat &f : kFormats)
    for (auto [rows, cols] :
         {std::pair<int64_t, int64_t>{1, 32}, {17, 172}, {33, 544}, {16, 4}, {5, 300}, {3, 1000}}) {
      SCOPED_TRACE(layoutId(f) + " " + std::to_string(rows) + "x" + std::to_string(cols));
      OwnedRef o = randomRef(rows, cols, f, rng);
      PackedMatrix p;
      std::string error;
      ASSERT_TRUE(p.pack(o.ref, f, &error)) << error;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p.data()) % kPackAlign, 0u);
      std::vector<float> w(size_t(rows * cols));
      dequantizePacked(p.view(), w.data());
      for (int64_t n = 0; n < rows; ++n)
        for (int64_t k = 0; k < cols; ++k)
          ASSERT_EQ(double(w[size_t(n * cols + k)]), refWeight(o.ref, n, k))
              << "row " << n << " col " << k;
    }
}

TEST(PackedLayout, ChunkInterleaveIsAsDocumented) {
  // Row r's code of column k is a function of (r, k) we can recognize.
  const int64_t rows = 16, cols = 32;
  std::vector<uint8_t> codes(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k)
      codes[r * cols + k] = uint8_t((r + 3 * k) % 16);
  std::vector<float> scales(rows, 1.0f), zeros(rows, 0.0f);
  zeros[3] = 7.0f;
  RefQuantMatrix ref{rows, cols, 4, 32, false, codes.data(), scales.data(), zeros.data()};
  PackedMatrix p;
  std::string error;
  ASSERT_TRUE(p.pack(ref, {4, 32, false}, &error)) << error;
  // One superblock: 4 scale slots (fp16; 1.0 = 0x3c00), 4 zero slots, codes.
  const auto *s = reinterpret_cast<const ScalesX16 *>(p.data());
  EXPECT_EQ(s[0].d[5], 0x3c00);
  EXPECT_EQ(s[1].d[5], 0); // unused slot
  EXPECT_EQ(p.data()[4 * 32 + 3], 7); // row 3's zero
  const uint8_t *chunks = p.data() + 4 * 32 + 4 * 16;
  for (int64_t c = 0; c < cols / 8; ++c)
    for (int r = 0; r < 16; ++r)
      for (int i = 0; i < 4; ++i) {
        const uint8_t b = chunks[c * 64 + 4 * r + i];
        EXPECT_EQ(b & 15, codes[r * cols + 8 * c + i]);
        EXPECT_EQ(b >> 4, codes[r * cols + 8 * c + 4 + i]);
      }
}

TEST(PackedLayout, PackRejectsBadValues) {
  std::mt19937 rng(3);
  const PackedFormat f{4, 32, false};
  std::string error;
  PackedMatrix p;
  {
    OwnedRef o = randomRef(5, 40, f, rng);
    o.codes[3 * 40 + 7] = 16;
    EXPECT_FALSE(p.pack(o.ref, f, &error));
    EXPECT_NE(error.find("row 3"), std::string::npos) << error;
  }
  {
    OwnedRef o = randomRef(5, 40, f, rng);
    o.zeros[2 * 2 + 1] = 3.5f;
    EXPECT_FALSE(p.pack(o.ref, f, &error));
    EXPECT_NE(error.find("row 2 group 1"), std::string::npos) << error;
    o.zeros[2 * 2 + 1] = -1.0f;
    EXPECT_FALSE(p.pack(o.ref, f, &error));
    o.zeros[2 * 2 + 1] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(p.pack(o.ref, f, &error));
  }
  {
    OwnedRef o = randomRef(5, 40, f, rng);
    o.scales[4 * 2] = 0.1f; // not an fp16 value
    EXPECT_FALSE(p.pack(o.ref, f, &error));
    EXPECT_NE(error.find("fp16"), std::string::npos) << error;
    o.scales[4 * 2] = std::numeric_limits<float>::infinity();
    EXPECT_FALSE(p.pack(o.ref, f, &error));
  }
  {
    OwnedRef o = randomRef(5, 40, f, rng);
    EXPECT_FALSE(p.pack(o.ref, {4, 64, false}, &error)); // group mismatch
    EXPECT_FALSE(p.pack(o.ref, {4, 32, true}, &error));  // symmetry mismatch
    EXPECT_FALSE(p.pack(o.ref, {8, 32, false}, &error)); // bits mismatch
    std::vector<uint8_t> small(64);
    EXPECT_FALSE(packWeights(o.ref, f, small.data(), small.size(), &error));
    EXPECT_NE(error.find("needs"), std::string::npos) << error;
  }
}

} // namespace
