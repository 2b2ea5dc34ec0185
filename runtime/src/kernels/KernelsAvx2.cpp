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

namespace {

/// Software prefetch into L2 this far ahead (see Avx512IntKernel.inc).
constexpr int64_t kPrefetchBytes = 8192;

/// Prefetches the 32 columns x 16 rows of codes starting at `c`.
template <int BITS> inline void prefetchBlock(const uint8_t *c) {
  for (int l = 0; l < (BITS == 4 ? 4 : 8); ++l)
    _mm_prefetch(reinterpret_cast<const char *>(c + kPrefetchBytes + 64 * l), _MM_HINT_T1);
}

inline int32_t load4(const int8_t *p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline __m256i loadu256(const uint8_t *p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
}

/// Lane mask for the first `n` of 8 lanes.
inline __m256i laneMask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < 0 ? 0 : n > 8 ? 8 : n)), idx);
}

struct TileParams {
  __m256 s[2];
  __m256i z[2];
  const uint8_t *codes; ///< the group's first code chunk
};

inline TileParams loadParams(const WeightArgs &w, const uint8_t *tile, int64_t g, int bits) {
  TileParams p;
  const uint8_t *sb = tile + (g / 4) * w.superblockStride;
  p.codes = sb + w.metaBytes + (g % 4) * w.groupCodeBytes;
  const uint8_t *sp = sb + (g % 4) * 32;
  p.s[0] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(sp)));
  p.s[1] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(sp + 16)));
  if (w.symmetric) {
    p.z[0] = p.z[1] = _mm256_set1_epi32(1 << (bits - 1));
  } else {
    const uint8_t *zp = sb + 128 + (g % 4) * 16;
    p.z[0] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(zp)));
    p.z[1] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(zp + 8)));
  }
  return p;
}

template <int MB>
inline void storeTile(const WeightArgs &w, const OutArgs &o, int64_t t, int64_t m0,
                      __m256 (*acc)[2]) {
  const int64_t left = w.rows - t * 16;
  for (int h = 0; h < 2; ++h) {
    const int64_t n0 = t * 16 + 8 * h;
    const int64_t valid = left - 8 * h;
    if (valid <= 0)
      break;
    if (valid >= 8) {
      const __m256 bias = o.bias ? _mm256_loadu_ps(o.bias + n0) : _mm256_setzero_ps();
      for (int i = 0; i < MB; ++i)
        _mm256_storeu_ps(o.y + (m0 + i) * o.ldy + n0, _mm256_add_ps(acc[i][h], bias));
    } else {
      const __m256i mask = laneMask(valid);
      const __m256 bias = o.bias ? _mm256_maskload_ps(o.bias + n0, mask) : _mm256_setzero_ps();
      for (int i = 0; i < MB; ++i)
        _mm256_maskstore_ps(o.y + (m0 + i) * o.ldy + n0, mask, _mm256_add_ps(acc[i][h], bias));
    }
  }
}

//===--- fp32 activations -------------------------------------------------===//

template <int SH, int BITS, int MB>
inline void fmaColumn(__m256 (*part)[2], const __m256i *v, const float *const *xrow, int64_t k) {
  constexpr int top = BITS == 4 ? 28 : 24; // the last field needs no mask
  for (int h = 0; h < 2; ++h) {
    const __m256i shifted = SH == 0 ? v[h] : _mm256_srli_epi32(v[h], SH);
    const __m256i c =
        SH == top ? shifted : _mm256_and_si256(shifted, _mm256_set1_epi32((1 << BITS) - 1));
    const __m256 wv = _mm256_cvtepi32_ps(c);
    for (int i = 0; i < MB; ++i)
      part[i][h] = _mm256_fmadd_ps(wv, _mm256_set1_ps(xrow[i][k]), part[i][h]);
  }
}

