//===- FusedActQuantTest.cpp - RMSNorm / SwiGLU with 8-bit outputs -------===//
//
// ActQuant.h's producers against a CPU reference at odd shapes (rows 1, 7,
// 33, 257; widths multiples of 64 but not of 128), INT8 and FP8 E4M3, per
// token and static. The reference emulates the kernel's fp32 arithmetic
// operation for operation (for RMSNorm: the per-thread fmaf chains, the
// warp shuffle tree and the warp order of the sum of squares), so codes
// must be equal; a code may be one step off only where the reference value
// v / scale lies within 1e-6 (relative) of a rounding boundary, and those
// are counted. SwiGLU's expf is the one operation whose device and host
// results may differ (by an ulp or two), which is what that allowance is
// for. Scales within 1 ulp. Outputs are poisoned with values the kernels
// never write (code 0x80 for INT8, the NaN 0x7f for E4M3; scale 0x7f7f7f7f).
// Rows 3 (all zero) and 5 (holding a NaN) check the special rows.
//
//===----------------------------------------------------------------------===//
#include "CudaTestUtil.h"
#include "E4M3Ref.h"

#include "qopt-cuda/ActQuant.h"
#include "qopt-rt/half.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

namespace {

using qcuda::ActQuantOut;
using qcuda::ActScaleMode;
using qcuda::Q8Type;
using qcuda_test::DeviceBuffer;
using qcuda_test::e4m3Decode;
using qcuda_test::e4m3Encode;

constexpr int kThreads = 256; // FusedActQuant.cu's block size
constexpr uint16_t kBf16NaN = 0x7fc0;

/// RMSNorm's fp32 row values as the kernel computes them; x updated in
/// place (+= residual, rounded to bf16) when residual is non-empty.
std::vector<float> rmsNormValues(std::vector<uint16_t> &x, const std::vector<uint16_t> &residual,
                                 const std::vector<float> &weight, int64_t rows, int64_t dim,
                                 float eps) {
  const int64_t vecs = dim / 8;
  std::vector<float> v(size_t(rows * dim));
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t *xr = x.data() + r * dim;
    if (!residual.empty())
      for (int64_t k = 0; k < dim; ++k)
        xr[k] = qrt::f32ToBf16(qrt::bf16ToF32(xr[k]) + qrt::bf16ToF32(residual[size_t(r * dim + k)]));
    float lane[kThreads] = {};
    for (int t = 0; t < kThreads; ++t)
      for (int64_t i = t; i < vecs; i += kThreads)
        for (int e = 0; e < 8; ++e) {
          const float f = qrt::bf16ToF32(xr[i * 8 + e]);
          lane[t] = std::fma(f, f, lane[t]);
        }
    for (int off = 16; off > 0; off /= 2) {
      float prev[kThreads];
      std::memcpy(prev, lane, sizeof(lane));
      for (int l = 0; l < kThreads; ++l)
        lane[l] = prev[l] + prev[l ^ off];
    }
    float total = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w)
      total += lane[w * 32];
    const float inv = 1.0f / std::sqrt(total / float(dim) + eps);
    for (int64_t k = 0; k < dim; ++k)
      v[size_t(r * dim + k)] = weight[size_t(k)] * (qrt::bf16ToF32(xr[k]) * inv);
  }
  return v;
}

/// SwiGLU's fp32 values (gate half first in each row of gu).
std::vector<float> swigluValues(const std::vector<uint16_t> &gu, int64_t rows, int64_t inter) {
  std::vector<float> v(size_t(rows * inter));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < inter; ++i) {
      const float g = qrt::bf16ToF32(gu[size_t(r * 2 * inter + i)]);
      const float u = qrt::bf16ToF32(gu[size_t(r * 2 * inter + inter + i)]);
      v[size_t(r * inter + i)] = g / (1.0f + std::exp(-g)) * u;
    }
  return v;
}

/// The scale ActQuant.h specifies for one row of values.
float refScale(const float *v, int64_t n, ActScaleMode mode, float staticScale, Q8Type t) {
  float amax = 0.f;
  bool bad = false;
  for (int64_t k = 0; k < n; ++k) {
    const float a = std::fabs(v[k]);
    amax = std::fmax(amax, a);
    bad = bad || (mode == ActScaleMode::kPerToken ? !std::isfinite(a) : std::isnan(v[k]));
  }
  if (bad)
    return NAN;
  if (mode == ActScaleMode::kStatic)
    return staticScale;
  return amax > 0.f ? amax / qcuda::q8Max(t) : 1.f;
}

uint8_t refCode(float y, Q8Type t) {
  if (t == Q8Type::kFp8E4M3)
    return e4m3Encode(y);
  return uint8_t(int8_t(std::fmin(std::fmax(std::nearbyint(y), -127.f), 127.f)));
}

