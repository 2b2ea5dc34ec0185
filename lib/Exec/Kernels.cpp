//===- Kernels.cpp - fp32 reference kernels of the QLLM ops ----------===//
//
// GEMMs go to BLAS; everything else is plain loops split over rows by the
// thread pool. Where transformers' fp32 arithmetic has a particular order
// (rope frequencies, rms_norm), the comments say which expression is
// mirrored.
//
//===----------------------------------------------------------------------===//
#include "Kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace qopt::exec {

/// Elements per piece of an elementwise loop: large enough that waking a
/// thread pays off.
static constexpr int64_t kElementGrain = 1 << 14;

static int64_t rowGrain(int64_t dim) {
  return std::max<int64_t>(1, kElementGrain / std::max<int64_t>(dim, 1));
}

void embedding(const int64_t *ids, int64_t rows, const float *table, int64_t dim,
               float *out, ThreadPool &pool) {
  pool.parallelFor(rows, rowGrain(dim), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r)
      std::memcpy(out + r * dim, table + ids[r] * dim, sizeof(float) * dim);
  });
}

void rmsNorm(const float *x, const float *weight, int64_t rows, int64_t dim,
             double eps, float *out, ThreadPool &pool) {
  // transformers: variance = x.pow(2).mean(-1); x * rsqrt(variance + eps),
  // then weight * that. The sum of squares is taken in double: torch's
  // fp32 cascade sum is closer to the exact value than to a naive fp32 sum.
  const float epsF = float(eps);
  pool.parallelFor(rows, rowGrain(dim), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const float *xr = x + r * dim;
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i)
        ss += double(xr[i]) * double(xr[i]);
      float variance = float(ss / double(dim));
      float inv = 1.0f / std::sqrt(variance + epsF);
      float *o = out + r * dim;
      for (int64_t i = 0; i < dim; ++i)
        o[i] = weight[i] * (xr[i] * inv);
    }
  });
}

static void addBias(const float *bias, int64_t m, int64_t n, float *out,
                    ThreadPool &pool) {
  pool.parallelFor(m, rowGrain(n), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      float *o = out + r * n;
      for (int64_t j = 0; j < n; ++j)
        o[j] += bias[j];
    }
  });
}

void linear(const float *x, int64_t m, int64_t k, const float *w, int64_t n,
            const float *bias, float *out, ThreadPool &pool) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), 1.0f,
              x, int(k), w, int(k), 0.0f, out, int(n));
  if (bias)
    addBias(bias, m, n, out, pool);
}

void linearTransposedWeight(const float *x, int64_t m, int64_t k, const float *wt,
                            int64_t n, const float *bias, float *out, ThreadPool &pool) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), int(k), 1.0f,
              x, int(k), wt, int(n), 0.0f, out, int(n));
  if (bias)
    addBias(bias, m, n, out, pool);
}

std::vector<float> ropeInvFreq(int64_t rotaryDim, double theta,
                               const RopeScalingParams &s) {
  // Default: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all fp32;
  // torch evaluates `1.0 / t` as reciprocal(t) * 1.0.
  const int64_t half = rotaryDim / 2;
  std::vector<float> inv(half);
  const float base = float(theta);
  for (int64_t i = 0; i < half; ++i) {
    float exponent = float(2 * i) / float(rotaryDim);
    inv[i] = 1.0f / std::pow(base, exponent);
  }
  if (s.type == "linear") {
    const float factor = float(s.factor);
    for (float &f : inv)
      f = f / factor;
  } else if (s.type == "llama3") {
    // transformers' _compute_llama3_parameters, fp32 tensors against
    // Python scalars (which torch casts to fp32).
    const float factor = float(s.factor);
    const float oldContext = float(s.originalMaxPositionEmbeddings);
    const float lowWavelen = float(s.originalMaxPositionEmbeddings / s.lowFreqFactor);
    const float highWavelen = float(s.originalMaxPositionEmbeddings / s.highFreqFactor);
    const float twoPi = float(2.0 * M_PI);
    const float lowF = float(s.lowFreqFactor);
    const float span = float(s.highFreqFactor - s.lowFreqFactor);
    for (float &f : inv) {
      float wavelen = (1.0f / f) * twoPi;
      float llama = wavelen > lowWavelen ? f / factor : f;
      float smooth = ((1.0f / wavelen) * oldContext - lowF) / span;
      float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
      bool medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      f = medium ? smoothed : llama;
    }
  }
  return inv;
}

