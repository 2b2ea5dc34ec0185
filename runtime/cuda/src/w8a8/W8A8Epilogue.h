//===- W8A8Epilogue.h - scales + bias + conversion after the 8-bit GEMM -*- C++ -*-===//
#ifndef QOPT_CUDA_W8A8EPILOGUE_H
#define QOPT_CUDA_W8A8EPILOGUE_H

#include "qopt-cuda/DType.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace qcuda::detail {

/// y[m, n] = acc[m, n] * xScales[m] * wScales[n] + bias[n] (bias may be
/// null); acc is int32 (accIsInt) or fp32, [M, N] row-major.
cudaError_t launchW8A8Epilogue(const void *acc, bool accIsInt, const float *xScales,
                               const float *wScales, const float *bias, void *y, DType yType,
                               int64_t M, int64_t N, cudaStream_t stream);

} // namespace qcuda::detail

#endif