/// Whether a code one step from the reference is excused: y = v / scale
/// within 1e-6 (relative) of the boundary between the two codes.
bool nearBoundary(float y, uint8_t got, uint8_t want, Q8Type t) {
  const double tol = 1e-6 * std::fabs(double(y));
  if (t == Q8Type::kInt8) {
    const int d = int(int8_t(got)) - int(int8_t(want));
    const double a = std::fabs(double(y));
    return (d == 1 || d == -1) && std::fabs(a - std::floor(a) - 0.5) <= tol;
  }
  const double g = e4m3Decode(got), w = e4m3Decode(want);
  return !std::isnan(g) && std::fabs(double(y) - (g + w) / 2) <= tol &&
         std::fabs(g - w) <= std::fabs(y) / 4; // neighbours: E4M3 steps are <= |y| / 4
}

int32_t floatBits(float f) {
  int32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

/// Checks the device's codes and scales against the reference of the
/// values v [rows, cols]; returns the number of excused codes.
int64_t expectQuantized(const std::vector<float> &v, int64_t rows, int64_t cols,
                        const ActQuantOut &o, const std::vector<uint8_t> &q,
                        const std::vector<float> &scales) {
  int64_t excused = 0, bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float *vr = v.data() + r * cols;
    const float want = refScale(vr, cols, o.mode, o.staticScale, o.type);
    const float got = scales[size_t(r)];
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "row " << r << " holds a NaN: scale " << got;
    } else {
      EXPECT_LE(std::abs(int64_t(floatBits(got)) - floatBits(want)), 1)
          << "scale of row " << r << ": " << got << ", reference " << want;
    }
    for (int64_t k = 0; k < cols; ++k) {
      const uint8_t g = q[size_t(r * cols + k)];
      if (std::isnan(want)) {
        if (g != 0 && bad++ < 5)
          ADD_FAILURE() << "code [" << r << ", " << k << "] of a NaN row is " << int(g);
        continue;
      }
      const float y = vr[k] / want;
      const uint8_t w = refCode(y, o.type);
      if (g == w)
        continue;
      if (nearBoundary(y, g, w, o.type))
        ++excused;
      else if (bad++ < 5)
        ADD_FAILURE() << "code [" << r << ", " << k << "] = 0x" << std::hex << int(g)
                      << ", reference 0x" << int(w) << std::dec << " (v / scale = " << y << ")";
    }
  }
  EXPECT_EQ(bad, 0);
  return excused;
}

std::vector<uint16_t> randomBf16(size_t n, float sigma, std::mt19937 &rng) {
  std::normal_distribution<float> nd(0.f, sigma);
  std::vector<uint16_t> v(n);
  for (auto &b : v)
    b = qrt::f32ToBf16(nd(rng));
  return v;
}

/// Rows 3 and 5 of a [rows, cols] bf16 matrix (when present): all zero,
/// and one NaN.
void addSpecialRows(std::vector<uint16_t> &m, int64_t rows, int64_t cols) {
  if (rows > 3)
    std::fill(m.begin() + 3 * cols, m.begin() + 4 * cols, uint16_t(0));
  if (rows > 5)
    m[size_t(5 * cols + 7)] = kBf16NaN;
}

/// A static scale that clamps the largest values of row 0: 0.7 of its
/// per-token scale.
float staticScaleFor(const std::vector<float> &v, int64_t cols, Q8Type t) {
  return 0.7f * refScale(v.data(), cols, ActScaleMode::kPerToken, 0.f, t);
}

struct Mode {
  Q8Type type;
  ActScaleMode scale;
};

std::string modeName(const testing::TestParamInfo<Mode> &i) {
  return std::string(i.param.type == Q8Type::kInt8 ? "int8" : "fp8e4m3") +
         (i.param.scale == ActScaleMode::kPerToken ? "_per_token" : "_static");
}

class FusedActQuantTest : public testing::TestWithParam<Mode> {};

/// Outputs for rows x cols codes, poisoned.
struct QuantBuffers {
  DeviceBuffer q, scales;
  QuantBuffers(int64_t rows, int64_t cols, Q8Type t)
      : q(size_t(rows * cols)), scales(size_t(rows) * 4) {
    EXPECT_EQ(cudaMemset(q.get(), t == Q8Type::kInt8 ? 0x80 : 0x7f, q.bytes()), cudaSuccess);
    EXPECT_EQ(cudaMemset(scales.get(), 0x7f, scales.bytes()), cudaSuccess);
  }
  ActQuantOut out(const Mode &m, float staticScale) {
    ActQuantOut o;
    o.type = m.type;
    o.mode = m.scale;
    o.staticScale = staticScale;
    o.q = q.get();
    o.scales = scales.as<float>();
    return o;
  }
};

