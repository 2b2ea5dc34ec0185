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

/// Lowers the plan to an EmitC module: an include of the kernel templates
/// and `extern "C" void qopt_gen_register(GenRegistry *)` calling
/// `qrt::kernels::gen::add<bits, group, symmetric, rows, cols>` per shape.
mlir::OwningOpRef<mlir::ModuleOp> lowerPlanToEmitC(mlir::MLIRContext &ctx,
                                                   const std::vector<GemmShape> &plan);

/// lowerPlanToEmitC, verified and printed to C++ (emitc::translateToCpp).
bool emitKernelSource(const std::vector<GemmShape> &plan, std::string *source,
                      std::string *error);

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
};

struct KernelLibraryFiles {
  std::string hash;       ///< sha256 key of the cache entry
  std::string directory;  ///< cache entry: kernels.cpp + <isa>.so
  std::string sourcePath; ///< generated C++
  std::map<std::string, std::string> libraries; ///< isa -> shared library
  bool cacheHit = false;
  double seconds = 0;     ///< compile time (0 on a cache hit)
};

/// Emits the plan's C++ and compiles it for each instruction set (in
/// parallel), or finds the result in the cache. False with *error (the
/// compiler's first lines of diagnostics included) when it fails.
bool buildKernelLibraries(const std::vector<GemmShape> &plan, const std::vector<std::string> &isas,
                          const KernelBuildOptions &options, KernelLibraryFiles *out,
                          std::string *error);

} // namespace qopt::codegen

#endif // QOPT_CODEGEN_KERNELLIBRARY_H
