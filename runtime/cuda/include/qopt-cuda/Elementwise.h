//===- Elementwise.h - CUDA row kernels of the decoder layer ---*- C++ -*-===//
//
// The memory-bound pieces between the GEMMs and attention, each one pass over
// its rows: RMSNorm with the residual add fused in front, SwiGLU over the
// fused gate|up projection, and the embedding gather. They match the CPU
// executor's formulas (runtime/src/model/CpuModelExecutor.cpp) with fp32
// math on bf16 rows; every pointer is device memory; each function checks
// its shapes on the host and returns false with a one-line *error.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_ELEMENTWISE_H
#define QOPT_CUDA_ELEMENTWISE_H

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace qcuda {

/// out[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * weight, for `rows` bf16 rows
/// of `dim` elements (dim a multiple of 8). With `residual` non-null, x is
/// the residual stream and is first updated in place: x[t] += residual[t]
/// (rounded to bf16 as stored), and the norm is taken of the stored value.
/// weight: fp32 [dim]. Row strides equal `dim`. out may not alias x.
bool rmsNorm(void *x, const void *residual, const float *weight, int64_t rows, int64_t dim,
             float eps, void *out, cudaStream_t stream, std::string *error);

/// out[t, i] = silu(gu[t, i]) * gu[t, inter + i] for bf16 gu [rows, 2*inter]
/// (gate half first, as the fused gate_up projection writes it) into bf16
/// out [rows, inter]; silu(g) = g / (1 + exp(-g)). inter a multiple of 8.
bool swiglu(const void *gateUp, int64_t rows, int64_t inter, void *out, cudaStream_t stream,
            std::string *error);

/// Embedding table element type.
enum class EmbeddingType : uint8_t { BF16, F32 };

/// out[t] = table[ids[t]] as bf16 rows of `dim` elements, table [vocab, dim].
/// An id outside [0, vocab) gives a row of zeros (ids are checked on the host
/// by the executor; the kernel only keeps a bad one from reading out of
/// bounds).
bool embeddingGather(const void *table, EmbeddingType type, int64_t vocab, int64_t dim,
                     const int32_t *ids, int64_t numTokens, void *out, cudaStream_t stream,
                     std::string *error);

} // namespace qcuda

#endif // QOPT_CUDA_ELEMENTWISE_H
