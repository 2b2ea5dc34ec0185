//===- Kernels.h - fp32 reference kernels of the QLLM ops ------*- C++ -*-===//
//
// One function per QLLM op on raw row-major fp32 buffers. They follow the
// float behaviour of Hugging Face transformers (fp32 throughout) closely
// enough that logits agree to ~1e-5: the reference executor is the oracle
// every other kernel is measured against.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_EXEC_KERNELS_H
#define QOPT_LIB_EXEC_KERNELS_H

#include "ThreadPool.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qopt::exec {

/// out[r, :] = table[ids[r], :]; ids already range-checked.
void embedding(const int64_t *ids, int64_t rows, const float *table, int64_t dim,
               float *out, ThreadPool &pool);

/// out = x * rsqrt(mean(x^2) + eps) * weight over rows of `dim`.
void rmsNorm(const float *x, const float *weight, int64_t rows, int64_t dim,
             double eps, float *out, ThreadPool &pool);

/// out[M, N] = x[M, K] W[N, K]^T (+ bias[N]): one cblas_sgemm.
void linear(const float *x, int64_t m, int64_t k, const float *w, int64_t n,
            const float *bias, float *out, ThreadPool &pool);

/// The same with W stored transposed, wt[K, N] (ONNX MatMul weights).
void linearTransposedWeight(const float *x, int64_t m, int64_t k, const float *wt,
                            int64_t n, const float *bias, float *out, ThreadPool &pool);

/// Rope scaling as a `qllm.rotary` `scaling` dictionary gives it.
struct RopeScalingParams {
  std::string type = "default"; ///< default, linear, llama3
  double factor = 1.0;
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  double originalMaxPositionEmbeddings = 8192;
};

/// inv_freq[i] for i < rotaryDim/2, in fp32 as transformers computes it
/// (including its linear / llama3 rescaling).
std::vector<float> ropeInvFreq(int64_t rotaryDim, double theta,
                               const RopeScalingParams &scaling);

/// Rotates the first `rotaryDim` dims of every head of x [batch, seq,
/// heads*headDim] in the rotate_half layout, position = seq index.
void rotary(const float *x, int64_t batch, int64_t seq, int64_t heads,
            int64_t headDim, int64_t rotaryDim, const std::vector<float> &invFreq,
            float *out, ThreadPool &pool);

/// Causal grouped-query attention; q/out [batch, seq, heads*headDim], k/v
/// [batch, seq, kvHeads*headDim].
void attention(const float *q, const float *k, const float *v, int64_t batch,
               int64_t seq, int64_t heads, int64_t kvHeads, int64_t headDim,
               float scale, float *out, ThreadPool &pool);

/// out = silu(gate) * up, silu(x) = x / (1 + exp(-x)).
void swiglu(const float *gate, const float *up, int64_t n, float *out, ThreadPool &pool);

/// out = a + b.
void add(const float *a, const float *b, int64_t n, float *out, ThreadPool &pool);

/// Sets BLAS's thread count (OpenBLAS only; a no-op for other BLAS).
void setBlasThreads(int threads);
/// BLAS's current thread count (1 when unknown).
int getBlasThreads();

} // namespace qopt::exec

#endif
