//===- NaiveOps.h - plain-loop reference of the QLLM ops -------*- C++ -*-===//
//
// The executor's tests compare against these: written from the math (and
// transformers' definitions), in double, with none of the executor's code
// (no BLAS, no thread pool, no shared helpers). Tensors are flat row-major
// vectors; activations are [rows, features] with rows = batch * seq.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_TEST_EXEC_NAIVEOPS_H
#define QOPT_TEST_EXEC_NAIVEOPS_H

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace naive {

using Vec = std::vector<float>;

inline Vec embedding(const std::vector<int64_t> &ids, const Vec &table, int64_t dim) {
  Vec out;
  for (int64_t id : ids)
    out.insert(out.end(), table.begin() + id * dim, table.begin() + (id + 1) * dim);
  return out;
}

inline Vec rmsNorm(const Vec &x, const Vec &w, int64_t dim, double eps) {
  Vec out(x.size());
  for (size_t r = 0; r < x.size() / dim; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i)
      ss += double(x[r * dim + i]) * x[r * dim + i];
    double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i)
      out[r * dim + i] = float(w[i] * (x[r * dim + i] * inv));
  }
  return out;
}

/// y[r, o] = sum_i x[r, i] W[o, i] (+ b[o]).
inline Vec linear(const Vec &x, const Vec &w, int64_t in, int64_t outF,
                  const Vec *bias = nullptr) {
  size_t rows = x.size() / in;
  Vec out(rows * outF);
  for (size_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < outF; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i)
        s += double(x[r * in + i]) * w[o * in + i];
      out[r * outF + o] = float(s);
    }
  return out;
}

struct Rope {
  std::string type = "default";
  double factor = 1, low = 1, high = 4, originalMax = 8192;
};

/// Rope frequencies from the formulas (in double): theta^(-2i/d), then the
/// linear or llama3 rescaling as Meta's reference code describes it.
inline std::vector<double> invFreq(int64_t rotaryDim, double theta, const Rope &r) {
  std::vector<double> f;
  for (int64_t i = 0; 2 * i < rotaryDim; ++i)
    f.push_back(std::pow(theta, -double(2 * i) / double(rotaryDim)));
  for (double &x : f) {
    if (r.type == "linear") {
      x /= r.factor;
    } else if (r.type == "llama3") {
      double wavelen = 2 * M_PI / x;
      double lowWavelen = r.originalMax / r.low, highWavelen = r.originalMax / r.high;
      if (wavelen < highWavelen) {
        // high frequency: unchanged
      } else if (wavelen > lowWavelen) {
        x /= r.factor;
      } else {
        double smooth = (r.originalMax / wavelen - r.low) / (r.high - r.low);
        x = (1 - smooth) * x / r.factor + smooth * x;
      }
    }
  }
  return f;
}

/// Rotates pairs (i, i + rd/2) of every head by angle pos * f[i].
inline Vec rotary(const Vec &x, int64_t batch, int64_t seq, int64_t heads, int64_t headDim,
                  int64_t rotaryDim, double theta, const Rope &rope) {
  std::vector<double> f = invFreq(rotaryDim, theta, rope);
  Vec out = x;
  int64_t half = rotaryDim / 2;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p < seq; ++p)
      for (int64_t h = 0; h < heads; ++h) {
        size_t base = size_t(((b * seq + p) * heads + h) * headDim);
        for (int64_t i = 0; i < half; ++i) {
          double c = std::cos(p * f[i]), s = std::sin(p * f[i]);
          double x1 = x[base + i], x2 = x[base + i + half];
          out[base + i] = float(x1 * c - x2 * s);
          out[base + i + half] = float(x2 * c + x1 * s);
        }
      }
  return out;
}

/// Causal GQA: head h reads kv head h / (heads / kvHeads).
inline Vec attention(const Vec &q, const Vec &k, const Vec &v, int64_t batch, int64_t seq,
                     int64_t heads, int64_t kvHeads, int64_t d, double scale) {
  Vec out(q.size());
  int64_t group = heads / kvHeads;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      int64_t kv = h / group;
      for (int64_t i = 0; i < seq; ++i) {
        std::vector<double> sc(i + 1);
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          double s = 0;
          for (int64_t t = 0; t < d; ++t)
            s += double(q[((b * seq + i) * heads + h) * d + t]) *
                 k[((b * seq + j) * kvHeads + kv) * d + t];
          sc[j] = s * scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (double &s : sc)
          sum += (s = std::exp(s - mx));
        for (int64_t t = 0; t < d; ++t) {
          double o = 0;
          for (int64_t j = 0; j <= i; ++j)
            o += sc[j] / sum * v[((b * seq + j) * kvHeads + kv) * d + t];
          out[((b * seq + i) * heads + h) * d + t] = float(o);
        }
      }
    }
  return out;
}

inline Vec swiglu(const Vec &g, const Vec &u) {
  Vec out(g.size());
  for (size_t i = 0; i < g.size(); ++i)
    out[i] = float(double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i]);
  return out;
}

inline Vec add(const Vec &a, const Vec &b) {
  Vec out(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    out[i] = a[i] + b[i];
  return out;
}

/// Largest |a - b|; infinity when the sizes differ.
inline double maxAbsDiff(const Vec &a, const Vec &b) {
  if (a.size() != b.size())
    return std::numeric_limits<double>::infinity();
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

inline double maxAbs(const Vec &a) {
  double m = 0;
  for (float x : a)
    m = std::max(m, double(std::fabs(x)));
  return m;
}

} // namespace naive

#endif
