//===- ScaleFolding.h - float-equivalent per-channel rescaling -*- C++ -*-===//
//
// AWQ and SmoothQuant move a per-channel factor s between a linear's input
// and its weight: x W^T = (x / s) (W diag(s))^T. The 1/s is folded into
// whatever produces x (an rms_norm's weight, or the output rows of the
// previous linear), so the float function is unchanged and only the
// weights' ranges move.
//
// The store's tensors may be memory-mapped model files: a rescaled weight
// is written as a new owned fp32 tensor `<canonical name><suffix>` (".awq",
// ".smooth") and the `qllm.param` is renamed to it. When the weight is
// finally quantized, the param gets its canonical name back, so the
// quantized tensors carry the model's own names.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_SCALEFOLDING_H
#define QOPT_QUANT_SCALEFOLDING_H

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Weights/WeightStore.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <string>
#include <vector>

namespace qopt::quant {

/// W' = W diag(s): column j of the linear's [out, in] weight times s[j].
bool scaleLinearColumns(qllm::LinearOp linear, llvm::ArrayRef<float> s, WeightStore &store,
                        llvm::StringRef suffix, std::string *error);

/// W' = diag(1/s) W and b' = b / s: the linear's output channel i shrinks by
/// s[i] (the producer side of a linear -> linear fold).
bool divideLinearRows(qllm::LinearOp linear, llvm::ArrayRef<float> s, WeightStore &store,
                      llvm::StringRef suffix, std::string *error);

/// w' = w / s for an rms_norm's weight (its output channel j shrinks by s[j]).
bool divideNormWeight(qllm::RMSNormOp norm, llvm::ArrayRef<float> s, WeightStore &store,
                      llvm::StringRef suffix, std::string *error);

/// The fp32 [out, in] weight a float linear reads now. False with *error
/// when it is not a float `qllm.param` of the store (e.g. already quantized).
bool readLinearWeight(qllm::LinearOp linear, const WeightStore &store, std::vector<float> *w,
                      std::string *error);

/// `name` without a trailing `suffix` (the name before any rescaling).
std::string canonicalWeightName(llvm::StringRef name, llvm::StringRef suffix);

} // namespace qopt::quant

#endif
