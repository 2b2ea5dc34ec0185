//===- KernelLibraryTest.cpp - generated, shape-specialized kernels --------===//
//
// The kernel code generation end to end: plan -> EmitC -> C++ -> the system
// compiler -> a shared library the runtime loads; the specialized kernels
// must give bit for bit what the generic kernels give (the same tile
// templates with constant geometry) at odd shapes, and the cache must hit
// for the same plan and miss for another.
//
//===----------------------------------------------------------------------===//
#include "qopt/CodeGen/KernelLibrary.h"

#include "../runtime/kernels/KernelTestUtil.h"
#include "qopt-rt/kernels/QGemm.h"
#include "qopt-rt/kernels/Specialized.h"

#include "llvm/Support/FileSystem.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace qopt::codegen;
using qrt::kernels::PackedFormat;

namespace {

/// A private cache directory, removed when the test ends.
struct TempCache {
  std::string dir;
  explicit TempCache(const char *tag) {
    llvm::SmallString<128> d;
    llvm::sys::fs::createUniqueDirectory(std::string("qopt-kcache-") + tag, d);
    dir = d.str().str();
  }
  ~TempCache() { llvm::sys::fs::remove_directories(dir); }
};

/// Tile kernels that write a marker: proof of which kernel qgemm called.
void markF32(const qrt::kernels::detail::WeightArgs &w, const qrt::kernels::detail::ActF32 &,
             const qrt::kernels::detail::OutArgs &o, int64_t t0, int64_t t1, int64_t m0,
             int64_t m1) {
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t n = t0 * 16; n < std::min(w.rows, t1 * 16); ++n)
      o.y[m * o.ldy + n] = 1234.0f;
}
void markI8(const qrt::kernels::detail::WeightArgs &w, const qrt::kernels::detail::ActI8 &,
            const qrt::kernels::detail::OutArgs &o, int64_t t0, int64_t t1, int64_t m0,
            int64_t m1) {
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t n = t0 * 16; n < std::min(w.rows, t1 * 16); ++n)
      o.y[m * o.ldy + n] = -1234.0f;
}

GemmShape shape(int bits, int group, bool sym, int64_t rows, int64_t cols, std::string user) {
  GemmShape s;
  s.bits = bits;
  s.groupSize = group;
  s.symmetric = sym;
  s.rows = rows;
  s.cols = cols;
  s.users = {std::move(user)};
  return s;
}

/// Odd shapes: rows not a multiple of the 16-row tile, K not a multiple of
/// the group, per-channel, symmetric and asymmetric, 4 and 8 bits.
std::vector<GemmShape> oddPlan() {
  return normalizePlan({shape(4, 128, false, 40, 172, "a"), shape(4, 32, true, 17, 544, "b"),
                        shape(8, 0, false, 33, 300, "c"), shape(8, 64, true, 16, 256, "d"),
                        shape(4, 64, false, 1, 96, "e")});
}

} // namespace

TEST(KernelLibrary, PlanIsSortedAndDeduplicated) {
  std::vector<GemmShape> plan =
      normalizePlan({shape(4, 128, false, 64, 32, "layers.1.q"), shape(4, 32, true, 16, 32, "x"),
                     shape(4, 128, false, 64, 32, "layers.0.q"), shape(4, 32, true, 16, 32, "x")});
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].groupSize, 32);
  EXPECT_EQ(plan[1].users, (std::vector<std::string>{"layers.0.q", "layers.1.q"}));
  EXPECT_EQ(plan[0].users, (std::vector<std::string>{"x"}));
}

TEST(KernelLibrary, TargetsPickInstructionSets) {
  EXPECT_EQ(kernelIsasForTarget("x86-64-v3"), (std::vector<std::string>{"avx2"}));
  EXPECT_EQ(kernelIsasForTarget("x86-64-v4"), (std::vector<std::string>{"avx512", "avx512vnni"}));
  EXPECT_TRUE(kernelIsasForTarget("sm90").empty());
  std::vector<std::string> host = kernelIsasForTarget("cpu");
  ASSERT_LE(host.size(), 1u);
  if (!host.empty()) {
    qrt::kernels::Isa isa;
    ASSERT_TRUE(qrt::kernels::parseIsa(host[0], &isa));
    EXPECT_EQ(isa, qrt::kernels::bestIsa());
  }
}

