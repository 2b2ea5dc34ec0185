//===- GpuArtifact.h - what a CUDA-target artifact stores -------*- C++ -*-===//
//
// The pieces of the artifact format (docs/artifact.md) that belong to the
// GPU targets -target=sm80|sm89|sm90, shared by the writer (qopt) and the
// loader (runtime): the target names and their compute capabilities, the
// layout ids of GPU-packed weights ("cuda_i4_g128", "cuda_i8_pc_sym"), how
// one packed blob of weights.bin holds qcuda::GpuPackedHost's three arrays,
// and the W8A8 blobs ("cuda_w8a8_i8_pc": int8 codes [N, K] as cuBLASLt's
// 8-bit GEMM reads them, fp32 scales [N]; "cuda_w8a8_f8_pc": the same with
// FP8 E4M3 codes). Plain C++ (no CUDA): artifacts are written on machines
// without a GPU.
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

/// Whether the target has FP8 tensor cores (compute capability 8.9 or
/// newer), which FP8 (E4M3) W8A8 needs.
inline bool gpuTargetHasFp8(const GpuTargetInfo &t) {
  return t.major > 8 || (t.major == 8 && t.minor >= 9);
}

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

/// The layout id of a W8A8 weight (a linear with act_quant) on a GPU
/// target: int8 per-channel symmetric weights for W8A8Gemm. It starts with
/// "cuda_" (isGpuLayoutId) but is not a weight-only id (parseGpuLayoutId
/// refuses it).
inline const char *gpuW8A8LayoutId() { return "cuda_w8a8_i8_pc"; }
/// The layout id of an FP8 W8A8 weight (-wquant=fp8 -method=smoothquant):
/// E4M3 per-channel weights for W8A8Gemm's FP8 path (sm89 and newer).
/// Like gpuW8A8LayoutId, parseGpuLayoutId refuses it.
inline const char *gpuW8A8Fp8LayoutId() { return "cuda_w8a8_f8_pc"; }

/// Where the arrays of a W8A8 matrix lie in its blob (both layouts): 8-bit
/// codes [N][K] row-major at offset 0 (signed int8, or E4M3 bytes; K a
/// multiple of 16: every row starts on a 16-byte boundary, as cuBLASLt's
/// 8-bit kernels need), then fp32 scales [N] at the next 256-byte
/// boundary; w[n][k] = value(codes[n][k]) * scales[n].
struct GpuW8A8BlobLayout {
  int64_t rows = 0, cols = 0; ///< N, K
  int64_t codesOffset = 0, codesBytes = 0;
  int64_t scalesOffset = 0, scalesBytes = 0;
  int64_t totalBytes = 0;
};

/// The W8A8 blob of an N x K matrix; false with *error when N is not a
/// positive multiple of 4 or K one of 16 (W8A8Gemm's rules).
bool gpuW8A8BlobLayout(int64_t rows, int64_t cols, GpuW8A8BlobLayout *layout,
                       std::string *error);
/// Writes `ref` (8-bit, per-channel, symmetric: code c is the int8 value
/// c - 128) into `blob` (layout.totalBytes bytes, padding zeroed). False
/// with *error for another format, a shape that is not the layout's, or a
/// scale that is not finite.
bool writeGpuW8A8Blob(const kernels::RefQuantMatrix &ref, const GpuW8A8BlobLayout &layout,
                      uint8_t *blob, std::string *error);
/// Writes an FP8 W8A8 matrix into `blob` (layout.totalBytes bytes, padding
/// zeroed): `ref` holds the quantizer's fp8_e4m3 codes (E4M3 "fn" bit
/// patterns, copied unchanged) and its fp32 per-channel scales; bits 8,
/// per-channel, symmetric. False with *error for another format, a shape
/// that is not the layout's, a NaN code (0x7f / 0xff) or a scale that is
/// not finite.
bool writeGpuW8A8Fp8Blob(const kernels::RefQuantMatrix &ref, const GpuW8A8BlobLayout &layout,
                         uint8_t *blob, std::string *error);

} // namespace qrt

#endif // QOPT_RT_ARTIFACT_GPUARTIFACT_H
