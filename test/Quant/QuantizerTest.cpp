//===- QuantizerTest.cpp - formats, packing, error bounds, encodings ----===//
//
// The reference quantizer against what each format promises: store/load
// round trips at odd shapes for every int width and group, the RTN error
// bound, scales that are fp16 values, an independent bit-by-bit packer,
// NF4's nearest level by brute force, FP8 E4M3 against a decoder written
// from the format's definition. (test_quantizer_vs_numpy.py checks the
// same code against numpy and ml_dtypes.)
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/QuantFormat.h"
#include "qopt/Quant/Quantizer.h"

#include "qopt-rt/half.h"
#include "mlir/IR/MLIRContext.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace qopt;
using namespace qopt::quant;

namespace {

std::vector<float> randomMatrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.05f);
  std::vector<float> w(size_t(rows * cols));
  for (float &x : w)
    x = n(rng);
  // An outlier per row and an all-zero group, as real weights have.
  for (int64_t r = 0; r < rows; ++r)
    w[r * cols + (r * 7) % cols] *= 20.0f;
  if (cols >= 64)
    for (int64_t k = 0; k < 32; ++k)
      w[k] = 0.0f;
  return w;
}

Format intFormat(unsigned bits, int64_t group, bool sym) {
  Format f;
  f.kind = qllm::ElementKind::Int;
  f.bits = bits;
  f.groupSize = group;
  f.symmetric = sym;
  return f;
}

bool isF16Value(float x) { return qrt::f16ToF32(qrt::f32ToF16(x)) == x; }

} // namespace

TEST(QuantFormat, Groups) {
  Format f = intFormat(4, 32, false);
  EXPECT_EQ(f.numGroups(172), 6);
  EXPECT_EQ(f.groupBegin(5, 172), 160);
  EXPECT_EQ(f.groupEnd(5, 172), 172); // the short last group
  f.groupSize = -1;
  EXPECT_EQ(f.numGroups(172), 1);
  EXPECT_EQ(f.groupEnd(0, 172), 172);
  f.groupSize = 4096;
  EXPECT_EQ(f.numGroups(544), 1);
}

TEST(QuantFormat, BitsPerWeightCountsEverything) {
  // int4 g128 asym: 4 bits + fp16 scale + u8 zero per 128.
  EXPECT_DOUBLE_EQ(intFormat(4, 128, false).bitsPerWeight(4096, 4096), 4.0 + 24.0 / 128.0);
  EXPECT_DOUBLE_EQ(intFormat(4, 128, true).bitsPerWeight(4096, 4096), 4.0 + 16.0 / 128.0);
  EXPECT_DOUBLE_EQ(intFormat(8, -1, true).bitsPerWeight(256, 256), 8.0 + 16.0 / 256.0);
  // Padding: 3 bits x 172 = 516 bits -> 65 bytes per row; 6 groups.
  Format f3 = intFormat(3, 32, false);
  EXPECT_DOUBLE_EQ(f3.bitsPerWeight(7, 172), (7.0 * 65 + 7 * 6 * 3) * 8.0 / (7.0 * 172));
  // NF4 blocks of 64: 4 + 8/64 + 64 bits per 256 blocks.
  Format nf4;
  std::string err;
  ASSERT_TRUE(parseFormat("nf4", kDefaultGroupSize, false, &nf4, &err)) << err;
  EXPECT_EQ(nf4.groupSize, 64);
  EXPECT_DOUBLE_EQ(nf4.bitsPerWeight(4096, 4096), 4.0 + 8.0 / 64 + 64.0 / (64 * 256));
  Format fp8;
  ASSERT_TRUE(parseFormat("fp8", kDefaultGroupSize, false, &fp8, &err)) << err;
  EXPECT_DOUBLE_EQ(fp8.bitsPerWeight(1024, 2048), 8.0 + 32.0 / 2048);
}

