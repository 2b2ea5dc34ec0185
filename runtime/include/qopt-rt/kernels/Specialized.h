//===- Specialized.h - load the kernels qopt generated for a model -*- C++ -*-===//
//
// An artifact may carry shared libraries of GEMM kernels specialized for
// its packed weight shapes (one per instruction set; docs/codegen.md).
// SpecializedLibrary opens one, checks its ABI version and instruction set,
// and looks kernels up by (format, rows, cols); a PackedView that points at
// one (PackedView::special) is multiplied by it instead of the generic
// kernel, with the same arguments and the same results.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_KERNELS_SPECIALIZED_H
#define QOPT_RT_KERNELS_SPECIALIZED_H

#include "qopt-rt/kernels/PackedLayout.h"
#include "qopt-rt/kernels/QGemm.h"
#include "qopt-rt/kernels/tiles/TileArgs.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qrt::kernels {

/// The kernels of one specialized shape.
struct SpecializedGemm {
  PackedFormat format;
  int64_t rows = 0, cols = 0;
  detail::F32Kernel f32 = nullptr;
  detail::I8Kernel i8 = nullptr;
  Isa isa = Isa::Scalar; ///< what they were compiled for
};

/// A loaded kernel library. Must outlive every PackedView pointing into it.
class SpecializedLibrary {
public:
  /// Opens `path` (dlopen) and collects its kernels. Null with *error (one
  /// line naming the file) when it cannot be loaded, has another ABI
  /// version, names an unknown instruction set or one this CPU lacks.
  static std::unique_ptr<SpecializedLibrary> open(const std::string &path, std::string *error);
  /// From the libraries an artifact lists (instruction set name -> path),
  /// opens the one for the path qgemm would take on this CPU (bestIsa(),
  /// which honours QRT_ISA). Null with *error empty when none matches (the
  /// generic kernels then run), or with *error set when it fails to load.
  static std::unique_ptr<SpecializedLibrary>
  openBest(const std::map<std::string, std::string> &isaToPath, std::string *error);
  ~SpecializedLibrary();
  SpecializedLibrary(const SpecializedLibrary &) = delete;
  SpecializedLibrary &operator=(const SpecializedLibrary &) = delete;

  Isa isa() const { return isa_; }
  const std::string &path() const { return path_; }
  const std::vector<SpecializedGemm> &kernels() const { return kernels_; }
  /// The kernel for this format and shape, or null.
  const SpecializedGemm *find(const PackedFormat &format, int64_t rows, int64_t cols) const;
  /// Points `view.special` at the matching kernel. False (view unchanged)
  /// when there is none.
  bool attach(PackedView &view) const;

private:
  SpecializedLibrary() = default;
  void *handle_ = nullptr;
  std::string path_;
  Isa isa_ = Isa::Scalar;
  std::vector<SpecializedGemm> kernels_;
};

} // namespace qrt::kernels

#endif // QOPT_RT_KERNELS_SPECIALIZED_H
