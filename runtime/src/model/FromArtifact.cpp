//===- FromArtifact.cpp - artifact manifest -> executor weight views ------===//
#include "qopt-rt/model/FromArtifact.h"

#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"

#include <algorithm>
#include <cstdlib>

namespace qrt::model {

static bool floatView(const ArtifactTensor *t, const std::string &what, int64_t rows,
                      int64_t cols, TensorView *out, std::string *error) {
  if (!t) {
    *error = "artifact: " + what + " is missing";
    return false;
  }
  int64_t elems = 1;
  for (int64_t s : t->shape)
    elems *= s;
  size_t elemBytes = t->dtype == "f32" ? 4 : t->dtype == "bf16" ? 2 : 0;
  if (!elemBytes) {
    *error = "artifact: tensor '" + t->name + "' (" + what + ") has dtype '" + t->dtype +
             "'; expected f32 or bf16";
    return false;
  }
  if (elems != rows * cols || t->nbytes < size_t(elems) * elemBytes) {
    *error = "artifact: tensor '" + t->name + "' (" + what + ") has " +
             std::to_string(elems) + " elements, expected " + std::to_string(rows * cols);
    return false;
  }
  out->format = elemBytes == 4 ? WeightFormat::F32 : WeightFormat::BF16;
  out->rows = rows;
  out->cols = cols;
  out->data = t->data;
  return true;
}

static bool linearView(const ArtifactLinear &l, int64_t rows, int64_t cols, TensorView *out,
                       const float **bias, ArtifactModel *m, std::string *error) {
  const std::string what = l.name.empty() ? std::string("linear") : l.name;
  if (l.outFeatures != rows || l.inFeatures != cols) {
    *error = "artifact: " + what + " is [" + std::to_string(l.outFeatures) + ", " +
             std::to_string(l.inFeatures) + "], expected [" + std::to_string(rows) + ", " +
             std::to_string(cols) + "]";
    return false;
  }
  // W8A8: int8 activations per token or with the static scale, rounded
  // as the reference executor does (the kernels' PerToken / Static modes).
  ActivationQuant aq;
  if (l.activationQuant == "int8") {
    aq.enabled = true;
    aq.mode = l.activationQuantMode == "per_tensor" ? kernels::ActQuantMode::Static
                                                     : kernels::ActQuantMode::PerToken;
    aq.scale = l.activationScale;
    if (aq.mode == kernels::ActQuantMode::Static &&
        !(aq.scale > 0.0f && aq.scale <= 3.4e38f)) {
      *error = "artifact: " + what + " has a per_tensor act_quant with scale " +
               std::to_string(l.activationScale) + "; it must be positive and finite";
      return false;
    }
  } else if (!l.activationQuant.empty()) {
    *error = "artifact: " + what + " quantizes its activations to " + l.activationQuant +
             ": fp8 activations are not implemented by the CPU executor (recompile with int8 "
             "W8A8, -wquant=w8a8)";
    return false;
  }
  if (l.format == "f32" || l.format == "bf16") {
    if (!floatView(l.packed, what, rows, cols, out, error))
      return false;
  } else if (l.format == "int4" || l.format == "int8") {
    if (!l.packed) {
      *error = "artifact: " + what + " has no packed tensor";
      return false;
    }
    kernels::PackedFormat f;
    kernels::PackedGeometry g;
    std::string e;
    if (!kernels::parseLayoutId(l.layout, &f, &e) ||
        !kernels::computeGeometry(f, rows, cols, &g, &e)) {
      *error = "artifact: " + what + ": " + e;
      return false;
    }
    if (l.packed->nbytes < size_t(g.totalBytes)) {
      *error = "artifact: " + what + "'s packed tensor has " + std::to_string(l.packed->nbytes) +
               " bytes, its layout " + l.layout + " needs " + std::to_string(g.totalBytes);
      return false;
    }
    out->format = WeightFormat::Packed;
    out->rows = rows;
    out->cols = cols;
    out->packed = {f, g, l.packed->data};
  } else {
    *error = "artifact: " + what + " has format '" + l.format + "'; the CPU executor runs f32, bf16, int4 and int8";
    return false;
  }
  out->actQuant = aq;
  if (bias && l.bias) {
    const ArtifactTensor *t = l.bias;
    TensorView bv;
    if (!floatView(t, what + " bias", 1, rows, &bv, error))
      return false;
    std::vector<float> v(static_cast<size_t>(rows), 0.0f);
    for (int64_t i = 0; i < rows; ++i)
      v[i] = bv.format == WeightFormat::F32 ? static_cast<const float *>(bv.data)[i]
                                            : bf16ToF32(static_cast<const uint16_t *>(bv.data)[i]);
    m->ownedBiases.push_back(std::move(v));
    *bias = m->ownedBiases.back().data();
  } else if (l.bias) {
    *error = "artifact: " + what + " has a bias, which the executor supports only on q/k/v (or qkv)";
    return false;
  }
  return true;
}

/// Loads the artifact's generated kernels for this CPU and points every
/// packed view with a matching shape at them.
static bool attachGeneratedKernels(const Artifact &art, ArtifactModel *m, std::string *error) {
  std::vector<TensorView *> packed;
  for (LayerWeights &l : m->weights.layers)
    for (TensorView *t : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down, &l.qkv, &l.gateUp})
      if (t->format == WeightFormat::Packed && t->valid())
        packed.push_back(t);
  if (m->weights.lmHead.format == WeightFormat::Packed && m->weights.lmHead.valid())
    packed.push_back(&m->weights.lmHead);
  m->genericWeights = int(packed.size());
  m->specializedWeights = 0;
  const char *off = std::getenv("QRT_NO_CODEGEN");
  m->codegenDisabled = off && *off && std::string(off) != "0";
  if (m->codegenDisabled || packed.empty())
    return true;
  std::string err;
  std::unique_ptr<kernels::SpecializedLibrary> lib =
      kernels::SpecializedLibrary::openBest(art.kernelLibraries(), &err);
  if (!lib) {
    if (err.empty())
      return true; // nothing generated for this path: the generic kernels run
    *error = "artifact: " + err;
    return false;
  }
  m->kernels = std::move(lib);
  for (TensorView *t : packed)
    if (m->kernels->attach(t->packed)) {
      ++m->specializedWeights;
      --m->genericWeights;
    }
  return true;
}

