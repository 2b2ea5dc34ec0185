//===- StoreAccess.cpp - the weight store a pass works on --------------===//
#include "qopt/Quant/StoreAccess.h"

#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Import/HFImporter.h"
#include "qopt/Import/ONNXImporter.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <map>
#include <memory>
#include <mutex>
#include <sys/mman.h>
#include <unistd.h>

namespace qopt::quant {

namespace {
/// A store imported for a module that arrived without one. The import runs
/// in a private context, so no dialect is loaded into the pass's context
/// while passes run (MLIR forbids that under multi-threading).
struct LoadedStore {
  std::unique_ptr<mlir::MLIRContext> context;
  WeightStore store;
};
} // namespace

/// Keyed by context and source path, alive until the process exits (the
/// dialect holds a raw pointer to the store).
static std::mutex registryMutex;
static std::map<std::pair<mlir::MLIRContext *, std::string>, std::unique_ptr<LoadedStore>>
    &registry() {
  static auto *r =
      new std::map<std::pair<mlir::MLIRContext *, std::string>, std::unique_ptr<LoadedStore>>();
  return *r;
}

WeightStore *getOrLoadWeightStore(mlir::ModuleOp module, std::string *error) {
  mlir::MLIRContext *ctx = module.getContext();
  auto *dialect = ctx->getLoadedDialect<qllm::QLLMDialect>();
  if (dialect && dialect->getWeightStore())
    return dialect->getWeightStore();
  auto source = module->getAttrOfType<mlir::StringAttr>(kSourceAttrName);
  if (!source) {
    *error = "no weight store: run this pass from qopt, or on IR that `qopt MODEL "
             "-emit=mlir` printed (its `qllm.source` attribute names the model)";
    return nullptr;
  }
  std::string path = source.getValue().str();
  std::lock_guard<std::mutex> lock(registryMutex);
  auto key = std::make_pair(ctx, path);
  auto &slot = registry()[key];
  if (!slot) {
    auto loaded = std::make_unique<LoadedStore>();
    loaded->context = std::make_unique<mlir::MLIRContext>(mlir::MLIRContext::Threading::DISABLED);
    std::string importError;
    mlir::OwningOpRef<mlir::ModuleOp> imported;
    if (!llvm::sys::fs::exists(path)) {
      importError = "no such file or directory";
    } else if (llvm::sys::fs::is_directory(path)) {
      imported = importHuggingFaceDir(*loaded->context, path, loaded->store, &importError);
    } else if (llvm::sys::path::extension(path) == ".onnx") {
      imported = importONNX(*loaded->context, path, loaded->store, &importError);
    } else {
      importError = "not a Hugging Face directory or an .onnx file";
    }
    if (!imported) {
      registry().erase(key);
      *error = "loading the weights of " + std::string(kSourceAttrName) + " '" + path +
               "': " + importError;
      return nullptr;
    }
    slot = std::move(loaded);
  }
  if (dialect)
    dialect->setWeightStore(&slot->store);
  return &slot->store;
}

void releasePages(const WeightEntry &entry) {
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(entry.data);
  uintptr_t end = begin + entry.nbytes;
  begin = (begin + page - 1) / page * page;
  end = end / page * page;
  // Only whole pages inside this tensor: a neighbour's bytes stay put.
  // PAGEOUT, not DONTNEED: on a clean private file mapping both drop the
  // pages (they are re-read from the file if touched again), but on heap
  // memory (an ONNX tensor's inline bytes) DONTNEED would zero live data,
  // while PAGEOUT at worst swaps it.
  if (end > begin)
    madvise(reinterpret_cast<void *>(begin), end - begin, MADV_PAGEOUT);
}

} // namespace qopt::quant