TEST(QuantFormat, Parse) {
  Format f;
  std::string err;
  for (unsigned b = 2; b <= 8; ++b) {
    ASSERT_TRUE(parseFormat("int" + std::to_string(b), 64, true, &f, &err)) << err;
    EXPECT_EQ(f.bits, b);
    EXPECT_EQ(f.groupSize, 64);
    EXPECT_TRUE(f.symmetric);
  }
  ASSERT_TRUE(parseFormat("int3:g32:asym", 128, true, &f, &err)) << err;
  EXPECT_EQ(f.groupSize, 32);
  EXPECT_FALSE(f.symmetric);
  ASSERT_TRUE(parseFormat("int8:gchannel", 128, false, &f, &err)) << err;
  EXPECT_EQ(f.groupSize, -1);
  ASSERT_TRUE(parseFormat("nf4:g128", 128, false, &f, &err)) << err;
  EXPECT_EQ(f.groupSize, 128);
  ASSERT_TRUE(parseFormat("fp8_e4m3", -1, false, &f, &err)) << err;
  EXPECT_EQ(f.kind, qllm::ElementKind::FP8E4M3);
  // Round trip of the spelling.
  Format g;
  ASSERT_TRUE(parseFormat(intFormat(5, 96, true).spec(), 128, false, &g, &err)) << err;
  EXPECT_EQ(g.bits, 5u);
  EXPECT_EQ(g.groupSize, 96);
  EXPECT_TRUE(g.symmetric);

  for (const char *bad : {"int9", "int1", "int", "uint4", "q4_k", "int4:g0", "int4:g-2",
                          "int4:x", "nf4:gchannel", "nf4:asym", "fp8:g32", "fp8:asym"})
    EXPECT_FALSE(parseFormat(bad, 128, false, &f, &err)) << bad;
  EXPECT_FALSE(parseFormat("int4", 0, false, &f, &err));
  EXPECT_NE(err.find("group size"), std::string::npos) << err;
  EXPECT_FALSE(parseFormat("int4", -2, false, &f, &err));
  EXPECT_FALSE(parseFormat("nf4", -1, false, &f, &err));
  EXPECT_FALSE(parseFormat("fp8", 64, false, &f, &err));
}

TEST(QuantFormat, AttrRoundTrip) {
  mlir::MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect>();
  for (Format f : {intFormat(3, 32, false), intFormat(8, -1, true)}) {
    qllm::QuantAttr a = toAttr(&ctx, f);
    Format back = fromAttr(a);
    EXPECT_EQ(back.bits, f.bits);
    EXPECT_EQ(back.groupSize, f.groupSize);
    EXPECT_EQ(back.symmetric, f.symmetric);
    EXPECT_EQ(bool(a.getZeroType()), !f.symmetric);
    EXPECT_TRUE(a.getScaleType().isF16());
    EXPECT_EQ(a.getLayout().getValue(), kPackedLayout);
  }
}

TEST(Quantizer, GroupParamsRoundScaleToF16First) {
  std::vector<float> x = {-0.0123f, 0.0377f, 0.0031f, -0.0301f, 0.0219f};
  for (unsigned bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true}) {
      float s, z;
      groupParams(x.data(), int64_t(x.size()), intFormat(bits, 128, sym), 1.0f, &s, &z);
      EXPECT_TRUE(isF16Value(s)) << s;
      EXPECT_GT(s, 0);
      EXPECT_EQ(z, std::nearbyint(z));
      if (!sym) // the zero is computed from the rounded scale
        EXPECT_EQ(z, std::clamp(std::nearbyint(0.0301f / s), 0.0f, float((1 << bits) - 1)));
    }
  // All-zero group: a usable scale, zeros stay exact.
  std::vector<float> zero(32, 0.0f);
  float s, z;
  groupParams(zero.data(), 32, intFormat(4, 32, false), 1.0f, &s, &z);
  EXPECT_GT(s, 0);
  EXPECT_EQ(dequantizeValue(quantizeValue(0.0f, s, z, intFormat(4, 32, false)), s, z,
                            intFormat(4, 32, false)),
            0.0f);
}

