//===- KernelArgs.h - interface between dispatch and ISA kernels -*- C++ -*-===//
//
// Plain structs and function declarations only. The per-ISA files are
// compiled with -mavx2 / -mavx512*; an inline function or template shared
// with baseline files could be emitted from one of them and picked by the
// linker for everybody (illegal instructions on an older CPU), so nothing
// here has a body.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SRC_KERNELS_KERNELARGS_H
#define QOPT_RT_SRC_KERNELS_KERNELARGS_H

#include "qopt-rt/kernels/tiles/TileArgs.h"

#include <cstdint>

namespace qrt::kernels::detail {

namespace scalar {
void gemmF32(const WeightArgs &, const ActF32 &, const OutArgs &, int64_t, int64_t, int64_t,
             int64_t);
void gemmI8(const WeightArgs &, const ActI8 &, const OutArgs &, int64_t, int64_t, int64_t,
            int64_t);
void quantizeI8(const float *, int64_t, int64_t, int64_t, int64_t, int64_t, int8_t *, int64_t,
                float *, int32_t *, int64_t);
} // namespace scalar

namespace avx2 {
void gemmF32(const WeightArgs &, const ActF32 &, const OutArgs &, int64_t, int64_t, int64_t,
             int64_t);
void gemmI8(const WeightArgs &, const ActI8 &, const OutArgs &, int64_t, int64_t, int64_t,
            int64_t);
void quantizeI8(const float *, int64_t, int64_t, int64_t, int64_t, int64_t, int8_t *, int64_t,
                float *, int32_t *, int64_t);
} // namespace avx2

namespace avx512 {
void gemmF32(const WeightArgs &, const ActF32 &, const OutArgs &, int64_t, int64_t, int64_t,
             int64_t);
/// AVX-512BW integer dot (vpmaddubsw), for CPUs without VNNI.
void gemmI8(const WeightArgs &, const ActI8 &, const OutArgs &, int64_t, int64_t, int64_t,
            int64_t);
void quantizeI8(const float *, int64_t, int64_t, int64_t, int64_t, int64_t, int8_t *, int64_t,
                float *, int32_t *, int64_t);
} // namespace avx512

namespace avx512vnni {
/// vpdpbusd.
void gemmI8(const WeightArgs &, const ActI8 &, const OutArgs &, int64_t, int64_t, int64_t,
            int64_t);
} // namespace avx512vnni

} // namespace qrt::kernels::detail

#endif
