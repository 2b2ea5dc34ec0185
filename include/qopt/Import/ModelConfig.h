//===- ModelConfig.h - a Llama-family decoder's hyper-parameters -*- C++ -*-===//
//
// What both importers recover (from config.json, or from an ONNX graph's
// structure) and what the canonical QLLM builder needs. The canonical
// weight names are Hugging Face's, whatever the source format.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_IMPORT_MODELCONFIG_H
#define QOPT_IMPORT_MODELCONFIG_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qopt {

/// Rope scaling as transformers' `rope_parameters` / `rope_scaling` give it.
struct RopeScaling {
  std::string type = "default"; ///< "default", "linear" or "llama3"
  double factor = 1.0;
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  int64_t originalMaxPositionEmbeddings = 8192;
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t headDim = 0;
  int64_t maxPositionEmbeddings = 2048;
  double rmsNormEps = 1e-6;
  double ropeTheta = 10000.0;
  RopeScaling ropeScaling;
  bool tieWordEmbeddings = false;
  /// q/k/v projections carry biases (Qwen2).
  bool attentionBias = false;
  std::optional<int64_t> bosTokenId;
  std::optional<int64_t> eosTokenId;

  /// Returns an empty string when consistent, else what is wrong.
  std::string validate() const;
};

/// Canonical (Hugging Face) weight names.
namespace names {
std::string embedTokens();
std::string finalNorm();
std::string lmHead();
std::string inputNorm(int64_t layer);
std::string postAttentionNorm(int64_t layer);
/// proj: "q_proj", "k_proj", "v_proj", "o_proj".
std::string attn(int64_t layer, const std::string &proj, const std::string &suffix = "weight");
/// proj: "gate_proj", "up_proj", "down_proj".
std::string mlp(int64_t layer, const std::string &proj);
} // namespace names

} // namespace qopt

#endif
