//===- Specialize.h - kernel templates the generated code instantiates -*- C++ -*-===//
//
// Included by the C++ that qopt generates for an artifact (lib/CodeGen,
// docs/codegen.md), compiled once per instruction set with
//   -DQRT_GEN_ISA=QRT_GEN_ISA_AVX2        -mavx2 -mfma -mf16c
//   -DQRT_GEN_ISA=QRT_GEN_ISA_AVX512      -mavx512f -mavx512bw -mavx512vl ...
//   -DQRT_GEN_ISA=QRT_GEN_ISA_AVX512VNNI  ... -mavx512vnni
// The generated code is a list of `add<BITS, GROUP, SYM, ROWS, COLS>(r)`
// calls, one per packed weight shape of the model. Each instantiates the
// same tile templates the runtime's generic kernels use (tiles/*.inc) with
// a StaticWeight: the geometry (group count, strides, symmetric or not) is
// a compile-time constant, so the compiler unrolls the group and block
// loops and folds the address arithmetic. The arithmetic, and so every
// output bit, is the generic kernel's.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_KERNELS_GEN_SPECIALIZE_H
#define QOPT_RT_KERNELS_GEN_SPECIALIZE_H

#include "qopt-rt/kernels/PackedLayout.h"
#include "qopt-rt/kernels/gen/Registry.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define QRT_GEN_ISA_AVX2 1
#define QRT_GEN_ISA_AVX512 2
#define QRT_GEN_ISA_AVX512VNNI 3

#ifndef QRT_GEN_ISA
#error "compile the generated kernels with -DQRT_GEN_ISA=QRT_GEN_ISA_<isa>"
#endif

namespace qrt::kernels::gen::impl {

using namespace qrt::kernels::detail;

#if QRT_GEN_ISA == QRT_GEN_ISA_AVX2
#include "qopt-rt/kernels/tiles/Avx2Tiles.inc"
constexpr const char *kIsa = "avx2";
#elif QRT_GEN_ISA == QRT_GEN_ISA_AVX512 || QRT_GEN_ISA == QRT_GEN_ISA_AVX512VNNI
#define QRT_AVX512_VNNI (QRT_GEN_ISA == QRT_GEN_ISA_AVX512VNNI)
#include "qopt-rt/kernels/tiles/Avx512IntTiles.inc"
#include "qopt-rt/kernels/tiles/Avx512F32Tiles.inc"
constexpr const char *kIsa = QRT_AVX512_VNNI ? "avx512vnni" : "avx512";
#else
#error "unknown QRT_GEN_ISA"
#endif

/// A packed weight whose geometry is known at compile time: the same
/// members as WeightArgs, all but `data` constexpr.
template <int BITS, int GROUP, int SYM, int64_t ROWS, int64_t COLS> struct StaticWeight {
  static constexpr PackedGeometry kGeometry = geometryOf(BITS, GROUP, SYM != 0, ROWS, COLS);
  static_assert(BITS == 4 || BITS == 8, "4- or 8-bit codes");
  static_assert(GROUP == 0 || GROUP % kActBlock == 0, "group sizes are multiples of 32");
  const uint8_t *data;
  static constexpr int64_t rows = ROWS;
  static constexpr int64_t paddedCols = kGeometry.paddedCols;
  static constexpr int64_t groupSize = kGeometry.groupSize;
  static constexpr int64_t groups = kGeometry.groups;
  static constexpr int64_t tileStride = kGeometry.tileStride;
  static constexpr int64_t superblockStride = kGeometry.superblockStride;
  static constexpr int64_t metaBytes = kGeometry.metaBytes;
  static constexpr int64_t groupCodeBytes = kGeometry.groupCodeBytes;
  static constexpr int bits = BITS;
  static constexpr int symmetric = SYM;
};

template <class S>
void f32Gemm(const WeightArgs &w, const ActF32 &a, const OutArgs &o, int64_t t0, int64_t t1,
             int64_t m0, int64_t m1) {
  f32Tiles<S::bits>(S{w.data}, a, o, t0, t1, m0, m1);
}

template <class S>
void i8Gemm(const WeightArgs &w, const ActI8 &a, const OutArgs &o, int64_t t0, int64_t t1,
            int64_t m0, int64_t m1) {
  intTiles<S::bits>(S{w.data}, a, o, t0, t1, m0, m1);
}

} // namespace qrt::kernels::gen::impl

namespace qrt::kernels::gen {

/// Registers the kernels specialized for a BITS-bit, GROUP-column-group
/// (0 = per-channel), symmetric-or-not ROWS x COLS packed weight.
template <int BITS, int GROUP, int SYM, int64_t ROWS, int64_t COLS> void add(GenRegistry *r) {
  r->generatedAbiVersion = kGenAbiVersion;
  r->isa = impl::kIsa;
  if (r->abiVersion != kGenAbiVersion)
    return;
  using S = impl::StaticWeight<BITS, GROUP, SYM, ROWS, COLS>;
  const GenKernel k{BITS, GROUP, SYM, ROWS, COLS, &impl::f32Gemm<S>, &impl::i8Gemm<S>};
  r->add(r->ctx, &k);
}

/// Records the library's ABI version and instruction set (a model with no
/// packed weight registers nothing but still says what it is).
inline void begin(GenRegistry *r) {
  r->generatedAbiVersion = kGenAbiVersion;
  r->isa = impl::kIsa;
}

} // namespace qrt::kernels::gen

#endif // QOPT_RT_KERNELS_GEN_SPECIALIZE_H