// Per 32-column block: part = sum_k code * x, then
// y += scale * (part - zero * sum_k x) (see KernelsAvx512.cpp).
template <int MB, int BITS>
void f32Tile(const WeightArgs &w, const ActF32 &a, const OutArgs &o, int64_t t, int64_t m0) {
  const uint8_t *tile = w.data + t * w.tileStride;
  const float *xrow[MB];
  const float *brow[MB];
  __m256 acc[MB][2];
  for (int i = 0; i < MB; ++i) {
    xrow[i] = a.x + (m0 + i) * a.ldx;
    brow[i] = a.bsum + (m0 + i) * a.ldb;
    acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  }
  const int64_t blocks = w.groupSize / 32;
  for (int64_t g = 0; g < w.groups; ++g) {
    const TileParams p = loadParams(w, tile, g, BITS);
    const __m256 zf[2] = {_mm256_cvtepi32_ps(p.z[0]), _mm256_cvtepi32_ps(p.z[1])};
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k0 = g * w.groupSize + b * 32;
      const uint8_t *cb = p.codes + b * (BITS == 4 ? 256 : 512);
      prefetchBlock<BITS>(cb);
      __m256 part[MB][2];
      for (int i = 0; i < MB; ++i)
        part[i][0] = part[i][1] = _mm256_setzero_ps();
      for (int64_t k = k0; k < k0 + 32; k += (BITS == 4 ? 8 : 4)) {
        const uint8_t *c = cb + (k - k0) * (BITS == 4 ? 8 : 16);
        const __m256i v[2] = {loadu256(c), loadu256(c + 32)};
        if constexpr (BITS == 4) {
          fmaColumn<0, 4, MB>(part, v, xrow, k + 0);
          fmaColumn<4, 4, MB>(part, v, xrow, k + 4);
          fmaColumn<8, 4, MB>(part, v, xrow, k + 1);
          fmaColumn<12, 4, MB>(part, v, xrow, k + 5);
          fmaColumn<16, 4, MB>(part, v, xrow, k + 2);
          fmaColumn<20, 4, MB>(part, v, xrow, k + 6);
          fmaColumn<24, 4, MB>(part, v, xrow, k + 3);
          fmaColumn<28, 4, MB>(part, v, xrow, k + 7);
        } else {
          fmaColumn<0, 8, MB>(part, v, xrow, k + 0);
          fmaColumn<8, 8, MB>(part, v, xrow, k + 1);
          fmaColumn<16, 8, MB>(part, v, xrow, k + 2);
          fmaColumn<24, 8, MB>(part, v, xrow, k + 3);
        }
      }
      for (int i = 0; i < MB; ++i) {
        const __m256 xs = _mm256_set1_ps(brow[i][k0 / 32]);
        for (int h = 0; h < 2; ++h)
          acc[i][h] =
              _mm256_fmadd_ps(p.s[h], _mm256_fnmadd_ps(zf[h], xs, part[i][h]), acc[i][h]);
      }
    }
  }
  storeTile<MB>(w, o, t, m0, acc);
}

//===--- int8 activations -------------------------------------------------===//

