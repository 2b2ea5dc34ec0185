//===- ModelLoader.h - import whatever the user points qopt at -*- C++ -*-===//
#ifndef QOPT_TOOLS_QOPT_MODELLOADER_H
#define QOPT_TOOLS_QOPT_MODELLOADER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "qopt/Weights/WeightStore.h"

#include <string>

namespace qopt {

/// A model as the driver sees it: the QLLM module, its weights, and where a
/// tokenizer.json would be.
struct LoadedModel {
  mlir::OwningOpRef<mlir::ModuleOp> module;
  WeightStore store;
  std::string defaultTokenizerPath;
};

/// Where loadModel will look for tokenizer.json for `path` (known before
/// importing, so flags that need the tokenizer are checked first).
std::string defaultTokenizerPath(const std::string &path);

/// Imports a Hugging Face directory or an .onnx file. False with *error.
bool loadModel(mlir::MLIRContext &ctx, const std::string &path, LoadedModel *model,
               std::string *error);

} // namespace qopt

#endif
