//===- ArtifactWriter.h - write a deployable artifact (OUT.qopt) -*- C++ -*-===//
//
// `qopt MODEL ... -o OUT.qopt` ends here: the final QLLM module and its
// weight store become a directory the runtime (qrt::Artifact) opens without
// the compiler: manifest.json, weights.bin (page-aligned tensors, quantized
// linears repacked into the CPU kernels' layout), tokenizer.json,
// generation_config.json, model.mlir and report.json. docs/artifact.md is
// the format.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CODEGEN_ARTIFACTWRITER_H
#define QOPT_CODEGEN_ARTIFACTWRITER_H

#include "mlir/IR/BuiltinOps.h"
#include "qopt/CodeGen/KernelLibrary.h"
#include "qopt/Weights/WeightStore.h"

#include <string>
#include <vector>

namespace qopt {

struct ArtifactOptions {
  /// The artifact directory to create (by convention it ends in ".qopt");
  /// an existing artifact there is replaced, anything else is refused.
  std::string outputPath;
  /// "cpu" (the host's features), "x86-64-v3" or "x86-64-v4".
  std::string target = "cpu";
  /// Copied as tokenizer.json / generation_config.json when they exist.
  std::string tokenizerPath;
  std::string generationConfigPath;
  /// Written as report.json when non-empty; otherwise, for a quantized
  /// module, a weight report (quant::describeWeights) is written.
  std::string reportJson;
  /// Generate, compile (or find in the cache) and ship the kernels
  /// specialized for the model's packed shapes (docs/codegen.md).
  bool generateKernels = true;
  codegen::KernelBuildOptions kernelBuild;
};

/// What writeArtifact did besides writing, for the driver's progress line.
struct ArtifactSummary {
  int64_t weightsBytes = 0;
  /// Generated kernels: distinct packed shapes, instruction sets compiled,
  /// whether the kernel cache already had them, compile seconds.
  size_t kernelShapes = 0;
  std::vector<std::string> kernelIsas;
  bool kernelCacheHit = false;
  double kernelSeconds = 0;
  /// Why no kernels were generated where they could have been (e.g. no
  /// nvcc for a GPU target); empty otherwise.
  std::string kernelNote;
};

/// True when `path` names an artifact (ends in ".qopt", a trailing slash
/// allowed).
bool isArtifactPath(const std::string &path);

/// The targets -target accepts.
std::vector<std::string> artifactTargets();

/// Writes the artifact of `module` (the canonical decoder built by the
/// importers, optionally quantized). The bytes depend only on the module,
/// the store and the options (tensors sorted by name, no timestamps). All
/// files are written in a temporary directory renamed at the end, so an
/// error leaves nothing behind. False with *error naming the weight and
/// the problem (e.g. a format the CPU kernels do not support yet).
bool writeArtifact(mlir::ModuleOp module, const WeightStore &store,
                   const ArtifactOptions &options, std::string *error,
                   ArtifactSummary *summary = nullptr);

} // namespace qopt

#endif