/// Every int width, group and symmetry at odd shapes: store, load,
/// dequantize, and the RTN error bound.
TEST(Quantizer, IntRoundTripsAndErrorBound) {
  mlir::MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect>();
  uint32_t seed = 1;
  for (int64_t rows : {1, 7, 33})
    for (int64_t cols : {172, 544, 4096}) {
      if (rows == 33 && cols == 4096)
        continue; // enough coverage, keeps the test quick
      std::vector<float> w = randomMatrix(rows, cols, seed++);
      for (unsigned bits = 2; bits <= 8; ++bits)
        for (int64_t group : {32, 64, 128, -1, 100})
          for (bool sym : {false, true}) {
            Format f = intFormat(bits, group, sym);
            SCOPED_TRACE(f.str() + " [" + std::to_string(rows) + ", " + std::to_string(cols) +
                         "]");
            QuantizedMatrix q = quantizeRTN(w.data(), rows, cols, f);
            const int64_t groups = f.numGroups(cols);
            ASSERT_EQ(int64_t(q.scales.size()), rows * groups);
            ASSERT_EQ(q.zeros.size(), sym ? 0u : size_t(rows * groups));
            std::vector<float> deq = dequantize(q);
            const float qmax = float((1 << bits) - 1);
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t g = 0; g < groups; ++g) {
                float s = q.scales[r * groups + g];
                float z = sym ? float(1 << (bits - 1)) : q.zeros[r * groups + g];
                ASSERT_TRUE(isF16Value(s));
                for (int64_t k = f.groupBegin(g, cols); k < f.groupEnd(g, cols); ++k) {
                  float x = w[r * cols + k], err = std::fabs(x - deq[r * cols + k]);
                  float ideal = std::nearbyint(x / s) + z;
                  if (ideal >= 0 && ideal <= qmax)
                    ASSERT_LE(err, 0.5f * s * (1 + 1e-5f)) << x;
                  else // clamped at the range's edge: at most one more step
                    ASSERT_LE(err, 1.0f * s * (1 + 1e-3f)) << x;
                }
              }
            WeightStore store;
            std::string err;
            ASSERT_TRUE(storeQuantized(store, "w", q, &err)) << err;
            QuantizedMatrix back;
            ASSERT_TRUE(loadQuantized(store, "w", toAttr(&ctx, f), rows, cols, &back, &err))
                << err;
            ASSERT_EQ(back.codes, q.codes);
            ASSERT_EQ(back.scales, q.scales);
            ASSERT_EQ(back.zeros, q.zeros);
            ASSERT_EQ(dequantize(back), deq);
          }
    }
}

/// The packed layout, checked against a bit-by-bit writer.
TEST(Quantizer, PackingIsLsbFirstPerRow) {
  std::mt19937 rng(7);
  for (unsigned bits = 2; bits <= 8; ++bits)
    for (int64_t cols : {1, 5, 13, 172}) {
      const int64_t rows = 3;
      QuantizedMatrix q;
      q.rows = rows;
      q.cols = cols;
      q.format = intFormat(bits, -1, true);
      q.codes.resize(size_t(rows * cols));
      for (uint8_t &c : q.codes)
        c = uint8_t(rng() & ((1u << bits) - 1));
      q.scales.assign(size_t(rows), 1.0f);
      WeightStore store;
      std::string err;
      ASSERT_TRUE(storeQuantized(store, "w", q, &err)) << err;
      const WeightEntry *e = store.find("w.qweight");
      ASSERT_NE(e, nullptr);
      const int64_t rowBytes = (cols * bits + 7) / 8;
      ASSERT_EQ(e->shape, (std::vector<int64_t>{rows, rowBytes}));
      std::vector<uint8_t> expect(size_t(rows * rowBytes), 0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < cols; ++k)
          for (unsigned j = 0; j < bits; ++j)
            if ((q.codes[r * cols + k] >> j) & 1) {
              int64_t bit = k * bits + j;
              expect[r * rowBytes + bit / 8] |= uint8_t(1u << (bit % 8));
            }
      ASSERT_EQ(std::vector<uint8_t>(e->data, e->data + e->nbytes), expect)
          << bits << " bits, " << cols << " cols";
    }
}

TEST(Quantizer, NF4NearestLevel) {
  for (int i = 0; i < 15; ++i)
    EXPECT_LT(kNF4Levels[i], kNF4Levels[i + 1]);
  EXPECT_EQ(kNF4Levels[7], 0.0f);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.2f, 1.2f);
  for (int t = 0; t < 20000; ++t) {
    float x = u(rng);
    int best = 0;
    for (int i = 1; i < 16; ++i)
      if (std::fabs(x - kNF4Levels[i]) < std::fabs(x - kNF4Levels[best]))
        best = i;
    ASSERT_EQ(nf4Encode(x), best) << x;
  }
}

