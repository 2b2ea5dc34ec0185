//===- KernelsAvx2.cpp - AVX2 kernels (x86-64-v3) --------------------------===//
//
// Compiled with -mavx2 -mfma -mf16c; called only when the CPU reports them.
// Same layout and arithmetic as the AVX-512 kernels with 8-lane registers:
// a 16-row tile is two halves (rows 0-7 = the first 32 bytes of each 64-byte
// chunk, rows 8-15 = the last 32). The int8-activation dot uses vpmaddubsw
// (u8 x s8 pairs into int16) + vpmaddwd; with 4-bit codes the int16 sums of
// a 32-column block cannot overflow (8 pairs of at most 2*15*127 per lane),
// 8-bit codes are split into nibbles to keep that true.
//
//===----------------------------------------------------------------------===//
#include "KernelArgs.h"

#include <immintrin.h>

#include <cstring>

namespace qrt::kernels::detail::avx2 {

#include "qopt-rt/kernels/tiles/Avx2Tiles.inc"

void gemmF32(const WeightArgs &w, const ActF32 &a, const OutArgs &o, int64_t t0, int64_t t1,
             int64_t m0, int64_t m1) {
  if (w.bits == 4)
    f32Tiles<4>(w, a, o, t0, t1, m0, m1);
  else
    f32Tiles<8>(w, a, o, t0, t1, m0, m1);
}

void gemmI8(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t0, int64_t t1,
            int64_t m0, int64_t m1) {
  if (w.bits == 4)
    intTiles<4>(w, a, o, t0, t1, m0, m1);
  else
    intTiles<8>(w, a, o, t0, t1, m0, m1);
}

void quantizeI8(const float *x, int64_t ldx, int64_t K, int64_t Kp, int64_t m0, int64_t m1,
                int8_t *q, int64_t ldq, float *sx, int32_t *bsum, int64_t ldsx) {
  const __m256 signBit = _mm256_set1_ps(-0.0f);
  const __m256 zero = _mm256_setzero_ps();
  // packs_epi32/packs_epi16 interleave 128-bit lanes; this puts the dwords
  // (4 bytes each) back in column order.
  const __m256i unshuffle = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t m = m0; m < m1; ++m) {
    const float *xr = x + m * ldx;
    int8_t *qr = q + m * ldq;
    for (int64_t k0 = 0; k0 < Kp; k0 += 32) {
      __m256 v[4];
      __m256 amax = zero, bad = zero;
      for (int j = 0; j < 4; ++j) {
        const int64_t left = K - k0 - 8 * j;
        if (left >= 8)
          v[j] = _mm256_loadu_ps(xr + k0 + 8 * j);
        else if (left > 0)
          v[j] = _mm256_maskload_ps(xr + k0 + 8 * j, laneMask(left));
        else
          v[j] = zero;
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(signBit, v[j]));
        // x - x is 0 for finite x and NaN for NaN or infinity.
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v[j], v[j]), zero, _CMP_NEQ_UQ));
      }
      if (_mm256_movemask_ps(bad)) {
        std::memset(qr + k0, 0, 32);
        float nan;
        const uint32_t bits = 0x7fc00000u;
        std::memcpy(&nan, &bits, 4);
        sx[m * ldsx + k0 / 32] = nan;
        bsum[m * ldsx + k0 / 32] = 0;
        continue;
      }
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float am = _mm_cvtss_f32(h);
      const __m256 inv = _mm256_set1_ps(am > 0.0f ? 127.0f / am : 0.0f);
      __m256i qi[4];
      for (int j = 0; j < 4; ++j)
        qi[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], inv));
      const __m256i s01 = _mm256_packs_epi32(qi[0], qi[1]);
      const __m256i s23 = _mm256_packs_epi32(qi[2], qi[3]);
      const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(s01, s23), unshuffle);
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(qr + k0), b);
      __m256i sum = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
      sx[m * ldsx + k0 / 32] = am / 127.0f;
      bsum[m * ldsx + k0 / 32] = _mm_cvtsi128_si32(s4);
    }
  }
}

} // namespace qrt::kernels::detail::avx2
