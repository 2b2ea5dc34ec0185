//===- FloatGemm.h - GEMV/GEMM with fp32 or bf16 weights --------*- C++ -*-===//
//
// y[M, N] = x[M, K] . W^T (+ bias) for weights kept in floating point: the
// linears a model does not quantize, typically the lm_head (in a tied-
// embedding model the embedding table, often the largest single matrix).
// W is row-major [N, K] in fp32 or bf16; bf16 is widened to fp32 in
// registers (never to memory) and every product is accumulated in fp32.
//
// M = 1 streams W at memory bandwidth; small M (batched decode, 2..64) is
// register-tiled (several weight rows x several activation rows per inner
// loop, each weight vector converted once per tile) so it is compute-bound
// rather than M times the GEMV. Instruction set picked at run time like
// qgemm (QGemm.h): AVX-512, AVX2 + FMA, or portable C++.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_KERNELS_FLOATGEMM_H
#define QOPT_RT_KERNELS_FLOATGEMM_H

#include "qopt-rt/kernels/QGemm.h"

#include <cstdint>
#include <string>

namespace qrt::kernels {

class ThreadPool;

enum class FloatFormat {
  F32,  ///< IEEE binary32
  BF16, ///< bfloat16: the top 16 bits of a binary32 (stored as uint16)
};

/// A row-major float matrix [rows, cols]; row r starts at element r * cols.
struct FloatWeight {
  FloatFormat format = FloatFormat::F32;
  int64_t rows = 0, cols = 0;
  const void *data = nullptr;
};

struct FloatGemmOptions {
  /// Isa::Auto = bestIsa(). Avx512Vnni runs the Avx512 path (no integer
  /// dots here).
  Isa isa = Isa::Auto;
  /// Workers to use, the caller included; 0 = all of the pool's.
  int threads = 0;
  /// Pool to run on; null = ThreadPool::global().
  ThreadPool *pool = nullptr;
};

/// y[m * ldy + n] = sum_k x[m * ldx + k] * W[n][k] (+ bias[n]) for m < M,
/// n < N, k < K (N, K: w.rows / cols). x and y must not overlap; nothing
/// outside those M x N elements of y is written. M = 0 does nothing. False
/// with *error (one line naming what is wrong) for a bad weight view,
/// leading dimension, or an instruction set the CPU lacks; nothing is
/// written then.
bool floatGemm(const FloatWeight &w, const float *x, int64_t M, int64_t ldx, float *y,
               int64_t ldy, const float *bias, const FloatGemmOptions &options,
               std::string *error);

/// Bytes of W one call reads (rows * cols * element size).
int64_t weightBytesRead(const FloatWeight &w);

} // namespace qrt::kernels

#endif
