//===- GenLibraryTest.cpp - generated CUDA kernels: loading and bit-exactness ===//
//
// GenLibrary against a library shaped like qopt's output (GenFixture.cu):
// registration, the compute-capability and ABI checks, lookups, the guard
// against a kernel attached to another weight's shape (CPU: all of these
// fail before anything touches a device). On a GPU: each specialized
// kernel (small-M and tensor-core) gives exactly the bytes the generic
// kernel gives on random weights and activations, outputs poisoned first.
//
//===----------------------------------------------------------------------===//
#include "CudaTestUtil.h"

#include "qopt-cuda/GenLibrary.h"
#include "qopt-cuda/WeightOnlyGemm.h"
#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"

#include <random>

#include <unistd.h>

namespace {

using qcuda::DType;
using qcuda::GenLibrary;
using qcuda::WeightOnlyKernel;
using qcuda_test::DeviceBuffer;

/// The fixture beside this executable (binaries carried to a GPU machine
/// as one folder), else where the build wrote it.
std::string fixturePath() {
  std::string exe(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (n > 0) {
    exe.resize(size_t(n));
    const std::string beside = exe.substr(0, exe.rfind('/') + 1) + "libqcuda_gen_fixture.so";
    if (::access(beside.c_str(), R_OK) == 0)
      return beside;
  }
  return QCUDA_GEN_FIXTURE;
}

std::unique_ptr<GenLibrary> openFixture(std::string *error) {
  return GenLibrary::open(fixturePath(), 0, error);
}

qcuda::GpuPackedGeometry geometryOf(int bits, int group, bool sym, int64_t rows, int64_t cols) {
  qcuda::GpuQuantFormat f;
  f.bits = bits, f.groupSize = group, f.symmetric = sym;
  qcuda::GpuPackedGeometry g;
  std::string error;
  EXPECT_TRUE(qcuda::computeGpuGeometry(f, rows, cols, &g, &error)) << error;
  return g;
}

TEST(GenLibrary, RegistersEveryShapeOfTheLibrary) {
  std::string error;
  auto lib = openFixture(&error);
  ASSERT_TRUE(lib) << error;
  ASSERT_EQ(lib->kernels().size(), 5u);
  const qcuda::gen::GenKernel &k = lib->kernels()[0];
  EXPECT_EQ(k.bits, 4);
  EXPECT_EQ(k.groupSize, 128);
  EXPECT_EQ(k.symmetric, 0);
  EXPECT_EQ(k.rows, 192);
  EXPECT_EQ(k.cols, 320);
  EXPECT_EQ(k.xType, int(DType::kBF16));
  EXPECT_NE(k.smallM, nullptr);
  EXPECT_NE(k.tensorCore, nullptr);
}

TEST(GenLibrary, FindsByFormatShapeAndActivationType) {
  std::string error;
  auto lib = openFixture(&error);
  ASSERT_TRUE(lib) << error;
  qcuda::GpuQuantFormat f;
  f.bits = 8, f.groupSize = 0, f.symmetric = true; // per-channel: effective group = cols
  const auto *k = lib->find(f, geometryOf(8, 0, true, 576, 192), DType::kBF16);
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->groupSize, 192);
  EXPECT_EQ(lib->find(f, geometryOf(8, 0, true, 576, 192), DType::kF16), nullptr);
  f.symmetric = false;
  EXPECT_EQ(lib->find(f, geometryOf(8, 0, false, 576, 192), DType::kBF16), nullptr);
  f.bits = 4, f.groupSize = 128;
  EXPECT_EQ(lib->find(f, geometryOf(4, 128, false, 192, 384), DType::kBF16), nullptr);
}

TEST(GenLibrary, RefusesAnotherComputeCapabilityAndMissingFiles) {
  std::string error;
  EXPECT_FALSE(GenLibrary::open(fixturePath(), 90, &error));
  EXPECT_NE(error.find("compiled for compute capability 0.0, not 9.0"), std::string::npos)
      << error;
  EXPECT_NE(error.find(fixturePath()), std::string::npos) << error;
  EXPECT_FALSE(GenLibrary::open("/nonexistent/sm_90a.so", 90, &error));
  EXPECT_NE(error.find("/nonexistent/sm_90a.so"), std::string::npos) << error;
}

TEST(GenLibrary, RefusesAKernelOfAnotherShape) {
  std::string error;
  auto lib = openFixture(&error);
  ASSERT_TRUE(lib) << error;
  // Plausible (aligned, non-null) pointers: the check fails before any use.
  alignas(16) static uint32_t fake[16];
  qcuda::WeightOnlyGemmArgs a;
  a.x = fake, a.y = fake;
  a.w.format.bits = 4, a.w.format.groupSize = 128, a.w.format.symmetric = false;
  a.w.geometry = geometryOf(4, 128, false, 192, 384);
  a.w.codes = fake;
  a.w.scales = reinterpret_cast<const uint16_t *>(fake);
  a.w.zeros = reinterpret_cast<const uint16_t *>(fake);
  a.w.special = &lib->kernels()[0]; // 192 x 320
  a.M = 1;
  EXPECT_FALSE(qcuda::weightOnlyGemm(a, nullptr, &error));
  EXPECT_NE(error.find("192x384 weight is for 192x320"), std::string::npos) << error;
}

/// Generic and specialized kernels on the same random data: same bytes.
void compareOnDevice(const qcuda::gen::GenKernel &k, WeightOnlyKernel kernel, int64_t M,
                     uint32_t seed) {
  SCOPED_TRACE("int" + std::to_string(k.bits) + " g" + std::to_string(k.groupSize) + " " +
               std::to_string(k.rows) + "x" + std::to_string(k.cols) + " M=" + std::to_string(M) +
               (kernel == WeightOnlyKernel::kSmallM ? " small-M" : " tensor cores"));
  const int64_t N = k.rows, K = k.cols, gs = k.groupSize, G = (K + gs - 1) / gs;
  std::mt19937 rng(seed);
  std::vector<uint8_t> codes(size_t(N * K));
  for (auto &q : codes)
    q = uint8_t(rng() % (1u << k.bits));
  std::vector<float> scales(size_t(N * G)), zeros(k.symmetric ? 0 : size_t(N * G));
  std::uniform_real_distribution<float> us(0.002f, 0.02f), ux(-1.f, 1.f);
  for (auto &s : scales)
    s = qrt::f16ToF32(qrt::f32ToF16(us(rng)));
  for (auto &z : zeros)
    z = float(rng() % (1u << k.bits));
  qrt::kernels::RefQuantMatrix ref;
  ref.rows = N, ref.cols = K, ref.bits = k.bits, ref.groupSize = gs == K ? 0 : int(gs);
  ref.symmetric = k.symmetric != 0, ref.codes = codes.data(), ref.scales = scales.data();
  ref.zeros = k.symmetric ? nullptr : zeros.data();
  qcuda::GpuPackedHost packed;
  std::string error;
  ASSERT_TRUE(qcuda::packForGpu(ref, &packed, &error)) << error;
  std::vector<uint16_t> x(size_t(M * K));
  for (auto &b : x)
    b = qrt::f32ToBf16(ux(rng));

  DeviceBuffer dCodes(packed.codes.size() * 4), dScales(packed.scales.size() * 2),
      dZeros(packed.zeros.size() * 2), dX(x.size() * 2), dGeneric(size_t(M * N) * 4),
      dSpecial(size_t(M * N) * 4);
  dCodes.upload(packed.codes);
  dScales.upload(packed.scales);
  if (!k.symmetric)
    dZeros.upload(packed.zeros);
  dX.upload(x);
  dGeneric.poison();
  dSpecial.poison();
  qcuda::WeightOnlyGemmArgs a;
  a.x = dX.get();
  a.xType = DType::kBF16;
  a.w.format = packed.format;
  a.w.geometry = packed.geometry;
  a.w.codes = dCodes.as<uint32_t>();
  a.w.scales = dScales.as<uint16_t>();
  a.w.zeros = k.symmetric ? nullptr : dZeros.as<uint16_t>();
  a.yType = DType::kF32;
  a.M = M;
  a.kernel = kernel;
  a.y = dGeneric.get();
  ASSERT_TRUE(qcuda::weightOnlyGemm(a, nullptr, &error)) << error;
  a.w.special = &k;
  a.y = dSpecial.get();
  ASSERT_TRUE(qcuda::weightOnlyGemm(a, nullptr, &error)) << error;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto g = dGeneric.download<uint32_t>(), s = dSpecial.download<uint32_t>();
  int64_t differ = 0, nan = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    differ += g[i] != s[i];
    nan += (s[i] & 0x7f800000u) == 0x7f800000u && (s[i] & 0x7fffffu);
  }
  EXPECT_EQ(differ, 0) << "elements differing from the generic kernel";
  EXPECT_EQ(nan, 0) << "NaN (unwritten) elements";
}

TEST(GenLibrary, SpecializedKernelsEqualGenericBitForBit) {
  QCUDA_SKIP_WITHOUT_DEVICE();
  std::string error;
  auto lib = openFixture(&error);
  ASSERT_TRUE(lib) << error;
  uint32_t seed = 1;
  for (const auto &k : lib->kernels()) {
    for (int64_t M : {1, 7, 16})
      compareOnDevice(k, WeightOnlyKernel::kSmallM, M, seed++);
    for (int64_t M : {1, 7, 33, 257})
      compareOnDevice(k, WeightOnlyKernel::kTensorCore, M, seed++);
  }
}

} // namespace
