//===- QGemm.h - weight-only-quantized GEMV/GEMM on x86 CPUs ----*- C++ -*-===//
//
// y[M, N] = x[M, K] . W^T (+ bias) with W packed by PackedLayout.h, for any
// M (1 = decode GEMV; small M = batched decode / prefill chunks; large M is
// processed in panels of 64 rows). The weights are dequantized in registers,
// never to memory.
//
// Two activation modes:
//  - Int8 (default): each row of x is quantized to int8 and dotted with the
//    integer codes (vpdpbusd on AVX-512 VNNI, vpmaddubsw elsewhere); the
//    fastest route, memory-bound on a 2-core AVX-512 machine. By default
//    (ActQuantMode::Block32) the scale is absmax / 127 per block of 32
//    columns, which adds a small activation rounding error
//    (docs/kernels-cpu.md quantifies it); W8A8 artifacts ask for the
//    rounding their model was evaluated with instead: one scale per row
//    (PerToken) or one calibrated scale (Static).
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
#include <vector>

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

/// How Activations::Int8 chooses the scales of x. Codes are always
/// round-half-to-even of x / scale clamped to [-127, 127]; what differs is
/// the scale. PerToken and Static are SmoothQuant's W8A8 activations
/// (docs/quantization.md), exactly as the compiler's reference executor
/// fake-quantizes them (lib/Exec/FakeQuant.cpp), so the integer product
/// equals the reference's up to fp32 summation order.
enum class ActQuantMode {
  Block32,  ///< absmax / 127 per 32-column block (the fast default, most accurate)
  PerToken, ///< absmax of the whole row / 127 (W8A8 "per_token", dynamic)
  Static,   ///< GemmOptions::staticScale for every row (W8A8 "per_tensor")
};

/// "block32", "per_token", "static".
const char *actQuantName(ActQuantMode mode);

struct GemmOptions {
  Isa isa = Isa::Auto;
  Activations activations = Activations::Int8;
  /// Int8 only: the scale choice; Static needs a positive finite
  /// staticScale.
  ActQuantMode actQuant = ActQuantMode::Block32;
  float staticScale = 0.0f;
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

/// The activations side of a qgemm, prepared once and reusable by every
/// weight that multiplies the same x (q/k/v or gate/up read one normed
/// input): for Activations::Float the zero-padded fp32 rows and their sums
/// per 32 columns; for Int8 the int8 codes, one scale and one code sum per
/// 32-column block. Per-group sums (Int8) depend on the weight's group
/// size and are formed by qgemmPrepared. Columns [cols, paddedCols) are
/// zero, so one preparation serves weights whose paddedCols (the K of the
/// packed geometry) is at most paddedCols.
///
/// Int8 rows that cannot be quantized: Block32 gives a block holding a NaN
/// or infinity the scale NaN; PerToken does so for every block of a row
/// holding one (the reference passes such a row through unquantized, so
/// its outputs are not finite either); Static clamps +-infinity to +-127
/// as the reference does and gives a row holding a NaN the scale NaN. An
/// all-zero row (PerToken) gets scale 0 and zero codes: its product is
/// the bias, as in the reference.
struct PreparedActivations {
  Activations activations = Activations::Int8;
  ActQuantMode actQuant = ActQuantMode::Block32; ///< Int8: how sx was chosen
  float staticScale = 0.0f;                      ///< Int8 Static: the scale
  Isa isa = Isa::Scalar;   ///< the resolved path whose quantizer prepared it
  int64_t rows = 0;        ///< M
  int64_t cols = 0;        ///< K (the logical width)
  int64_t paddedCols = 0;  ///< row stride; a multiple of kActBlock, >= cols
  std::vector<float> x;    ///< Float: [rows, paddedCols]
  std::vector<int8_t> q;   ///< Int8: [rows, paddedCols]
  std::vector<float> sx;   ///< [rows, paddedCols / 32]: Int8 scales; Float block sums
  std::vector<int32_t> bsum; ///< Int8: [rows, paddedCols / 32] sums of the codes
};

/// Sizes `p` for M rows of K columns, padded to at least `minPaddedCols`
/// (rounded up to kActBlock), for options.activations on options.isa (Auto
/// resolved). Contents are unspecified until prepareRows fills them. False
/// with *error for bad sizes or an instruction set the CPU lacks.
bool resizePrepared(PreparedActivations *p, int64_t M, int64_t K, int64_t minPaddedCols,
                    const GemmOptions &options, std::string *error);

/// Prepares rows [m0, m1) of a sized `p` from x (row m at x + (m - m0) *
/// ldx, K floats), on the calling thread: for callers that produce x row by
/// row in their own parallel loop (rms_norm, SwiGLU) and prepare each row
/// while it is still in cache.
void prepareRows(PreparedActivations *p, const float *x, int64_t ldx, int64_t m0, int64_t m1);

/// resizePrepared + prepareRows over all of x, the Int8 quantization
/// spread over the pool as qgemm does.
bool prepareActivations(const float *x, int64_t M, int64_t ldx, int64_t K, int64_t minPaddedCols,
                        const GemmOptions &options, PreparedActivations *p, std::string *error);

/// As qgemm, with x already prepared (p.cols must equal w's K, p.paddedCols
/// cover its padded K, p.activations match options.activations, and for
/// Int8 p.actQuant / p.staticScale match options'). qgemm is
/// prepareActivations + qgemmPrepared: the outputs are the same bits.
bool qgemmPrepared(const PackedView &w, const PreparedActivations &p, float *y, int64_t ldy,
                   const float *bias, const GemmOptions &options, std::string *error);

/// Bytes of `w` one call reads (codes + scales + zeros, tile padding
/// included): what a memory-bound GEMV moves.
int64_t weightBytesRead(const PackedView &w);

} // namespace qrt::kernels

#endif
