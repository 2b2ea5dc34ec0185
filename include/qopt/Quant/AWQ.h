//===- AWQ.h - activation-aware weight quantization -----------*- C++ -*-===//
//
// AWQ (Lin et al. 2023) as AutoAWQ runs it, layer by layer on the
// calibration data: for each set of linears sharing an input, a grid
// search of per-input-channel scales s = mean|x|^alpha that minimize the
// quantized output error, folded into the op producing the input (so the
// float function is unchanged); then a search of a clipping ratio per
// output row and group; then round-to-nearest with those clips.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_AWQ_H
#define QOPT_QUANT_AWQ_H

#include "qopt/Quant/LinearSelection.h"
#include "qopt/Quant/Quantizer.h"
#include "qopt/Weights/WeightStore.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace qopt::quant {

struct AWQConfig {
  /// Points of the alpha grid: alpha = i / gridSize, i < gridSize.
  int64_t gridSize = 20;
  /// AutoAWQ's duo scaling: s = mean|x|^alpha / mean|w|^(1 - alpha), with
  /// |w| relative to its group's absmax (else s = mean|x|^alpha).
  bool duoScaling = false;
  /// Search a clipping ratio per (row, group) after scaling.
  bool clipSearch = true;
  /// Also clip q and k (AutoAWQ does not: their error reaches the output
  /// through the attention scores, which a per-linear error does not see).
  bool clipQK = false;
  /// Clip candidates 1 - maxShrink * i / clipGrid, i < clipGrid.
  int64_t clipGrid = 20;
  double maxShrink = 0.5;
  /// Search and fold the scales, but leave every weight in float: the
  /// module computes the same function (the float-equivalence tests).
  bool foldOnly = false;
  int threads = 0;
  /// "awq: layer i/N" on stderr.
  bool progress = false;
};

/// What the search chose for one set of linears.
struct AWQSetChoice {
  int64_t layer = 0;
  std::string set; ///< "qkv", "o", "gate_up", "down"
  double alpha = 0;
  /// Output error (sum over calibration tokens of the squared error of the
  /// set's outputs) of plain RTN and of RTN after the chosen scaling.
  double rtnError = 0, scaledError = 0;
};

/// Runs AWQ over a canonical decoder module: every weight `selection`
/// picks is quantized in its format (decoder linears with AWQ, embedding
/// and lm_head, when asked, with RTN). `samples` are the calibration token
/// windows. `choices` (optional) receives the chosen scalings.
bool runAWQ(mlir::ModuleOp module, WeightStore &store, const WeightSelection &selection,
            std::vector<std::vector<int32_t>> samples, const AWQConfig &config,
            std::vector<AWQSetChoice> *choices, std::string *error);

//===----------------------------------------------------------------------===//
// Building blocks (exposed for tests)
//===----------------------------------------------------------------------===//

/// Quantize-dequantize of row-major w [rows, cols] with RTN in `format`,
/// every group's range shrunk by `clips[row * groups + group]` (all 1 when
/// empty).
std::vector<float> fakeQuantize(const float *w, int64_t rows, int64_t cols, const Format &format,
                                const std::vector<float> &clips, int threads);

/// sum over rows r of e_r^T H e_r, e = w - fakeQuantize(w): the summed
/// squared output error over inputs X with H = X^T X ([cols, cols]).
double outputError(const float *w, int64_t rows, int64_t cols, const Format &format,
                   const std::vector<float> &clips, const std::vector<float> &h, int threads);

/// AutoAWQ's clipping search: per (row, group), the ratio among
/// 1 - maxShrink * i / grid minimizing that group's output error
/// e_g^T H_gg e_g. Returns [rows * groups] ratios.
std::vector<float> searchClipRatios(const float *w, int64_t rows, int64_t cols,
                                    const Format &format, const std::vector<float> &h, int64_t grid,
                                    double maxShrink, int threads);

/// The stored form of fakeQuantize(w, clips): every group's (scale, zero)
/// from groupParams with its clip ratio, values rounded to the nearest code
/// (NF4: each block clamped to its clipped absmax, then RTN, whose absmax
/// double quantization fakeQuantize leaves out).
QuantizedMatrix quantizeClipped(const float *w, int64_t rows, int64_t cols, const Format &format,
                                const std::vector<float> &clips);

} // namespace qopt::quant

#endif
