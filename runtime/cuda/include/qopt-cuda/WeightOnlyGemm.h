//===- WeightOnlyGemm.h - W4A16 / W8A16 GEMM on CUDA ----------*- C++ -*-===//
//
// y[M, N] = x[M, K] . W^T + bias, W int4/int8 in GpuPackedLayout.h's layout,
// x fp16 or bf16, fp32 accumulation, y fp16/bf16/fp32. Two kernels:
//  - small-M (M <= 16): memory-bound; each warp streams 4 weight rows with
//    16-byte loads and dequantizes in registers (WeightOnlyGemv.cu);
//  - tensor-core (any M): mma.sync m16n8k16 over 64x128x64 block tiles, a
//    3-stage cp.async pipeline, weights dequantized from shared memory into
//    B fragments (WeightOnlyMma.cu).
// weightOnlyGemm picks by M unless told which.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_WEIGHTONLYGEMM_H
#define QOPT_CUDA_WEIGHTONLYGEMM_H

#include "qopt-cuda/DType.h"
#include "qopt-cuda/GpuPackedLayout.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace qcuda {
namespace gen {
struct GenKernel;
}

/// Device pointers to one GPU-packed matrix (GpuPackedHost copied as is).
struct GpuQuantWeights {
  GpuQuantFormat format;
  GpuPackedGeometry geometry;
  const uint32_t *codes = nullptr;  ///< [N][wordsPerRow]
  const uint16_t *scales = nullptr; ///< [groups][N] fp16
  const uint16_t *zeros = nullptr;  ///< [groups][N] fp16; null if symmetric
  /// The artifact's generated kernels for this shape (GenLibrary::find), or
  /// null: the runtime's generic kernels run.
  const gen::GenKernel *special = nullptr;
};

enum class WeightOnlyKernel { kAuto, kSmallM, kTensorCore };

/// Largest M the small-M kernel takes (kAuto uses it up to here).
constexpr int64_t kSmallMMax = 16;

struct WeightOnlyGemmArgs {
  const void *x = nullptr; ///< [M, K] row-major, xType
  DType xType = DType::kBF16;  ///< kF16 or kBF16
  GpuQuantWeights w;
  const void *bias = nullptr;  ///< [N] in xType, or null
  void *y = nullptr;           ///< [M, N] row-major, yType
  DType yType = DType::kBF16;
  int64_t M = 0;
  WeightOnlyKernel kernel = WeightOnlyKernel::kAuto;
};

/// Enqueues the GEMM on `stream`. False with *error (nothing enqueued) for
/// bad arguments, or when the launch fails.
bool weightOnlyGemm(const WeightOnlyGemmArgs &args, cudaStream_t stream, std::string *error);

} // namespace qcuda

#endif