TEST_P(FusedActQuantTest, RmsNormMatchesTheCpu) {
  QCUDA_SKIP_WITHOUT_DEVICE();
  const Mode mode = GetParam();
  const float eps = 1e-5f;
  uint32_t seed = 11;
  int64_t excused = 0;
  for (int64_t rows : {1, 7, 33, 257})
    for (int64_t dim : {192, 2112})
      for (bool withResidual : {false, true}) {
        SCOPED_TRACE("rows=" + std::to_string(rows) + " dim=" + std::to_string(dim) +
                     (withResidual ? " +residual" : ""));
        std::mt19937 rng(seed++);
        std::vector<uint16_t> x = randomBf16(size_t(rows * dim), 1.f, rng);
        for (int64_t r = 0; r < rows; ++r) // an outlier channel, as SmoothQuant sees
          x[size_t(r * dim + 5)] = qrt::f32ToBf16(qrt::bf16ToF32(x[size_t(r * dim + 5)]) * 20.f);
        std::vector<uint16_t> residual;
        if (withResidual) {
          residual = randomBf16(x.size(), 0.5f, rng);
          addSpecialRows(residual, rows, dim);
          if (rows > 3) // x + residual all zero in row 3
            for (int64_t k = 0; k < dim; ++k)
              x[size_t(3 * dim + k)] = residual[size_t(3 * dim + k)] ^ 0x8000;
        } else {
          addSpecialRows(x, rows, dim);
        }
        std::vector<float> weight(static_cast<size_t>(dim));
        std::uniform_real_distribution<float> ud(0.5f, 1.5f);
        for (auto &w : weight)
          w = ud(rng);

        DeviceBuffer dX(x.size() * 2), dRes(residual.size() * 2 + 2), dW(weight.size() * 4);
        dX.upload(x);
        if (withResidual) {
          ASSERT_EQ(cudaMemcpy(dRes.get(), residual.data(), residual.size() * 2,
                               cudaMemcpyHostToDevice),
                    cudaSuccess);
        }
        dW.upload(weight);
        std::vector<uint16_t> xRef = x;
        const std::vector<float> v = rmsNormValues(xRef, residual, weight, rows, dim, eps);
        QuantBuffers out(rows, dim, mode.type);
        const ActQuantOut o = out.out(mode, staticScaleFor(v, dim, mode.type));
        std::string error;
        ASSERT_TRUE(qcuda::rmsNormQuant(dX.get(), withResidual ? dRes.get() : nullptr,
                                        dW.as<float>(), rows, dim, eps, o, nullptr, &error))
            << error;
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        if (withResidual) {
          const auto xGot = dX.download<uint16_t>();
          int64_t diffs = 0;
          for (size_t i = 0; i < xGot.size(); ++i)
            diffs += xGot[i] != xRef[i] && !(std::isnan(qrt::bf16ToF32(xGot[i])) &&
                                             std::isnan(qrt::bf16ToF32(xRef[i])));
          EXPECT_EQ(diffs, 0) << "residual stream elements that differ from x + residual";
        }
        excused += expectQuantized(v, rows, dim, o, out.q.download<uint8_t>(),
                                   out.scales.download<float>());
      }
  std::printf("rms_norm_quant: %lld codes one step off at a rounding boundary\n",
              static_cast<long long>(excused));
}

TEST_P(FusedActQuantTest, SwigluMatchesTheCpu) {
  QCUDA_SKIP_WITHOUT_DEVICE();
  const Mode mode = GetParam();
  uint32_t seed = 101;
  int64_t excused = 0;
  for (int64_t rows : {1, 7, 33, 257})
    for (int64_t inter : {320, 1472}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " inter=" + std::to_string(inter));
      std::mt19937 rng(seed++);
      std::vector<uint16_t> gu = randomBf16(size_t(rows * 2 * inter), 2.f, rng);
      addSpecialRows(gu, rows, 2 * inter);
      DeviceBuffer dGu(gu.size() * 2);
      dGu.upload(gu);
      const std::vector<float> v = swigluValues(gu, rows, inter);
      QuantBuffers out(rows, inter, mode.type);
      const ActQuantOut o = out.out(mode, staticScaleFor(v, inter, mode.type));
      std::string error;
      ASSERT_TRUE(qcuda::swigluQuant(dGu.get(), rows, inter, o, nullptr, &error)) << error;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      excused += expectQuantized(v, rows, inter, o, out.q.download<uint8_t>(),
                                 out.scales.download<float>());
    }
  std::printf("swiglu_quant: %lld codes one step off at a rounding boundary\n",
              static_cast<long long>(excused));
}

