//===- FloatGemmArgs.h - interface between floatGemm and its ISA kernels ===//
//
// Plain structs and declarations only, for the same reason as KernelArgs.h:
// a body here could be compiled into an AVX-512 file and be the copy the
// linker keeps for every caller.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SRC_KERNELS_FLOATGEMMARGS_H
#define QOPT_RT_SRC_KERNELS_FLOATGEMMARGS_H

#include <cstdint>

namespace qrt::kernels::detail {

/// One floatGemm call as the kernels see it.
///
/// bf16 weights: the kernels load `lanes` bf16 values (one register) and
/// widen them with a shift (even columns) and a mask (odd columns), which
/// is cheaper than a zero-extending shuffle. x must then come in the same
/// order: per block of `lanes` columns, the even columns first, then the
/// odd ones, zero-padded to a whole block (FloatGemm.cpp prepares that copy;
/// `lanes` is kBf16Block of the ISA). fp32 weights: x as given.
struct FloatGemmArgs {
  const void *w;      ///< [N, K] row-major
  int64_t K;
  int bf16;           ///< 0: fp32 weights
  const float *x;     ///< as described above
  int64_t ldx;
  float *y;
  int64_t ldy;
  const float *bias;  ///< [N] or null
};

/// Rows [n0, n1) of W against rows [m0, m1) of x. Every ISA declares its
/// kernel with this type (FloatKernel is the dispatcher's pointer to one).
using FloatKernelFn = void(const FloatGemmArgs &, int64_t n0, int64_t n1, int64_t m0,
                           int64_t m1);
using FloatKernel = FloatKernelFn *;

namespace scalar {
FloatKernelFn floatGemm;
} // namespace scalar
namespace avx2 {
/// bf16 columns per register (16 bf16 = 256 bits).
constexpr int kBf16Block = 16;
FloatKernelFn floatGemm;
} // namespace avx2
namespace avx512 {
/// bf16 columns per register (32 bf16 = 512 bits).
constexpr int kBf16Block = 32;
FloatKernelFn floatGemm;
} // namespace avx512

} // namespace qrt::kernels::detail

#endif
