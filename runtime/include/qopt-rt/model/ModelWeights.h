//===- ModelWeights.h - what the CPU executor reads: dims + weight views -*- C++ -*-===//
//
// A non-owning description of a Llama-family decoder: its dimensions and,
// per tensor, a pointer into wherever the weights live (normally a
// memory-mapped artifact). Keeping this separate from the artifact format
// lets the executor be tested on weights built in memory, and lets the
// artifact evolve without touching the compute code.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_MODEL_MODELWEIGHTS_H
#define QOPT_RT_MODEL_MODELWEIGHTS_H

#include "qopt-rt/kernels/PackedLayout.h"
#include "qopt-rt/kernels/QGemm.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qrt::model {

/// Storage of one weight tensor.
enum class WeightFormat : uint8_t {
  F32,    ///< fp32, row-major
  BF16,   ///< bf16, row-major
  Packed, ///< int4/int8 in the x86 kernels' packed layout (linears only)
};

/// W8A8 (SmoothQuant): the input of a linear is quantized to int8 before
/// the product, per row (kernels::ActQuantMode::PerToken) or with one
/// calibrated scale (Static). The artifact's `act_quant`; the executor
/// computes exactly the reference executor's rounding.
struct ActivationQuant {
  bool enabled = false;
  kernels::ActQuantMode mode = kernels::ActQuantMode::PerToken; ///< PerToken or Static
  float scale = 0.0f;                                          ///< Static: the scale
  bool operator==(const ActivationQuant &o) const {
    return enabled == o.enabled &&
           (!enabled || (mode == o.mode && (mode != kernels::ActQuantMode::Static ||
                                            scale == o.scale)));
  }
  bool operator!=(const ActivationQuant &o) const { return !(*this == o); }
};

/// A row-major [rows, cols] tensor (a norm is [1, cols]).
struct TensorView {
  WeightFormat format = WeightFormat::F32;
  int64_t rows = 0, cols = 0;
  const void *data = nullptr;      ///< F32 / BF16 data
  kernels::PackedView packed;      ///< Packed data
  ActivationQuant actQuant;        ///< linears only: how the input is quantized
  bool valid() const {
    return format == WeightFormat::Packed ? packed.data != nullptr : data != nullptr;
  }
};

/// Rotary scaling as transformers' rope_scaling ("" / "default", "linear",
/// "llama3").
struct RopeScaling {
  std::string type;
  double factor = 1.0;
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  double originalMaxPositionEmbeddings = 8192;
};

/// Dimensions of the decoder.
struct ModelDims {
  int32_t hidden = 0, layers = 0, heads = 0, kvHeads = 0, headDim = 0;
  int32_t intermediate = 0, vocab = 0;
  int32_t maxPositions = 2048;
  double rmsEps = 1e-5;
  double ropeTheta = 10000.0;
  RopeScaling ropeScaling;
};

/// Weights of one decoder layer. Biases are optional fp32 vectors.
struct LayerWeights {
  TensorView inputNorm, postAttentionNorm;
  TensorView q, k, v, o, gate, up, down;
  const float *qBias = nullptr, *kBias = nullptr, *vBias = nullptr;
  /// Fused projections, one GEMM each (the artifact writer fuses when the
  /// parts share a storage format): qkv is [Q + 2 KV, hidden], rows q then
  /// k then v; gateUp is [2 I, hidden], rows gate then up. When valid, the
  /// separate q/k/v (gate/up) views and their biases are not used.
  TensorView qkv, gateUp;
  const float *qkvBias = nullptr; ///< [Q + 2 KV] or null
  bool fusedQkv() const { return qkv.valid(); }
  bool fusedGateUp() const { return gateUp.valid(); }
};

/// The whole model.
struct ModelWeights {
  ModelDims dims;
  TensorView embedding; ///< [vocab, hidden], F32 or BF16
  std::vector<LayerWeights> layers;
  TensorView finalNorm;
  TensorView lmHead;    ///< [vocab, hidden]; may alias the embedding
};

/// "" when `w` is consistent (shapes match dims, every tensor present,
/// formats usable), else one line naming the first bad tensor.
std::string validateWeights(const ModelWeights &w);

} // namespace qrt::model

#endif // QOPT_RT_MODEL_MODELWEIGHTS_H
