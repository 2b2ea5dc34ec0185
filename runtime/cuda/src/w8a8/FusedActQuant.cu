//===- FusedActQuant.cu - RMSNorm / SwiGLU writing 8-bit activations ------===//
//
// ActQuant.h's producers. One block per row, since a per-token scale needs
// the whole row: a first pass computes the fp32 values and reduces their
// max |v| (and whether the row holds a NaN or infinity), a second pass
// recomputes the same values (same instructions, so the same bits) and
// writes the codes, 8 per 8-byte store. Recomputing costs a second read
// of a row that is still in L1/L2, and keeps any row width working without
// a shared-memory row buffer.
//
// The fp32 arithmetic is RowKernels.cu's: both use elementwise/RowMath.cuh
// (the fmaf chain of the sum of squares, the shuffle tree, the warp order),
// so a CPU emulation of it gets the same bits: the tests rely on that.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/ActQuant.h"

#include "elementwise/RowMath.cuh"

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace qcuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

/// Row-wide state of the quantizer: the max |v| and whether a value
/// makes the row unquantizable (per token: NaN or infinity; static: NaN).
struct RowStat {
  float amax = 0.f;
  bool bad = false;
};

__device__ __forceinline__ void observe(RowStat &s, float v, bool perToken) {
  const float a = fabsf(v);
  s.amax = fmaxf(s.amax, a);
  s.bad = s.bad || (perToken ? !(a <= 3.402823466e38f) : isnan(v));
}

/// The row's scale from every thread's RowStat (a block-wide reduction;
/// every thread gets the result). NaN for a bad row.
template <bool Fp8>
__device__ float rowScale(RowStat s, const ActQuantOut &o) {
  __shared__ float warpMax[kWarps];
  const bool bad = __syncthreads_or(s.bad);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    s.amax = fmaxf(s.amax, __shfl_xor_sync(0xffffffffu, s.amax, off));
  if (threadIdx.x % 32 == 0)
    warpMax[threadIdx.x / 32] = s.amax;
  __syncthreads();
  float amax = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w)
    amax = fmaxf(amax, warpMax[w]);
  if (bad)
    return __int_as_float(0x7fc00000);
  if (o.mode == ActScaleMode::kStatic)
    return o.staticScale;
  const float qmax = Fp8 ? 448.f : 127.f;
  return amax > 0.f ? amax / qmax : 1.f;
}

/// One code: quantizePerToken's rounding. A NaN scale gives code 0.
template <bool Fp8> __device__ __forceinline__ uint32_t encode(float v, float scale) {
  if (isnan(scale))
    return 0;
  const float y = v / scale;
  if constexpr (Fp8) {
    return __nv_cvt_float_to_fp8(y, __NV_SATFINITE, __NV_E4M3);
  } else {
    const float r = fminf(fmaxf(rintf(y), -127.f), 127.f);
    return uint32_t(uint8_t(int8_t(r)));
  }
}

template <bool Fp8> __device__ __forceinline__ uint2 encode8(const float *v, float scale) {
  uint2 out;
  out.x = encode<Fp8>(v[0], scale) | encode<Fp8>(v[1], scale) << 8 |
          encode<Fp8>(v[2], scale) << 16 | encode<Fp8>(v[3], scale) << 24;
  out.y = encode<Fp8>(v[4], scale) | encode<Fp8>(v[5], scale) << 8 |
          encode<Fp8>(v[6], scale) << 16 | encode<Fp8>(v[7], scale) << 24;
  return out;
}

/// The two passes every producer shares, for one row (one block): the
/// row's values (Source::values(i, v): the 8 values of vector i, computed
/// the same way both times, so the same bits) are observed for the scale,
/// then encoded with it.
template <bool Fp8, class Source>
__device__ void quantizeRow(const Source &src, int64_t row, int64_t vecs, const ActQuantOut &o) {
  const bool perToken = o.mode == ActScaleMode::kPerToken;
  RowStat stat;
  for (int64_t i = threadIdx.x; i < vecs; i += kThreads) {
    float v[8];
    src.values(i, v);
#pragma unroll
    for (int e = 0; e < 8; ++e)
      observe(stat, v[e], perToken);
  }
  const float scale = rowScale<Fp8>(stat, o);
  if (threadIdx.x == 0)
    o.scales[row] = scale;
  uint2 *qr = static_cast<uint2 *>(o.q) + row * vecs;
  for (int64_t i = threadIdx.x; i < vecs; i += kThreads) {
    float v[8];
    src.values(i, v);
    qr[i] = encode8<Fp8>(v, scale);
  }
}

/// weight * x * inv of a row whose (residual-added) values are in xr.
struct NormedRow {
  const uint4 *xr;
  const float *weight;
  float inv;
  __device__ void values(int64_t i, float *v) const {
    rowmath::normalize8(xr[i], weight, i, inv, v);
  }
};

/// silu(g) * u of a fused gate|up row.
struct SwigluRow {
  const uint4 *gu;
  int64_t vecs;
  __device__ void values(int64_t i, float *v) const { rowmath::swiglu8(gu[i], gu[vecs + i], v); }
};

/// A bf16 row as it is (attention's output before o_proj).
struct PlainRow {
  const uint4 *xr;
  __device__ void values(int64_t i, float *v) const { rowmath::unpack8(xr[i], v); }
};

