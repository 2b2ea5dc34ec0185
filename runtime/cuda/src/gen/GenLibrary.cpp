//===- GenLibrary.cpp - dlopen the generated CUDA kernel library ---------===//
#include "qopt-cuda/GenLibrary.h"

#include <dlfcn.h>

namespace qcuda {
namespace {

void collect(void *ctx, const gen::GenKernel *k) {
  static_cast<std::vector<gen::GenKernel> *>(ctx)->push_back(*k);
}

} // namespace

std::unique_ptr<GenLibrary> GenLibrary::open(const std::string &path, int computeCapability,
                                             std::string *error) {
  // RTLD_LOCAL: every artifact's library exports the same symbol name.
  void *h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = ::dlerror();
    *error = "CUDA kernel library '" + path + "': " + (why ? why : "cannot be loaded");
    return nullptr;
  }
  std::unique_ptr<GenLibrary> lib(new GenLibrary);
  lib->handle_ = h;
  lib->path_ = path;
  auto fn = reinterpret_cast<qopt_cuda_gen_register_fn>(::dlsym(h, gen::kRegisterSymbol));
  if (!fn) {
    *error = "CUDA kernel library '" + path + "' does not export " + gen::kRegisterSymbol;
    return nullptr;
  }
  std::vector<gen::GenKernel> found;
  gen::GenRegistry reg{gen::kGenAbiVersion, 0, 0, &found, collect};
  fn(&reg);
  if (reg.generatedAbiVersion != gen::kGenAbiVersion) {
    *error = "CUDA kernel library '" + path + "' has ABI version " +
             std::to_string(reg.generatedAbiVersion) + "; this runtime reads version " +
             std::to_string(gen::kGenAbiVersion) + " (recompile the artifact)";
    return nullptr;
  }
  if (reg.computeCapability != computeCapability) {
    *error = "CUDA kernel library '" + path + "' is compiled for compute capability " +
             std::to_string(reg.computeCapability / 10) + "." +
             std::to_string(reg.computeCapability % 10) + ", not " +
             std::to_string(computeCapability / 10) + "." +
             std::to_string(computeCapability % 10);
    return nullptr;
  }
  for (const gen::GenKernel &k : found) {
    GpuQuantFormat f;
    f.bits = k.bits;
    f.groupSize = k.groupSize == k.cols ? 0 : k.groupSize; // per-channel
    f.symmetric = k.symmetric != 0;
    GpuPackedGeometry g;
    std::string why;
    if (!computeGpuGeometry(f, k.rows, k.cols, &g, &why) || g.groupSize != k.groupSize ||
        !k.smallM || !k.tensorCore) {
      *error = "CUDA kernel library '" + path + "': bad kernel entry " + std::to_string(k.rows) +
               "x" + std::to_string(k.cols) + (why.empty() ? "" : " (" + why + ")");
      return nullptr;
    }
  }
  lib->kernels_ = std::move(found);
  return lib;
}

GenLibrary::~GenLibrary() {
  if (handle_)
    ::dlclose(handle_);
}

const gen::GenKernel *GenLibrary::find(const GpuQuantFormat &format,
                                       const GpuPackedGeometry &geometry, DType xType) const {
  for (const gen::GenKernel &k : kernels_)
    if (k.rows == geometry.rows && k.cols == geometry.cols && k.bits == format.bits &&
        k.groupSize == geometry.groupSize && (k.symmetric != 0) == format.symmetric &&
        k.xType == int(xType))
      return &k;
  return nullptr;
}

} // namespace qcuda
