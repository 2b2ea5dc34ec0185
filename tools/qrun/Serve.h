//===- Serve.h - qrun's modes over a loaded artifact -----------------------===//
#ifndef QOPT_TOOLS_QRUN_SERVE_H
#define QOPT_TOOLS_QRUN_SERVE_H

#include "Options.h"

#include "qopt-rt/artifact/Artifact.h"
#include "qopt-rt/kernels/ThreadPool.h"
#include "qopt-rt/model/CpuModelExecutor.h"
#include "qopt-rt/model/FromArtifact.h"
#include "qopt-rt/serving/KVCache.h"
#include "qopt-rt/tokenizer.h"

#include "CudaBackend.h"

#include <memory>
#include <string>

namespace qrun {

/// The artifact, its tokenizer, the KV pool and the executor.
struct Runtime {
  std::unique_ptr<qrt::Artifact> artifact;
  std::unique_ptr<qrt::Tokenizer> tokenizer; ///< null when the artifact has none
  qrt::model::ArtifactModel model;
  std::unique_ptr<qrt::kernels::ThreadPool> pool;
  std::unique_ptr<qrt::serving::KVCache> kv;
  std::unique_ptr<qrt::model::CpuModelExecutor> executor;
  int32_t maxModelLen = 0;
  int32_t maxSeqs = 1;
  /// What the engine drives: `executor` (CPU) or `cudaExecutor`, and the
  /// blocks of that executor's KV pool.
  qrt::serving::ModelExecutor *exec = nullptr;
  int32_t numBlocks = 0;
  bool onCuda = false;
  /// --device cuda: the executor from the CUDA plugin (CudaBackend.h),
  /// which stays loaded for the life of the process.
  std::unique_ptr<qcuda::CudaBackend> cudaExecutor;

  /// Opens the artifact and sizes the KV pool for the mode in `o`, on the
  /// device `o` names or, by default, the one the artifact targets.
  bool load(const Options &o, std::string *error);

private:
  bool loadCuda(const Options &o, std::string *error);
  bool loadTokenizer(std::string *error);
  void sizeFor(const Options &o, int32_t modelMaxPositions);
};

/// Which GEMM kernels run: the artifact's generated ones (for which ISA, on
/// how many packed weights) or the runtime's generic ones.
std::string kernelsSummary(const Runtime &rt);

bool runSingle(Runtime &rt, const Options &o, std::string *error);
bool runPromptsFile(Runtime &rt, const Options &o, std::string *error);
bool runPerplexity(Runtime &rt, const Options &o, std::string *error);

} // namespace qrun

#endif
