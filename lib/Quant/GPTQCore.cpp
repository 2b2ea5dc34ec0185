//===- GPTQCore.cpp - GPTQ on one weight matrix ---------------------===//
//
// The algorithm of IST-DASLab's gptq.py (fasterquant), written out:
//  - dead inputs (H_jj = 0) get weight 0 and H_jj = 1;
//  - act-order permutes columns by decreasing diag(H);
//  - H + damp * mean(diag H) * I is inverted through Cholesky (LAPACK
//    dpotrf/dpotri, double), and the upper Cholesky factor U of H^-1
//    (H^-1 = U^T U) drives the updates;
//  - columns are quantized one at a time; the error (w - q) / U_pp is
//    subtracted from the later columns of the current block right away
//    and from the rest of the matrix once per block (one sgemm).
// Group parameters (see GPTQConfig) belong to groups of the original
// column order, so the stored format is plain group-wise.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/GPTQ.h"

#include <cblas.h>
#include <lapack.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qopt::quant {

HessianAccumulator::HessianAccumulator(int64_t cols)
    : cols_(cols), sum_(size_t(cols * cols), 0.0), scratch_(size_t(cols * cols)) {}

void HessianAccumulator::add(const float *x, int64_t rows) {
  if (rows <= 0)
    return;
  const int n = int(cols_);
  // scratch (upper) = x^T x in single precision over this batch only; the
  // running sum over batches is double.
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, int(rows), 1.0f, x, n, 0.0f,
              scratch_.data(), n);
  for (int64_t i = 0; i < cols_; ++i)
    for (int64_t j = i; j < cols_; ++j)
      sum_[size_t(i * cols_ + j)] += double(scratch_[size_t(i * cols_ + j)]);
  rows_ += rows;
}

std::vector<double> HessianAccumulator::hessian() const {
  std::vector<double> h(sum_.size());
  const double f = rows_ > 0 ? 2.0 / double(rows_) : 0.0;
  for (int64_t i = 0; i < cols_; ++i)
    for (int64_t j = i; j < cols_; ++j)
      h[size_t(i * cols_ + j)] = h[size_t(j * cols_ + i)] = f * sum_[size_t(i * cols_ + j)];
  return h;
}

namespace {

/// U with (H + lambda I)^-1 = U^T U, U upper, row-major, for a symmetric
/// row-major H. False when a factorization fails (not positive definite).
bool inverseCholeskyUpper(const std::vector<double> &h, int64_t n, double lambda,
                          std::vector<double> *u) {
  *u = h;
  std::vector<double> &a = *u;
  for (int64_t i = 0; i < n; ++i)
    a[size_t(i * n + i)] += lambda;
  // LAPACK is column-major; a symmetric matrix reads the same either way.
  // 'L' (column-major lower) is the row-major upper triangle.
  const lapack_int dim = lapack_int(n);
  lapack_int info = 0;
  char lower = 'L';
  LAPACK_dpotrf(&lower, &dim, a.data(), &dim, &info);
  if (info != 0)
    return false;
  LAPACK_dpotri(&lower, &dim, a.data(), &dim, &info);
  if (info != 0)
    return false;
  // H^-1 is now in the row-major upper triangle: mirror it, then factor
  // H^-1 = L L^T (column-major lower), whose row-major view is U = L^T.
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j)
      a[size_t(i * n + j)] = a[size_t(j * n + i)];
  LAPACK_dpotrf(&lower, &dim, a.data(), &dim, &info);
  if (info != 0)
    return false;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j)
      a[size_t(i * n + j)] = 0;
  for (double v : a)
    if (!std::isfinite(v))
      return false;
  return true;
}

} // namespace

