//===- DType.h - element types at the CUDA backend's host API -*- C++ -*-===//
#ifndef QOPT_CUDA_DTYPE_H
#define QOPT_CUDA_DTYPE_H

namespace qcuda {

/// Element type of an activation, bias or output buffer passed as void*.
enum class DType { kF16, kBF16, kF32 };

inline const char *dtypeName(DType t) {
  return t == DType::kF16 ? "f16" : t == DType::kBF16 ? "bf16" : "f32";
}

} // namespace qcuda

#endif
