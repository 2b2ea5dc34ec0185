//===- ModelWeights.cpp - consistency check of a model's weight views ----===//
#include "qopt-rt/model/ModelWeights.h"

namespace qrt::model {

static std::string checkTensor(const TensorView &t, const std::string &name,
                               int64_t rows, int64_t cols, bool allowPacked) {
  if (!t.valid())
    return name + " is missing";
  if (t.actQuant.enabled &&
      !(t.actQuant.mode == kernels::ActQuantMode::PerToken ||
        (t.actQuant.mode == kernels::ActQuantMode::Static && t.actQuant.scale > 0.0f &&
         t.actQuant.scale <= 3.4e38f)))
    return name + " has an activation quantization other than int8 per token or with a "
                  "positive finite static scale";
  if (t.format == WeightFormat::Packed) {
    if (!allowPacked)
      return name + " cannot be quantized";
    if (t.packed.geometry.rows != rows || t.packed.geometry.cols != cols)
      return name + " is packed as [" + std::to_string(t.packed.geometry.rows) + ", " +
             std::to_string(t.packed.geometry.cols) + "], expected [" +
             std::to_string(rows) + ", " + std::to_string(cols) + "]";
    return "";
  }
  if (t.rows != rows || t.cols != cols)
    return name + " has shape [" + std::to_string(t.rows) + ", " + std::to_string(t.cols) +
           "], expected [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  return "";
}

std::string validateWeights(const ModelWeights &w) {
  const ModelDims &d = w.dims;
  if (d.hidden <= 0 || d.layers <= 0 || d.heads <= 0 || d.kvHeads <= 0 ||
      d.headDim <= 0 || d.intermediate <= 0 || d.vocab <= 0)
    return "model dimensions must be positive";
  if (d.heads % d.kvHeads != 0)
    return "heads (" + std::to_string(d.heads) + ") is not a multiple of kv heads (" +
           std::to_string(d.kvHeads) + ")";
  if (d.headDim % 2 != 0)
    return "head_dim must be even for rotary embeddings";
  if (int64_t(w.layers.size()) != d.layers)
    return "expected " + std::to_string(d.layers) + " layers, got " +
           std::to_string(w.layers.size());
  const int64_t H = d.hidden, Q = int64_t(d.heads) * d.headDim,
                KV = int64_t(d.kvHeads) * d.headDim, I = d.intermediate;
  std::string e;
  if (!(e = checkTensor(w.embedding, "embedding", d.vocab, H, false)).empty()) return e;
  if (!(e = checkTensor(w.finalNorm, "final norm", 1, H, false)).empty()) return e;
  if (!(e = checkTensor(w.lmHead, "lm_head", d.vocab, H, true)).empty()) return e;
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights &l = w.layers[i];
    const std::string p = "layer " + std::to_string(i) + " ";
    if (!(e = checkTensor(l.inputNorm, p + "input norm", 1, H, false)).empty()) return e;
    if (!(e = checkTensor(l.postAttentionNorm, p + "post-attention norm", 1, H, false)).empty()) return e;
    if (l.fusedQkv()) {
      if (!(e = checkTensor(l.qkv, p + "qkv_proj", Q + 2 * KV, H, true)).empty()) return e;
    } else {
      if (!(e = checkTensor(l.q, p + "q_proj", Q, H, true)).empty()) return e;
      if (!(e = checkTensor(l.k, p + "k_proj", KV, H, true)).empty()) return e;
      if (!(e = checkTensor(l.v, p + "v_proj", KV, H, true)).empty()) return e;
    }
    if (!(e = checkTensor(l.o, p + "o_proj", H, Q, true)).empty()) return e;
    if (l.fusedGateUp()) {
      if (!(e = checkTensor(l.gateUp, p + "gate_up_proj", 2 * I, H, true)).empty()) return e;
    } else {
      if (!(e = checkTensor(l.gate, p + "gate_proj", I, H, true)).empty()) return e;
      if (!(e = checkTensor(l.up, p + "up_proj", I, H, true)).empty()) return e;
    }
    if (!(e = checkTensor(l.down, p + "down_proj", H, I, true)).empty()) return e;
  }
  return "";
}

} // namespace qrt::model
