//===- WeightOnlyGemm.cpp - argument checks and the choice of kernel -----===//
//
// Every check happens here, before anything is enqueued, so a bad call is
// one error line and never a fault inside a kernel.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/WeightOnlyGemm.h"

#include "qopt-cuda/gen/Registry.h"
#include "qopt-cuda/kernels/WeightOnlyParams.h"

#include <algorithm>

namespace qcuda {
namespace {

bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

/// Multiprocessors of the current device, asked once per device.
int multiprocessors() {
  static int cached[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64)
    return 0;
  if (cached[dev] == 0) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess)
      cached[dev] = n;
  }
  return cached[dev];
}

bool fail(std::string *error, const std::string &what) {
  *error = "weightOnlyGemm: " + what;
  return false;
}

} // namespace

int weightOnlyGemmSplits(int64_t M, int64_t N, int64_t K, size_t workspaceBytes, int sms) {
  constexpr int64_t kTileM = 64, kTileN = 128, kTileK = 64, kMinTilesPerSplit = 4;
  if (M > kSplitKMaxM || sms <= 0)
    return 1;
  const int64_t blocks = ((N + kTileN - 1) / kTileN) * ((M + kTileM - 1) / kTileM);
  if (blocks >= sms)
    return 1; // a full wave without splitting
  int64_t splits = std::min<int64_t>(kSplitKMaxSplits, (sms + blocks - 1) / blocks);
  splits = std::min<int64_t>(splits, (K / kTileK) / kMinTilesPerSplit);
  while (splits > 1 && size_t(splits) * size_t(M) * size_t(N) * sizeof(float) > workspaceBytes)
    --splits;
  return splits > 1 ? int(splits) : 1;
}

bool weightOnlyGemm(const WeightOnlyGemmArgs &a, cudaStream_t stream, std::string *error) {
  const GpuQuantWeights &w = a.w;
  GpuPackedGeometry geo;
  if (!computeGpuGeometry(w.format, w.geometry.rows, w.geometry.cols, &geo, error))
    return false;
  if (geo.groups != w.geometry.groups || geo.groupSize != w.geometry.groupSize ||
      geo.wordsPerRow != w.geometry.wordsPerRow)
    return fail(error, "weight geometry does not match its format (not from computeGpuGeometry)");
  if (a.xType != DType::kF16 && a.xType != DType::kBF16)
    return fail(error, std::string("x must be f16 or bf16, got ") + dtypeName(a.xType));
  if (!a.x || !a.y || !w.codes || !w.scales)
    return fail(error, "null x, y, codes or scales");
  if (w.format.symmetric != (w.zeros == nullptr))
    return fail(error, w.format.symmetric ? "symmetric weights must have no zeros"
                                          : "asymmetric weights need zeros");
  if (!aligned16(a.x) || !aligned16(w.codes))
    return fail(error, "x and codes must be 16-byte aligned");
  constexpr int64_t kMaxM = int64_t(65535) * 64; // grid.y of the tensor-core kernel
  if (a.M <= 0 || a.M > kMaxM)
    return fail(error, "M must be in [1, " + std::to_string(kMaxM) + "], got " +
                           std::to_string(a.M));
  WeightOnlyKernel kernel = a.kernel;
  if (kernel == WeightOnlyKernel::kAuto)
    kernel = a.M <= kSmallMAutoMax ? WeightOnlyKernel::kSmallM : WeightOnlyKernel::kTensorCore;
  if (kernel == WeightOnlyKernel::kSmallM && a.M > kSmallMMax)
    return fail(error, "the small-M kernel takes M <= " + std::to_string(kSmallMMax) +
                           ", got " + std::to_string(a.M));

  detail::WeightOnlyParams p;
  p.x = a.x;
  p.codes = w.codes;
  p.scales = w.scales;
  p.zeros = w.zeros;
  p.bias = a.bias;
  p.y = a.y;
  p.yType = int(a.yType);
  p.M = int(a.M);
  p.N = int(geo.rows);
  p.K = int(geo.cols);
  p.groupSize = int(geo.groupSize);
  p.splitK = 1;
  p.partial = nullptr;
  if (kernel == WeightOnlyKernel::kTensorCore && a.workspace) {
    if (!aligned16(a.workspace))
      return fail(error, "the split-K workspace must be 16-byte aligned");
    p.splitK = weightOnlyGemmSplits(a.M, geo.rows, geo.cols, a.workspaceBytes, multiprocessors());
    p.partial = p.splitK > 1 ? static_cast<float *>(a.workspace) : nullptr;
  }
  cudaError_t err;
  if (const gen::GenKernel *k = w.special) {
    // A generated kernel has its shape compiled in: it must be this one's.
    if (k->rows != geo.rows || k->cols != geo.cols || k->bits != w.format.bits ||
        k->groupSize != geo.groupSize || (k->symmetric != 0) != w.format.symmetric ||
        k->xType != int(a.xType))
      return fail(error, "the generated kernel attached to this " + std::to_string(geo.rows) +
                             "x" + std::to_string(geo.cols) + " weight is for " +
                             std::to_string(k->rows) + "x" + std::to_string(k->cols) +
                             " int" + std::to_string(k->bits) + " (another weight's)");
    err = kernel == WeightOnlyKernel::kSmallM ? k->smallM(&p, stream) : k->tensorCore(&p, stream);
  } else {
    err = kernel == WeightOnlyKernel::kSmallM
              ? detail::launchSmallM(p, a.xType, w.format.bits, stream)
              : detail::launchTensorCore(p, a.xType, w.format.bits, stream);
  }
  if (err != cudaSuccess)
    return fail(error, std::string("launch failed: ") + cudaGetErrorString(err));
  return true;
}

} // namespace qcuda
