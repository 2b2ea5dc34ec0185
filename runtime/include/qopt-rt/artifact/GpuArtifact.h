//===- GpuArtifact.h - what a CUDA-target artifact stores -------*- C++ -*-===//
//
// The pieces of the artifact format (docs/artifact.md) that belong to the
// GPU targets -target=sm80|sm89|sm90, shared by the writer (qopt) and the
// loader (runtime): the target names and their compute capabilities, the
// layout ids of GPU-packed weights ("cuda_i4_g128", "cuda_i8_pc_sym") and
// how one packed blob of weights.bin holds qcuda::GpuPackedHost's three
// arrays. Plain C++ (no CUDA): artifacts are written on machines without a
// GPU.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_ARTIFACT_GPUARTIFACT_H
#define QOPT_RT_ARTIFACT_GPUARTIFACT_H

#include "qopt-cuda/GpuPackedLayout.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qrt {

/// A GPU target: its -target name and the compute capability it runs on.
struct GpuTargetInfo {
  std::string name; ///< "sm80", "sm89", "sm90"
  int major = 0, minor = 0;
};

/// The GPU targets qopt writes artifacts for.
const std::vector<GpuTargetInfo> &gpuTargets();
/// The target named `name`, or null when it is not a GPU target.
const GpuTargetInfo *findGpuTarget(const std::string &name);

/// Where the arrays of a GPU-packed matrix lie in its weights.bin blob:
/// codes, then scales, then zeros (absent for symmetric formats), each
/// starting on a 256-byte boundary of the blob so the device copy keeps
/// the kernels' 16-byte alignment whatever the shape.
struct GpuBlobLayout {
  qcuda::GpuQuantFormat format;
  qcuda::GpuPackedGeometry geometry;
  int64_t codesOffset = 0, codesBytes = 0;
  int64_t scalesOffset = 0, scalesBytes = 0;
  int64_t zerosOffset = 0, zerosBytes = 0; ///< zerosBytes 0 when symmetric
  int64_t totalBytes = 0;
};

/// "cuda_i<bits>_g<group>" or "cuda_i<bits>_pc" (per-channel), "_sym"
/// appended for symmetric formats.
std::string gpuLayoutId(const qcuda::GpuQuantFormat &format);
/// True for ids of the GPU layouts (they start with "cuda_").
bool isGpuLayoutId(const std::string &id);
/// Inverse of gpuLayoutId; false with *error for a malformed id.
bool parseGpuLayoutId(const std::string &id, qcuda::GpuQuantFormat *format,
                      std::string *error);
/// The blob of an N x K matrix in `format`; false with *error for shapes
/// the CUDA kernels do not take (qcuda::computeGpuGeometry's rules).
bool gpuBlobLayout(const qcuda::GpuQuantFormat &format, int64_t rows, int64_t cols,
                   GpuBlobLayout *layout, std::string *error);
/// Writes `packed` into `blob` (layout.totalBytes bytes, padding zeroed).
void writeGpuBlob(const qcuda::GpuPackedHost &packed, const GpuBlobLayout &layout,
                  uint8_t *blob);

} // namespace qrt

#endif // QOPT_RT_ARTIFACT_GPUARTIFACT_H
