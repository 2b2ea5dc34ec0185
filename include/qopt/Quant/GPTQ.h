//===- GPTQ.h - Hessian-aware quantization of one weight -------*- C++ -*-===//
//
// GPTQ (Frantar et al. 2022) for one linear: quantize the columns of W one
// at a time and spread each column's rounding error over the columns not
// yet quantized, weighted by the inverse Hessian of the layer's output
// error, H = 2 X^T X / n over the calibration inputs X. The pass
// (qopt-gptq) feeds it the Hessians the LayerwiseRunner observes; tests
// call it directly.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_GPTQ_H
#define QOPT_QUANT_GPTQ_H

#include "qopt/Quant/Quantizer.h"

#include <string>
#include <vector>

namespace qopt::quant {

/// Sum of X^T X over calibration rows, in double. Each add() is one
/// single-precision BLAS syrk of a mini-batch followed by a double sum, so
/// the result depends only on the rows and the order they come in.
class HessianAccumulator {
public:
  explicit HessianAccumulator(int64_t cols);
  /// Adds the rows of row-major x [rows, cols].
  void add(const float *x, int64_t rows);
  int64_t cols() const { return cols_; }
  int64_t rows() const { return rows_; }
  /// H = 2 X^T X / rows, full symmetric row-major [cols, cols].
  std::vector<double> hessian() const;

private:
  int64_t cols_ = 0, rows_ = 0;
  std::vector<double> sum_;   ///< upper triangle, row-major
  std::vector<float> scratch_;
};

struct GPTQConfig {
  /// Added to the diagonal: damp * mean(diag H).
  double damp = 0.01;
  /// Columns per lazy block update.
  int64_t blockSize = 128;
  /// Quantize columns in order of decreasing diag(H).
  bool actOrder = false;
  /// Every group's (scale, zero) from the original weights before any
  /// update (GPTQModel's static_groups). Otherwise a group's parameters
  /// are computed when the column loop first reaches one of its columns,
  /// from the group's current, error-updated weights. Either way the groups
  /// are those of the original column order, so act-order still stores
  /// plain group-wise scales (no g_idx).
  bool staticGroups = false;
};

/// Quantizes row-major `weights` [rows, cols] to `format` with GPTQ given
/// the Hessian (full symmetric [cols, cols], as HessianAccumulator gives
/// it). Int, fp8 (per channel) and nf4 formats; nf4's double-quantized
/// absmax needs every block's scale first, so it always uses static groups.
/// If H + damping is not positive definite the damping grows (x10, up to
/// 8 times) and *warning says so. False with *error on bad arguments.
bool quantizeGPTQ(const float *weights, int64_t rows, int64_t cols, std::vector<double> hessian,
                  const Format &format, const GPTQConfig &config, QuantizedMatrix *out,
                  std::string *warning, std::string *error);

} // namespace qopt::quant

#endif
