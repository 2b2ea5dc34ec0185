//===- Specialize.cuh - what generated CUDA kernel code instantiates -*- CUDA -*-===//
//
// The code qopt generates for a GPU target (docs/codegen.md) includes this
// header and, in its `qopt_cuda_gen_register`, calls begin() and then
// add<bits, group, symmetric, rows, cols>() once per packed weight shape.
// Each add instantiates the runtime's own kernel templates (GemvKernel.cuh,
// MmaKernel.cuh) with a StaticWeight of that shape, so the generated code
// is the generic kernel with constants folded in, nothing else.
//
// Compiled with -DQCUDA_GEN_CC=<major*10+minor> for the one architecture
// of the artifact's target.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_GEN_SPECIALIZE_CUH
#define QOPT_CUDA_GEN_SPECIALIZE_CUH

#include "qopt-cuda/gen/Registry.h"
#include "qopt-cuda/kernels/GemvKernel.cuh"
#include "qopt-cuda/kernels/MmaKernel.cuh"

#ifndef QCUDA_GEN_CC
#error "compile generated kernels with -DQCUDA_GEN_CC=<compute capability, e.g. 90>"
#endif

namespace qcuda::gen {

/// Activations are bf16 in the CUDA executor: the only type instantiated.
using GenX = __nv_bfloat16;

template <int Bits, int Group, int Symmetric, int64_t Rows, int64_t Cols>
using GenWeight = detail::StaticWeight<Bits, Group, Symmetric != 0, int(Rows), int(Cols)>;

template <int Bits, int Group, int Symmetric, int64_t Rows, int64_t Cols>
cudaError_t launchSmallM(const detail::WeightOnlyParams *p, cudaStream_t stream) {
  return detail::launchGemv<GenX, Bits, GenWeight<Bits, Group, Symmetric, Rows, Cols>>(*p, stream);
}

template <int Bits, int Group, int Symmetric, int64_t Rows, int64_t Cols>
cudaError_t launchTensorCore(const detail::WeightOnlyParams *p, cudaStream_t stream) {
  return detail::launchMma<GenX, Bits, GenWeight<Bits, Group, Symmetric, Rows, Cols>>(*p, stream);
}

inline void begin(GenRegistry *r) {
  r->generatedAbiVersion = kGenAbiVersion;
  r->computeCapability = QCUDA_GEN_CC;
}

template <int Bits, int Group, int Symmetric, int64_t Rows, int64_t Cols>
void add(GenRegistry *r) {
  if (r->abiVersion != kGenAbiVersion)
    return;
  const GenKernel k{Bits,
                    Group,
                    Symmetric,
                    Rows,
                    Cols,
                    int(DType::kBF16),
                    &launchSmallM<Bits, Group, Symmetric, Rows, Cols>,
                    &launchTensorCore<Bits, Group, Symmetric, Rows, Cols>};
  r->add(r->ctx, &k);
}

} // namespace qcuda::gen

#endif
