//===- FromArtifact.h - model weight views over a loaded artifact -*- C++ -*-===//
//
// Maps an Artifact's manifest entries (dtype, layout id, shapes) onto the
// executor's ModelWeights views, checking that every packed blob is large
// enough for its layout's geometry. The weights stay in the artifact's
// mapping; only biases are converted to owned fp32.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_MODEL_FROMARTIFACT_H
#define QOPT_RT_MODEL_FROMARTIFACT_H

#include "qopt-rt/artifact/Artifact.h"
#include "qopt-rt/kernels/Specialized.h"
#include "qopt-rt/model/ModelWeights.h"
#include "qopt-rt/serving/KVCache.h"

#include <memory>
#include <string>
#include <vector>

namespace qrt::model {

/// Weight views of an artifact plus what they need to own.
struct ArtifactModel {
  ModelWeights weights;
  /// KV element type the artifact asks for (bf16 when unspecified).
  serving::KVDType kvType = serving::KVDType::BF16;
  /// Per layer, per kv head (int8/fp8 KV only; empty otherwise).
  std::vector<std::vector<float>> kScales, vScales;
  std::vector<std::vector<float>> ownedBiases;
  /// The artifact's generated kernels for this CPU (docs/codegen.md), or
  /// null: none in the artifact, none for the path this CPU takes, or
  /// QRT_NO_CODEGEN=1. The packed views point into it.
  std::shared_ptr<kernels::SpecializedLibrary> kernels;
  /// Packed weights that run generated kernels / generic ones.
  int specializedWeights = 0, genericWeights = 0;
  /// QRT_NO_CODEGEN was set: the artifact's kernels were not loaded.
  bool codegenDisabled = false;
};

/// Fills *out from `art` (which must outlive it). False with *error naming
/// the tensor on an unsupported format or an inconsistent size, or the
/// artifact's kernel library when it fails to load.
bool modelFromArtifact(const Artifact &art, ArtifactModel *out, std::string *error);

/// The paged KV pool (16-token blocks) for `m`'s decoder: room for `seqs`
/// sequences of `tokens` positions plus one spare block (a prefix-cache hit
/// can hold one more), in `dtype`, with the artifact's per-head scales when
/// `dtype` is int8/fp8. `budgetBytes` 0: what that needs, capped at 1 GiB;
/// `exactSize`: exactly what it needs. Null with *error on a bad shape or
/// budget.
std::unique_ptr<serving::KVCache> createKVPool(const ArtifactModel &m, serving::KVDType dtype,
                                               int32_t seqs, int32_t tokens,
                                               uint64_t budgetBytes, bool exactSize,
                                               std::string *error);

} // namespace qrt::model

#endif // QOPT_RT_MODEL_FROMARTIFACT_H