TEST(Quantizer, NF4DoubleQuantizedRoundTrip) {
  mlir::MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect>();
  for (int64_t cols : {172, 544, 4096}) {
    const int64_t rows = 33;
    std::vector<float> w = randomMatrix(rows, cols, 11);
    Format f;
    std::string err;
    ASSERT_TRUE(parseFormat("nf4", kDefaultGroupSize, false, &f, &err));
    QuantizedMatrix q = quantizeRTN(w.data(), rows, cols, f);
    const int64_t groups = f.numGroups(cols);
    // The scales are the double-quantized absmax: offset + code * step.
    ASSERT_EQ(int64_t(q.absmaxCodes.size()), rows * groups);
    for (int64_t b = 0; b < rows * groups; ++b) {
      int64_t c = b / kNF4AbsmaxChunk;
      ASSERT_EQ(q.scales[b], q.absmaxChunks[2 * c] + q.absmaxCodes[b] * q.absmaxChunks[2 * c + 1]);
    }
    std::vector<float> deq = dequantize(q);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        float amax = 0, s = q.scales[r * groups + g];
        for (int64_t k = f.groupBegin(g, cols); k < f.groupEnd(g, cols); ++k)
          amax = std::max(amax, std::fabs(w[r * cols + k]));
        // Double quantization moves the absmax by at most half a step.
        int64_t c = (r * groups + g) / kNF4AbsmaxChunk;
        ASSERT_LE(std::fabs(s - amax), 0.5f * q.absmaxChunks[2 * c + 1] * (1 + 1e-4f) + 1e-7f);
        for (int64_t k = f.groupBegin(g, cols); k < f.groupEnd(g, cols); ++k) {
          // Half of NF4's widest gap (between -1 and -0.696), plus the
          // absmax error, bounds the error.
          float x = w[r * cols + k];
          ASSERT_LE(std::fabs(x - deq[r * cols + k]),
                    0.1520f * s + std::fabs(s - amax) + 1e-6f);
        }
      }
    WeightStore store;
    ASSERT_TRUE(storeQuantized(store, "w", q, &err)) << err;
    EXPECT_FALSE(store.contains("w.scales"));
    QuantizedMatrix back;
    ASSERT_TRUE(loadQuantized(store, "w", toAttr(&ctx, f), rows, cols, &back, &err)) << err;
    ASSERT_EQ(back.codes, q.codes);
    ASSERT_EQ(dequantize(back), deq);
  }
}

/// E4M3 (fn) from its definition: 1 sign, 4 exponent bits (bias 7), 3
/// mantissa bits; exponent 0 is subnormal; S.1111.111 is NaN; no inf.
static float e4m3Reference(uint8_t b) {
  int e = (b >> 3) & 15, m = b & 7;
  float sign = (b & 0x80) ? -1.0f : 1.0f;
  if (e == 15 && m == 7)
    return NAN;
  if (e == 0)
    return sign * float(m) / 8.0f * std::pow(2.0f, -6.0f);
  return sign * (1.0f + float(m) / 8.0f) * std::pow(2.0f, float(e - 7));
}

