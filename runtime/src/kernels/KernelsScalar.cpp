//===- KernelsScalar.cpp - portable kernels over the packed layout ---------===//
//
// The fallback for CPUs without AVX2, and a second reading of the layout:
// the same arithmetic as the SIMD kernels (integer block dots, the same
// scale products) one row lane at a time.
//
//===----------------------------------------------------------------------===//
#include "KernelArgs.h"

#include "qopt-rt/half.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace qrt::kernels::detail::scalar {

namespace {

/// Start of group g's superblock in a tile (see WeightArgs).
inline const uint8_t *superblock(const WeightArgs &w, const uint8_t *tile, int64_t g) {
  return tile + (g / 4) * w.superblockStride;
}

/// Code of (tile-row r, column k) in a tile.
inline int codeAt(const WeightArgs &w, const uint8_t *tile, int r, int64_t k) {
  const int64_t g = k / w.groupSize, kk = k % w.groupSize;
  const uint8_t *codes = superblock(w, tile, g) + w.metaBytes + (g % 4) * w.groupCodeBytes;
  if (w.bits == 4) {
    uint8_t b = codes[(kk / 8) * 64 + 4 * r + (kk & 3)];
    return (kk & 4) ? b >> 4 : b & 15;
  }
  return codes[(kk / 4) * 64 + 4 * r + (kk & 3)];
}

struct RowParams {
  float scale;
  int zero;
};

inline RowParams params(const WeightArgs &w, const uint8_t *tile, int r, int64_t g) {
  uint16_t h;
  const uint8_t *sb = superblock(w, tile, g);
  std::memcpy(&h, sb + (g % 4) * 32 + 2 * r, 2);
  int zero = w.symmetric ? 1 << (w.bits - 1) : sb[128 + (g % 4) * 16 + r];
  return {f16ToF32(h), zero};
}

inline int validRows(const WeightArgs &w, int64_t t) {
  int64_t left = w.rows - t * 16;
  return left < 16 ? int(left) : 16;
}

} // namespace

void gemmF32(const WeightArgs &w, const ActF32 &a, const OutArgs &o, int64_t t0, int64_t t1,
             int64_t m0, int64_t m1) {
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t *tile = w.data + t * w.tileStride;
    const int rows = validRows(w, t);
    for (int r = 0; r < rows; ++r) {
      const int64_t n = t * 16 + r;
      for (int64_t m = m0; m < m1; ++m) {
        const float *x = a.x + m * a.ldx;
        float acc = 0.0f;
        for (int64_t g = 0; g < w.groups; ++g) {
          const RowParams p = params(w, tile, r, g);
          // Per 32 columns: sum code * x, then scale * (sum - zero * sum x),
          // as the SIMD kernels do.
          for (int64_t k0 = g * w.groupSize; k0 < (g + 1) * w.groupSize; k0 += 32) {
            float part = 0.0f;
            for (int64_t k = k0; k < k0 + 32; ++k)
              part += float(codeAt(w, tile, r, k)) * x[k];
            acc += p.scale * (part - float(p.zero) * a.bsum[m * a.ldb + k0 / 32]);
          }
        }
        o.y[m * o.ldy + n] = acc + (o.bias ? o.bias[n] : 0.0f);
      }
    }
  }
}

void gemmI8(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t0, int64_t t1,
            int64_t m0, int64_t m1) {
  const int64_t blocksPerGroup = w.groupSize / 32;
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t *tile = w.data + t * w.tileStride;
    const int rows = validRows(w, t);
    for (int r = 0; r < rows; ++r) {
      const int64_t n = t * 16 + r;
      for (int64_t m = m0; m < m1; ++m) {
        const int8_t *q = a.q + m * a.ldq;
        float acc = 0.0f;
        for (int64_t g = 0; g < w.groups; ++g) {
          const RowParams p = params(w, tile, r, g);
          for (int64_t b = 0; b < blocksPerGroup; ++b) {
            const int64_t k0 = g * w.groupSize + b * 32;
            int32_t dot = 0;
            for (int64_t k = k0; k < k0 + 32; ++k)
              dot += codeAt(w, tile, r, k) * int32_t(q[k]);
            acc += float(dot) * (p.scale * a.sx[m * a.ldsx + k0 / 32]);
          }
          acc -= p.scale * float(p.zero) * a.gsum[m * a.ldg + g];
        }
        o.y[m * o.ldy + n] = acc + (o.bias ? o.bias[n] : 0.0f);
      }
    }
  }
}

void quantizeI8(const float *x, int64_t ldx, int64_t K, int64_t Kp, int64_t m0, int64_t m1,
                int8_t *q, int64_t ldq, float *sx, int32_t *bsum, int64_t ldsx) {
  for (int64_t m = m0; m < m1; ++m) {
    const float *xr = x + m * ldx;
    for (int64_t k0 = 0; k0 < Kp; k0 += 32) {
      float amax = 0.0f;
      bool finite = true;
      for (int64_t k = k0; k < k0 + 32 && k < K; ++k) {
        finite = finite && std::isfinite(xr[k]);
        amax = std::max(amax, std::fabs(xr[k]));
      }
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int32_t sum = 0;
      for (int64_t k = k0; k < k0 + 32; ++k) {
        int v = 0;
        if (finite && k < K)
          v = int(std::nearbyint(xr[k] * inv));
        q[m * ldq + k] = int8_t(v);
        sum += v;
      }
      sx[m * ldsx + k0 / 32] =
          finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
      bsum[m * ldsx + k0 / 32] = sum;
    }
  }
}

} // namespace qrt::kernels::detail::scalar
