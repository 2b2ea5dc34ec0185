//===- ModelLoader.cpp - import whatever the user points qopt at ------===//
#include "ModelLoader.h"

#include "qopt/Import/HFImporter.h"
#include "qopt/Import/ONNXImporter.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "qopt/Quant/StoreAccess.h"

namespace qopt {

std::string defaultTokenizerPath(const std::string &path) {
  llvm::SmallString<256> tok(llvm::sys::fs::is_directory(path) ? llvm::StringRef(path)
                                                             : llvm::sys::path::parent_path(path));
  llvm::sys::path::append(tok, "tokenizer.json");
  return std::string(tok);
}

bool loadModel(mlir::MLIRContext &ctx, const std::string &path, LoadedModel *model,
               std::string *error) {
  if (!llvm::sys::fs::exists(path)) {
    *error = path + ": no such file or directory";
    return false;
  }
  if (llvm::sys::fs::is_directory(path)) {
    model->module = importHuggingFaceDir(ctx, path, model->store, error);
    llvm::SmallString<256> tok(path);
    llvm::sys::path::append(tok, "tokenizer.json");
    model->defaultTokenizerPath = std::string(tok);
  } else if (llvm::sys::path::extension(path) == ".onnx") {
    model->module = importONNX(ctx, path, model->store, error);
    llvm::SmallString<256> tok(llvm::sys::path::parent_path(path));
    llvm::sys::path::append(tok, "tokenizer.json");
    model->defaultTokenizerPath = std::string(tok);
  } else {
    *error = path + ": not a model: expected a Hugging Face directory "
                    "(config.json + *.safetensors) or an .onnx file";
    return false;
  }
  if (!model->module)
    return false;
  // Where the weights come from, so that a printed module can be fed to
  // qopt-opt and its weight-rewriting passes find the tensors again.
  llvm::SmallString<256> absolute(path);
  llvm::sys::fs::make_absolute(absolute);
  llvm::sys::path::remove_dots(absolute, /*remove_dot_dot=*/true);
  (*model->module)
      ->setAttr(quant::kSourceAttrName, mlir::StringAttr::get(&ctx, absolute.str()));
  // Passes that rewrite weights find the store through the dialect.
  ctx.getOrLoadDialect<qllm::QLLMDialect>()->setWeightStore(&model->store);
  return true;
}

} // namespace qopt
