//===- PagedAttention.h - causal GQA attention over the paged KV pool -*- C++ -*-===//
//
// The CPU executor's attention, apart so it can be tested against a plain
// reference at shapes the model tests do not reach. One work item is one
// (token, KV head): the K/V rows of that head are read and converted to
// fp32 once, block by block, for every query head of its group, and the
// softmax is online (running max and sum), so no score buffer of the whole
// context exists.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_MODEL_PAGEDATTENTION_H
#define QOPT_RT_MODEL_PAGEDATTENTION_H

#include "qopt-rt/kernels/QGemm.h"
#include "qopt-rt/kernels/ThreadPool.h"
#include "qopt-rt/serving/KVCache.h"

#include <cstdint>

namespace qrt::model {

struct PagedAttentionArgs {
  serving::KVLayerView kv;      ///< the layer's pool (scales for int8/fp8)
  serving::KVDType dtype = serving::KVDType::BF16;
  const float *fp8Table = nullptr; ///< e4m3 codes 0..126 -> magnitude (fp8 pools)
  int64_t numTokens = 0;
  int64_t heads = 0, kvHeads = 0, headDim = 0;
  int64_t blockSize = 16;
  float scale = 1.0f;            ///< applied to q.k
  const float *q = nullptr;      ///< token t, head h at q[t * qStride + h * headDim]
  int64_t qStride = 0;
  const int32_t *positions = nullptr; ///< [numTokens]; token t sees 0..positions[t]
  const int32_t *seqOf = nullptr;     ///< [numTokens] sequence of each token
  const int32_t *blockTable = nullptr;
  const int32_t *blockTableStart = nullptr; ///< [seqs] offset of each table
  float *out = nullptr;          ///< token t, head h at out[t * outStride + h * headDim]
  int64_t outStride = 0;
  /// Which vector path runs: Auto picks the best this CPU has (tests force
  /// each one). Avx512Vnni runs the Avx512 path.
  kernels::Isa isa = kernels::Isa::Auto;
};

/// Runs every (token, KV head) item, spread over `pool` when there is
/// enough work (`minItemsPerWorker` items per worker at least).
void pagedAttention(const PagedAttentionArgs &a, kernels::ThreadPool &pool,
                    int64_t minItemsPerWorker);

} // namespace qrt::model

#endif