template <bool Fp8>
__global__ void __launch_bounds__(kThreads)
    rmsNormQuantKernel(uint4 *x, const uint4 *residual, const float *weight, int64_t vecs,
                       float eps, float dim, ActQuantOut o) {
  const int64_t row = blockIdx.x;
  uint4 *xr = x + row * vecs;
  const float inv = rowmath::rmsInverse<kThreads>(xr, residual ? residual + row * vecs : nullptr,
                                                  vecs, eps, dim);
  quantizeRow<Fp8>(NormedRow{xr, weight, inv}, row, vecs, o);
}

template <bool Fp8>
__global__ void __launch_bounds__(kThreads)
    swigluQuantKernel(const uint4 *gateUp, int64_t vecs, ActQuantOut o) {
  const int64_t row = blockIdx.x;
  quantizeRow<Fp8>(SwigluRow{gateUp + row * 2 * vecs, vecs}, row, vecs, o);
}

template <bool Fp8>
__global__ void __launch_bounds__(kThreads)
    quantizeRowsKernel(const uint4 *x, int64_t vecs, ActQuantOut o) {
  const int64_t row = blockIdx.x;
  quantizeRow<Fp8>(PlainRow{x + row * vecs}, row, vecs, o);
}

bool fail(std::string *error, const std::string &m) {
  if (error)
    *error = m;
  return false;
}

bool launched(std::string *error, const char *what) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess)
    return true;
  return fail(error, std::string(what) + ": launch failed: " + cudaGetErrorString(e));
}

/// The checks both producers share: row count, width, the output.
bool checkCommon(const char *what, int64_t rows, int64_t cols, const char *colsName,
                 const ActQuantOut &o, std::string *error) {
  if (rows < 0 || cols <= 0 || cols % 8 != 0)
    return fail(error, std::string(what) + ": " + colsName + " " + std::to_string(cols) +
                           " must be a positive multiple of 8 (rows " + std::to_string(rows) +
                           ")");
  if (rows > 0x7fffffff)
    return fail(error, std::string(what) + ": more than 2^31 rows");
  if (rows > 0 && (!o.q || !o.scales))
    return fail(error, std::string(what) + ": the code or scale output is null");
  if (reinterpret_cast<uintptr_t>(o.q) % 8 != 0)
    return fail(error, std::string(what) + ": the code output is not 8-byte aligned");
  if (o.mode == ActScaleMode::kStatic && !(o.staticScale > 0.f && std::isfinite(o.staticScale)))
    return fail(error, std::string(what) + ": the static activation scale " +
                           std::to_string(o.staticScale) + " must be positive and finite");
  return true;
}

} // namespace

bool rmsNormQuant(void *x, const void *residual, const float *weight, int64_t rows,
                  int64_t dim, float eps, const ActQuantOut &out, cudaStream_t stream,
                  std::string *error) {
  if (!checkCommon("rms_norm_quant", rows, dim, "dim", out, error))
    return false;
  if (rows == 0)
    return true;
  if (!x || !weight)
    return fail(error, "rms_norm_quant: x or weight is null");
  auto *xv = static_cast<uint4 *>(x);
  auto *rv = static_cast<const uint4 *>(residual);
  if (out.type == Q8Type::kFp8E4M3)
    rmsNormQuantKernel<true><<<unsigned(rows), kThreads, 0, stream>>>(xv, rv, weight, dim / 8,
                                                                      eps, float(dim), out);
  else
    rmsNormQuantKernel<false><<<unsigned(rows), kThreads, 0, stream>>>(xv, rv, weight, dim / 8,
                                                                       eps, float(dim), out);
  return launched(error, "rms_norm_quant");
}

bool swigluQuant(const void *gateUp, int64_t rows, int64_t inter, const ActQuantOut &out,
                 cudaStream_t stream, std::string *error) {
  if (!checkCommon("swiglu_quant", rows, inter, "intermediate size", out, error))
    return false;
  if (rows == 0)
    return true;
  if (!gateUp)
    return fail(error, "swiglu_quant: gate_up is null");
  auto *gu = static_cast<const uint4 *>(gateUp);
  if (out.type == Q8Type::kFp8E4M3)
    swigluQuantKernel<true><<<unsigned(rows), kThreads, 0, stream>>>(gu, inter / 8, out);
  else
    swigluQuantKernel<false><<<unsigned(rows), kThreads, 0, stream>>>(gu, inter / 8, out);
  return launched(error, "swiglu_quant");
}

bool quantizeRows(const void *x, int64_t rows, int64_t cols, const ActQuantOut &out,
                  cudaStream_t stream, std::string *error) {
  if (!checkCommon("quantize_rows", rows, cols, "width", out, error))
    return false;
  if (rows == 0)
    return true;
  if (!x)
    return fail(error, "quantize_rows: x is null");
  auto *xv = static_cast<const uint4 *>(x);
  if (out.type == Q8Type::kFp8E4M3)
    quantizeRowsKernel<true><<<unsigned(rows), kThreads, 0, stream>>>(xv, cols / 8, out);
  else
    quantizeRowsKernel<false><<<unsigned(rows), kThreads, 0, stream>>>(xv, cols / 8, out);
  return launched(error, "quantize_rows");
}

} // namespace qcuda
