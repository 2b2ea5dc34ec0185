//===- E4M3Ref.h - the tests' own FP8 E4M3 codec -----------------*- C++ -*-===//
//
// Written from the format (1-4-3, bias 7, no infinities, 448 the largest
// finite, 0x7f/0xff NaN), independent of CUDA's conversions, so the W8A8
// tests check the device against the definition and not against itself.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_TEST_CUDA_E4M3REF_H
#define QOPT_TEST_CUDA_E4M3REF_H

#include <cmath>
#include <cstdint>

namespace qcuda_test {

inline double e4m3Decode(uint8_t b) {
  const int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
  if (exp == 15 && man == 7)
    return NAN;
  const double v = exp == 0 ? std::ldexp(man / 8.0, -6) : std::ldexp(1 + man / 8.0, exp - 7);
  return sign ? -v : v;
}

/// Nearest E4M3 value, ties to the even code, saturating at +-448.
inline uint8_t e4m3Encode(float f) {
  int best = 0;
  double bestErr = INFINITY;
  for (int b = 0; b < 256; ++b) {
    const double v = e4m3Decode(uint8_t(b));
    if (std::isnan(v) || (v == 0 && (b & 0x80)))
      continue;
    const double err = std::fabs(v - double(f));
    if (err < bestErr || (err == bestErr && (b & 1) == 0 && (best & 1) == 1)) {
      best = b;
      bestErr = err;
    }
  }
  // A negative value rounding to zero keeps its sign (-0 = 0x80), as IEEE
  // conversions do; nonzero results already carry theirs.
  if (std::signbit(f) && best == 0)
    best = 0x80;
  return uint8_t(best);
}

} // namespace qcuda_test

#endif
