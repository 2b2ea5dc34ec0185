//===- FloatGemmScalar.cpp - fp32/bf16-weight GEMM, portable C++ ----------===//
//
// The path for CPUs without AVX2 (and other architectures): per weight row,
// widen to fp32 once into a small buffer and dot it with each activation
// row with 16 independent partial sums (which the compiler vectorizes with
// the baseline instruction set). x is as given (no bf16 column order).
//
//===----------------------------------------------------------------------===//
#include "FloatGemmArgs.h"

#include <cstring>
#include <vector>

namespace qrt::kernels::detail::scalar {

void floatGemm(const FloatGemmArgs &a, int64_t n0, int64_t n1, int64_t m0, int64_t m1) {
  const int64_t K = a.K;
  std::vector<float> row(a.bf16 ? size_t(K) : 0);
  for (int64_t n = n0; n < n1; ++n) {
    const float *wr;
    if (a.bf16) {
      const uint16_t *src = static_cast<const uint16_t *>(a.w) + n * K;
      for (int64_t k = 0; k < K; ++k) {
        const uint32_t bits = uint32_t(src[k]) << 16;
        std::memcpy(&row[size_t(k)], &bits, 4);
      }
      wr = row.data();
    } else {
      wr = static_cast<const float *>(a.w) + n * K;
    }
    const float bias = a.bias ? a.bias[n] : 0.0f;
    for (int64_t m = m0; m < m1; ++m) {
      const float *xr = a.x + m * a.ldx;
      float acc[16] = {};
      int64_t k = 0;
      for (; k + 16 <= K; k += 16)
        for (int u = 0; u < 16; ++u)
          acc[u] += xr[k + u] * wr[k + u];
      float s = 0.0f;
      for (int u = 0; u < 16; ++u)
        s += acc[u];
      for (; k < K; ++k)
        s += xr[k] * wr[k];
      a.y[m * a.ldy + n] = s + bias;
    }
  }
}

} // namespace qrt::kernels::detail::scalar