TEST(KernelLibrary, EmitsOneSpecializationPerShape) {
  std::string src, err;
  ASSERT_TRUE(emitKernelSource(oddPlan(), &src, &err)) << err;
  EXPECT_NE(src.find("#include \"qopt-rt/kernels/gen/Specialize.h\""), std::string::npos) << src;
  EXPECT_NE(src.find("extern \"C\""), std::string::npos) << src;
  EXPECT_NE(src.find("qopt_gen_register(qrt::kernels::gen::GenRegistry*"), std::string::npos)
      << src;
  for (const char *call :
       {"qrt::kernels::gen::add<4, 32, 1, 17, 544>(", "qrt::kernels::gen::add<4, 64, 0, 1, 96>(",
        "qrt::kernels::gen::add<4, 128, 0, 40, 172>(", "qrt::kernels::gen::add<8, 0, 0, 33, 300>(",
        "qrt::kernels::gen::add<8, 64, 1, 16, 256>("})
    EXPECT_NE(src.find(call), std::string::npos) << call << " missing in\n" << src;
  size_t adds = 0;
  for (size_t p = src.find("gen::add<"); p != std::string::npos; p = src.find("gen::add<", p + 1))
    ++adds;
  EXPECT_EQ(adds, oddPlan().size());
}

TEST(KernelLibrary, QgemmCallsTheViewsSpecializedKernelsForItsIsaOnly) {
  PackedFormat f;
  std::mt19937 rng(3);
  auto ref = qrt::kernels::test::randomRef(20, 128, f, rng);
  qrt::kernels::PackedMatrix packed;
  std::string err;
  ASSERT_TRUE(packed.pack(ref.ref, f, &err)) << err;
  qrt::kernels::SpecializedGemm fake;
  fake.format = f;
  fake.rows = 20;
  fake.cols = 128;
  fake.f32 = markF32;
  fake.i8 = markI8;
  qrt::kernels::PackedView v = packed.view();
  v.special = &fake;
  std::vector<float> x(128, 1.0f), y(20, 0.0f);
  qrt::kernels::GemmOptions go;
  go.isa = qrt::kernels::Isa::Scalar;
  fake.isa = qrt::kernels::Isa::Scalar;
  go.activations = qrt::kernels::Activations::Float;
  ASSERT_TRUE(qrt::kernels::qgemm(v, x.data(), 1, 128, y.data(), 20, nullptr, go, &err)) << err;
  EXPECT_EQ(y[19], 1234.0f);
  go.activations = qrt::kernels::Activations::Int8;
  ASSERT_TRUE(qrt::kernels::qgemm(v, x.data(), 1, 128, y.data(), 20, nullptr, go, &err)) << err;
  EXPECT_EQ(y[0], -1234.0f);
  // Compiled for another path than the one chosen: the generic kernel runs.
  fake.isa = qrt::kernels::Isa::Avx512Vnni;
  ASSERT_TRUE(qrt::kernels::qgemm(v, x.data(), 1, 128, y.data(), 20, nullptr, go, &err)) << err;
  std::vector<double> want = qrt::kernels::test::referenceGemm(ref.ref, x, 1);
  EXPECT_NEAR(y[0], want[0], 0.05 * std::sqrt(128.0));
}