void rotary(const float *x, int64_t batch, int64_t seq, int64_t heads,
            int64_t headDim, int64_t rotaryDim, const std::vector<float> &invFreq,
            float *out, ThreadPool &pool) {
  const int64_t half = rotaryDim / 2;
  // cos/sin of fp32 angles position * inv_freq, as transformers' rotary
  // embedding computes them (in fp32, then used in fp32).
  std::vector<float> cosT(seq * half), sinT(seq * half);
  for (int64_t p = 0; p < seq; ++p)
    for (int64_t i = 0; i < half; ++i) {
      float angle = float(p) * invFreq[i];
      cosT[p * half + i] = float(std::cos(double(angle)));
      sinT[p * half + i] = float(std::sin(double(angle)));
    }
  const int64_t width = heads * headDim;
  pool.parallelFor(batch * seq, rowGrain(width), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t p = r % seq;
      const float *c = &cosT[p * half], *s = &sinT[p * half];
      for (int64_t h = 0; h < heads; ++h) {
        const float *xi = x + r * width + h * headDim;
        float *o = out + r * width + h * headDim;
        // q * cos + rotate_half(q) * sin, rotate_half(q) = cat(-q2, q1).
        for (int64_t i = 0; i < half; ++i) {
          float a = xi[i], b = xi[i + half];
          o[i] = a * c[i] - b * s[i];
          o[i + half] = b * c[i] + a * s[i];
        }
        for (int64_t i = rotaryDim; i < headDim; ++i)
          o[i] = xi[i];
      }
    }
  });
}

/// Softmax of row i over columns 0..i, in place; the row holds `width`
/// scores and the masked ones (j > i) become exact zeros.
static void causalSoftmaxRow(float *row, int64_t i, int64_t width) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j <= i; ++j)
    mx = std::max(mx, row[j]);
  double sum = 0;
  for (int64_t j = 0; j <= i; ++j) {
    row[j] = std::exp(row[j] - mx);
    sum += row[j];
  }
  const float inv = float(1.0 / sum);
  for (int64_t j = 0; j <= i; ++j)
    row[j] *= inv;
  for (int64_t j = i + 1; j < width; ++j)
    row[j] = 0.0f;
}

/// Query rows per score block: bounds the scratch to kQueryBlock x seq
/// floats per thread and skips most of the masked upper triangle.
static constexpr int64_t kQueryBlock = 128;

void attention(const float *q, const float *k, const float *v, int64_t batch,
               int64_t seq, int64_t heads, int64_t kvHeads, int64_t headDim,
               float scale, float *out, ThreadPool &pool) {
  const int64_t group = heads / kvHeads;
  const int qStride = int(heads * headDim), kvStride = int(kvHeads * headDim);
  const int d = int(headDim);
  // One (batch, head) per task, each running single-threaded BLAS on its
  // own scratch: per-head GEMMs are too small for BLAS to thread well.
  const bool parallelHeads = pool.size() > 1 && batch * heads > 1;
  const int blasThreads = getBlasThreads();
  if (parallelHeads)
    setBlasThreads(1);
  std::vector<std::vector<float>> scratch(pool.size());
  pool.parallelFor(batch * heads, 1, [&](int64_t begin, int64_t end, int worker) {
    std::vector<float> &scores = scratch[worker];
    scores.resize(size_t(std::min(seq, kQueryBlock) * seq));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / heads, h = t % heads, kv = h / group;
      const float *qh = q + b * seq * qStride + h * headDim;
      const float *kh = k + b * seq * kvStride + kv * headDim;
      const float *vh = v + b * seq * kvStride + kv * headDim;
      float *oh = out + b * seq * qStride + h * headDim;
      for (int64_t i0 = 0; i0 < seq; i0 += kQueryBlock) {
        // Queries i0..i1-1 see keys 0..i1-1 at most.
        const int64_t i1 = std::min(seq, i0 + kQueryBlock);
        const int rows = int(i1 - i0), keys = int(i1);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, d, scale,
                    qh + i0 * qStride, qStride, kh, kvStride, 0.0f, scores.data(), keys);
        for (int64_t r = 0; r < rows; ++r)
          causalSoftmaxRow(scores.data() + r * keys, i0 + r, keys);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, keys, 1.0f,
                    scores.data(), keys, vh, kvStride, 0.0f, oh + i0 * qStride, qStride);
      }
    }
  });
  if (parallelHeads)
    setBlasThreads(blasThreads);
}

void swiglu(const float *gate, const float *up, int64_t n, float *out, ThreadPool &pool) {
  pool.parallelFor(n, kElementGrain, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      float g = gate[i];
      out[i] = (g / (1.0f + std::exp(-g))) * up[i];
    }
  });
}

void add(const float *a, const float *b, int64_t n, float *out, ThreadPool &pool) {
  pool.parallelFor(n, kElementGrain, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = a[i] + b[i];
  });
}

} // namespace qopt::exec
