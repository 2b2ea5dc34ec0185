//===- WeightOnlyGemm.h - W4A16 / W8A16 GEMM on CUDA ----------*- C++ -*-===//
//
// y[M, N] = x[M, K] . W^T + bias, W int4/int8 in GpuPackedLayout.h's layout,
// x fp16 or bf16, fp32 accumulation, y fp16/bf16/fp32. Two kernels:
//  - small-M (M <= 16): memory-bound; each warp streams 4 weight rows with
//    16-byte loads and dequantizes in registers (WeightOnlyGemv.cu);
//  - tensor-core (any M): mma.sync m16n8k16 over 64x128x64 block tiles, a
//    3-stage cp.async pipeline, weights dequantized from shared memory into
//    B fragments (WeightOnlyMma.cu); split over K when the M x N tiles
//    alone would leave SMs idle and the caller gave a workspace.
// weightOnlyGemm picks by M unless told which. Both are templates
// (qopt-cuda/kernels/) that qopt also instantiates per model shape
// (GpuQuantWeights::special, docs/codegen.md).
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

/// Largest M the small-M kernel takes.
constexpr int64_t kSmallMMax = 16;
/// Largest M kAuto gives the small-M kernel: its dequantization is redone
/// per row of x on CUDA cores, so beyond M = 2 the tensor-core kernel
/// (dequantizing once per 64 rows) should win. An estimate from operation
/// counts, not a measurement yet: bench/gpu/gemm_bench.cu times both.
constexpr int64_t kSmallMAutoMax = 2;
/// Split-K: at most this many splits, for M up to kSplitKMaxM.
constexpr int kSplitKMaxSplits = 8;
constexpr int64_t kSplitKMaxM = 128;

/// Workspace that lets weightOnlyGemm split K for any M <= maxM and N <=
/// maxN (fp32 partial sums of every split).
inline size_t weightOnlyGemmWorkspaceBytes(int64_t maxM, int64_t maxN) {
  const int64_t m = maxM < kSplitKMaxM ? maxM : kSplitKMaxM;
  return size_t(kSplitKMaxSplits) * size_t(m) * size_t(maxN) * sizeof(float);
}

struct WeightOnlyGemmArgs {
  const void *x = nullptr; ///< [M, K] row-major, xType
  DType xType = DType::kBF16;  ///< kF16 or kBF16
  GpuQuantWeights w;
  const void *bias = nullptr;  ///< [N] in xType, or null
  void *y = nullptr;           ///< [M, N] row-major, yType
  DType yType = DType::kBF16;
  int64_t M = 0;
  WeightOnlyKernel kernel = WeightOnlyKernel::kAuto;
  /// Optional workspace for split-K (weightOnlyGemmWorkspaceBytes); without
  /// it the tensor-core kernel never splits. Device memory, 16-byte aligned;
  /// used only by this call (stream order).
  void *workspace = nullptr;
  size_t workspaceBytes = 0;
};

/// Number of K splits weightOnlyGemm would use for this call on `sms`
/// multiprocessors (1 = none). Exposed for tests and the benchmark.
int weightOnlyGemmSplits(int64_t M, int64_t N, int64_t K, size_t workspaceBytes, int sms);

/// Enqueues the GEMM on `stream`. False with *error (nothing enqueued) for
/// bad arguments, or when the launch fails.
bool weightOnlyGemm(const WeightOnlyGemmArgs &args, cudaStream_t stream, std::string *error);

} // namespace qcuda

#endif
