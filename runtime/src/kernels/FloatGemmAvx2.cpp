//===- FloatGemmAvx2.cpp - fp32/bf16-weight GEMM, AVX2 + FMA --------------===//
//
// Compiled with -mavx2 -mfma; called only when the CPU reports them. Tile:
// 2 weight rows x up to 4 activation rows = 8 accumulators, 4 widened
// weight registers and 2 of x (14 of 16 ymm).
//
//===----------------------------------------------------------------------===//
#include "FloatGemmArgs.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <type_traits>
#include <cstring>
#include <utility>

namespace qrt::kernels::detail::avx2 {

namespace {

struct Vec {
  using F = __m256;
  using I = __m256i;
  static constexpr int kLanes = 8;
  static constexpr int kRows = 2, kCols = 4;
  // M <= kStreamCols takes streamRows, with up to kStreamAccs accumulators
  // (half of the 16 ymm: the rest hold weights and x).
  static constexpr int kStreamCols = 2;
  static constexpr int kStreamAccs = 8;
  static F zero() { return _mm256_setzero_ps(); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static float reduce(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static F load(const float *p) { return _mm256_loadu_ps(p); }
  static F loadTail(const float *p, int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), idx));
  }
  static I loadBf16(const uint16_t *p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
  }
  // AVX2 has no 16-bit masked load: copy the last < 16 values (once per
  // row and activation block, off the hot loop).
  static I loadBf16Tail(const uint16_t *p, int64_t n) {
    alignas(32) uint16_t buf[16] = {};
    std::memcpy(buf, p, size_t(n) * sizeof(uint16_t));
    return _mm256_load_si256(reinterpret_cast<const __m256i *>(buf));
  }
  // A bf16 is the top half of a binary32: see FloatGemmAvx512.cpp.
  static F even(I v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
  static F odd(I v) {
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int(0xFFFF0000u))));
  }
};

} // namespace

#include "FloatGemmTile.inc"

} // namespace qrt::kernels::detail::avx2
