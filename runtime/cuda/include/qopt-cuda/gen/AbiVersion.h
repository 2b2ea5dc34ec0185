//===- AbiVersion.h - version of the generated-CUDA-kernel ABI -*- C++ -*-===//
//
// Its own header, free of CUDA includes, so the compiler (which writes it
// into the artifact's manifest) and the runtime (which refuses another)
// read the same number.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_GEN_ABIVERSION_H
#define QOPT_CUDA_GEN_ABIVERSION_H

namespace qcuda::gen {

/// Bumped whenever GenKernel, GenRegistry or WeightOnlyParams change: a
/// library built against another version registers nothing.
/// 2: WeightOnlyParams gained splitK / partial.
constexpr int kGenAbiVersion = 2;

} // namespace qcuda::gen

#endif
