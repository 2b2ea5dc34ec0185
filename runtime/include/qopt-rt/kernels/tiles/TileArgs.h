//===- TileArgs.h - what a tile kernel reads and writes ---------*- C++ -*-===//
//
// Plain structs shared by the runtime's generic kernels (src/kernels) and
// the model-specialized kernels that qopt generates per artifact
// (kernels/gen/Specialize.h): both call the same tile templates
// (tiles/*.inc) with these arguments, so a specialized kernel is a generic
// one with its geometry turned into compile-time constants.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_KERNELS_TILES_TILEARGS_H
#define QOPT_RT_KERNELS_TILES_TILEARGS_H

#include <cstdint>

namespace qrt::kernels::detail {

/// A packed matrix as the kernels see it (see PackedGeometry in
/// PackedLayout.h): group g of a tile has its superblock at
/// (g / 4) * superblockStride, its scales at +32 (g % 4), zeros at
/// +128 + 16 (g % 4) and codes at +metaBytes + (g % 4) * groupCodeBytes.
struct WeightArgs {
  const uint8_t *data;
  int64_t rows;        ///< N (rows past it in the last tile are not stored)
  int64_t paddedCols;  ///< Kp
  int64_t groupSize;   ///< columns per group (multiple of 32)
  int64_t groups;
  int64_t tileStride, superblockStride, metaBytes, groupCodeBytes;
  int bits;            ///< 4 or 8
  int symmetric;       ///< zero = 2^(bits-1), no zeros stored
};

/// fp32 activations: row m at x + m * ldx, readable up to paddedCols
/// (zeros past K); bsum[m * ldb + b] = sum of row m's columns 32b..32b+31,
/// for the zero-point term (the kernels dot the raw codes with x).
struct ActF32 {
  const float *x;
  int64_t ldx;
  const float *bsum;
  int64_t ldb;
};

/// int8 activations, quantized per block of 32 columns:
/// x[m][k] ~ q[m][k] * sx[m][k / 32]; gsum[m][g] = sum over the group's
/// blocks of sx * (sum of q), for the zero-point term.
struct ActI8 {
  const int8_t *q;
  int64_t ldq;          ///< >= paddedCols
  const float *sx;
  int64_t ldsx;         ///< >= paddedCols / 32
  const float *gsum;
  int64_t ldg;          ///< >= groups
};

struct OutArgs {
  float *y;
  int64_t ldy;
  const float *bias;    ///< [N] or null
};

/// y rows [m0, m1) x tiles [t0, t1).
using F32Kernel = void (*)(const WeightArgs &, const ActF32 &, const OutArgs &, int64_t t0,
                           int64_t t1, int64_t m0, int64_t m1);
using I8Kernel = void (*)(const WeightArgs &, const ActI8 &, const OutArgs &, int64_t t0,
                          int64_t t1, int64_t m0, int64_t m1);
/// Quantizes rows [m0, m1) of x (K valid columns, zero up to Kp) to int8 per
/// block of 32: q[m*ldq + k], sx[m*ldsx + b], bsum[m*ldsx + b] (sum of the
/// block's q). Round to nearest even of x * (127 / absmax); a block with a
/// NaN or infinity gets sx = NaN (its outputs become NaN).
using QuantizeKernel = void (*)(const float *x, int64_t ldx, int64_t K, int64_t Kp, int64_t m0,
                                int64_t m1, int8_t *q, int64_t ldq, float *sx, int32_t *bsum,
                                int64_t ldsx);

} // namespace qrt::kernels::detail

#endif
