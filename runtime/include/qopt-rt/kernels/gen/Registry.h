//===- Registry.h - ABI between the runtime and generated kernels -*- C++ -*-===//
//
// qopt generates, per artifact, C++ that instantiates the tile kernels for
// the model's packed shapes (Specialize.h) and compiles it into one shared
// library per instruction set (docs/codegen.md). The library exports one C
// function, `qopt_gen_register`, which hands each specialized kernel to the
// runtime through this registry. Plain structs and function pointers only:
// the library and the runtime share no C++ library types.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_KERNELS_GEN_REGISTRY_H
#define QOPT_RT_KERNELS_GEN_REGISTRY_H

#include "qopt-rt/kernels/tiles/TileArgs.h"

#include <cstdint>

namespace qrt::kernels::gen {

/// Bumped whenever GenKernel, GenRegistry or the tile arguments change: a
/// library built against another version registers nothing.
constexpr int kGenAbiVersion = 1;

/// One GEMM specialized for a packed format and shape: the tile-range
/// kernels qgemm calls in place of the generic ones.
struct GenKernel {
  int bits;       ///< 4 or 8
  int groupSize;  ///< 0 = per-channel
  int symmetric;  ///< 0 or 1
  int64_t rows, cols;
  detail::F32Kernel f32;
  detail::I8Kernel i8;
};

/// Filled by the generated library's qopt_gen_register.
struct GenRegistry {
  int abiVersion;          ///< set by the runtime (kGenAbiVersion)
  int generatedAbiVersion; ///< set by the library
  const char *isa;         ///< set by the library: "avx2", "avx512", "avx512vnni"
  void *ctx;
  void (*add)(void *ctx, const GenKernel *kernel);
};

/// Name of the function every generated library exports.
constexpr const char *kRegisterSymbol = "qopt_gen_register";

} // namespace qrt::kernels::gen

extern "C" {
typedef void (*qopt_gen_register_fn)(qrt::kernels::gen::GenRegistry *);
}

#endif // QOPT_RT_KERNELS_GEN_REGISTRY_H
