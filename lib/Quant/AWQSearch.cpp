//===- AWQSearch.cpp - AWQ's error model, fake quantization, clipping --===//
//
// Every search measures the output error of a quantized weight on all
// calibration tokens at once through the Gram matrix H = X^T X of its
// input: sum_t ||x_t (W - Q)^T||^2 = sum_r e_r^T H e_r. That is one GEMM
// of the error with H per candidate instead of one with the tokens, and it
// is exact over every token, not a subsample.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/AWQ.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <thread>

namespace qopt::quant {

/// fn(begin, end) over pieces of [0, n) on `threads` threads (0 = all).
static void parallelRows(int64_t n, int threads, const std::function<void(int64_t, int64_t)> &fn) {
  int t = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
  t = int(std::min<int64_t>(t, std::max<int64_t>(1, n / 16)));
  if (t <= 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  int64_t chunk = (n + t - 1) / t;
  for (int i = 1; i < t; ++i) {
    int64_t b = i * chunk, e = std::min(n, b + chunk);
    if (b < e)
      pool.emplace_back(fn, b, e);
  }
  fn(0, std::min(n, chunk));
  for (std::thread &th : pool)
    th.join();
}

std::vector<float> fakeQuantize(const float *w, int64_t rows, int64_t cols, const Format &format,
                                const std::vector<float> &clips, int threads) {
  std::vector<float> out(size_t(rows * cols));
  const int64_t groups = format.numGroups(cols);
  parallelRows(rows, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        int64_t b = format.groupBegin(g, cols), e = format.groupEnd(g, cols);
        const float *x = w + r * cols + b;
        float clip = clips.empty() ? 1.0f : clips[size_t(r * groups + g)];
        float scale = 1, zero = 0;
        groupParams(x, e - b, format, clip, &scale, &zero);
        float *o = out.data() + r * cols + b;
        for (int64_t k = 0; k < e - b; ++k)
          o[k] = dequantizeValue(quantizeValue(x[k], scale, zero, format), scale, zero, format);
      }
  });
  return out;
}

/// e^T H e summed over rows, for the error e [rows, cols].
static double quadraticError(const std::vector<float> &e, int64_t rows, int64_t cols,
                             const std::vector<float> &h) {
  std::vector<float> m(e.size());
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(cols), int(cols), 1.0f,
              e.data(), int(cols), h.data(), int(cols), 0.0f, m.data(), int(cols));
  double sum = 0;
  for (size_t i = 0; i < e.size(); ++i)
    sum += double(e[i]) * double(m[i]);
  return sum;
}

double outputError(const float *w, int64_t rows, int64_t cols, const Format &format,
                   const std::vector<float> &clips, const std::vector<float> &h, int threads) {
  std::vector<float> e = fakeQuantize(w, rows, cols, format, clips, threads);
  for (size_t i = 0; i < e.size(); ++i)
    e[i] = w[i] - e[i];
  return quadraticError(e, rows, cols, h);
}

std::vector<float> searchClipRatios(const float *w, int64_t rows, int64_t cols,
                                    const Format &format, const std::vector<float> &h, int64_t grid,
                                    double maxShrink, int threads) {
  const int64_t groups = format.numGroups(cols);
  std::vector<float> best(size_t(rows * groups), 1.0f);
  std::vector<double> bestErr(size_t(rows * groups), INFINITY);
  std::vector<float> m(size_t(rows * cols));
  for (int64_t i = 0; i < std::max<int64_t>(grid, 1); ++i) {
    float ratio = float(1.0 - maxShrink * double(i) / double(std::max<int64_t>(grid, 1)));
    std::vector<float> uniform(size_t(rows * groups), ratio);
    std::vector<float> e = fakeQuantize(w, rows, cols, format, uniform, threads);
    for (size_t k = 0; k < e.size(); ++k)
      e[k] = w[k] - e[k];
    // Each group's own error e_g^T H_gg e_g: the diagonal block of H only,
    // as AutoAWQ measures each group's partial output on its own.
    for (int64_t g = 0; g < groups; ++g) {
      int64_t b = format.groupBegin(g, cols), n = format.groupEnd(g, cols) - b;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(n), int(n), 1.0f,
                  e.data() + b, int(cols), h.data() + b * cols + b, int(cols), 0.0f, m.data() + b,
                  int(cols));
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        int64_t b = format.groupBegin(g, cols), end = format.groupEnd(g, cols);
        double err = 0;
        for (int64_t k = b; k < end; ++k)
          err += double(e[size_t(r * cols + k)]) * double(m[size_t(r * cols + k)]);
        size_t at = size_t(r * groups + g);
        // Strictly better only: ties keep the larger ratio (less clipping).
        if (err < bestErr[at]) {
          bestErr[at] = err;
          best[at] = ratio;
        }
      }
  }
  return best;
}

QuantizedMatrix quantizeClipped(const float *w, int64_t rows, int64_t cols, const Format &format,
                                const std::vector<float> &clips) {
  if (clips.empty())
    return quantizeRTN(w, rows, cols, format);
  const int64_t groups = format.numGroups(cols);
  if (format.kind == qllm::ElementKind::NF4) {
    // NF4's absmax is double-quantized over the whole matrix: clamp each
    // block to its clipped absmax and let RTN derive the same absmax.
    std::vector<float> c(w, w + rows * cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        int64_t b = format.groupBegin(g, cols), e = format.groupEnd(g, cols);
        float *x = c.data() + r * cols;
        float amax = 0;
        for (int64_t k = b; k < e; ++k)
          amax = std::max(amax, std::fabs(x[k]));
        float lim = amax * clips[size_t(r * groups + g)];
        for (int64_t k = b; k < e; ++k)
          x[k] = std::clamp(x[k], -lim, lim);
      }
    return quantizeRTN(c.data(), rows, cols, format);
  }
  // Exactly what fakeQuantize evaluated: each group's (scale, zero) from
  // groupParams with its clip, every value rounded to the nearest code.
  QuantizedMatrix q;
  q.rows = rows;
  q.cols = cols;
  q.format = format;
  q.codes.resize(size_t(rows * cols));
  q.scales.resize(size_t(rows * groups));
  const bool hasZeros = format.kind == qllm::ElementKind::Int && !format.symmetric;
  if (hasZeros)
    q.zeros.resize(size_t(rows * groups));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      int64_t b = format.groupBegin(g, cols), e = format.groupEnd(g, cols);
      float scale = 1, zero = 0;
      groupParams(w + r * cols + b, e - b, format, clips[size_t(r * groups + g)], &scale, &zero);
      q.scales[size_t(r * groups + g)] = scale;
      if (hasZeros)
        q.zeros[size_t(r * groups + g)] = zero;
      for (int64_t k = b; k < e; ++k)
        q.codes[size_t(r * cols + k)] = quantizeValue(w[r * cols + k], scale, zero, format);
    }
  return q;
}

} // namespace qopt::quant
