//===- QGemm.h - weight-only-quantized GEMV/GEMM on x86 CPUs ----*- C++ -*-===//
//
// y[M, N] = x[M, K] . W^T (+ bias) with W packed by PackedLayout.h, for any
// M (1 = decode GEMV; small M = batched decode / prefill chunks; large M is
// processed in panels of 64 rows). The weights are dequantized in registers,
// never to memory.
//
// Two activation modes:
//  - Int8 (default): each row of x is quantized per block of 32 columns to
//    int8 (scale = absmax / 127, round to nearest even) and dotted with the
//    integer codes (vpdpbusd on AVX-512 VNNI, vpmaddubsw elsewhere); the
//    fastest route, memory-bound on a 2-core AVX-512 machine. Adds the
//    activation rounding error (docs/kernels-cpu.md quantifies it).
//  - Float: fp32 activations times the exactly dequantized weights, fp32
//    accumulation: what the reference executor computes, up to summation
//    order.
//
// Instruction sets are picked at run time from what the CPU supports (and
// QRT_ISA=scalar|avx2|avx512|avx512vnni in the environment, if supported);
// GemmOptions::isa forces one (tests, benchmarks).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_KERNELS_QGEMM_H
#define QOPT_RT_KERNELS_QGEMM_H

#include "qopt-rt/kernels/PackedLayout.h"

#include <cstdint>
#include <string>

namespace qrt::kernels {

class ThreadPool;

enum class Isa {
  Auto,       ///< the best this CPU supports (or QRT_ISA)
  Scalar,     ///< portable C++
  Avx2,       ///< AVX2 + FMA + F16C (x86-64-v3)
  Avx512,     ///< AVX-512 F/BW/VL (+ FMA, F16C), integer dot via vpmaddubsw
  Avx512Vnni, ///< Avx512 + AVX512_VNNI (vpdpbusd); fp32 mode as Avx512
};

/// "scalar", "avx2", "avx512", "avx512vnni" ("auto" for Isa::Auto).
const char *isaName(Isa isa);
/// Parses isaName()'s output. False for anything else.
bool parseIsa(const std::string &name, Isa *isa);
/// Whether this CPU (and OS) can run the path. Auto and Scalar: always.
bool isaSupported(Isa isa);
/// The fastest supported path, or QRT_ISA from the environment when that
/// names a supported one.
Isa bestIsa();

enum class Activations {
  Int8,  ///< quantize x per 32-column block to int8 (fast; small extra error)
  Float, ///< fp32 x (exact dequantized weights, fp32 accumulation)
};

struct GemmOptions {
  Isa isa = Isa::Auto;
  Activations activations = Activations::Int8;
  /// Workers to use, the caller included; 0 = all of the pool's.
  int threads = 0;
  /// Pool to run on; null = ThreadPool::global().
  ThreadPool *pool = nullptr;
};

/// y[m * ldy + n] = sum_k x[m * ldx + k] * W[n][k] (+ bias[n]) for m < M,
/// n < N, k < K (N, K: w.geometry.rows / cols). x and y must not overlap.
/// M = 0 does nothing. False with *error for a bad view, leading dimension
/// or an instruction set the CPU lacks; nothing is written then.
bool qgemm(const PackedView &w, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy,
           const float *bias, const GemmOptions &options, std::string *error);

/// Bytes of `w` one call reads (codes + scales + zeros, tile padding
/// included): what a memory-bound GEMV moves.
int64_t weightBytesRead(const PackedView &w);

} // namespace qrt::kernels

#endif