bool quantizeGPTQ(const float *weights, int64_t rows, int64_t cols, std::vector<double> hessian,
                  const Format &format, const GPTQConfig &config, QuantizedMatrix *out,
                  std::string *warning, std::string *error) {
  if (rows <= 0 || cols <= 0 || int64_t(hessian.size()) != cols * cols) {
    *error = "gptq: the Hessian does not match a weight of " + std::to_string(cols) +
             " input features";
    return false;
  }
  if (config.blockSize <= 0 || !(config.damp >= 0)) {
    *error = "gptq: the block size must be positive and the dampening non-negative";
    return false;
  }
  const int64_t n = cols;
  std::vector<float> w(weights, weights + rows * cols);

  // Inputs that never fire: any weight there is free, 0 is the choice
  // that costs nothing when an input does fire later.
  for (int64_t j = 0; j < n; ++j)
    if (hessian[size_t(j * n + j)] == 0) {
      hessian[size_t(j * n + j)] = 1;
      for (int64_t r = 0; r < rows; ++r)
        w[size_t(r * n + j)] = 0;
    }

  // perm[p] = original column quantized p-th; pos is its inverse.
  std::vector<int64_t> perm(static_cast<size_t>(n)), pos(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (config.actOrder)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
      return hessian[size_t(a * n + a)] > hessian[size_t(b * n + b)];
    });
  for (int64_t p = 0; p < n; ++p)
    pos[size_t(perm[size_t(p)])] = p;

  std::vector<double> hp(size_t(n * n));
  double meanDiag = 0;
  for (int64_t i = 0; i < n; ++i) {
    meanDiag += hessian[size_t(i * n + i)];
    for (int64_t j = 0; j < n; ++j)
      hp[size_t(i * n + j)] = hessian[size_t(perm[size_t(i)] * n + perm[size_t(j)])];
  }
  meanDiag /= double(n);
  hessian.clear();
  hessian.shrink_to_fit();

  std::vector<double> u;
  double damp = config.damp;
  bool factored = inverseCholeskyUpper(hp, n, damp * meanDiag, &u);
  for (int attempt = 0; !factored && attempt < 8; ++attempt) {
    damp = damp > 0 ? damp * 10 : 1e-4;
    factored = inverseCholeskyUpper(hp, n, damp * meanDiag, &u);
    if (factored)
      *warning = "the Hessian is not positive definite with dampening " +
                 std::to_string(config.damp) + "; used " + std::to_string(damp);
  }
  if (!factored) {
    *error = "gptq: the Hessian is not positive definite even with dampening " +
             std::to_string(damp) + " (calibration inputs not finite?)";
    return false;
  }
  hp.clear();
  hp.shrink_to_fit();
  std::vector<float> hinv(u.begin(), u.end());
  u.clear();
  u.shrink_to_fit();

  // Weights in quantization order.
  std::vector<float> wp(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t p = 0; p < n; ++p)
      wp[size_t(r * n + p)] = w[size_t(r * n + perm[size_t(p)])];

  QuantizedMatrix &q = *out;
  q = QuantizedMatrix();
  q.rows = rows;
  q.cols = cols;
  q.format = format;
  const int64_t groups = format.numGroups(cols);
  const int64_t groupLen = format.effectiveGroup(cols);
  const bool hasZeros = format.kind == qllm::ElementKind::Int && !format.symmetric;
  q.codes.assign(size_t(rows * cols), 0);
  q.scales.assign(size_t(rows * groups), 1.0f);
  if (hasZeros)
    q.zeros.assign(size_t(rows * groups), 0.0f);
  std::vector<char> ready(size_t(groups), 0);
  std::vector<float> values(static_cast<size_t>(groupLen));
  auto setParams = [&](int64_t r, int64_t g) {
    float s, z;
    int64_t len = format.groupEnd(g, cols) - format.groupBegin(g, cols);
    groupParams(values.data(), len, format, 1.0f, &s, &z);
    q.scales[size_t(r * groups + g)] = s;
    if (hasZeros)
      q.zeros[size_t(r * groups + g)] = z;
  };
  if (config.staticGroups || format.kind == qllm::ElementKind::NF4) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        int64_t b = format.groupBegin(g, cols), e = format.groupEnd(g, cols);
        std::copy(w.begin() + r * n + b, w.begin() + r * n + e, values.begin());
        setParams(r, g);
      }
    if (format.kind == qllm::ElementKind::NF4)
      doubleQuantizeAbsmax(&q);
    std::fill(ready.begin(), ready.end(), 1);
  }
  w.clear();
  w.shrink_to_fit();

  const int64_t bs = std::min(config.blockSize, n);
  std::vector<float> w1(size_t(rows * bs)), err(size_t(rows * bs));
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = std::min(i1 + bs, n), count = i2 - i1;
    for (int64_t r = 0; r < rows; ++r)
      std::copy(wp.begin() + r * n + i1, wp.begin() + r * n + i2, w1.begin() + r * count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t p = i1 + i, c = perm[size_t(p)];
      const int64_t g = c / groupLen;
      if (!ready[size_t(g)]) {
        // First time the loop meets group g: none of its columns is
        // quantized yet. Their current values are W1 inside this block
        // and, beyond it, the block-start weights minus the updates this
        // block has not yet applied there.
        const int64_t b = format.groupBegin(g, cols), e = format.groupEnd(g, cols);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t k = b; k < e; ++k) {
            const int64_t pk = pos[size_t(k)];
            float v;
            if (pk < i2) {
              v = w1[size_t(r * count + (pk - i1))];
            } else {
              v = wp[size_t(r * n + pk)];
              for (int64_t j = 0; j < i; ++j)
                v -= err[size_t(r * count + j)] * hinv[size_t((i1 + j) * n + pk)];
            }
            values[size_t(k - b)] = v;
          }
          setParams(r, g);
        }
        ready[size_t(g)] = 1;
      }
      const float d = hinv[size_t(p * n + p)];
      const float *hrow = hinv.data() + p * n + i1;
      for (int64_t r = 0; r < rows; ++r) {
        float *row = w1.data() + r * count;
        const float s = q.scales[size_t(r * groups + g)];
        const float z = hasZeros ? q.zeros[size_t(r * groups + g)] : 0.0f;
        const float x = row[i];
        const uint8_t code = quantizeValue(x, s, z, format);
        q.codes[size_t(r * cols + c)] = code;
        const float e = (x - dequantizeValue(code, s, z, format)) / d;
        err[size_t(r * count + i)] = e;
        for (int64_t j = i + 1; j < count; ++j)
          row[j] -= e * hrow[j];
      }
    }
    if (i2 < n)
      // W[:, i2:] -= Err1 (rows x count) * Hinv[i1:i2, i2:].
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(n - i2),
                  int(count), -1.0f, err.data(), int(count), hinv.data() + i1 * n + i2, int(n),
                  1.0f, wp.data() + i2, int(n));
  }
  return true;
}

} // namespace qopt::quant
