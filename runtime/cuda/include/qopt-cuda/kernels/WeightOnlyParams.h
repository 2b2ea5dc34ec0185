//===- WeightOnlyParams.h - what the weight-only kernels take -*- C++ -*-===//
//
// The weight-only GEMM kernels (GemvKernel.cuh, MmaKernel.cuh) are
// templates over a weight description W that says where the matrix's
// shape, group size and zero-point mode come from:
//  - DynamicWeight: from the run-time parameters (the runtime's own
//    instantiations, any shape);
//  - StaticWeight<...>: compile-time constants, for the kernels qopt
//    generates per model (docs/codegen.md), so index arithmetic folds and
//    the symmetric case drops its zero loads.
// Both are instantiated from the same kernel source, so a generated kernel
// computes exactly what the generic one does.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_KERNELS_WEIGHTONLYPARAMS_H
#define QOPT_CUDA_KERNELS_WEIGHTONLYPARAMS_H

#include "qopt-cuda/DType.h"

#include <cuda_runtime_api.h>

#include <cstdint>

#ifndef __CUDACC__
#define QCUDA_HD
#else
#define QCUDA_HD __host__ __device__
#endif

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
  /// Tensor-core kernel only: K split over splitK blocks writing fp32 partial
  /// sums to `partial` [splitK][M][N], then reduced (MmaKernel.cuh). 1 / null:
  /// no split.
  int splitK;
  float *partial;
};

/// Shape and zero-point mode read from the parameters.
struct DynamicWeight {
  static QCUDA_HD int rows(const WeightOnlyParams &p) { return p.N; }
  static QCUDA_HD int cols(const WeightOnlyParams &p) { return p.K; }
  static QCUDA_HD int groupSize(const WeightOnlyParams &p) { return p.groupSize; }
  static QCUDA_HD bool hasZeros(const WeightOnlyParams &p) { return p.zeros != nullptr; }
};

/// Shape and zero-point mode fixed at compile time. Group is the effective
/// group size (per-channel = Cols).
template <int Bits, int Group, bool Symmetric, int Rows, int Cols> struct StaticWeight {
  static_assert(Bits == 4 || Bits == 8, "int4 and int8 weights");
  static_assert(Group > 0 && Group % 32 == 0, "groups are multiples of 32 columns");
  static_assert(Rows % 64 == 0 && Cols % 64 == 0, "the kernels have no tails");
  static constexpr int kBits = Bits;
  static QCUDA_HD constexpr int rows(const WeightOnlyParams &) { return Rows; }
  static QCUDA_HD constexpr int cols(const WeightOnlyParams &) { return Cols; }
  static QCUDA_HD constexpr int groupSize(const WeightOnlyParams &) { return Group; }
  static QCUDA_HD constexpr bool hasZeros(const WeightOnlyParams &) { return !Symmetric; }
};

// The runtime's generic launchers (src/gemm/*.cu).
cudaError_t launchSmallM(const WeightOnlyParams &p, DType xType, int bits, cudaStream_t stream);
cudaError_t launchTensorCore(const WeightOnlyParams &p, DType xType, int bits,
                             cudaStream_t stream);

} // namespace qcuda::detail

#endif
