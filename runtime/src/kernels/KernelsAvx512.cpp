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
#include "Avx512IntKernel.inc"

namespace {

/// Float of column SH/8.. of each lane's codes: for 4-bit codes vpermps
/// reads only the low 4 bits of each index, so a shift and a table lookup
/// replace mask + convert.
template <int SH, int BITS> inline __m512 codesAsFloat(__m512i v, __m512 table) {
  if constexpr (BITS == 4) {
    return _mm512_permutexvar_ps(SH == 0 ? v : _mm512_srli_epi32(v, SH), table);
  } else {
    const __m512i c = SH == 24 ? _mm512_srli_epi32(v, 24)
                               : _mm512_and_si512(SH == 0 ? v : _mm512_srli_epi32(v, SH),
                                                  _mm512_set1_epi32(0xFF));
    return _mm512_cvtepi32_ps(c);
  }
}

template <int SH, int BITS, int MB>
inline void fmaColumn(__m512 *part, __m512i v, __m512 table, const float *const *xrow,
                      int64_t k) {
  const __m512 wv = codesAsFloat<SH, BITS>(v, table);
  for (int i = 0; i < MB; ++i)
    part[i] = _mm512_fmadd_ps(wv, _mm512_set1_ps(xrow[i][k]), part[i]);
}

// Per 32-column block: part = sum_k code * x in fp32 (16 rows x MB rows of
// x), then y += scale * (part - zero * sum_k x). Summing per block keeps the
// fp32 rounding error growing like sqrt(K) instead of K, and moves the zero
// and scale out of the inner loop (3 instructions per 16 weights).
template <int MB, int BITS>
void f32Tile(const WeightArgs &w, const ActF32 &a, const OutArgs &o, int64_t t, int64_t m0) {
  const uint8_t *tile = w.data + t * w.tileStride;
  const __m512 table = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const float *xrow[MB];
  const float *brow[MB];
  __m512 acc[MB];
  for (int i = 0; i < MB; ++i) {
    xrow[i] = a.x + (m0 + i) * a.ldx;
    brow[i] = a.bsum + (m0 + i) * a.ldb;
    acc[i] = _mm512_setzero_ps();
  }
  const int64_t blocks = w.groupSize / 32;
  for (int64_t g = 0; g < w.groups; ++g) {
    const uint8_t *sb = tile + (g / 4) * w.superblockStride;
    const __m512 s = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i *>(sb + (g % 4) * 32)));
    const __m512 zf =
        w.symmetric ? _mm512_set1_ps(float(1 << (BITS - 1)))
                    : _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                          reinterpret_cast<const __m128i *>(sb + 128 + (g % 4) * 16))));
    const uint8_t *codes = sb + w.metaBytes + (g % 4) * w.groupCodeBytes;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k0 = g * w.groupSize + b * 32;
      const uint8_t *c = codes + b * (BITS == 4 ? 256 : 512);
      prefetchBlock<BITS>(c);
      __m512 part[MB];
      for (int i = 0; i < MB; ++i)
        part[i] = _mm512_setzero_ps();
      for (int64_t k = k0; k < k0 + 32; k += (BITS == 4 ? 8 : 4)) {
        const __m512i v = _mm512_loadu_si512(c + (k - k0) * (BITS == 4 ? 8 : 16));
        if constexpr (BITS == 4) {
          fmaColumn<0, 4, MB>(part, v, table, xrow, k + 0);
          fmaColumn<4, 4, MB>(part, v, table, xrow, k + 4);
          fmaColumn<8, 4, MB>(part, v, table, xrow, k + 1);
          fmaColumn<12, 4, MB>(part, v, table, xrow, k + 5);
          fmaColumn<16, 4, MB>(part, v, table, xrow, k + 2);
          fmaColumn<20, 4, MB>(part, v, table, xrow, k + 6);
          fmaColumn<24, 4, MB>(part, v, table, xrow, k + 3);
          fmaColumn<28, 4, MB>(part, v, table, xrow, k + 7);
        } else {
          fmaColumn<0, 8, MB>(part, v, table, xrow, k + 0);
          fmaColumn<8, 8, MB>(part, v, table, xrow, k + 1);
          fmaColumn<16, 8, MB>(part, v, table, xrow, k + 2);
          fmaColumn<24, 8, MB>(part, v, table, xrow, k + 3);
        }
      }
      for (int i = 0; i < MB; ++i)
        acc[i] = _mm512_fmadd_ps(
            s, _mm512_fnmadd_ps(zf, _mm512_set1_ps(brow[i][k0 / 32]), part[i]), acc[i]);
    }
  }
  const int64_t left = w.rows - t * 16;
  const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
  const __m512 bias = o.bias ? _mm512_maskz_loadu_ps(m, o.bias + t * 16) : _mm512_setzero_ps();
  for (int i = 0; i < MB; ++i)
    _mm512_mask_storeu_ps(o.y + (m0 + i) * o.ldy + t * 16, m, _mm512_add_ps(acc[i], bias));
}

template <int BITS>
void f32Tiles(const WeightArgs &w, const ActF32 &a, const OutArgs &o, int64_t t0, int64_t t1,
              int64_t m0, int64_t m1) {
  for (int64_t t = t0; t < t1; ++t) {
    int64_t m = m0;
    for (; m + 8 <= m1; m += 8)
      f32Tile<8, BITS>(w, a, o, t, m);
    switch (m1 - m) {
    case 7: f32Tile<7, BITS>(w, a, o, t, m); break;
    case 6: f32Tile<6, BITS>(w, a, o, t, m); break;
    case 5: f32Tile<5, BITS>(w, a, o, t, m); break;
    case 4: f32Tile<4, BITS>(w, a, o, t, m); break;
    case 3: f32Tile<3, BITS>(w, a, o, t, m); break;
    case 2: f32Tile<2, BITS>(w, a, o, t, m); break;
    case 1: f32Tile<1, BITS>(w, a, o, t, m); break;
    default: break;
    }
  }
}

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
