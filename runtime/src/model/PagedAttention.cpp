//===- PagedAttention.cpp - causal GQA attention over the paged KV pool ---===//
//
// Per (token, KV head) item, block by block (the pool's block size): the
// block's K rows are converted to fp32 once, scored against every query
// head of the group, folded into a running (max, sum, accumulator) per
// head, then its V rows are converted once and accumulated. The loops are
// plain C++ written for the vectorizer (fixed-width partial sums, branch-
// free conversions and exp) and compiled three times: with AVX-512, with
// AVX2 + FMA + F16C, and portable; the CPU picks one at run time.
//
//===----------------------------------------------------------------------===//
#include "PagedAttention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace qrt::model {

using serving::KVDType;

namespace {

#if defined(__GNUC__)
#define QRT_INLINE inline __attribute__((always_inline))
#else
#define QRT_INLINE inline
#endif

QRT_INLINE float bitsToF32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

QRT_INLINE uint32_t f32ToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

/// fp16 bits -> fp32 without branches (bit-exact with qrt::f16ToF32): the
/// magnitude bits moved into fp32 position read as a number 2^112 too
/// small, subnormals included, so one multiply rescales them exactly;
/// inf/nan only need their exponent set.
QRT_INLINE float f16Bits(uint16_t h) {
  const uint32_t mag = uint32_t(h & 0x7fffu) << 13;
  uint32_t u = f32ToBits(bitsToF32(mag) * 0x1p112f);
  u = mag >= 0x0f800000u ? (mag | 0x70000000u) : u;
  return bitsToF32(u | (uint32_t(h & 0x8000u) << 16));
}

/// out[0, n) = row at base[idx...] in fp32 (times `scale` for int8/fp8).
QRT_INLINE void convertRow(KVDType type, const float *fp8, const void *base, int64_t idx,
                           int64_t n, float scale, float *__restrict out) {
  switch (type) {
  case KVDType::BF16: {
    const uint16_t *p = static_cast<const uint16_t *>(base) + idx;
    for (int64_t i = 0; i < n; ++i)
      out[i] = bitsToF32(uint32_t(p[i]) << 16);
    return;
  }
  case KVDType::F16: {
    const uint16_t *p = static_cast<const uint16_t *>(base) + idx;
    for (int64_t i = 0; i < n; ++i)
      out[i] = f16Bits(p[i]);
    return;
  }
  case KVDType::I8: {
    const int8_t *p = static_cast<const int8_t *>(base) + idx;
    for (int64_t i = 0; i < n; ++i)
      out[i] = float(p[i]) * scale;
    return;
  }
  case KVDType::FP8E4M3: {
    const uint8_t *p = static_cast<const uint8_t *>(base) + idx;
    for (int64_t i = 0; i < n; ++i) {
      const int cc = p[i] & 0x7f;
      const float v = fp8[cc < 127 ? cc : 126]; // 0x7f is NaN: read as the max
      out[i] = ((p[i] & 0x80) ? -v : v) * scale;
    }
    return;
  }
  }
}

/// fp32 dot product with 16 independent partial sums (one AVX-512 register,
/// two AVX2 ones).
QRT_INLINE float dot(const float *__restrict a, const float *__restrict b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j)
      acc[j] += a[i + j] * b[i + j];
  for (int j = 0; j < 8; ++j)
    acc[j] += acc[j + 8];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i)
    s += a[i] * b[i];
  return s;
}

/// x[i] = exp(x[i] - shift), returns their sum. Cephes' expf polynomial
/// (about 1 ulp) so that the loop vectorizes; exp of anything below
/// -87.3 is 0.
QRT_INLINE float expShifted(float *__restrict x, int64_t n, float shift) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] - shift;
    const float c = std::min(88.0f, std::max(-87.3f, v));
    // Round c / ln2 to nearest with the 1.5 * 2^23 trick (no rounding call).
    const float k = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (c - k * 0.693359375f) - k * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    const float e = y * bitsToF32(uint32_t(int32_t(k) + 127) << 23);
    x[i] = v < -87.3f ? 0.0f : e;
    sum += x[i];
  }
  return sum;
}

/// Per-worker buffers of one item.
struct Scratch {
  std::vector<float> k, v; // [blockSize, headDim] converted rows of one block
  std::vector<float> p;    // [group, blockSize] scores, then weights
  std::vector<float> acc;  // [group, headDim] unnormalized outputs
  std::vector<float> mx, sum;
};

