//===- FloatGemmBaseline.h - the float GEMM floatGemm replaced -*- C++ -*-===//
#ifndef QOPT_BENCH_RUNTIME_KERNELS_FLOATGEMMBASELINE_H
#define QOPT_BENCH_RUNTIME_KERNELS_FLOATGEMMBASELINE_H

#include "qopt-rt/kernels/FloatGemm.h"

namespace qrt::bench {

/// y[M, N] = x[M, K] W^T (ldx = K, ldy = N, no bias) with the executor's
/// former per-row loop on `threads` workers of `pool`.
void baselineFloatGemm(const kernels::FloatWeight &w, const float *x, int64_t M, float *y,
                       kernels::ThreadPool &pool, int threads);

} // namespace qrt::bench

#endif
