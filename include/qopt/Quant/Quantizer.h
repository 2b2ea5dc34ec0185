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
// Per kind (docs/quantization.md has the full table):
//  - int, asymmetric: code = clamp(round(w / s) + z, 0, 2^b - 1),
//    w' = (code - z) * s; symmetric: z is the fixed midpoint 2^(b-1) and
//    s = absmax / (2^(b-1) - 1) (no `.zeros` tensor).
//  - nf4: code = index of the nearest of bitsandbytes' 16 NF4 levels to
//    w / absmax; the per-block absmax is double-quantized: `<name>.absmax_q`
//    ui8 [rows, groups] and `<name>.absmax_scale` f32 [chunks, 2] holding
//    (offset, step) per kNF4AbsmaxChunk blocks in row-major block order,
//    absmax = offset + code * step. No `.scales` tensor.
//  - fp8_e4m3: code = the E4M3 (fn) bit pattern of w / s, round to nearest
//    even, saturating at +-448; `.scales` are fp32 per output channel.
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
  /// NF4 only: the stored form of `scales` (which hold the dequantized
  /// absmax): ui8 codes [rows, groups] and (offset, step) per chunk.
  std::vector<uint8_t> absmaxCodes;
  std::vector<float> absmaxChunks;
};

/// bitsandbytes' 16 NF4 levels (quantiles of N(0,1) scaled to [-1, 1]).
extern const float kNF4Levels[16];
/// Nearest NF4 level of x in [-1, 1] (values outside clamp).
uint8_t nf4Encode(float x);
/// FP8 E4M3 (fn) bits of x: round to nearest even, saturate to +-448,
/// NaN stays NaN (0x7f). The sign of zero is kept.
uint8_t fp8e4m3Encode(float x);
float fp8e4m3Decode(uint8_t bits);
/// Largest finite E4M3 value.
constexpr float kFP8E4M3Max = 448.0f;

/// Scale and zero of one group of `n` values: min/max (asymmetric) or absmax
/// (symmetric), shrunk by `clip` in (0, 1] (AWQ's clipping search). The
/// scale comes back fp16-rounded; the zero is an integer code.
void groupParams(const float *x, int64_t n, const Format &format, float clip, float *scale,
                 float *zero);
/// Nearest code of x under (scale, zero). Symmetric int ignores `zero`
/// (the midpoint 2^(bits-1) is implied); nf4 reads `scale` as the block's
/// absmax; fp8 ignores `zero`.
uint8_t quantizeValue(float x, float scale, float zero, const Format &format);
float dequantizeValue(uint8_t code, float scale, float zero, const Format &format);

/// Round-to-nearest of a row-major [rows, cols] matrix. For NF4 the block
/// absmax values are double-quantized before the codes are chosen.
QuantizedMatrix quantizeRTN(const float *weights, int64_t rows, int64_t cols,
                            const Format &format);
/// fp32 [rows, cols] from a quantized matrix.
std::vector<float> dequantize(const QuantizedMatrix &q);

/// Fills q->absmaxCodes / absmaxChunks from the raw block absmax values in
/// q->scales and replaces q->scales by their dequantized values (NF4).
void doubleQuantizeAbsmax(QuantizedMatrix *q);

/// Names of the store tensors a quantized weight `name` consists of.
std::vector<std::string> quantizedTensorNames(const std::string &name, const Format &format);

/// Adds `<name>.qweight/.scales/.zeros` (NF4: `.absmax_q/.absmax_scale`)
/// to the store. False with *error (e.g. a name that already exists).
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
