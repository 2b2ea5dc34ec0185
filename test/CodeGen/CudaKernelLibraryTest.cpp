//===- CudaKernelLibraryTest.cpp - generated CUDA kernels, compiler side --===//
//
// The CUDA flavour of kernel code generation end to end on a machine
// without a GPU: plan -> EmitC -> CUDA C++ -> nvcc for one architecture ->
// a shared library that the CUDA runtime's GenLibrary loads, registering
// exactly the plan's shapes for that compute capability; the same inputs
// give the same bytes and hit the cache; bad inputs are named. Whether the
// kernels compute what the generic ones do is qcuda_gen_test's part (same
// templates, on a GPU).
//
//===----------------------------------------------------------------------===//
#include "qopt/CodeGen/KernelLibrary.h"

#include "qopt-cuda/GenLibrary.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"

#include <gtest/gtest.h>

using namespace qopt::codegen;

namespace {

struct TempCache {
  std::string dir;
  explicit TempCache(const char *tag) {
    llvm::SmallString<128> d;
    llvm::sys::fs::createUniqueDirectory(std::string("qopt-cuda-kcache-") + tag, d);
    dir = d.str().str();
  }
  ~TempCache() { llvm::sys::fs::remove_directories(dir); }
};

GemmShape shape(int bits, int group, bool sym, int64_t rows, int64_t cols, std::string user) {
  GemmShape s;
  s.bits = bits, s.groupSize = group, s.symmetric = sym, s.rows = rows, s.cols = cols;
  s.users = {std::move(user)};
  return s;
}

/// Effective group sizes, as the artifact writer plans GPU shapes.
std::vector<GemmShape> plan() {
  return normalizePlan({shape(4, 128, false, 192, 320, "q"), shape(8, 192, true, 576, 192, "pc"),
                        shape(4, 64, true, 320, 576, "s")});
}

std::string slurp(const std::string &path) {
  auto buf = llvm::MemoryBuffer::getFile(path);
  return buf ? (*buf)->getBuffer().str() : "";
}

TEST(CudaKernelLibrary, TargetsNameTheirArchitecture) {
  EXPECT_EQ(cudaArchForTarget("sm80"), "sm_80");
  EXPECT_EQ(cudaArchForTarget("sm89"), "sm_89");
  EXPECT_EQ(cudaArchForTarget("sm90"), "sm_90a");
  EXPECT_EQ(cudaArchForTarget("cpu"), "");
}

TEST(CudaKernelLibrary, EmitsOneSpecializationPerShape) {
  std::string src, err;
  ASSERT_TRUE(emitKernelSource(plan(), &src, &err, KernelLanguage::Cuda)) << err;
  EXPECT_NE(src.find("#include \"qopt-cuda/gen/Specialize.cuh\""), std::string::npos) << src;
  EXPECT_NE(src.find("void qopt_cuda_gen_register(qcuda::gen::GenRegistry*"), std::string::npos)
      << src;
  EXPECT_NE(src.find("qcuda::gen::add<4, 128, 0, 192, 320>"), std::string::npos) << src;
  EXPECT_NE(src.find("qcuda::gen::add<8, 192, 1, 576, 192>"), std::string::npos) << src;
  EXPECT_NE(src.find("qcuda::gen::add<4, 64, 1, 320, 576>"), std::string::npos) << src;
  EXPECT_EQ(src.find("qrt::kernels"), std::string::npos) << src;
}

TEST(CudaKernelLibrary, CompilesLoadsAndRegistersThePlan) {
  if (findNvcc("").empty())
    GTEST_SKIP() << "no nvcc: GPU artifacts ship no generated kernels here";
  TempCache cache("build");
  KernelBuildOptions opt;
  opt.cacheDir = cache.dir;
  KernelLibraryFiles first, second;
  std::string err;
  ASSERT_TRUE(buildCudaKernelLibrary(plan(), "sm_90a", opt, &first, &err)) << err;
  ASSERT_EQ(first.libraries.count("sm_90a"), 1u);
  EXPECT_FALSE(first.cacheHit);
  ASSERT_TRUE(buildCudaKernelLibrary(plan(), "sm_90a", opt, &second, &err)) << err;
  EXPECT_TRUE(second.cacheHit);
  EXPECT_EQ(first.hash, second.hash);

  // Loading needs no device: registration only records the launchers.
  auto lib = qcuda::GenLibrary::open(first.libraries["sm_90a"], 90, &err);
  ASSERT_TRUE(lib) << err;
  std::vector<GemmShape> p = plan();
  ASSERT_EQ(lib->kernels().size(), p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const auto &k = lib->kernels()[i];
    EXPECT_EQ(k.bits, p[i].bits);
    EXPECT_EQ(k.groupSize, p[i].groupSize);
    EXPECT_EQ(k.symmetric != 0, p[i].symmetric);
    EXPECT_EQ(k.rows, p[i].rows);
    EXPECT_EQ(k.cols, p[i].cols);
  }
  // Built for sm_90a only: another compute capability is refused.
  EXPECT_FALSE(qcuda::GenLibrary::open(first.libraries["sm_90a"], 80, &err));
  EXPECT_NE(err.find("compute capability 9.0, not 8.0"), std::string::npos) << err;

  // A fresh cache compiles the same bytes (artifacts are reproducible).
  TempCache again("again");
  opt.cacheDir = again.dir;
  KernelLibraryFiles third;
  ASSERT_TRUE(buildCudaKernelLibrary(plan(), "sm_90a", opt, &third, &err)) << err;
  EXPECT_FALSE(third.cacheHit);
  EXPECT_EQ(slurp(third.libraries["sm_90a"]), slurp(first.libraries["sm_90a"]));
}

TEST(CudaKernelLibrary, ClearErrors) {
  TempCache cache("err");
  KernelBuildOptions opt;
  opt.cacheDir = cache.dir;
  KernelLibraryFiles files;
  std::string err;
  EXPECT_FALSE(buildCudaKernelLibrary(plan(), "gfx90a", opt, &files, &err));
  EXPECT_NE(err.find("gfx90a"), std::string::npos) << err;
  opt.nvcc = "/nonexistent/nvcc";
  EXPECT_FALSE(buildCudaKernelLibrary(plan(), "sm_90a", opt, &files, &err));
  EXPECT_NE(err.find("/nonexistent/nvcc"), std::string::npos) << err;
  opt.nvcc.clear();
  opt.cudaIncludeDir = "/nonexistent/include";
  if (!findNvcc("").empty()) {
    EXPECT_FALSE(buildCudaKernelLibrary(plan(), "sm_90a", opt, &files, &err));
    EXPECT_NE(err.find("/nonexistent/include"), std::string::npos) << err;
  }
}

} // namespace
