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
#include <type_traits>

namespace qrt::kernels::detail {

// Every ISA declares its kernels with the function types of the pointers
// the dispatcher holds (TileArgs.h), so the signatures are written once.
using F32KernelFn = std::remove_pointer_t<F32Kernel>;
using I8KernelFn = std::remove_pointer_t<I8Kernel>;
using QuantizeKernelFn = std::remove_pointer_t<QuantizeKernel>;

namespace scalar {
F32KernelFn gemmF32;
I8KernelFn gemmI8;
QuantizeKernelFn quantizeI8;
} // namespace scalar

namespace avx2 {
F32KernelFn gemmF32;
I8KernelFn gemmI8;
QuantizeKernelFn quantizeI8;
} // namespace avx2

namespace avx512 {
F32KernelFn gemmF32;
/// AVX-512BW integer dot (vpmaddubsw), for CPUs without VNNI.
I8KernelFn gemmI8;
QuantizeKernelFn quantizeI8;
} // namespace avx512

namespace avx512vnni {
/// vpdpbusd.
I8KernelFn gemmI8;
} // namespace avx512vnni

} // namespace qrt::kernels::detail

#endif
