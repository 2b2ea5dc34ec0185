//===- GenLibrary.h - the artifact's generated CUDA kernels -*- C++ -*-===//
//
// Loads the shared library qopt generated and compiled for a GPU artifact
// (kernels/sm_XX.so, docs/codegen.md): dlopen, ABI and compute-capability
// checks, then one GenKernel per packed weight shape, which
// weightOnlyGemm runs in place of its generic kernels when a weight's
// GpuQuantWeights::special points at it.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_GENLIBRARY_H
#define QOPT_CUDA_GENLIBRARY_H

#include "qopt-cuda/GpuPackedLayout.h"
#include "qopt-cuda/gen/Registry.h"

#include <memory>
#include <string>
#include <vector>

namespace qcuda {

class GenLibrary {
public:
  /// Opens `path`; `computeCapability` (e.g. 90) must equal the library's.
  /// Null with *error naming the file and the cause.
  static std::unique_ptr<GenLibrary> open(const std::string &path, int computeCapability,
                                          std::string *error);
  ~GenLibrary();
  GenLibrary(const GenLibrary &) = delete;
  GenLibrary &operator=(const GenLibrary &) = delete;

  /// The kernel for a weight of this format and shape with `xType`
  /// activations, or null (the generic kernels then run).
  const gen::GenKernel *find(const GpuQuantFormat &format, const GpuPackedGeometry &geometry,
                             DType xType) const;
  const std::vector<gen::GenKernel> &kernels() const { return kernels_; }
  const std::string &path() const { return path_; }

private:
  GenLibrary() = default;
  void *handle_ = nullptr;
  std::string path_;
  std::vector<gen::GenKernel> kernels_;
};

} // namespace qcuda

#endif
