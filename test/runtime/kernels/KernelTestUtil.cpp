//===- KernelTestUtil.cpp - random quantized matrices, double reference ---===//
#include "KernelTestUtil.h"

#include "qopt-rt/half.h"

namespace qrt::kernels::test {

OwnedRef randomRef(int64_t rows, int64_t cols, const PackedFormat &f, std::mt19937 &rng) {
  OwnedRef o;
  const int64_t groups = f.groupSize == 0 ? 1 : (cols + f.groupSize - 1) / f.groupSize;
  std::uniform_int_distribution<int> code(0, (1 << f.bits) - 1);
  std::uniform_real_distribution<float> scale(1e-3f, 2e-2f);
  o.codes.resize(size_t(rows * cols));
  for (auto &c : o.codes)
    c = uint8_t(code(rng));
  o.scales.resize(size_t(rows * groups));
  for (auto &s : o.scales)
    s = f16ToF32(f32ToF16(scale(rng)));
  if (!f.symmetric) {
    o.zeros.resize(size_t(rows * groups));
    for (auto &z : o.zeros)
      z = float(code(rng));
  }
  o.ref.rows = rows;
  o.ref.cols = cols;
  o.ref.bits = f.bits;
  o.ref.groupSize = f.groupSize;
  o.ref.symmetric = f.symmetric;
  o.ref.codes = o.codes.data();
  o.ref.scales = o.scales.data();
  o.ref.zeros = f.symmetric ? nullptr : o.zeros.data();
  return o;
}

double refWeight(const RefQuantMatrix &r, int64_t n, int64_t k) {
  const int64_t groups = r.groupSize == 0 ? 1 : (r.cols + r.groupSize - 1) / r.groupSize;
  const int64_t g = r.groupSize == 0 ? 0 : k / r.groupSize;
  const double zero = r.symmetric ? double(1 << (r.bits - 1)) : double(r.zeros[n * groups + g]);
  return (double(r.codes[n * r.cols + k]) - zero) * double(r.scales[n * groups + g]);
}

std::vector<double> referenceGemm(const RefQuantMatrix &r, const std::vector<float> &x,
                                  int64_t M) {
  std::vector<double> w(size_t(r.rows * r.cols));
  for (int64_t n = 0; n < r.rows; ++n)
    for (int64_t k = 0; k < r.cols; ++k)
      w[size_t(n * r.cols + k)] = refWeight(r, n, k);
  std::vector<double> y(size_t(M * r.rows));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < r.rows; ++n) {
      double s = 0.0;
      const double *wr = w.data() + n * r.cols;
      const float *xr = x.data() + m * r.cols;
      for (int64_t k = 0; k < r.cols; ++k)
        s += double(xr[k]) * wr[k];
      y[size_t(m * r.rows + n)] = s;
    }
  return y;
}

} // namespace qrt::kernels::test