template <int MB, int BITS>
void intTile(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t, int64_t m0) {
  const uint8_t *tile = w.data + t * w.tileStride;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t *qrow[MB];
  const float *sxrow[MB];
  __m256 acc[MB][2];
  for (int i = 0; i < MB; ++i) {
    qrow[i] = a.q + (m0 + i) * a.ldq;
    sxrow[i] = a.sx + (m0 + i) * a.ldsx;
    acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  }
  const int64_t blocks = w.groupSize / 32;
  for (int64_t g = 0; g < w.groups; ++g) {
    const TileParams p = loadParams(w, tile, g, BITS);
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k = g * w.groupSize + b * 32;
      const uint8_t *c = p.codes + b * (BITS == 4 ? 256 : 512);
      prefetchBlock<BITS>(c);
      __m256i dot[MB][2];
      if constexpr (BITS == 4) {
        __m256i d16[MB][2];
        for (int i = 0; i < MB; ++i)
          d16[i][0] = d16[i][1] = _mm256_setzero_si256();
        for (int cc = 0; cc < 4; ++cc) {
          __m256i lo[2], hi[2];
          for (int h = 0; h < 2; ++h) {
            const __m256i v = loadu256(c + 64 * cc + 32 * h);
            lo[h] = _mm256_and_si256(v, m4);
            hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          }
          for (int i = 0; i < MB; ++i) {
            const __m256i x0 = _mm256_set1_epi32(load4(qrow[i] + k + 8 * cc));
            const __m256i x1 = _mm256_set1_epi32(load4(qrow[i] + k + 8 * cc + 4));
            for (int h = 0; h < 2; ++h)
              d16[i][h] = _mm256_add_epi16(d16[i][h],
                                           _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], x0),
                                                            _mm256_maddubs_epi16(hi[h], x1)));
          }
        }
        for (int i = 0; i < MB; ++i)
          for (int h = 0; h < 2; ++h)
            dot[i][h] = _mm256_madd_epi16(d16[i][h], ones);
      } else {
        __m256i lo16[MB][2], hi16[MB][2];
        for (int i = 0; i < MB; ++i)
          lo16[i][0] = lo16[i][1] = hi16[i][0] = hi16[i][1] = _mm256_setzero_si256();
        for (int cc = 0; cc < 8; ++cc) {
          __m256i lo[2], hi[2];
          for (int h = 0; h < 2; ++h) {
            const __m256i v = loadu256(c + 64 * cc + 32 * h);
            lo[h] = _mm256_and_si256(v, m4);
            hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          }
          for (int i = 0; i < MB; ++i) {
            const __m256i x = _mm256_set1_epi32(load4(qrow[i] + k + 4 * cc));
            for (int h = 0; h < 2; ++h) {
              lo16[i][h] = _mm256_add_epi16(lo16[i][h], _mm256_maddubs_epi16(lo[h], x));
              hi16[i][h] = _mm256_add_epi16(hi16[i][h], _mm256_maddubs_epi16(hi[h], x));
            }
          }
        }
        for (int i = 0; i < MB; ++i)
          for (int h = 0; h < 2; ++h)
            dot[i][h] = _mm256_add_epi32(_mm256_madd_epi16(lo16[i][h], ones),
                                         _mm256_slli_epi32(_mm256_madd_epi16(hi16[i][h], ones), 4));
      }
      for (int i = 0; i < MB; ++i) {
        const __m256 sxv = _mm256_set1_ps(sxrow[i][k / 32]);
        for (int h = 0; h < 2; ++h)
          acc[i][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[i][h]), _mm256_mul_ps(p.s[h], sxv),
                                      acc[i][h]);
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 sz = _mm256_mul_ps(p.s[h], _mm256_cvtepi32_ps(p.z[h]));
      for (int i = 0; i < MB; ++i)
        acc[i][h] =
            _mm256_fnmadd_ps(sz, _mm256_set1_ps(a.gsum[(m0 + i) * a.ldg + g]), acc[i][h]);
    }
  }
  storeTile<MB>(w, o, t, m0, acc);
}

template <int BITS>
void f32Tiles(const WeightArgs &w, const ActF32 &a, const OutArgs &o, int64_t t0, int64_t t1,
              int64_t m0, int64_t m1) {
  for (int64_t t = t0; t < t1; ++t) {
    int64_t m = m0;
    for (; m + 2 <= m1; m += 2)
      f32Tile<2, BITS>(w, a, o, t, m);
    if (m < m1)
      f32Tile<1, BITS>(w, a, o, t, m);
  }
}

template <int BITS>
void intTiles(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t0, int64_t t1,
              int64_t m0, int64_t m1) {
  for (int64_t t = t0; t < t1; ++t) {
    int64_t m = m0;
    for (; m + 2 <= m1; m += 2)
      intTile<2, BITS>(w, a, o, t, m);
    if (m < m1)
      intTile<1, BITS>(w, a, o, t, m);
  }
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
