//===- PrefillKernels.h - what the two prefill attention kernels share -*- C++ -*-===//
//
// The launch parameters of paged prefill attention and the entry point of
// the tensor-core kernel (PrefillAttentionMma.cu), so that prefillAttention
// (PrefillAttention.cu) checks the arguments once and picks the kernel in
// one place.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_ATTENTION_PREFILLKERNELS_H
#define QOPT_CUDA_ATTENTION_PREFILLKERNELS_H

#include "PagedRead.h"
#include "qopt-cuda/Attention.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace qcuda::detail {

struct PrefillParams : PagedReadParams {
  const int32_t *queryStart;
};

/// Enqueues the tensor-core kernel for a bf16 or f16 pool (head_dim 64 or
/// 128, arguments already checked): 64 query tokens of one query head per
/// block. Returns the first CUDA error (attribute set or launch).
cudaError_t launchPrefillMma(const PrefillParams &p, KVDType dtype, int headDim, int numSeqs,
                             int numHeads, int maxQueryLen, cudaStream_t stream);

} // namespace qcuda::detail

#endif // QOPT_CUDA_ATTENTION_PREFILLKERNELS_H
