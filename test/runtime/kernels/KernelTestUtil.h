//===- KernelTestUtil.h - random quantized matrices and a double reference ===//
#ifndef QOPT_TEST_RUNTIME_KERNELS_KERNELTESTUTIL_H
#define QOPT_TEST_RUNTIME_KERNELS_KERNELTESTUTIL_H

#include "qopt-rt/kernels/PackedLayout.h"

#include <cstdint>
#include <random>
#include <vector>

namespace qrt::kernels::test {

/// A reference-layout matrix that owns its arrays.
struct OwnedRef {
  std::vector<uint8_t> codes;
  std::vector<float> scales, zeros;
  RefQuantMatrix ref;
};

/// Random codes in [0, 2^bits), fp16-exact scales in [1e-3, 2e-2], integer
/// zeros in [0, 2^bits) (asymmetric), in the semantics of the compiler's
/// QuantizedMatrix.
OwnedRef randomRef(int64_t rows, int64_t cols, const PackedFormat &format, std::mt19937 &rng);

/// Dequantized weight (code - zero) * scale, straight from the reference
/// arrays (independent of the packed layout).
double refWeight(const RefQuantMatrix &r, int64_t n, int64_t k);

/// y[m][n] = sum_k x[m][k] * w[n][k] in double.
std::vector<double> referenceGemm(const RefQuantMatrix &r, const std::vector<float> &x, int64_t M);

} // namespace qrt::kernels::test

#endif
