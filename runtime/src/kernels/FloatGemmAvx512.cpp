//===- FloatGemmAvx512.cpp - fp32/bf16-weight GEMM, AVX-512 ---------------===//
//
// Compiled with -mavx512f -mavx512bw -mavx512vl -mfma; called only when the
// CPU reports them. Tile: 4 weight rows x up to 5 activation rows = 20
// accumulators, 8 widened weight registers and 2 of x (30 of 32 zmm).
//
//===----------------------------------------------------------------------===//
#include "FloatGemmArgs.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>

namespace qrt::kernels::detail::avx512 {

namespace {

struct Vec {
  using F = __m512;
  using I = __m512i;
  static constexpr int kLanes = 16;
  static constexpr int kRows = 4, kCols = 5;
  // M <= kStreamCols takes streamRows, with up to kStreamAccs accumulators.
  // At M = 3, 4 the tile with prefetch measured faster (85% of the read
  // bandwidth vs 68-83% streamed: fewer runs fit the accumulators).
  static constexpr int kStreamCols = 2;
  static constexpr int kStreamAccs = 16;
  static F zero() { return _mm512_setzero_ps(); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static float reduce(F v) { return _mm512_reduce_add_ps(v); }
  static F load(const float *p) { return _mm512_loadu_ps(p); }
  static F loadTail(const float *p, int64_t n) {
    return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p);
  }
  static I loadBf16(const uint16_t *p) { return _mm512_loadu_si512(p); }
  static I loadBf16Tail(const uint16_t *p, int64_t n) {
    return _mm512_maskz_loadu_epi16(__mmask32((uint64_t(1) << n) - 1), p);
  }
  // A bf16 is the top half of a binary32: the low half of each 32-bit lane
  // (even column) moves up, the high half (odd column) is masked in place.
  static F even(I v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
  static F odd(I v) {
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int(0xFFFF0000u))));
  }
};

} // namespace

#include "FloatGemmTile.inc"

} // namespace qrt::kernels::detail::avx512
