//===- KernelsAvx512.cpp - AVX-512 kernels (F + BW + VL, no VNNI) ----------===//
//
// Compiled with -mavx512f -mavx512bw -mavx512vl -mfma -mf16c; called only
// when the CPU reports them. Holds the fp32-activation kernel, the
// activation quantizer and the vpmaddubsw int8-activation kernel for
// AVX-512 CPUs without VNNI.
//
// fp32 path: per 64-byte chunk (16 rows x 8 or 4 columns) each column's
// codes are taken out of the int32 lanes as floats and multiplied into fp32
// accumulators; zero point and scale are applied once per 32 columns.
//
//===----------------------------------------------------------------------===//
#include "KernelArgs.h"

#include <immintrin.h>

#include <cstring>

namespace qrt::kernels::detail::avx512 {

#define QRT_AVX512_VNNI 0
#include "qopt-rt/kernels/tiles/Avx512IntTiles.inc"

namespace {
void intGemm(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t0, int64_t t1,
             int64_t m0, int64_t m1) {
  if (w.bits == 4)
    intTiles<4>(w, a, o, t0, t1, m0, m1);
  else
    intTiles<8>(w, a, o, t0, t1, m0, m1);
}
} // namespace

#include "qopt-rt/kernels/tiles/Avx512F32Tiles.inc"

namespace {

inline __mmask16 tailMask(int64_t left) {
  if (left >= 16)
    return 0xFFFF;
  if (left <= 0)
    return 0;
  return __mmask16((1u << left) - 1);
}

} // namespace

void gemmF32(const WeightArgs &w, const ActF32 &a, const OutArgs &o, int64_t t0, int64_t t1,
             int64_t m0, int64_t m1) {
  if (w.bits == 4)
    f32Tiles<4>(w, a, o, t0, t1, m0, m1);
  else
    f32Tiles<8>(w, a, o, t0, t1, m0, m1);
}

void gemmI8(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t0, int64_t t1,
            int64_t m0, int64_t m1) {
  intGemm(w, a, o, t0, t1, m0, m1);
}

void quantizeI8(const float *x, int64_t ldx, int64_t K, int64_t Kp, int64_t m0, int64_t m1,
                int8_t *q, int64_t ldq, float *sx, int32_t *bsum, int64_t ldsx) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t m = m0; m < m1; ++m) {
    const float *xr = x + m * ldx;
    int8_t *qr = q + m * ldq;
    for (int64_t k0 = 0; k0 < Kp; k0 += 32) {
      const __mmask16 ma = tailMask(K - k0), mb = tailMask(K - k0 - 16);
      // Masked-off lanes are neither read nor faulted on: rows end at K.
      const __m512 va = _mm512_maskz_loadu_ps(ma, ma ? xr + k0 : xr);
      const __m512 vb = _mm512_maskz_loadu_ps(mb, mb ? xr + k0 + 16 : xr);
      // x - x is 0 for finite x and NaN for NaN or infinity.
      const __mmask16 bad =
          _mm512_cmp_ps_mask(_mm512_sub_ps(va, va), zero, _CMP_NEQ_UQ) |
          _mm512_cmp_ps_mask(_mm512_sub_ps(vb, vb), zero, _CMP_NEQ_UQ);
      if (bad) {
        std::memset(qr + k0, 0, 32);
        float nan;
        const uint32_t bits = 0x7fc00000u;
        std::memcpy(&nan, &bits, 4);
        sx[m * ldsx + k0 / 32] = nan;
        bsum[m * ldsx + k0 / 32] = 0;
        continue;
      }
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(va), _mm512_abs_ps(vb)));
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      const __m512 vinv = _mm512_set1_ps(inv);
      const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(va, vinv));
      const __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(vb, vinv));
      _mm_storeu_si128(reinterpret_cast<__m128i *>(qr + k0), _mm512_cvtsepi32_epi8(qa));
      _mm_storeu_si128(reinterpret_cast<__m128i *>(qr + k0 + 16), _mm512_cvtsepi32_epi8(qb));
      sx[m * ldsx + k0 / 32] = amax / 127.0f;
      bsum[m * ldsx + k0 / 32] = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    }
  }
}

} // namespace qrt::kernels::detail::avx512
