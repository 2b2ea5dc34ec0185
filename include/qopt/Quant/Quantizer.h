//===- Quantizer.h - quantize, dequantize, store ---------------*- C++ -*-===//
//
// The reference layout every method (RTN, GPTQ, AWQ) writes and the
// reference executor reads: one code per weight while computing; in the
// weight store, codes packed LSB-first per row (`<name>.qweight`, ui8
// [rows, ceil(cols*bits/8)]), scales fp16 [rows, groups] (`<name>.scales`)
// and, for asymmetric int, integer zero points ui8 [rows, groups]
// (`<name>.zeros`). Scales are rounded to fp16 *before* codes are chosen,
// so what the executor dequantizes is what the method optimized.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_QUANTIZER_H
#define QOPT_QUANT_QUANTIZER_H

#include "qopt/Quant/QuantFormat.h"
#include "qopt/Weights/WeightStore.h"

#include <vector>

namespace qopt::quant {

struct QuantizedMatrix {
  int64_t rows = 0, cols = 0;
  Format format;
  std::vector<uint8_t> codes; ///< [rows, cols], one code per weight
  std::vector<float> scales;  ///< [rows, groups], fp16-representable
  std::vector<float> zeros;   ///< [rows, groups] integer zero points; empty if symmetric
};

/// Scale and zero of one group of `n` values: min/max (asymmetric) or absmax
/// (symmetric), shrunk by `clip` in (0, 1] (AWQ's clipping search). The
/// scale comes back fp16-rounded; the zero is an integer code.
void groupParams(const float *x, int64_t n, const Format &format, float clip, float *scale,
                 float *zero);
/// Nearest code of x under (scale, zero).
uint8_t quantizeValue(float x, float scale, float zero, const Format &format);
float dequantizeValue(uint8_t code, float scale, float zero, const Format &format);

/// Round-to-nearest of a row-major [rows, cols] matrix.
QuantizedMatrix quantizeRTN(const float *weights, int64_t rows, int64_t cols,
                            const Format &format);
/// fp32 [rows, cols] from a quantized matrix.
std::vector<float> dequantize(const QuantizedMatrix &q);

/// Adds `<name>.qweight/.scales/.zeros` to the store. False with *error.
bool storeQuantized(WeightStore &store, const std::string &name, const QuantizedMatrix &q,
                    std::string *error);
/// Reads them back (validating sizes against the attribute and shape).
bool loadQuantized(const WeightStore &store, const std::string &name, qllm::QuantAttr attr,
                   int64_t rows, int64_t cols, QuantizedMatrix *q, std::string *error);

/// Replaces the `qllm.param` named `q`'s name by a `qllm.qparam` of the
/// same name with the format's !qllm.qweight type, after storing `q`.
/// Every user (linear, lm_head, embedding) then reads the quantized weight.
bool replaceWithQuantized(qllm::ParamOp param, WeightStore &store, const QuantizedMatrix &q,
                          std::string *error);

} // namespace qopt::quant

#endif