bool modelFromArtifact(const Artifact &art, ArtifactModel *m, std::string *error) {
  const ArtifactConfig &c = art.config();
  ModelDims &d = m->weights.dims;
  auto fits = [](int64_t v) { return v > 0 && v < (int64_t(1) << 30); };
  if (!fits(c.hiddenSize) || !fits(c.numLayers) || !fits(c.numHeads) || !fits(c.numKvHeads) ||
      !fits(c.intermediateSize) || !fits(c.vocabSize)) {
    *error = "artifact: the model config has a non-positive or absurd dimension";
    return false;
  }
  d.hidden = int32_t(c.hiddenSize);
  d.layers = int32_t(c.numLayers);
  d.heads = int32_t(c.numHeads);
  d.kvHeads = int32_t(c.numKvHeads);
  d.headDim = int32_t(c.headDim > 0 ? c.headDim : c.hiddenSize / c.numHeads);
  d.intermediate = int32_t(c.intermediateSize);
  d.vocab = int32_t(c.vocabSize);
  d.maxPositions = int32_t(c.maxPositionEmbeddings > 0 && c.maxPositionEmbeddings < (1 << 30)
                               ? c.maxPositionEmbeddings : 2048);
  d.rmsEps = c.rmsNormEps;
  d.ropeTheta = c.ropeTheta;
  d.ropeScaling.type = c.ropeType == "default" ? "" : c.ropeType;
  if (!d.ropeScaling.type.empty() && d.ropeScaling.type != "linear" &&
      d.ropeScaling.type != "llama3") {
    *error = "artifact: rope scaling '" + c.ropeType + "' is not supported (default, linear, llama3)";
    return false;
  }
  d.ropeScaling.factor = c.ropeFactor;
  d.ropeScaling.lowFreqFactor = c.ropeLowFreqFactor;
  d.ropeScaling.highFreqFactor = c.ropeHighFreqFactor;
  d.ropeScaling.originalMaxPositionEmbeddings = double(c.ropeOriginalMaxPositionEmbeddings);

  const int64_t H = d.hidden, Q = int64_t(d.heads) * d.headDim,
                KV = int64_t(d.kvHeads) * d.headDim, I = d.intermediate;
  ModelWeights &w = m->weights;
  if (int64_t(art.layers().size()) != c.numLayers) {
    *error = "artifact: the manifest lists " + std::to_string(art.layers().size()) +
             " layers, the config " + std::to_string(c.numLayers);
    return false;
  }
  // Biases are stored in ownedBiases; reserve so pointers stay valid.
  m->ownedBiases.reserve(size_t(3 * c.numLayers + 1));
  if (!floatView(&art.embedding(), "embedding", d.vocab, H, &w.embedding, error) ||
      !floatView(&art.finalNorm(), "final norm", 1, H, &w.finalNorm, error) ||
      !linearView(art.lmHead(), d.vocab, H, &w.lmHead, nullptr, m, error))
    return false;
  std::string kvName;
  for (size_t i = 0; i < art.layers().size(); ++i) {
    const ArtifactLayer &a = art.layers()[i];
    LayerWeights L;
    const std::string p = "layer " + std::to_string(i) + " ";
    if (!floatView(a.inputNorm, p + "input norm", 1, H, &L.inputNorm, error) ||
        !floatView(a.postAttentionNorm, p + "post-attention norm", 1, H, &L.postAttentionNorm, error) ||
        !linearView(a.o, H, Q, &L.o, nullptr, m, error) ||
        !linearView(a.down, H, I, &L.down, nullptr, m, error))
      return false;
    if (a.fusedQkv() ? !linearView(a.qkv, Q + 2 * KV, H, &L.qkv, &L.qkvBias, m, error)
                     : (!linearView(a.q, Q, H, &L.q, &L.qBias, m, error) ||
                        !linearView(a.k, KV, H, &L.k, &L.kBias, m, error) ||
                        !linearView(a.v, KV, H, &L.v, &L.vBias, m, error)))
      return false;
    if (a.fusedGateUp() ? !linearView(a.gateUp, 2 * I, H, &L.gateUp, nullptr, m, error)
                        : (!linearView(a.gate, I, H, &L.gate, nullptr, m, error) ||
                           !linearView(a.up, I, H, &L.up, nullptr, m, error)))
      return false;
    w.layers.push_back(L);
    if (i == 0)
      kvName = a.kvCacheDtype;
    else if (a.kvCacheDtype != kvName) {
      *error = "artifact: layers use different KV cache types ('" + kvName + "', '" +
               a.kvCacheDtype + "'), which the KV pool does not support";
      return false;
    }
  }
  if (kvName.empty())
    m->kvType = serving::KVDType::BF16;
  else if (!serving::parseKVDType(kvName == "fp8e4m3" ? "fp8_e4m3" : kvName, &m->kvType)) {
    *error = "artifact: unknown KV cache type '" + kvName + "'";
    return false;
  }
  if (serving::kvIsQuantized(m->kvType)) {
    for (size_t i = 0; i < art.layers().size(); ++i) {
      const ArtifactLayer &a = art.layers()[i];
      if (int64_t(a.kScales.size()) != d.kvHeads || int64_t(a.vScales.size()) != d.kvHeads) {
        *error = "artifact: layer " + std::to_string(i) + " has a " + kvName +
                 " KV cache but not one K and V scale per KV head";
        return false;
      }
      m->kScales.push_back(a.kScales);
      m->vScales.push_back(a.vScales);
    }
  }
  return attachGeneratedKernels(art, m, error);
}

