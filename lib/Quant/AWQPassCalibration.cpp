//===- AWQPassCalibration.cpp - calibration samples for a pass -------===//
#include "AWQPassCalibration.h"

#include "qopt/Quant/StoreAccess.h"

#include "qopt-rt/tokenizer.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

namespace qopt::quant {

/// The tokenizer.json beside the model a module was imported from.
static std::string tokenizerBesideModel(mlir::ModuleOp module) {
  auto source = module->getAttrOfType<mlir::StringAttr>(kSourceAttrName);
  if (!source)
    return "";
  llvm::SmallString<256> path(source.getValue());
  if (!llvm::sys::fs::is_directory(path))
    llvm::sys::path::remove_filename(path);
  llvm::sys::path::append(path, "tokenizer.json");
  return llvm::sys::fs::exists(path) ? std::string(path) : std::string();
}

bool sampleForPass(mlir::ModuleOp module, const std::string &method,
                   const std::string &tokenizerPath, const CalibrationOptions &options,
                   std::vector<std::vector<int32_t>> *samples, std::string *error) {
  if (options.file.empty()) {
    *error = method + " needs calibration text: -calib=FILE";
    return false;
  }
  if (options.samples < 1 || options.seqlen < 2) {
    *error = "-calib-samples must be at least 1 and -calib-seqlen at least 2";
    return false;
  }
  std::string path = tokenizerPath.empty() ? tokenizerBesideModel(module) : tokenizerPath;
  if (path.empty()) {
    *error = "no tokenizer to encode the calibration text: pass -tokenizer=FILE";
    return false;
  }
  auto tok = qrt::Tokenizer::fromFile(path, error);
  if (!tok)
    return false;
  return sampleCalibration(*tok, options, samples, error);
}

WeightStore *loadStoreAndSamples(mlir::ModuleOp module, const std::string &method,
                                 const std::string &tokenizerPath,
                                 const CalibrationOptions &options,
                                 std::vector<std::vector<int32_t>> *samples, std::string *error) {
  WeightStore *store = getOrLoadWeightStore(module, error);
  if (!store || !sampleForPass(module, method, tokenizerPath, options, samples, error))
    return nullptr;
  return store;
}

} // namespace qopt::quant