/// One (token t, KV head g) item: every query head of the group.
QRT_INLINE void attendItem(const PagedAttentionArgs &a, int64_t t, int64_t g, Scratch &s) {
  const int64_t hd = a.headDim, G = a.heads / a.kvHeads, bs = a.blockSize;
  const serving::KVLayerView &kv = a.kv;
  const bool quant = serving::kvIsQuantized(a.dtype);
  const float ks = quant ? kv.kScale[g] : 1.0f, vs = quant ? kv.vScale[g] : 1.0f;
  const int32_t *table = a.blockTable + a.blockTableStart[a.seqOf[t]];
  const int64_t n = int64_t(a.positions[t]) + 1; // positions 0..pos
  const float *q = a.q + t * a.qStride + g * G * hd;
  float *__restrict kt = s.k.data(), *__restrict vt = s.v.data(), *__restrict p = s.p.data();
  float *__restrict acc = s.acc.data();
  std::fill(s.acc.begin(), s.acc.begin() + G * hd, 0.0f);
  std::fill(s.mx.begin(), s.mx.begin() + G, -std::numeric_limits<float>::infinity());
  std::fill(s.sum.begin(), s.sum.begin() + G, 0.0f);

  for (int64_t p0 = 0; p0 < n; p0 += bs) {
    const int64_t nt = std::min(bs, n - p0);
    const int64_t base = int64_t(table[p0 / bs]) * kv.blockStride + g * kv.headStride;
    for (int64_t i = 0; i < nt; ++i)
      convertRow(a.dtype, a.fp8Table, kv.k, base + i * kv.tokenStride, hd, ks, kt + i * hd);
    for (int64_t j = 0; j < G; ++j) {
      float *pj = p + j * bs;
      const float *qj = q + j * hd;
      float bm = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < nt; ++i) {
        pj[i] = dot(qj, kt + i * hd, hd) * a.scale;
        bm = std::max(bm, pj[i]);
      }
      // New running max: rescale what was summed under the old one.
      const float m = std::max(s.mx[j], bm);
      if (m > s.mx[j] && s.sum[j] > 0.0f) {
        float corr = s.mx[j] - m;
        expShifted(&corr, 1, 0.0f);
        s.sum[j] *= corr;
        float *aj = acc + j * hd;
        for (int64_t d = 0; d < hd; ++d)
          aj[d] *= corr;
      }
      s.mx[j] = m;
      s.sum[j] += expShifted(pj, nt, m);
    }
    for (int64_t i = 0; i < nt; ++i)
      convertRow(a.dtype, a.fp8Table, kv.v, base + i * kv.tokenStride, hd, vs, vt + i * hd);
    for (int64_t j = 0; j < G; ++j) {
      float *__restrict aj = acc + j * hd;
      const float *pj = p + j * bs;
      for (int64_t i = 0; i < nt; ++i) {
        const float w = pj[i];
        const float *vi = vt + i * hd;
        for (int64_t d = 0; d < hd; ++d)
          aj[d] += w * vi[d];
      }
    }
  }
  for (int64_t j = 0; j < G; ++j) {
    const float inv = 1.0f / s.sum[j];
    float *o = a.out + t * a.outStride + (g * G + j) * hd;
    for (int64_t d = 0; d < hd; ++d)
      o[d] = acc[j * hd + d] * inv;
  }
}

QRT_INLINE void attendRange(const PagedAttentionArgs &a, int64_t b, int64_t e, Scratch &s) {
  for (int64_t item = b; item < e; ++item)
    attendItem(a, item / a.kvHeads, item % a.kvHeads, s);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define QRT_ATTN_X86 1
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c,prefer-vector-width=512"))) void
attendRangeAvx512(const PagedAttentionArgs &a, int64_t b, int64_t e, Scratch &s) {
  attendRange(a, b, e, s);
}
__attribute__((target("avx2,fma,f16c"))) void
attendRangeAvx2(const PagedAttentionArgs &a, int64_t b, int64_t e, Scratch &s) {
  attendRange(a, b, e, s);
}
#endif

void attendRangeScalar(const PagedAttentionArgs &a, int64_t b, int64_t e, Scratch &s) {
  attendRange(a, b, e, s);
}

using RangeFn = void (*)(const PagedAttentionArgs &, int64_t, int64_t, Scratch &);

RangeFn pick(kernels::Isa isa) {
  if (isa == kernels::Isa::Auto)
    isa = kernels::bestIsa();
#if QRT_ATTN_X86
  if ((isa == kernels::Isa::Avx512 || isa == kernels::Isa::Avx512Vnni) &&
      kernels::isaSupported(kernels::Isa::Avx512))
    return attendRangeAvx512;
  if (isa != kernels::Isa::Scalar && kernels::isaSupported(kernels::Isa::Avx2))
    return attendRangeAvx2;
#endif
  return attendRangeScalar;
}

} // namespace

void pagedAttention(const PagedAttentionArgs &a, kernels::ThreadPool &pool,
                    int64_t minItemsPerWorker) {
  const int64_t items = a.numTokens * a.kvHeads;
  if (items <= 0)
    return;
  const RangeFn fn = pick(a.isa);
  const int64_t G = a.heads / a.kvHeads;
  auto makeScratch = [&] {
    Scratch s;
    s.k.resize(size_t(a.blockSize * a.headDim));
    s.v.resize(size_t(a.blockSize * a.headDim));
    s.p.resize(size_t(G * a.blockSize));
    s.acc.resize(size_t(G * a.headDim));
    s.mx.resize(size_t(G));
    s.sum.resize(size_t(G));
    return s;
  };
  const int64_t parts = std::min<int64_t>(
      pool.size(), std::max<int64_t>(1, items / std::max<int64_t>(1, minItemsPerWorker)));
  if (parts <= 1) {
    Scratch s = makeScratch();
    fn(a, 0, items, s);
    return;
  }
  pool.run(int(parts), [&](int w) {
    const int64_t b = items * w / parts, e = items * (w + 1) / parts;
    if (b < e) {
      Scratch s = makeScratch();
      fn(a, b, e, s);
    }
  });
}

} // namespace qrt::model