TEST(KernelLibrary, SpecializedKernelsEqualGenericBitForBit) {
  std::vector<std::string> isas = kernelIsasForTarget("cpu");
  if (isas.empty())
    GTEST_SKIP() << "this CPU has no AVX2: the generic scalar kernels run, nothing is generated";
  KernelBuildOptions opt;
  TempCache cache("eq");
  opt.cacheDir = cache.dir;
  KernelLibraryFiles files;
  std::string err;
  std::vector<GemmShape> plan = oddPlan();
  ASSERT_TRUE(buildKernelLibraries(plan, isas, opt, &files, &err)) << err;
  EXPECT_FALSE(files.cacheHit);
  auto lib = qrt::kernels::SpecializedLibrary::open(files.libraries.at(isas[0]), &err);
  ASSERT_TRUE(lib) << err;
  ASSERT_EQ(lib->kernels().size(), plan.size());
  EXPECT_EQ(qrt::kernels::isaName(lib->isa()), isas[0]);

  std::mt19937 rng(7);
  for (const GemmShape &s : plan) {
    PackedFormat f;
    f.bits = s.bits;
    f.groupSize = s.groupSize;
    f.symmetric = s.symmetric;
    auto ref = qrt::kernels::test::randomRef(s.rows, s.cols, f, rng);
    qrt::kernels::PackedMatrix packed;
    ASSERT_TRUE(packed.pack(ref.ref, f, &err)) << err;
    qrt::kernels::PackedView generic = packed.view();
    qrt::kernels::PackedView special = generic;
    ASSERT_TRUE(lib->attach(special)) << s.rows << "x" << s.cols;
    ASSERT_NE(special.special, nullptr);
    for (int64_t M : {1, 7, 33}) {
      std::normal_distribution<float> nd(0.0f, 1.0f);
      std::vector<float> x(size_t(M * s.cols));
      for (float &v : x)
        v = nd(rng);
      std::vector<double> want = qrt::kernels::test::referenceGemm(ref.ref, x, M);
      for (auto act : {qrt::kernels::Activations::Float, qrt::kernels::Activations::Int8}) {
        qrt::kernels::GemmOptions go;
        go.activations = act;
        std::vector<float> yg(size_t(M * s.rows), NAN), ys(size_t(M * s.rows), NAN);
        ASSERT_TRUE(qrt::kernels::qgemm(generic, x.data(), M, s.cols, yg.data(), s.rows, nullptr,
                                        go, &err)) << err;
        ASSERT_TRUE(qrt::kernels::qgemm(special, x.data(), M, s.cols, ys.data(), s.rows, nullptr,
                                        go, &err)) << err;
        ASSERT_EQ(std::memcmp(yg.data(), ys.data(), yg.size() * sizeof(float)), 0)
            << "int" << s.bits << " g" << s.groupSize << " " << s.rows << "x" << s.cols
            << " M=" << M << (act == qrt::kernels::Activations::Float ? " fp32" : " int8");
        // And both are right (the generic kernel's own tests bound this
        // tightly; here: no NaN left, no gross error).
        for (size_t i = 0; i < ys.size(); ++i)
          ASSERT_NEAR(ys[i], want[i], 0.05 * std::sqrt(double(s.cols)) + 1e-3) << i;
      }
    }
  }
}

TEST(KernelLibrary, CacheHitsForTheSamePlanAndMissesForAnother) {
  std::vector<std::string> isas = kernelIsasForTarget("cpu");
  if (isas.empty())
    GTEST_SKIP() << "this CPU has no AVX2: nothing is generated";
  KernelBuildOptions opt;
  TempCache cache("hit");
  opt.cacheDir = cache.dir;
  std::vector<GemmShape> plan = {shape(4, 128, false, 32, 256, "w")};
  KernelLibraryFiles first, second, other;
  std::string err;
  ASSERT_TRUE(buildKernelLibraries(plan, isas, opt, &first, &err)) << err;
  ASSERT_TRUE(buildKernelLibraries(plan, isas, opt, &second, &err)) << err;
  EXPECT_FALSE(first.cacheHit);
  EXPECT_TRUE(second.cacheHit);
  EXPECT_EQ(first.hash, second.hash);
  EXPECT_EQ(first.libraries, second.libraries);
  plan[0].rows = 48;
  ASSERT_TRUE(buildKernelLibraries(plan, isas, opt, &other, &err)) << err;
  EXPECT_FALSE(other.cacheHit);
  EXPECT_NE(other.hash, first.hash);
}

TEST(KernelLibrary, ClearErrors) {
  KernelBuildOptions opt;
  TempCache cache("err");
  opt.cacheDir = cache.dir;
  KernelLibraryFiles files;
  std::string err;
  // A bogus template directory and an unknown instruction set are named.
  opt.includeDir = "/nonexistent/include";
  EXPECT_FALSE(buildKernelLibraries({shape(4, 128, false, 16, 128, "w")}, {"avx2"}, opt, &files,
                                    &err));
  EXPECT_NE(err.find("/nonexistent/include"), std::string::npos) << err;
  opt.includeDir.clear();
  EXPECT_FALSE(buildKernelLibraries({shape(4, 128, false, 16, 128, "w")}, {"sse9"}, opt, &files,
                                    &err));
  EXPECT_NE(err.find("sse9"), std::string::npos) << err;
  // Not a shared library.
  std::string notLib = opt.cacheDir + "/not-a-library.so";
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(notLib, ec);
    os << "not ELF";
  }
  EXPECT_FALSE(qrt::kernels::SpecializedLibrary::open(notLib, &err));
  EXPECT_NE(err.find(notLib), std::string::npos) << err;
}