std::unique_ptr<serving::KVCache> createKVPool(const ArtifactModel &m, serving::KVDType dtype,
                                               int32_t seqs, int32_t tokens,
                                               uint64_t budgetBytes, bool exactSize,
                                               std::string *error) {
  const ModelDims &d = m.weights.dims;
  serving::KVCacheSpec spec;
  spec.numLayers = d.layers;
  spec.numKVHeads = d.kvHeads;
  spec.headDim = d.headDim;
  spec.blockSize = 16;
  spec.dtype = dtype;
  const uint64_t perBlock = serving::KVCache::bytesPerBlock(spec);
  if (!perBlock) {
    *error = "KV cache: " + serving::KVCache::validate(spec);
    return nullptr;
  }
  const uint64_t need = perBlock * (uint64_t(seqs) * ((uint64_t(tokens) + 15) / 16) + 1);
  const uint64_t budget = exactSize     ? need
                          : budgetBytes ? budgetBytes
                                        : std::min<uint64_t>(need, 1ull << 30);
  std::unique_ptr<serving::KVCache> kv = serving::KVCache::create(spec, budget, error, 1 << 30);
  if (!kv)
    return nullptr;
  if (serving::kvIsQuantized(dtype))
    for (int32_t l = 0; l < d.layers; ++l)
      if (!kv->setScales(l, m.kScales[size_t(l)].data(), m.vScales[size_t(l)].data(), error))
        return nullptr;
  return kv;
}

} // namespace qrt::model
