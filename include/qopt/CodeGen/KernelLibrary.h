//===- KernelLibrary.h - model-specialized CPU kernels, generated and compiled -*- C++ -*-===//
//
// Code generation of an artifact's kernels: every packed weight shape of
// the model (after fusion: q|k|v and gate|up are one shape each) becomes an
// instantiation of the runtime's tile templates with that shape, bit width,
// group size and zero-point mode as compile-time constants. The plan is
// lowered to MLIR's EmitC dialect and printed to C++ by its emitter, then
// compiled with the system compiler into one shared library per
// instruction set, cached under a key hashed from the generated source, the
// compiler and the kernel headers, so recompiling the same model costs
// nothing. docs/codegen.md describes the whole path.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CODEGEN_KERNELLIBRARY_H
#define QOPT_CODEGEN_KERNELLIBRARY_H

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mlir {
class MLIRContext;
class ModuleOp;
template <typename T> class OwningOpRef;
} // namespace mlir

namespace qopt::codegen {

/// One packed weight shape to specialize, and the weights that use it.
struct GemmShape {
  int bits = 4;
  int groupSize = 128; ///< 0 = per-channel
  bool symmetric = false;
  int64_t rows = 0, cols = 0;
  std::vector<std::string> users; ///< weight (or fused weight) names, for the comments
};

/// Kernel plan: distinct shapes, sorted (bits, group, symmetric, rows,
/// cols); `users` merged and sorted.
std::vector<GemmShape> normalizePlan(std::vector<GemmShape> shapes);

/// Instruction sets to compile for a target: "cpu" = the best this host
/// supports (none on a CPU without AVX2), "x86-64-v4" = avx512 and
/// avx512vnni (the runtime picks the one the CPU runs), "x86-64-v3" =
/// avx2. Empty for an unknown target.
std::vector<std::string> kernelIsasForTarget(const std::string &target);

/// What the generated code is for: the CPU runtime's tile templates
/// (C++, qopt-rt/kernels/gen/Specialize.h) or the CUDA runtime's
/// weight-only GEMM templates (CUDA C++, qopt-cuda/gen/Specialize.cuh; the
/// plan's group sizes are then the effective ones, per-channel = cols).
enum class KernelLanguage { Cpp, Cuda };

/// Lowers the plan to an EmitC module: an include of the kernel templates
/// and `extern "C" void qopt_gen_register(GenRegistry *)` (CUDA:
/// `qopt_cuda_gen_register`) calling `qrt::kernels::gen::add<bits, group,
/// symmetric, rows, cols>` (CUDA: `qcuda::gen::add<...>`) per shape.
mlir::OwningOpRef<mlir::ModuleOp>
lowerPlanToEmitC(mlir::MLIRContext &ctx, const std::vector<GemmShape> &plan,
                 KernelLanguage language = KernelLanguage::Cpp);

/// lowerPlanToEmitC, verified and printed to C++ (emitc::translateToCpp).
bool emitKernelSource(const std::vector<GemmShape> &plan, std::string *source,
                      std::string *error, KernelLanguage language = KernelLanguage::Cpp);

/// The nvcc architecture of a GPU target: sm80 -> "sm_80", sm89 -> "sm_89",
/// sm90 -> "sm_90a" (Hopper-only instructions need the arch-specific
/// target); "" for another target.
std::string cudaArchForTarget(const std::string &target);

struct KernelBuildOptions {
  /// C++ compiler; empty = $QOPT_CXX, else the compiler qopt was built
  /// with, else `c++` on PATH.
  std::string cxx;
  /// Directory holding qopt-rt/kernels/...; empty = $QOPT_RUNTIME_INCLUDE,
  /// else the source tree qopt was built from.
  std::string includeDir;
  /// Cache root; empty = $QOPT_CACHE_DIR, else $XDG_CACHE_HOME/qopt, else
  /// ~/.cache/qopt.
  std::string cacheDir;
  /// CUDA compiler (GPU targets); empty = $QOPT_NVCC, else the one found
  /// when qopt was configured, else `nvcc` on PATH, else
  /// /usr/local/cuda/bin/nvcc.
  std::string nvcc;
  /// Directory holding qopt-cuda/...; empty = $QOPT_CUDA_INCLUDE, else the
  /// source tree qopt was built from.
  std::string cudaIncludeDir;
};

struct KernelLibraryFiles {
  std::string hash;       ///< sha256 key of the cache entry
  std::string directory;  ///< cache entry: kernels.cpp (.cu) + <isa or arch>.so
  std::string sourcePath; ///< generated C++ (CUDA C++)
  std::map<std::string, std::string> libraries; ///< isa (arch) -> shared library
  bool cacheHit = false;
  double seconds = 0;     ///< compile time (0 on a cache hit)
};

/// Emits the plan's C++ and compiles it for each instruction set (in
/// parallel), or finds the result in the cache. False with *error (the
/// compiler's first lines of diagnostics included) when it fails.
bool buildKernelLibraries(const std::vector<GemmShape> &plan, const std::vector<std::string> &isas,
                          const KernelBuildOptions &options, KernelLibraryFiles *out,
                          std::string *error);

/// The CUDA compiler buildCudaKernelLibrary would use, or "" when none is
/// found (the artifact then runs the runtime's generic CUDA kernels).
std::string findNvcc(const std::string &given);

/// Emits the plan's CUDA C++ and compiles it with nvcc for one
/// architecture (cudaArchForTarget) into a shared library of host
/// launchers and device code linked against the shared CUDA runtime, or
/// finds it in the cache. libraries[arch] is the result.
bool buildCudaKernelLibrary(const std::vector<GemmShape> &plan, const std::string &arch,
                            const KernelBuildOptions &options, KernelLibraryFiles *out,
                            std::string *error);

} // namespace qopt::codegen

#endif // QOPT_CODEGEN_KERNELLIBRARY_H
