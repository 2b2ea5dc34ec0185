//===- RowKernelsTest.cpp - RMSNorm, SwiGLU, embedding vs double references ===//
//
// Each kernel against the CPU executor's formula evaluated in double on the
// same bf16 inputs, at odd row counts; outputs poisoned with NaN first.
//
//===----------------------------------------------------------------------===//
#include "AttentionTestSupport.h"

#include "qopt-cuda/Elementwise.h"

#include <cmath>
#include <random>

namespace qcuda::test {
namespace {

std::vector<float> bf16Values(size_t n, std::mt19937 &rng, float amp) {
  std::uniform_real_distribution<float> d(-amp, amp);
  std::vector<float> v(n);
  for (float &x : v)
    x = qrt::bf16ToF32(qrt::f32ToBf16(d(rng)));
  return v;
}

TEST(RmsNormCuda, MatchesReferenceWithAndWithoutResidual) {
  QCUDA_REQUIRE_DEVICE();
  std::mt19937 rng(7);
  for (int64_t rows : {1, 7, 33, 257})
    for (int64_t dim : {64, 576, 4104})
      for (bool withResidual : {false, true}) {
        SCOPED_TRACE("rows " + std::to_string(rows) + " dim " + std::to_string(dim) +
                     (withResidual ? " + residual" : ""));
        const std::vector<float> x = bf16Values(size_t(rows * dim), rng, 4.0f);
        const std::vector<float> res = bf16Values(size_t(rows * dim), rng, 1.0f);
        const std::vector<float> w = bf16Values(size_t(dim), rng, 2.0f);
        DeviceBuffer<uint16_t> dx(toBf16(x)), dres(toBf16(res));
        DeviceBuffer<float> dw(w);
        DeviceBuffer<uint16_t> dout(std::vector<uint16_t>(size_t(rows * dim), kBf16NaN));
        const float eps = 1e-5f;
        std::string err;
        ASSERT_TRUE(rmsNorm(dx.get(), withResidual ? dres.get() : nullptr, dw.get(), rows, dim, eps,
                            dout.get(), nullptr, &err))
            << err;
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<uint16_t> gotX = dx.download(), out = dout.download();
        for (int64_t r = 0; r < rows; ++r) {
          std::vector<double> stream(dim);
          double ss = 0;
          for (int64_t i = 0; i < dim; ++i) {
            const size_t e = size_t(r * dim + i);
            // The residual stream is stored as bf16, and normed as stored.
            stream[i] = withResidual ? qrt::bf16ToF32(qrt::f32ToBf16(x[e] + res[e])) : x[e];
            ASSERT_EQ(gotX[e], qrt::f32ToBf16(float(stream[i]))) << "x row " << r << " i " << i;
            ss += stream[i] * stream[i];
          }
          const double inv = 1.0 / std::sqrt(ss / double(dim) + eps);
          for (int64_t i = 0; i < dim; ++i) {
            const double want = w[i] * stream[i] * inv;
            const double got = qrt::bf16ToF32(out[size_t(r * dim + i)]);
            ASSERT_LE(std::fabs(got - want), std::fabs(want) * 0x1p-8 + 1e-5 * std::sqrt(double(dim)))
                << "row " << r << " i " << i;
          }
        }
      }
}

TEST(SwiGluCuda, MatchesReference) {
  QCUDA_REQUIRE_DEVICE();
  std::mt19937 rng(8);
  for (int64_t rows : {1, 7, 33})
    for (int64_t inter : {192, 1416}) {
      SCOPED_TRACE("rows " + std::to_string(rows) + " inter " + std::to_string(inter));
      const std::vector<float> gu = bf16Values(size_t(rows * 2 * inter), rng, 6.0f);
      DeviceBuffer<uint16_t> dgu(toBf16(gu));
      DeviceBuffer<uint16_t> dout(std::vector<uint16_t>(size_t(rows * inter), kBf16NaN));
      std::string err;
      ASSERT_TRUE(swiglu(dgu.get(), rows, inter, dout.get(), nullptr, &err)) << err;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<uint16_t> out = dout.download();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < inter; ++i) {
          const double g = gu[size_t(r * 2 * inter + i)], u = gu[size_t(r * 2 * inter + inter + i)];
          const double want = g / (1.0 + std::exp(-g)) * u;
          const double got = qrt::bf16ToF32(out[size_t(r * inter + i)]);
          ASSERT_LE(std::fabs(got - want), std::fabs(want) * 0x1p-8 + 1e-6) << "row " << r << " i " << i;
        }
    }
}

TEST(EmbeddingCuda, GathersRowsOfBf16AndF32Tables) {
  QCUDA_REQUIRE_DEVICE();
  std::mt19937 rng(9);
  const int64_t vocab = 1000, dim = 200;
  const std::vector<int32_t> ids = {0, 999, 17, 17, 512, -1, 1000};
  const std::vector<float> table = bf16Values(size_t(vocab * dim), rng, 1.0f);
  DeviceBuffer<int32_t> dids(ids);
  DeviceBuffer<uint16_t> dbf(toBf16(table));
  DeviceBuffer<float> df(table);
  for (EmbeddingType type : {EmbeddingType::BF16, EmbeddingType::F32}) {
    DeviceBuffer<uint16_t> dout(std::vector<uint16_t>(ids.size() * dim, kBf16NaN));
    std::string err;
    const void *t = type == EmbeddingType::BF16 ? static_cast<const void *>(dbf.get()) : df.get();
    ASSERT_TRUE(embeddingGather(t, type, vocab, dim, dids.get(), int64_t(ids.size()), dout.get(),
                                nullptr, &err))
        << err;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<uint16_t> out = dout.download();
    for (size_t k = 0; k < ids.size(); ++k)
      for (int64_t i = 0; i < dim; ++i) {
        const bool inRange = ids[k] >= 0 && ids[k] < vocab;
        const float want = inRange ? table[size_t(ids[k] * dim + i)] : 0.0f;
        ASSERT_EQ(out[k * dim + i], qrt::f32ToBf16(want)) << "token " << k << " i " << i;
      }
  }
}

TEST(RowKernelsCuda, RejectBadShapes) {
  std::string err;
  EXPECT_FALSE(rmsNorm(nullptr, nullptr, nullptr, 3, 100, 1e-5f, nullptr, nullptr, &err));
  EXPECT_NE(err.find("dim 100"), std::string::npos) << err;
  EXPECT_FALSE(swiglu(nullptr, 3, 12, nullptr, nullptr, &err));
  EXPECT_NE(err.find("12"), std::string::npos) << err;
  EXPECT_FALSE(embeddingGather(nullptr, EmbeddingType::BF16, 0, 8, nullptr, 1, nullptr, nullptr, &err));
  EXPECT_NE(err.find("vocab 0"), std::string::npos) << err;
}

} // namespace
} // namespace qcuda::test
