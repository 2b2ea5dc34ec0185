//===- Specialized.cpp - dlopen the generated kernel library ---------------===//
#include "qopt-rt/kernels/Specialized.h"

#include "qopt-rt/kernels/gen/Registry.h"

#include <dlfcn.h>

namespace qrt::kernels {

namespace {

void collect(void *ctx, const gen::GenKernel *k) {
  auto *out = static_cast<std::vector<SpecializedGemm> *>(ctx);
  SpecializedGemm s;
  s.format.bits = k->bits;
  s.format.groupSize = k->groupSize;
  s.format.symmetric = k->symmetric != 0;
  s.rows = k->rows;
  s.cols = k->cols;
  s.f32 = k->f32;
  s.i8 = k->i8;
  out->push_back(s);
}

} // namespace

std::unique_ptr<SpecializedLibrary> SpecializedLibrary::open(const std::string &path,
                                                            std::string *error) {
  // RTLD_LOCAL: every artifact's library exports the same symbol name.
  void *h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = ::dlerror();
    *error = "kernel library '" + path + "': " + (why ? why : "cannot be loaded");
    return nullptr;
  }
  std::unique_ptr<SpecializedLibrary> lib(new SpecializedLibrary);
  lib->handle_ = h;
  lib->path_ = path;
  auto fn = reinterpret_cast<qopt_gen_register_fn>(::dlsym(h, gen::kRegisterSymbol));
  if (!fn) {
    *error = "kernel library '" + path + "' does not export " + gen::kRegisterSymbol;
    return nullptr;
  }
  std::vector<SpecializedGemm> found;
  gen::GenRegistry reg{gen::kGenAbiVersion, 0, nullptr, &found, collect};
  fn(&reg);
  if (reg.generatedAbiVersion != gen::kGenAbiVersion) {
    *error = "kernel library '" + path + "' has ABI version " +
             std::to_string(reg.generatedAbiVersion) + "; this runtime reads version " +
             std::to_string(gen::kGenAbiVersion) + " (recompile the artifact)";
    return nullptr;
  }
  if (!reg.isa || !parseIsa(reg.isa, &lib->isa_) || lib->isa_ == Isa::Auto) {
    *error = "kernel library '" + path + "' names an unknown instruction set";
    return nullptr;
  }
  if (!isaSupported(lib->isa_)) {
    *error = "kernel library '" + path + "' is compiled for " + reg.isa +
             ", which this CPU lacks";
    return nullptr;
  }
  for (SpecializedGemm &k : found) {
    PackedGeometry g;
    std::string why;
    if (!computeGeometry(k.format, k.rows, k.cols, &g, &why) || !k.f32 || !k.i8) {
      *error = "kernel library '" + path + "': bad kernel entry (" + why + ")";
      return nullptr;
    }
    k.isa = lib->isa_;
  }
  lib->kernels_ = std::move(found);
  return lib;
}

std::unique_ptr<SpecializedLibrary>
SpecializedLibrary::openBest(const std::map<std::string, std::string> &isaToPath,
                             std::string *error) {
  error->clear();
  auto it = isaToPath.find(isaName(bestIsa()));
  if (it == isaToPath.end())
    return nullptr;
  return open(it->second, error);
}

SpecializedLibrary::~SpecializedLibrary() {
  if (handle_)
    ::dlclose(handle_);
}

const SpecializedGemm *SpecializedLibrary::find(const PackedFormat &f, int64_t rows,
                                                int64_t cols) const {
  for (const SpecializedGemm &k : kernels_)
    if (k.rows == rows && k.cols == cols && k.format.bits == f.bits &&
        k.format.groupSize == f.groupSize && k.format.symmetric == f.symmetric)
      return &k;
  return nullptr;
}

bool SpecializedLibrary::attach(PackedView &view) const {
  const SpecializedGemm *k = find(view.format, view.geometry.rows, view.geometry.cols);
  if (!k)
    return false;
  view.special = k;
  return true;
}

} // namespace qrt::kernels
