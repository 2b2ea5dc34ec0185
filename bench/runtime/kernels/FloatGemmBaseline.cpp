//===- FloatGemmBaseline.cpp - the float GEMM floatGemm replaced ----------===//
//
// The CPU model executor's former loop for bf16/f32 weights, kept only to
// measure floatGemm against it in the same run: per weight row, widen to
// fp32 in a buffer and dot it with each activation row (16 partial sums),
// rows split evenly over the pool's workers; compiled for AVX-512, AVX2
// and the baseline with target_clones as it was.
//
//===----------------------------------------------------------------------===//
#include "FloatGemmBaseline.h"

#include "qopt-rt/kernels/ThreadPool.h"

#include <cstring>
#include <vector>

namespace qrt::bench {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QRT_MULTIVERSION __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define QRT_MULTIVERSION
#endif

QRT_MULTIVERSION
static void rows(const kernels::FloatWeight &w, const float *x, int64_t m, float *y,
                 int64_t begin, int64_t end) {
  const int64_t n = w.rows, k = w.cols;
  const bool bf16 = w.format == kernels::FloatFormat::BF16;
  std::vector<float> row(bf16 ? size_t(k) : 0);
  for (int64_t r = begin; r < end; ++r) {
    const float *wr;
    if (!bf16) {
      wr = static_cast<const float *>(w.data) + r * k;
    } else {
      const uint16_t *src = static_cast<const uint16_t *>(w.data) + r * k;
      for (int64_t i = 0; i < k; ++i) {
        uint32_t bits = uint32_t(src[i]) << 16;
        std::memcpy(&row[size_t(i)], &bits, 4);
      }
      wr = row.data();
    }
    for (int64_t i = 0; i < m; ++i) {
      const float *xi = x + i * k;
      float acc[16] = {};
      int64_t j = 0;
      for (; j + 16 <= k; j += 16)
        for (int u = 0; u < 16; ++u)
          acc[u] += xi[j + u] * wr[j + u];
      float s = 0;
      for (int u = 0; u < 16; ++u)
        s += acc[u];
      for (; j < k; ++j)
        s += xi[j] * wr[j];
      y[i * n + r] = s;
    }
  }
}

void baselineFloatGemm(const kernels::FloatWeight &w, const float *x, int64_t M, float *y,
                       kernels::ThreadPool &pool, int threads) {
  pool.run(threads, [&](int t) {
    rows(w, x, M, y, w.rows * t / threads, w.rows * (t + 1) / threads);
  });
}

} // namespace qrt::bench
