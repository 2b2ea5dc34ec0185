//===- Registry.h - ABI between the CUDA runtime and generated kernels -*- C++ -*-===//
//
// For -target=sm80|sm89|sm90, qopt generates CUDA C++ that instantiates the
// weight-only GEMM kernels for each packed shape of the model
// (Specialize.cuh), compiles it with nvcc for that one architecture into a
// shared library (host launchers + the device code), and ships it in the
// artifact (docs/codegen.md). The library exports one C function,
// `qopt_cuda_gen_register`, which hands each specialized launcher to the
// runtime through this registry. Plain structs and function pointers only.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_GEN_REGISTRY_H
#define QOPT_CUDA_GEN_REGISTRY_H

#include "qopt-cuda/gen/AbiVersion.h"
#include "qopt-cuda/kernels/WeightOnlyParams.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace qcuda::gen {

/// Enqueues one specialized kernel; the parameters were validated by
/// weightOnlyGemm (their shape equals the kernel's).
typedef cudaError_t (*GenLaunchFn)(const detail::WeightOnlyParams *params, cudaStream_t stream);

/// The kernels of one packed weight shape.
struct GenKernel {
  int bits;       ///< 4 or 8
  int groupSize;  ///< effective group size (per-channel = cols)
  int symmetric;  ///< 0 or 1
  int64_t rows, cols;
  int xType;      ///< DType of the activations it was instantiated for
  GenLaunchFn smallM;     ///< the M <= kSmallMMax kernel
  GenLaunchFn tensorCore; ///< the mma.sync kernel
};

/// Filled by the generated library's qopt_cuda_gen_register.
struct GenRegistry {
  int abiVersion;          ///< set by the runtime (kGenAbiVersion)
  int generatedAbiVersion; ///< set by the library
  int computeCapability;   ///< set by the library: e.g. 90 for sm_90a
  void *ctx;
  void (*add)(void *ctx, const GenKernel *kernel);
};

/// Name of the function every generated CUDA library exports.
constexpr const char *kRegisterSymbol = "qopt_cuda_gen_register";

} // namespace qcuda::gen

extern "C" {
typedef void (*qopt_cuda_gen_register_fn)(qcuda::gen::GenRegistry *);
}

#endif
