//===- ModelConfig.cpp - hyper-parameters and canonical names ---------===//
#include "qopt/Import/ModelConfig.h"

namespace qopt {

std::string ModelConfig::validate() const {
  auto positive = [](int64_t v) { return v > 0; };
  if (!positive(vocabSize)) return "vocab_size must be positive";
  if (!positive(hiddenSize)) return "hidden_size must be positive";
  if (!positive(intermediateSize)) return "intermediate_size must be positive";
  if (!positive(numLayers)) return "num_hidden_layers must be positive";
  if (numLayers > 100000) return "num_hidden_layers is implausibly large";
  if (!positive(numHeads)) return "num_attention_heads must be positive";
  if (!positive(numKvHeads)) return "num_key_value_heads must be positive";
  if (!positive(headDim)) return "head_dim must be positive";
  if (headDim % 2) return "head_dim must be even for rotary embeddings";
  if (numHeads % numKvHeads)
    return "num_attention_heads (" + std::to_string(numHeads) +
           ") is not a multiple of num_key_value_heads (" + std::to_string(numKvHeads) + ")";
  if (!(rmsNormEps > 0)) return "rms_norm_eps must be positive";
  if (!(ropeTheta > 0)) return "rope_theta must be positive";
  if (ropeScaling.type != "default" && ropeScaling.type != "linear" &&
      ropeScaling.type != "llama3")
    return "unsupported rope_type '" + ropeScaling.type + "' (supported: default, linear, llama3)";
  if (ropeScaling.type != "default" && !(ropeScaling.factor > 0))
    return "rope scaling factor must be positive";
  return "";
}

namespace names {
static std::string layer(int64_t i) { return "model.layers." + std::to_string(i) + "."; }
std::string embedTokens() { return "model.embed_tokens.weight"; }
std::string finalNorm() { return "model.norm.weight"; }
std::string lmHead() { return "lm_head.weight"; }
std::string inputNorm(int64_t i) { return layer(i) + "input_layernorm.weight"; }
std::string postAttentionNorm(int64_t i) { return layer(i) + "post_attention_layernorm.weight"; }
std::string attn(int64_t i, const std::string &proj, const std::string &suffix) {
  return layer(i) + "self_attn." + proj + "." + suffix;
}
std::string mlp(int64_t i, const std::string &proj) { return layer(i) + "mlp." + proj + ".weight"; }
} // namespace names

} // namespace qopt
