//===- W8A8GemmTest.cpp - per-token quantization and INT8/FP8 GEMM -------===//
//
// The activation quantizer against a CPU quantizer of the same definition
// (scale = max|x| / qmax, q = x / scale rounded to nearest even), and the
// GEMM against the same quantized arithmetic on the CPU: exact integer sums
// for INT8, decoded E4M3 values summed in double for FP8 (with a tolerance
// for the FP8 tensor cores' narrow accumulator). The E4M3 codec is the
// tests' own (E4M3Ref.h).
//
//===----------------------------------------------------------------------===//
#include "CudaTestUtil.h"
#include "E4M3Ref.h"

#include "qopt-cuda/W8A8Gemm.h"
#include "qopt-rt/half.h"

#include <cmath>
#include <random>

namespace {

using qcuda::DType;
using qcuda::Q8Type;
using qcuda_test::DeviceBuffer;
using qcuda_test::e4m3Decode;
using qcuda_test::e4m3Encode;

int computeCapability() {
  int dev = 0, major = 0, minor = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major * 10 + minor;
}

/// CPU per-token quantization; codes as bytes.
void quantizeRef(const std::vector<uint16_t> &xBits, int64_t M, int64_t K, Q8Type t,
                 std::vector<uint8_t> *q, std::vector<float> *scales) {
  q->resize(size_t(M * K));
  scales->resize(size_t(M));
  for (int64_t m = 0; m < M; ++m) {
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k)
      amax = std::fmax(amax, std::fabs(qrt::bf16ToF32(xBits[size_t(m * K + k)])));
    const float s = amax > 0.f ? amax / qcuda::q8Max(t) : 1.f;
    (*scales)[size_t(m)] = s;
    for (int64_t k = 0; k < K; ++k) {
      const float v = qrt::bf16ToF32(xBits[size_t(m * K + k)]) / s;
      (*q)[size_t(m * K + k)] =
          t == Q8Type::kInt8 ? uint8_t(int8_t(std::fmin(std::fmax(std::nearbyint(v), -127.f), 127.f)))
                             : e4m3Encode(v);
    }
  }
}

double codeValue(uint8_t b, Q8Type t) { return t == Q8Type::kInt8 ? double(int8_t(b)) : e4m3Decode(b); }

class W8A8Test : public testing::TestWithParam<Q8Type> {};