TEST_P(FusedActQuantTest, QuantizeRowsMatchesTheCpu) {
  QCUDA_SKIP_WITHOUT_DEVICE();
  const Mode mode = GetParam();
  uint32_t seed = 201;
  int64_t excused = 0;
  for (int64_t rows : {1, 7, 33, 257})
    for (int64_t cols : {192, 4160}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      std::mt19937 rng(seed++);
      std::vector<uint16_t> x = randomBf16(size_t(rows * cols), 1.f, rng);
      addSpecialRows(x, rows, cols);
      std::vector<float> v(x.size());
      for (size_t i = 0; i < x.size(); ++i)
        v[i] = qrt::bf16ToF32(x[i]);
      DeviceBuffer dX(x.size() * 2);
      dX.upload(x);
      QuantBuffers out(rows, cols, mode.type);
      const ActQuantOut o = out.out(mode, staticScaleFor(v, cols, mode.type));
      std::string error;
      ASSERT_TRUE(qcuda::quantizeRows(dX.get(), rows, cols, o, nullptr, &error)) << error;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      excused += expectQuantized(v, rows, cols, o, out.q.download<uint8_t>(),
                                 out.scales.download<float>());
    }
  std::printf("quantize_rows: %lld codes one step off at a rounding boundary\n",
              static_cast<long long>(excused));
}

INSTANTIATE_TEST_SUITE_P(Modes, FusedActQuantTest,
                         testing::Values(Mode{Q8Type::kInt8, ActScaleMode::kPerToken},
                                         Mode{Q8Type::kInt8, ActScaleMode::kStatic},
                                         Mode{Q8Type::kFp8E4M3, ActScaleMode::kPerToken},
                                         Mode{Q8Type::kFp8E4M3, ActScaleMode::kStatic}),
                         modeName);

// The reference's emulation of the kernel's reduction order against a
// plain RMSNorm in double: a wrong emulation would fail here too, GPU or not.
TEST(FusedActQuantReference, RmsNormEmulationIsAnRmsNorm) {
  std::mt19937 rng(3);
  for (int64_t dim : {192, 2112, 4096}) {
    std::vector<uint16_t> x = randomBf16(size_t(2 * dim), 1.f, rng);
    std::vector<uint16_t> residual = randomBf16(x.size(), 1.f, rng);
    std::vector<float> weight(static_cast<size_t>(dim), 1.25f);
    std::vector<uint16_t> updated = x;
    const std::vector<float> v = rmsNormValues(updated, residual, weight, 2, dim, 1e-5f);
    for (int64_t r = 0; r < 2; ++r) {
      double ss = 0;
      for (int64_t k = 0; k < dim; ++k) {
        const size_t i = size_t(r * dim + k);
        ASSERT_EQ(updated[i], qrt::f32ToBf16(qrt::bf16ToF32(x[i]) + qrt::bf16ToF32(residual[i])));
        ss += double(qrt::bf16ToF32(updated[i])) * qrt::bf16ToF32(updated[i]);
      }
      const double inv = 1.0 / std::sqrt(ss / double(dim) + 1e-5);
      for (int64_t k = 0; k < dim; ++k) {
        const size_t i = size_t(r * dim + k);
        const double want = 1.25 * qrt::bf16ToF32(updated[i]) * inv;
        ASSERT_NEAR(v[i], want, 1e-5 * std::fabs(want) + 1e-30) << "dim " << dim << " [" << r
                                                                  << ", " << k << "]";
      }
    }
  }
}

// Host-side checks: refused before any launch, so they run without a GPU.
TEST(FusedActQuantArgs, BadShapesAndScalesAreRefused) {
  std::string error;
  alignas(8) static uint8_t q[64];
  float s[1] = {0.f};
  ActQuantOut o;
  o.q = q;
  o.scales = s;
  EXPECT_FALSE(qcuda::rmsNormQuant(q, nullptr, s, 1, 100, 1e-5f, o, nullptr, &error));
  EXPECT_EQ(error, "rms_norm_quant: dim 100 must be a positive multiple of 8 (rows 1)");
  o.mode = ActScaleMode::kStatic;
  o.staticScale = 0.f;
  EXPECT_FALSE(qcuda::swigluQuant(q, 1, 64, o, nullptr, &error));
  EXPECT_NE(error.find("swiglu_quant: the static activation scale"), std::string::npos) << error;
  o.mode = ActScaleMode::kPerToken;
  o.q = q + 1;
  EXPECT_FALSE(qcuda::swigluQuant(q, 1, 64, o, nullptr, &error));
  EXPECT_EQ(error, "swiglu_quant: the code output is not 8-byte aligned");
  o.q = nullptr;
  EXPECT_FALSE(qcuda::rmsNormQuant(q, nullptr, s, 2, 64, 1e-5f, o, nullptr, &error));
  EXPECT_EQ(error, "rms_norm_quant: the code or scale output is null");
}

} // namespace
