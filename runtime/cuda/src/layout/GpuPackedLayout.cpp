//===- GpuPackedLayout.cpp - host packer of the CUDA weight layout --------===//
//
// Reference layout -> GpuPackedLayout.h's layout. Validates everything a
// kernel would otherwise silently misread: shapes, code and zero ranges, and
// scales that would change when rounded to fp16.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/GpuPackedLayout.h"

#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"

#include <cmath>

namespace qcuda {

bool computeGpuGeometry(const GpuQuantFormat &format, int64_t rows, int64_t cols,
                        GpuPackedGeometry *geometry, std::string *error) {
  if (format.bits != 4 && format.bits != 8) {
    *error = "GPU weight layout: bits must be 4 or 8, got " + std::to_string(format.bits);
    return false;
  }
  if (format.groupSize < 0 || format.groupSize % 32 != 0) {
    *error = "GPU weight layout: group size must be 0 (per-channel) or a multiple of 32, got " +
             std::to_string(format.groupSize);
    return false;
  }
  if (rows <= 0 || cols <= 0 || rows % 64 != 0 || cols % 64 != 0) {
    *error = "GPU weight layout: N and K must be positive multiples of 64 (the CUDA kernels "
             "have no tail handling), got N=" +
             std::to_string(rows) + " K=" + std::to_string(cols);
    return false;
  }
  // The kernels hold N and K in int (WeightOnlyParams): 2^31 itself wraps.
  if (rows >= (int64_t(1) << 31) || cols >= (int64_t(1) << 31)) {
    *error = "GPU weight layout: N or K of 2^31 or more (the kernels index with int)";
    return false;
  }
  geometry->rows = rows;
  geometry->cols = cols;
  geometry->groupSize = format.groupSize == 0 ? cols : format.groupSize;
  geometry->groups = (cols + geometry->groupSize - 1) / geometry->groupSize;
  geometry->wordsPerRow = cols * format.bits / 32;
  return true;
}

bool packForGpu(const qrt::kernels::RefQuantMatrix &ref, GpuPackedHost *out,
                std::string *error) {
  GpuQuantFormat format;
  format.bits = ref.bits;
  format.groupSize = int(ref.groupSize);
  format.symmetric = ref.symmetric;
  GpuPackedGeometry g;
  if (!computeGpuGeometry(format, ref.rows, ref.cols, &g, error))
    return false;
  if (!ref.codes || !ref.scales || (!ref.symmetric && !ref.zeros)) {
    *error = "GPU weight layout: missing codes, scales or (asymmetric) zeros";
    return false;
  }
  const int64_t N = g.rows, K = g.cols, G = g.groups;
  const uint32_t maxCode = (1u << format.bits) - 1;
  out->format = format;
  out->geometry = g;
  out->codes.assign(size_t(N * g.wordsPerRow), 0u);
  out->scales.assign(size_t(G * N), 0);
  out->zeros.assign(ref.symmetric ? 0 : size_t(G * N), 0);

  const int perWord = 32 / format.bits;
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t *rowCodes = ref.codes + n * K;
    uint32_t *rowWords = out->codes.data() + n * g.wordsPerRow;
    for (int64_t k = 0; k < K; ++k) {
      const uint32_t c = rowCodes[k];
      if (c > maxCode) {
        *error = "GPU weight layout: row " + std::to_string(n) + " column " + std::to_string(k) +
                 ": code " + std::to_string(c) + " does not fit " +
                 std::to_string(format.bits) + " bits";
        return false;
      }
      // 4-bit: nibbles interleaved (kGpuColumnNibble, see the header).
      const int slot = format.bits == 4 ? kGpuColumnNibble[k % 8] : int(k % perWord);
      rowWords[k / perWord] |= c << (format.bits * slot);
    }
    for (int64_t gi = 0; gi < G; ++gi) {
      const std::string where =
          "GPU weight layout: row " + std::to_string(n) + " group " + std::to_string(gi);
      const float s = ref.scales[n * G + gi];
      const uint16_t sh = qrt::f32ToF16(s);
      if (!std::isfinite(s) || qrt::f16ToF32(sh) != s) {
        *error = where + ": scale " + std::to_string(s) + " is not an exact fp16 value";
        return false;
      }
      out->scales[size_t(gi * N + n)] = sh;
      if (!ref.symmetric) {
        const float z = ref.zeros[n * G + gi];
        // [0, 255] as the CPU layout: fp16 holds these integers exactly and
        // the kernels subtract in fp32, so a zero outside the code range works.
        if (!(z >= 0.f && z <= 255.f) || z != std::floor(z)) {
          *error = where + ": zero point " + std::to_string(z) + " is not an integer in [0, 255]";
          return false;
        }
        out->zeros[size_t(gi * N + n)] = qrt::f32ToF16(z);
      }
    }
  }
  return true;
}

} // namespace qcuda
