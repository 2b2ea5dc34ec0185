//===- KernelsAvx512Vnni.cpp - int8-activation kernel with vpdpbusd --------===//
//
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; called only
// when the CPU reports all of them.
//
//===----------------------------------------------------------------------===//
#include "KernelArgs.h"

#include <immintrin.h>

#include <cstring>

namespace qrt::kernels::detail::avx512vnni {

#define QRT_AVX512_VNNI 1
#include "qopt-rt/kernels/tiles/Avx512IntTiles.inc"

namespace {
void intGemm(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t0, int64_t t1,
             int64_t m0, int64_t m1) {
  if (w.bits == 4)
    intTiles<4>(w, a, o, t0, t1, m0, m1);
  else
    intTiles<8>(w, a, o, t0, t1, m0, m1);
}
} // namespace

void gemmI8(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t0, int64_t t1,
            int64_t m0, int64_t m1) {
  intGemm(w, a, o, t0, t1, m0, m1);
}

} // namespace qrt::kernels::detail::avx512vnni
