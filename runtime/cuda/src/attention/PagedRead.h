//===- PagedRead.h - the launch fields every paged attention kernel reads -*- C++ -*-===//
//
// Decode and prefill attention read K/V the same way (the pool, its
// per-head scales, block tables, context lengths) and q / out with the
// same strides; their parameter structs extend this one, filled in one
// place from the host API's arguments.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_ATTENTION_PAGEDREAD_H
#define QOPT_CUDA_ATTENTION_PAGEDREAD_H

#include "qopt-cuda/Attention.h"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

namespace qcuda::detail {

struct PagedReadParams {
  const void *k;
  const void *v;
  const float *kScale; ///< null: 1 (16-bit pools)
  const float *vScale;
  const int32_t *contextLens;
  const int32_t *blockTableStart;
  const int32_t *blockTable;
  const __nv_bfloat16 *q;
  __nv_bfloat16 *out;
  int64_t qStride;
  int64_t outStride;
  int32_t blockSize;
  int32_t kvHeads;
  int32_t group; ///< query heads per KV head
  float softmaxScale;
};

inline PagedReadParams pagedRead(const PagedKV &kv, const PagedSequences &seqs,
                                 const AttentionHeads &heads, const void *q, void *out) {
  PagedReadParams p;
  p.k = kv.k;
  p.v = kv.v;
  const bool quant = kv.dtype == KVDType::I8 || kv.dtype == KVDType::FP8E4M3;
  p.kScale = quant ? kv.kScale : nullptr;
  p.vScale = quant ? kv.vScale : nullptr;
  p.contextLens = seqs.contextLens;
  p.blockTableStart = seqs.blockTableStart;
  p.blockTable = seqs.blockTable;
  p.q = static_cast<const __nv_bfloat16 *>(q);
  p.out = static_cast<__nv_bfloat16 *>(out);
  p.qStride = heads.qStride;
  p.outStride = heads.outStride;
  p.blockSize = kv.blockSize;
  p.kvHeads = kv.kvHeads;
  p.group = heads.numHeads / kv.kvHeads;
  p.softmaxScale = 1.0f / std::sqrt(float(kv.headDim));
  return p;
}

} // namespace qcuda::detail

#endif // QOPT_CUDA_ATTENTION_PAGEDREAD_H
