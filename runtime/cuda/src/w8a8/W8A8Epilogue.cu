//===- W8A8Epilogue.cu - per-token x per-channel scales after cuBLASLt ---===//
//
// cuBLASLt's scale pointers are per tensor on most versions; per-token x
// per-channel needs an outer-product scale, so it is applied here, in one
// elementwise pass over the int32/fp32 product.
//
//===----------------------------------------------------------------------===//
#include "w8a8/W8A8Epilogue.h"

#include "qopt-cuda/kernels/DeviceUtil.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace qcuda::detail {
namespace {

template <typename AccT>
__global__ void epilogueKernel(const AccT *__restrict__ acc, const float *__restrict__ xs,
                               const float *__restrict__ ws, const float *__restrict__ bias,
                               void *__restrict__ y, int yType, int64_t M, int64_t N) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / N, n = i % N;
    float v = float(acc[i]) * xs[m] * ws[n];
    if (bias)
      v += bias[n];
    storeOut(y, i, v, yType);
  }
}

} // namespace

cudaError_t launchW8A8Epilogue(const void *acc, bool accIsInt, const float *xScales,
                               const float *wScales, const float *bias, void *y, DType yType,
                               int64_t M, int64_t N, cudaStream_t stream) {
  const int threads = 256;
  const int64_t want = (M * N + threads - 1) / threads;
  const unsigned blocks = unsigned(want < 65536 ? want : 65536);
  if (accIsInt)
    epilogueKernel<int32_t><<<blocks, threads, 0, stream>>>(
        static_cast<const int32_t *>(acc), xScales, wScales, bias, y, int(yType), M, N);
  else
    epilogueKernel<float><<<blocks, threads, 0, stream>>>(
        static_cast<const float *>(acc), xScales, wScales, bias, y, int(yType), M, N);
  return cudaGetLastError();
}

} // namespace qcuda::detail
