//===- RotaryKVWrite.cu - rotary embedding and the paged KV write ----------===//
//
// One block per token: q heads rotated in place, k heads rotated and stored
// with v into the pool at the token's slot, in the pool's type. Fusing the
// three saves a round trip of k through memory. cos/sin come from the fp32
// angle evaluated in double, exactly as the CPU executor does (positions of
// long contexts make angles of thousands of radians, where fast single-
// precision sin/cos lose digits).
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/Attention.h"

#include "KVElement.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qcuda {
namespace {

using detail::KVElem;

constexpr int kThreads = 128;

struct RotaryParams {
  __nv_bfloat16 *qkv;
  int64_t rowStride, qOffset, kOffset, vOffset;
  int32_t numHeads, kvHeads, headDim, blockSize;
  const int32_t *positions;
  const int64_t *slotMapping;
  const float *invFreq;
  void *kPool;
  void *vPool;
  const float *kScale; ///< null: 1
  const float *vScale;
};

template <KVDType T> __global__ void __launch_bounds__(kThreads) rotaryKVKernel(RotaryParams p) {
  using E = KVElem<T>;
  using Storage = typename E::Storage;
  const int t = blockIdx.x;
  const int D = p.headDim, half = D / 2;
  const float pos = float(p.positions[t]);
  __nv_bfloat16 *row = p.qkv + int64_t(t) * p.rowStride;
  auto cosSin = [&](int i, float *c, float *s) {
    double sd, cd;
    sincos(double(pos * p.invFreq[i]), &sd, &cd);
    *c = float(cd);
    *s = float(sd);
  };

  for (int idx = threadIdx.x; idx < p.numHeads * half; idx += kThreads) {
    const int h = idx / half, i = idx % half;
    float c, s;
    cosSin(i, &c, &s);
    __nv_bfloat16 *head = row + p.qOffset + int64_t(h) * D;
    const float a = __bfloat162float(head[i]), b = __bfloat162float(head[i + half]);
    head[i] = __float2bfloat16_rn(a * c - b * s);
    head[i + half] = __float2bfloat16_rn(b * c + a * s);
  }

  const int64_t slot = p.slotMapping[t];
  const int64_t base = (slot / p.blockSize) * p.blockSize * p.kvHeads * D +
                       (slot % p.blockSize) * p.kvHeads * D;
  Storage *kDst = static_cast<Storage *>(p.kPool) + base;
  Storage *vDst = static_cast<Storage *>(p.vPool) + base;
  for (int idx = threadIdx.x; idx < p.kvHeads * half; idx += kThreads) {
    const int h = idx / half, i = idx % half;
    float c, s;
    cosSin(i, &c, &s);
    const __nv_bfloat16 *head = row + p.kOffset + int64_t(h) * D;
    const float a = __bfloat162float(head[i]), b = __bfloat162float(head[i + half]);
    const float sc = p.kScale ? p.kScale[h] : 1.0f;
    E::store(kDst + int64_t(h) * D + i, a * c - b * s, sc);
    E::store(kDst + int64_t(h) * D + i + half, b * c + a * s, sc);
  }
  for (int idx = threadIdx.x; idx < p.kvHeads * D; idx += kThreads) {
    const int h = idx / D;
    E::store(vDst + idx, __bfloat162float(row[p.vOffset + idx]), p.vScale ? p.vScale[h] : 1.0f);
  }
}

} // namespace

bool writeRotaryKV(const PagedKV &kv, const QKVRows &qkv, const int32_t *positions,
                   const int64_t *slotMapping, const float *invFreq, cudaStream_t stream,
                   std::string *error) {
  auto fail = [&](const std::string &m) {
    if (error)
      *error = "rotary + KV write: " + m;
    return false;
  };
  if (kv.headDim <= 0 || kv.headDim % 2 != 0)
    return fail("head_dim " + std::to_string(kv.headDim) + " must be even and positive");
  if (kv.kvHeads <= 0 || qkv.numHeads <= 0 || kv.blockSize <= 0)
    return fail("heads and block size must be positive");
  const bool quant = kv.dtype == KVDType::I8 || kv.dtype == KVDType::FP8E4M3;
  if (quant && (!kv.kScale || !kv.vScale))
    return fail("an int8/fp8 KV pool needs K and V scales");
  if (qkv.numTokens < 0)
    return fail("negative token count");
  if (qkv.numTokens == 0)
    return true;
  if (!qkv.data || !positions || !slotMapping || !invFreq || !kv.k || !kv.v)
    return fail("a pointer argument is null");
  RotaryParams p;
  p.qkv = static_cast<__nv_bfloat16 *>(qkv.data);
  p.rowStride = qkv.rowStride;
  p.qOffset = qkv.qOffset;
  p.kOffset = qkv.kOffset;
  p.vOffset = qkv.vOffset;
  p.numHeads = qkv.numHeads;
  p.kvHeads = kv.kvHeads;
  p.headDim = kv.headDim;
  p.blockSize = kv.blockSize;
  p.positions = positions;
  p.slotMapping = slotMapping;
  p.invFreq = invFreq;
  p.kPool = kv.k;
  p.vPool = kv.v;
  p.kScale = quant ? kv.kScale : nullptr;
  p.vScale = quant ? kv.vScale : nullptr;
  switch (kv.dtype) {
  case KVDType::BF16:
    rotaryKVKernel<KVDType::BF16><<<qkv.numTokens, kThreads, 0, stream>>>(p);
    break;
  case KVDType::F16:
    rotaryKVKernel<KVDType::F16><<<qkv.numTokens, kThreads, 0, stream>>>(p);
    break;
  case KVDType::I8:
    rotaryKVKernel<KVDType::I8><<<qkv.numTokens, kThreads, 0, stream>>>(p);
    break;
  case KVDType::FP8E4M3:
    rotaryKVKernel<KVDType::FP8E4M3><<<qkv.numTokens, kThreads, 0, stream>>>(p);
    break;
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return fail(std::string("launch failed: ") + cudaGetErrorString(err));
  return true;
}

} // namespace qcuda
