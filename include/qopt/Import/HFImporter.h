//===- HFImporter.h - Hugging Face directories -> QLLM --------*- C++ -*-===//
#ifndef QOPT_IMPORT_HFIMPORTER_H
#define QOPT_IMPORT_HFIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "qopt/Import/ModelConfig.h"
#include "qopt/Weights/WeightStore.h"

namespace qopt {

/// Parses a Hugging Face config.json (Llama, Mistral, Qwen2 families).
/// False with *error ("<path>: <problem>") on an unknown architecture or a
/// missing/contradictory field.
bool parseHFConfig(const std::string &configPath, ModelConfig *config, std::string *error);

/// The same from config.json's text; `source` names it in errors.
bool parseHFConfigJSON(const std::string &text, const std::string &source, ModelConfig *config,
                       std::string *error);

/// Imports a Hugging Face model directory: config.json plus model.safetensors
/// or sharded model-0000N-of-0000M.safetensors with model.safetensors.index.json.
/// Tensors are memory-mapped into `store` under their canonical names.
/// Returns null and sets *error (one line naming the file and the problem).
mlir::OwningOpRef<mlir::ModuleOp> importHuggingFaceDir(mlir::MLIRContext &ctx,
                                                       const std::string &dir,
                                                       WeightStore &store,
                                                       std::string *error);

} // namespace qopt

#endif