TEST_P(W8A8Test, QuantizeAndGemmMatchTheCpu) {
  QCUDA_SKIP_WITHOUT_DEVICE();
  const Q8Type t = GetParam();
  if (t == Q8Type::kFp8E4M3 && computeCapability() < 89)
    GTEST_SKIP() << "FP8 needs sm_89 or newer; device is sm_" << computeCapability();
  qcuda::W8A8Gemm gemm;
  std::string error;
  ASSERT_TRUE(gemm.init(&error)) << error;

  const int64_t shapes[][2] = {{192, 320}, {576, 192}, {320, 576}};
  uint32_t seed = 5;
  for (int64_t M : {1, 7, 33, 257})
    for (const auto &nk : shapes) {
      const int64_t N = nk[0], K = nk[1];
      SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
      std::mt19937 rng(seed++);
      std::normal_distribution<float> nd(0.f, 1.f);
      std::vector<uint16_t> xBits(size_t(M * K));
      for (auto &b : xBits)
        b = qrt::f32ToBf16(nd(rng));
      std::vector<uint8_t> wq(size_t(N * K));
      std::vector<float> ws(static_cast<size_t>(N)), bias(static_cast<size_t>(N));
      for (auto &b : wq)
        b = t == Q8Type::kInt8 ? uint8_t(int8_t(int(rng() % 255) - 127)) : e4m3Encode(nd(rng) * 100.f);
      for (auto &s : ws)
        s = 0.001f + float(rng() % 1000) * 1e-5f;
      for (auto &b : bias)
        b = nd(rng);

      DeviceBuffer dX(xBits.size() * 2), dXq(size_t(M * K)), dXs(size_t(M) * 4),
          dW(wq.size()), dWs(ws.size() * 4), dBias(bias.size() * 4), dAcc(size_t(M * N) * 4),
          dY(size_t(M * N) * 4);
      dX.upload(xBits);
      dW.upload(wq);
      dWs.upload(ws);
      dBias.upload(bias);
      dXq.poison();
      dXs.poison();
      dY.poison();
      ASSERT_TRUE(qcuda::quantizePerToken(dX.get(), DType::kBF16, M, K, t, dXq.get(),
                                          dXs.as<float>(), nullptr, &error))
          << error;
      qcuda::W8A8GemmArgs a;
      a.type = t;
      a.xq = dXq.get();
      a.xScales = dXs.as<float>();
      a.wq = dW.get();
      a.wScales = dWs.as<float>();
      a.bias = dBias.as<float>();
      a.y = dY.get();
      a.yType = DType::kF32;
      a.M = M, a.N = N, a.K = K;
      a.accum = dAcc.get();
      ASSERT_TRUE(gemm.run(a, nullptr, &error)) << error;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

      std::vector<uint8_t> qRef;
      std::vector<float> sRef;
      quantizeRef(xBits, M, K, t, &qRef, &sRef);
      const auto qGot = dXq.download<uint8_t>();
      const auto sGot = dXs.download<float>();
      for (int64_t m = 0; m < M; ++m)
        ASSERT_EQ(sGot[size_t(m)], sRef[size_t(m)]) << "scale of token " << m;
      int64_t codeDiffs = 0;
      for (size_t i = 0; i < qRef.size(); ++i)
        codeDiffs += qGot[i] != qRef[i];
      EXPECT_EQ(codeDiffs, 0) << "quantized activations that differ from the CPU";

      // The GEMM against the GPU's own codes, so its check does not depend
      // on the quantizer's.
      const auto y = dY.download<float>();
      int64_t bad = 0;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double dot = 0, sumAbs = 0;
          for (int64_t k = 0; k < K; ++k) {
            const double p = codeValue(qGot[size_t(m * K + k)], t) * codeValue(wq[size_t(n * K + k)], t);
            dot += p;
            sumAbs += std::fabs(p);
          }
          const double scale = double(sGot[size_t(m)]) * ws[size_t(n)];
          const double ref = dot * scale + bias[size_t(n)];
          // INT8 sums exactly in int32. FP8 tensor cores (sm_89/sm_90) add
          // in a narrower accumulator (about 13-14 mantissa bits, cuBLASLt
          // promoting to fp32 only periodically), so FP8 gets 2^-8 of the
          // sum of |products|: 5x what a 13-bit truncating accumulator
          // without any promotion reaches at these K, and still 10x below
          // the error of a wrong layout or scale (~|dot|, about
          // sqrt(K) / K of that sum). Then fp32 scaling.
          const double tol = (t == Q8Type::kInt8 ? 0.0 : 0x1p-8 * sumAbs) * scale +
                             1e-6 * (std::fabs(dot * scale) + std::fabs(ref)) + 1e-6;
          const float got = y[size_t(m * N + n)];
          if (!(std::fabs(double(got) - ref) <= tol) && bad++ < 5)
            ADD_FAILURE() << "y[" << m << ", " << n << "] = " << got << ", reference " << ref
                          << ", tolerance " << tol;
        }
      EXPECT_EQ(bad, 0);
    }
}

INSTANTIATE_TEST_SUITE_P(Types, W8A8Test, testing::Values(Q8Type::kInt8, Q8Type::kFp8E4M3),
                         [](const testing::TestParamInfo<Q8Type> &i) {
                           return std::string(i.param == Q8Type::kInt8 ? "int8" : "fp8e4m3");
                         });

TEST(W8A8GemmArgs, RunBeforeInitAndBadShapesAreRefused) {
  qcuda::W8A8Gemm gemm;
  qcuda::W8A8GemmArgs a;
  std::string error;
  EXPECT_FALSE(gemm.run(a, nullptr, &error));
  EXPECT_NE(error.find("before a successful init"), std::string::npos) << error;
  EXPECT_FALSE(qcuda::quantizePerToken(nullptr, DType::kBF16, 1, 64, Q8Type::kInt8, nullptr,
                                       nullptr, nullptr, &error));
  EXPECT_NE(error.find("quantizePerToken"), std::string::npos) << error;
}

/// The test's own E4M3 codec against values fixed by the format.
TEST(W8A8Reference, E4M3CodecKnownValues) {
  EXPECT_EQ(e4m3Decode(0x7e), 448.0);
  EXPECT_EQ(e4m3Decode(0x38), 1.0);
  EXPECT_EQ(e4m3Decode(0x01), std::ldexp(1.0, -9));
  EXPECT_EQ(e4m3Encode(1000.f), 0x7e);
  EXPECT_EQ(e4m3Encode(-1.f), 0xb8);
  EXPECT_EQ(e4m3Encode(1.0625f), 0x38); // halfway 1 and 1.125: even code
  EXPECT_EQ(e4m3Encode(1.1875f), 0x3a); // halfway 1.125 and 1.25: even code
  EXPECT_EQ(e4m3Encode(-1e-6f), 0x80);  // underflow keeps the sign
}

} // namespace