TEST(Quantizer, FP8E4M3Encoding) {
  for (int c = 0; c < 256; ++c) {
    float ref = e4m3Reference(uint8_t(c));
    float dec = fp8e4m3Decode(uint8_t(c));
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(dec));
      continue;
    }
    EXPECT_EQ(dec, ref) << c;
    EXPECT_EQ(fp8e4m3Encode(ref), uint8_t(c)) << c; // exact values round-trip, -0 too
  }
  EXPECT_EQ(fp8e4m3Decode(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3Encode(1000.0f), 0x7e);
  EXPECT_EQ(fp8e4m3Encode(-449.0f), 0xfe);
  EXPECT_EQ(fp8e4m3Encode(INFINITY), 0x7e);
  // Midpoints go to the even mantissa: 1.0625 between 1.0 (m=0) and 1.125.
  EXPECT_EQ(fp8e4m3Encode(1.0625f), 0x38);
  EXPECT_EQ(fp8e4m3Encode(1.1875f), 0x3a); // between 1.125 (m=1) and 1.25 (m=2)
  // Subnormal midpoint 2^-10 (between 0 and 2^-9) goes to 0.
  EXPECT_EQ(fp8e4m3Encode(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(fp8e4m3Encode(std::ldexp(3.0f, -10)), 0x02);
  // Nearest by brute force on random values.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-500.0f, 500.0f);
  for (int t = 0; t < 20000; ++t) {
    float x = u(rng) * std::pow(2.0f, -float(rng() % 16));
    uint8_t code = fp8e4m3Encode(x);
    float got = fp8e4m3Decode(code), best = INFINITY;
    for (int c = 0; c < 256; ++c) {
      float v = e4m3Reference(uint8_t(c));
      if (!std::isnan(v))
        best = std::min(best, std::fabs(v - std::clamp(x, -448.0f, 448.0f)));
    }
    ASSERT_EQ(std::fabs(got - std::clamp(x, -448.0f, 448.0f)), best) << x;
  }
}

TEST(Quantizer, FP8PerChannel) {
  mlir::MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect>();
  std::vector<float> w = randomMatrix(7, 544, 2);
  Format f;
  std::string err;
  ASSERT_TRUE(parseFormat("fp8", kDefaultGroupSize, false, &f, &err));
  QuantizedMatrix q = quantizeRTN(w.data(), 7, 544, f);
  ASSERT_EQ(q.scales.size(), 7u);
  std::vector<float> deq = dequantize(q);
  for (int64_t r = 0; r < 7; ++r) {
    float amax = 0;
    for (int64_t k = 0; k < 544; ++k)
      amax = std::max(amax, std::fabs(w[r * 544 + k]));
    EXPECT_FLOAT_EQ(q.scales[r] * 448.0f, amax);
    for (int64_t k = 0; k < 544; ++k) // 3 mantissa bits: relative error <= 2^-4
      ASSERT_LE(std::fabs(w[r * 544 + k] - deq[r * 544 + k]),
                std::fabs(w[r * 544 + k]) / 16 + q.scales[r] * std::ldexp(1.0f, -10));
  }
  WeightStore store;
  ASSERT_TRUE(storeQuantized(store, "w", q, &err)) << err;
  EXPECT_EQ(store.find("w.scales")->dtype, DType::F32);
  QuantizedMatrix back;
  ASSERT_TRUE(loadQuantized(store, "w", toAttr(&ctx, f), 7, 544, &back, &err)) << err;
  EXPECT_EQ(dequantize(back), deq);
}

TEST(Quantizer, LoadRejectsBadTensors) {
  mlir::MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect>();
  std::vector<float> w = randomMatrix(7, 172, 4);
  Format f = intFormat(4, 32, false);
  QuantizedMatrix q = quantizeRTN(w.data(), 7, 172, f), back;
  WeightStore store;
  std::string err;
  ASSERT_TRUE(storeQuantized(store, "w", q, &err)) << err;
  // Quantizing twice under one name is refused, not silently overwritten.
  EXPECT_FALSE(storeQuantized(store, "w", q, &err));
  // Shape that disagrees with the tensors.
  EXPECT_FALSE(loadQuantized(store, "w", toAttr(&ctx, f), 7, 200, &back, &err));
  EXPECT_NE(err.find("w.qweight"), std::string::npos) << err;
  // A different group size: scales have the wrong shape.
  EXPECT_FALSE(loadQuantized(store, "w", toAttr(&ctx, intFormat(4, 64, false)), 7, 172, &back,
                             &err));
  EXPECT_NE(err.find("w.scales"), std::string::npos) << err;
  // Missing zeros.
  store.erase("w.zeros");
  EXPECT_FALSE(loadQuantized(store, "w", toAttr(&ctx, f), 7, 172, &back, &err));
  EXPECT_NE(err.find("w.zeros"), std::string::npos) << err;
  // A zero point outside the code range.
  std::vector<uint8_t> bad(7 * 6, 200);
  ASSERT_TRUE(store.addOwned("w.zeros", DType::U8, {7, 6}, bad, &err));
  EXPECT_FALSE(loadQuantized(store, "w", toAttr(&ctx, f), 7, 172, &back, &err));
}
