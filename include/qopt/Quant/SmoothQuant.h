//===- SmoothQuant.h - W8A8 with migrated activation outliers -*- C++ -*-===//
//
// SmoothQuant (Xiao et al. 2023): activations have a few channels with
// large magnitudes that per-token int8 cannot represent; weights do not.
// s_j = max|X_j|^alpha / max|W_j|^(1-alpha) moves part of the range from
// activation channel j into weight column j (x / s and W diag(s), the 1/s
// folded into the rms_norm before the linears); then weights are quantized
// per channel and activations per token (dynamic) or per tensor (a static
// scale calibrated on the smoothed inputs).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_SMOOTHQUANT_H
#define QOPT_QUANT_SMOOTHQUANT_H

#include "qopt/Weights/WeightStore.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace qopt::quant {

struct SmoothQuantConfig {
  /// Migration strength in [0, 1].
  double alpha = 0.5;
  /// Static per-tensor activation scales (else dynamic per token).
  bool perTensor = false;
  /// FP8 W8A8: e4m3 weights per channel and e4m3 activations (else int8).
  bool fp8 = false;
  /// Smooth only (fold the scales, quantize nothing): the float function
  /// is unchanged (the float-equivalence tests).
  bool foldOnly = false;
  int threads = 0;
  bool progress = false;
};

/// Smooths, quantizes every decoder linear's weight per channel and marks
/// its input for activation quantization (act_quant on qllm.linear), layer
/// by layer on the calibration `samples`. Embeddings and lm_head stay float.
bool runSmoothQuant(mlir::ModuleOp module, WeightStore &store,
                    std::vector<std::vector<int32_t>> samples, const SmoothQuantConfig &config,
                    std::string *error);

} // namespace qopt::quant

#endif
