//===- WeightOnlyGemv.cu - the runtime's small-M kernel, any shape -------===//
//
// The generic instantiation of GemvKernel.cuh (shape and zero-point mode
// read at run time); generated per-model kernels instantiate the same
// template with constants (qopt-cuda/gen/Specialize.cuh).
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/kernels/GemvKernel.cuh"

namespace qcuda::detail {

cudaError_t launchSmallM(const WeightOnlyParams &p, DType xType, int bits, cudaStream_t stream) {
  if (xType == DType::kF16)
    return bits == 4 ? launchGemv<__half, 4, DynamicWeight>(p, stream)
                     : launchGemv<__half, 8, DynamicWeight>(p, stream);
  return bits == 4 ? launchGemv<__nv_bfloat16, 4, DynamicWeight>(p, stream)
                   : launchGemv<__nv_bfloat16, 8, DynamicWeight>(p, stream);
}

} // namespace qcuda::detail
