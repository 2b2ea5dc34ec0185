//===- AttentionShapes.h - host-side checks of attention arguments -*- C++ -*-===//
//
// The argument checks decode and prefill share, so both reject the same bad
// input with the same message.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_ATTENTION_ATTENTIONSHAPES_H
#define QOPT_CUDA_ATTENTION_ATTENTIONSHAPES_H

#include "qopt-cuda/Attention.h"

#include <string>

namespace qcuda::detail {

/// Shape checks shared by decode and prefill; "" when usable.
inline std::string checkAttentionShapes(const PagedKV &kv, const PagedSequences &seqs,
                                 const AttentionHeads &heads, const char *what) {
  const std::string w = std::string(what) + ": ";
  if (kv.headDim != 64 && kv.headDim != 128)
    return w + "head_dim " + std::to_string(kv.headDim) + " is not supported (64 or 128)";
  if (kv.kvHeads <= 0 || heads.numHeads <= 0 || heads.numHeads % kv.kvHeads != 0)
    return w + std::to_string(heads.numHeads) + " query heads are not a multiple of " +
           std::to_string(kv.kvHeads) + " KV heads";
  if (kv.blockSize <= 0)
    return w + "block size " + std::to_string(kv.blockSize) + " must be positive";
  if (!kv.k || !kv.v || !seqs.contextLens || !seqs.blockTableStart || !seqs.blockTable)
    return w + "a KV pool or sequence array pointer is null";
  const bool quant = kv.dtype == KVDType::I8 || kv.dtype == KVDType::FP8E4M3;
  if (quant && (!kv.kScale || !kv.vScale))
    return w + "an int8/fp8 KV pool needs K and V scales";
  if (seqs.numSeqs < 0 || seqs.maxContextLen < 0)
    return w + "negative sequence count or context length";
  if (heads.qStride < int64_t(heads.numHeads) * kv.headDim ||
      heads.outStride < int64_t(heads.numHeads) * kv.headDim)
    return w + "q / out row stride is smaller than heads x head_dim";
  return "";
}

} // namespace qcuda::detail

#endif // QOPT_CUDA_ATTENTION_ATTENTIONSHAPES_H
