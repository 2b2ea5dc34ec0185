//===- ActQuant.cu - per-token int8 / FP8 quantization of activations ----===//
//
// One block per token row: a max-|x| reduction, then one pass writing the
// codes. The division (not a multiply by 1/scale) keeps the codes equal to a
// CPU reference computing x / scale in fp32.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/W8A8Gemm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace qcuda {
namespace {

constexpr int kThreads = 256;

__device__ inline float toF32(__half v) { return __half2float(v); }
__device__ inline float toF32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename XT, bool Fp8>
__global__ void __launch_bounds__(kThreads)
    quantizeRowsKernel(const XT *__restrict__ x, int64_t K, uint8_t *__restrict__ q,
                       float *__restrict__ scales) {
  const int64_t row = blockIdx.x;
  const XT *xr = x + row * K;
  float amax = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += kThreads)
    amax = fmaxf(amax, fabsf(toF32(xr[k])));
  for (int off = 16; off > 0; off >>= 1)
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  __shared__ float warpMax[kThreads / 32];
  if (threadIdx.x % 32 == 0)
    warpMax[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = 0.f;
  for (int w = 0; w < kThreads / 32; ++w)
    amax = fmaxf(amax, warpMax[w]);
  const float qmax = Fp8 ? 448.f : 127.f;
  const float scale = amax > 0.f ? amax / qmax : 1.f;
  if (threadIdx.x == 0)
    scales[row] = scale;
  uint8_t *qr = q + row * K;
  for (int64_t k = threadIdx.x; k < K; k += kThreads) {
    const float v = toF32(xr[k]) / scale;
    if constexpr (Fp8) {
      qr[k] = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
    } else {
      const float r = fminf(fmaxf(rintf(v), -127.f), 127.f);
      qr[k] = uint8_t(int8_t(r));
    }
  }
}

template <typename XT>
void launch(const void *x, int64_t M, int64_t K, Q8Type t, void *q, float *scales,
            cudaStream_t stream) {
  auto *xp = static_cast<const XT *>(x);
  auto *qp = static_cast<uint8_t *>(q);
  if (t == Q8Type::kFp8E4M3)
    quantizeRowsKernel<XT, true><<<unsigned(M), kThreads, 0, stream>>>(xp, K, qp, scales);
  else
    quantizeRowsKernel<XT, false><<<unsigned(M), kThreads, 0, stream>>>(xp, K, qp, scales);
}

} // namespace

bool quantizePerToken(const void *x, DType xType, int64_t M, int64_t K, Q8Type qType, void *q,
                      float *scales, cudaStream_t stream, std::string *error) {
  if (!x || !q || !scales || M <= 0 || K <= 0 || M > (int64_t(1) << 31) - 1) {
    *error = "quantizePerToken: null buffer or bad shape M=" + std::to_string(M) +
             " K=" + std::to_string(K);
    return false;
  }
  if (xType == DType::kF16)
    launch<__half>(x, M, K, qType, q, scales, stream);
  else if (xType == DType::kBF16)
    launch<__nv_bfloat16>(x, M, K, qType, q, scales, stream);
  else {
    *error = "quantizePerToken: x must be f16 or bf16, got " + std::string(dtypeName(xType));
    return false;
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    *error = std::string("quantizePerToken: launch failed: ") + cudaGetErrorString(err);
    return false;
  }
  return true;
}

} // namespace qcuda
