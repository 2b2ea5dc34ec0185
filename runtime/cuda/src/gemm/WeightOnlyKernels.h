//===- WeightOnlyKernels.h - launchers behind weightOnlyGemm ---*- C++ -*-===//
#ifndef QOPT_CUDA_GEMM_WEIGHTONLYKERNELS_H
#define QOPT_CUDA_GEMM_WEIGHTONLYKERNELS_H

#include "qopt-cuda/DType.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace qcuda::detail {

/// Arguments both kernels take, already validated by weightOnlyGemm.
struct WeightOnlyParams {
  const void *x;          ///< [M, K] f16 / bf16
  const uint32_t *codes;  ///< [N][K * bits / 32]
  const uint16_t *scales; ///< [groups][N] fp16
  const uint16_t *zeros;  ///< [groups][N] fp16, or null: zero = 2^(bits-1)
  const void *bias;       ///< [N] in x's type, or null
  void *y;                ///< [M, N]
  int yType;              ///< DType
  int M, N, K, groupSize; ///< groupSize: effective (per-channel = K)
};

cudaError_t launchSmallM(const WeightOnlyParams &p, DType xType, int bits, cudaStream_t stream);
cudaError_t launchTensorCore(const WeightOnlyParams &p, DType xType, int bits,
                             cudaStream_t stream);

} // namespace qcuda::detail

#endif
