//===- ActQuant.h - producers that write W8A8 activations directly --*- C++ -*-===//
//
// The kernels in front of a W8A8 GEMM (W8A8Gemm.h), with the activation
// quantization fused in: RMSNorm (+ residual add) and SwiGLU write each
// row as 8-bit codes plus its fp32 scale instead of a bf16 row, so the
// quantizer needs no pass of its own and no bf16 round trip.
//
// What is quantized is the producer's fp32 value (the same formula, in the
// same order, as Elementwise.h's rmsNorm / swiglu compute before they round
// to bf16), not its bf16 rounding: the CPU runtime and the reference
// executor quantize fp32 rows too, and a bf16 rounding in between would
// move codes near the top of the range by up to half a step. The rounding
// is quantizePerToken's: q = v / scale (fp32 division), int8 rounded to
// nearest even and clamped to +-127, E4M3 rounded to nearest even and
// saturated at +-448.
//
// Scales, one fp32 per row so the GEMM epilogue is the same in both modes:
//  - per token: max|v| / qmax over the row; 1 for an all-zero row (as
//    quantizePerToken);
//  - static: the given calibrated scale, repeated; values past the range
//    (infinities too) clamp to +-qmax, as the CPU runtime does.
// A row holding a NaN (or, per token, an infinity) gets the scale NaN and
// zero codes, so its GEMM outputs are NaN, as on the CPU runtime; the plain
// quantizePerToken has no such check (fmaxf drops a NaN).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_ACTQUANT_H
#define QOPT_CUDA_ACTQUANT_H

#include "qopt-cuda/W8A8Gemm.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace qcuda {

/// How the per-row scale of quantized activations is chosen.
enum class ActScaleMode { kPerToken, kStatic };

/// Where and how a fused producer writes its quantized rows.
struct ActQuantOut {
  Q8Type type = Q8Type::kInt8;
  ActScaleMode mode = ActScaleMode::kPerToken;
  float staticScale = 0.f; ///< kStatic: positive and finite
  void *q = nullptr;       ///< [rows, cols] codes (int8 or E4M3 bytes)
  float *scales = nullptr; ///< [rows]
};

/// RMSNorm of `rows` bf16 rows of `dim` elements (dim a multiple of 8),
/// quantized: the row v = x * rsqrt(mean(x^2) + eps) * weight (fp32
/// weight [dim]) goes to out.q / out.scales. With `residual` non-null, x is
/// the residual stream and is first updated in place, x += residual rounded
/// to bf16 as stored, and the norm is of the stored value (Elementwise.h's
/// rmsNorm). Row strides equal `dim`.
bool rmsNormQuant(void *x, const void *residual, const float *weight, int64_t rows,
                  int64_t dim, float eps, const ActQuantOut &out, cudaStream_t stream,
                  std::string *error);

/// SwiGLU of bf16 gateUp [rows, 2*inter] (gate half first), quantized:
/// v[t, i] = silu(g) * u with silu(g) = g / (1 + exp(-g)) in fp32 (as
/// Elementwise.h's swiglu) goes to out.q [rows, inter] / out.scales. inter
/// a multiple of 8.
bool swigluQuant(const void *gateUp, int64_t rows, int64_t inter, const ActQuantOut &out,
                 cudaStream_t stream, std::string *error);

/// bf16 rows [rows, cols] (cols a multiple of 8) quantized as the two
/// producers above quantize theirs, both modes: for an input no fused
/// producer writes (attention's output in front of o_proj).
bool quantizeRows(const void *x, int64_t rows, int64_t cols, const ActQuantOut &out,
                  cudaStream_t stream, std::string *error);

} // namespace qcuda

#endif // QOPT_CUDA_ACTQUANT_H
