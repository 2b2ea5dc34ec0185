//===- RowKernels.cu - RMSNorm (+ residual), SwiGLU, embedding gather ------===//
//
// Bandwidth-bound row kernels: 16-byte loads and stores of 8 bf16 values,
// fp32 math. RMSNorm takes one block per row (a block-wide sum of squares);
// SwiGLU and the gather are flat grid-stride loops over 8-element vectors.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/Elementwise.h"

#include "elementwise/RowMath.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qcuda {
namespace {

constexpr int kNormThreads = 256;

using rowmath::pack8;
using rowmath::unpack8;

__global__ void __launch_bounds__(kNormThreads)
    rmsNormKernel(uint4 *x, const uint4 *residual, const float *weight, int64_t vecs, float eps,
                  float dim, uint4 *out) {
  const int64_t row = blockIdx.x;
  uint4 *xr = x + row * vecs;
  const float inv = rowmath::rmsInverse<kNormThreads>(xr, residual ? residual + row * vecs : nullptr,
                                                      vecs, eps, dim);
  for (int64_t i = threadIdx.x; i < vecs; i += kNormThreads) {
    float f[8];
    rowmath::normalize8(xr[i], weight, i, inv, f);
    out[row * vecs + i] = pack8(f);
  }
}

__global__ void swigluKernel(const uint4 *gu, int64_t rows, int64_t vecs, uint4 *out) {
  const int64_t n = rows * vecs;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / vecs, c = i % vecs;
    float v[8];
    rowmath::swiglu8(gu[r * 2 * vecs + c], gu[r * 2 * vecs + vecs + c], v);
    out[i] = pack8(v);
  }
}

template <class Src>
__global__ void embeddingKernel(const Src *table, int64_t vocab, int64_t dim, const int32_t *ids,
                                int64_t numTokens, __nv_bfloat16 *out) {
  const int64_t n = numTokens * dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / dim, c = i % dim;
    const int32_t id = ids[t];
    float v = 0.0f;
    if (id >= 0 && id < vocab) {
      if constexpr (sizeof(Src) == 4)
        v = table[int64_t(id) * dim + c];
      else
        v = __bfloat162float(table[int64_t(id) * dim + c]);
    }
    out[i] = __float2bfloat16_rn(v);
  }
}

bool fail(std::string *error, const std::string &m) {
  if (error)
    *error = m;
  return false;
}

bool launched(std::string *error, const char *what) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess)
    return true;
  return fail(error, std::string(what) + ": launch failed: " + cudaGetErrorString(e));
}

/// Enough blocks of 256 threads for `n` items, capped: the loops stride.
unsigned flatBlocks(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return unsigned(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

} // namespace

bool rmsNorm(void *x, const void *residual, const float *weight, int64_t rows, int64_t dim,
             float eps, void *out, cudaStream_t stream, std::string *error) {
  if (rows < 0 || dim <= 0 || dim % 8 != 0)
    return fail(error, "rms_norm: dim " + std::to_string(dim) +
                           " must be a positive multiple of 8 (rows " + std::to_string(rows) + ")");
  if (rows > 0x7fffffff)
    return fail(error, "rms_norm: more than 2^31 rows");
  if (rows == 0)
    return true;
  if (!x || !weight || !out)
    return fail(error, "rms_norm: x, weight or out is null");
  if (out == x)
    return fail(error, "rms_norm: out must not alias x");
  rmsNormKernel<<<unsigned(rows), kNormThreads, 0, stream>>>(
      static_cast<uint4 *>(x), static_cast<const uint4 *>(residual), weight, dim / 8, eps,
      float(dim), static_cast<uint4 *>(out));
  return launched(error, "rms_norm");
}

bool swiglu(const void *gateUp, int64_t rows, int64_t inter, void *out, cudaStream_t stream,
            std::string *error) {
  if (rows < 0 || inter <= 0 || inter % 8 != 0)
    return fail(error, "swiglu: intermediate size " + std::to_string(inter) +
                           " must be a positive multiple of 8");
  if (rows == 0)
    return true;
  if (!gateUp || !out)
    return fail(error, "swiglu: input or output is null");
  const int64_t vecs = inter / 8;
  swigluKernel<<<flatBlocks(rows * vecs), 256, 0, stream>>>(static_cast<const uint4 *>(gateUp),
                                                            rows, vecs, static_cast<uint4 *>(out));
  return launched(error, "swiglu");
}

bool embeddingGather(const void *table, EmbeddingType type, int64_t vocab, int64_t dim,
                     const int32_t *ids, int64_t numTokens, void *out, cudaStream_t stream,
                     std::string *error) {
  if (vocab <= 0 || dim <= 0 || numTokens < 0)
    return fail(error, "embedding: vocab " + std::to_string(vocab) + " and dim " +
                           std::to_string(dim) + " must be positive");
  if (numTokens == 0)
    return true;
  if (!table || !ids || !out)
    return fail(error, "embedding: table, ids or out is null");
  auto *o = static_cast<__nv_bfloat16 *>(out);
  const unsigned blocks = flatBlocks(numTokens * dim);
  if (type == EmbeddingType::F32)
    embeddingKernel<<<blocks, 256, 0, stream>>>(static_cast<const float *>(table), vocab, dim, ids,
                                                numTokens, o);
  else
    embeddingKernel<<<blocks, 256, 0, stream>>>(static_cast<const __nv_bfloat16 *>(table), vocab,
                                                dim, ids, numTokens, o);
  return launched(error, "embedding");
}

} // namespace qcuda
