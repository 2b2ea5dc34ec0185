//===- W8A8Gemm.h - INT8 / FP8 GEMM with per-token x per-channel scales -*- C++ -*-===//
//
// W8A8: activations quantized per token (quantizePerToken), weights per
// output channel, the product through cuBLASLt (int8 -> int32, or FP8 E4M3
// -> fp32), then an epilogue kernel applying x_scale[m] * w_scale[n] + bias
// and converting to the output type. The producer of x will fuse the
// quantization later; here it is its own kernel.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_W8A8GEMM_H
#define QOPT_CUDA_W8A8GEMM_H

#include "qopt-cuda/DType.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace qcuda {

/// 8-bit element type of quantized activations and weights.
enum class Q8Type { kInt8, kFp8E4M3 };

/// Largest magnitude of a Q8Type: 127 (int8, symmetric) or 448 (E4M3).
inline float q8Max(Q8Type t) { return t == Q8Type::kInt8 ? 127.f : 448.f; }

/// Per-token quantization of x [M, K] (f16/bf16): scale[m] = max|x[m,:]| /
/// q8Max (1 for an all-zero row), q = x / scale (fp32 division) rounded to
/// nearest even: int8 clamped to +-127, E4M3 saturating at +-448.
/// q is [M, K] int8 or E4M3 bytes, scales [M] fp32.
bool quantizePerToken(const void *x, DType xType, int64_t M, int64_t K, Q8Type qType, void *q,
                      float *scales, cudaStream_t stream, std::string *error);

struct W8A8GemmArgs {
  Q8Type type = Q8Type::kInt8;
  const void *xq = nullptr;        ///< [M, K] quantized activations
  const float *xScales = nullptr;  ///< [M]
  const void *wq = nullptr;        ///< [N, K] quantized weights, row-major
  const float *wScales = nullptr;  ///< [N]
  const float *bias = nullptr;     ///< [N] fp32, or null
  void *y = nullptr;               ///< [M, N] row-major, yType
  DType yType = DType::kBF16;
  int64_t M = 0, N = 0, K = 0;
  void *accum = nullptr;           ///< workspace of M * N * 4 bytes (int32 / fp32 product)
};

/// Owns a cuBLASLt handle and its workspace. Not copyable.
class W8A8Gemm {
public:
  W8A8Gemm() = default;
  ~W8A8Gemm();
  W8A8Gemm(const W8A8Gemm &) = delete;
  W8A8Gemm &operator=(const W8A8Gemm &) = delete;

  /// Creates the handle and a 32 MiB workspace on the current device.
  bool init(std::string *error);
  /// Enqueues y = (xq . wq^T) * xScales[m] * wScales[n] + bias. K must be a
  /// multiple of 16 (cuBLASLt's 8-bit kernels). FP8 needs sm_89 or newer.
  /// xq, wq and accum may be offsets into larger buffers: cuBLASLt is told
  /// their actual alignment (its kernels need 4 bytes for INT8, 16 for FP8).
  bool run(const W8A8GemmArgs &args, cudaStream_t stream, std::string *error);

private:
  void *handle_ = nullptr; ///< cublasLtHandle_t
  void *workspace_ = nullptr;
  size_t workspaceBytes_ = 0;
};

} // namespace qcuda

#endif
