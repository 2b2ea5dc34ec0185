//===- WeightOnlyMma.cu - the runtime's tensor-core kernel, any shape ----===//
//
// The generic instantiation of MmaKernel.cuh; see WeightOnlyGemv.cu.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/kernels/MmaKernel.cuh"

namespace qcuda::detail {

cudaError_t launchTensorCore(const WeightOnlyParams &p, DType xType, int bits,
                             cudaStream_t stream) {
  if (xType == DType::kF16)
    return bits == 4 ? launchMma<__half, 4, DynamicWeight>(p, stream)
                     : launchMma<__half, 8, DynamicWeight>(p, stream);
  return bits == 4 ? launchMma<__nv_bfloat16, 4, DynamicWeight>(p, stream)
                   : launchMma<__nv_bfloat16, 8, DynamicWeight>(p, stream);
}

} // namespace qcuda::detail
