//===- GpuArtifact.cpp - GPU targets and GPU-packed blobs of an artifact ---===//
#include "qopt-rt/artifact/GpuArtifact.h"

#include "qopt-rt/kernels/PackedLayout.h"

#include <cmath>
#include <cstring>

namespace qrt {

namespace {

constexpr int64_t kGpuBlobAlign = 256;

int64_t alignUp(int64_t x) { return (x + kGpuBlobAlign - 1) / kGpuBlobAlign * kGpuBlobAlign; }

/// Parses a decimal integer at the start of `s`, advancing it.
bool takeInt(const char *&s, int *out) {
  if (*s < '0' || *s > '9')
    return false;
  long v = 0;
  while (*s >= '0' && *s <= '9' && v < 1000000)
    v = v * 10 + (*s++ - '0');
  *out = int(v);
  return true;
}

} // namespace

const std::vector<GpuTargetInfo> &gpuTargets() {
  static const std::vector<GpuTargetInfo> targets = {
      {"sm80", 8, 0}, {"sm89", 8, 9}, {"sm90", 9, 0}};
  return targets;
}

const GpuTargetInfo *findGpuTarget(const std::string &name) {
  for (const GpuTargetInfo &t : gpuTargets())
    if (t.name == name)
      return &t;
  return nullptr;
}

std::string gpuLayoutId(const qcuda::GpuQuantFormat &f) {
  std::string id = "cuda_i" + std::to_string(f.bits) +
                   (f.groupSize == 0 ? std::string("_pc") : "_g" + std::to_string(f.groupSize));
  return f.symmetric ? id + "_sym" : id;
}

bool isGpuLayoutId(const std::string &id) { return id.rfind("cuda_", 0) == 0; }

bool parseGpuLayoutId(const std::string &id, qcuda::GpuQuantFormat *format, std::string *error) {
  auto bad = [&] {
    *error = "layout '" + id + "' is not a GPU layout id (cuda_i<4|8>_g<group>|_pc[_sym])";
    return false;
  };
  if (id.rfind("cuda_i", 0) != 0)
    return bad();
  const char *s = id.c_str() + 6;
  qcuda::GpuQuantFormat f;
  if (!takeInt(s, &f.bits) || (f.bits != 4 && f.bits != 8))
    return bad();
  if (std::strncmp(s, "_pc", 3) == 0) {
    f.groupSize = 0;
    s += 3;
  } else if (std::strncmp(s, "_g", 2) == 0) {
    s += 2;
    if (!takeInt(s, &f.groupSize) || f.groupSize <= 0)
      return bad();
  } else {
    return bad();
  }
  if (std::strcmp(s, "_sym") == 0)
    f.symmetric = true;
  else if (*s != '\0')
    return bad();
  *format = f;
  return true;
}

bool gpuBlobLayout(const qcuda::GpuQuantFormat &format, int64_t rows, int64_t cols,
                   GpuBlobLayout *l, std::string *error) {
  GpuBlobLayout out;
  out.format = format;
  if (!qcuda::computeGpuGeometry(format, rows, cols, &out.geometry, error))
    return false;
  const qcuda::GpuPackedGeometry &g = out.geometry;
  out.codesOffset = 0;
  out.codesBytes = g.rows * g.wordsPerRow * 4;
  out.scalesOffset = alignUp(out.codesBytes);
  out.scalesBytes = g.groups * g.rows * 2;
  out.zerosOffset = alignUp(out.scalesOffset + out.scalesBytes);
  out.zerosBytes = format.symmetric ? 0 : out.scalesBytes;
  out.totalBytes = format.symmetric ? out.scalesOffset + out.scalesBytes
                                    : out.zerosOffset + out.zerosBytes;
  *l = out;
  return true;
}

void writeGpuBlob(const qcuda::GpuPackedHost &p, const GpuBlobLayout &l, uint8_t *blob) {
  std::memset(blob, 0, size_t(l.totalBytes));
  std::memcpy(blob + l.codesOffset, p.codes.data(), size_t(l.codesBytes));
  std::memcpy(blob + l.scalesOffset, p.scales.data(), size_t(l.scalesBytes));
  if (l.zerosBytes)
    std::memcpy(blob + l.zerosOffset, p.zeros.data(), size_t(l.zerosBytes));
}

bool gpuW8A8BlobLayout(int64_t rows, int64_t cols, GpuW8A8BlobLayout *l, std::string *error) {
  if (rows <= 0 || rows % 4 != 0 || cols <= 0 || cols % 16 != 0) {
    *error = "the W8A8 GEMM needs out_features a multiple of 4 and in_features one of 16, got " +
             std::to_string(rows) + " x " + std::to_string(cols);
    return false;
  }
  GpuW8A8BlobLayout out;
  out.rows = rows;
  out.cols = cols;
  out.codesBytes = rows * cols;
  out.scalesOffset = alignUp(out.codesBytes);
  out.scalesBytes = rows * 4;
  out.totalBytes = out.scalesOffset + out.scalesBytes;
  *l = out;
  return true;
}

/// What both W8A8 blobs need of the matrix: the layout's shape, finite
/// per-channel scales.
static bool checkW8A8Matrix(const kernels::RefQuantMatrix &ref, const GpuW8A8BlobLayout &l,
                            std::string *error) {
  if (ref.rows != l.rows || ref.cols != l.cols) {
    *error = "W8A8 blob is for " + std::to_string(l.rows) + " x " + std::to_string(l.cols) +
             ", the matrix is " + std::to_string(ref.rows) + " x " + std::to_string(ref.cols);
    return false;
  }
  for (int64_t n = 0; n < l.rows; ++n)
    if (!std::isfinite(ref.scales[n])) {
      *error = "W8A8 weights: row " + std::to_string(n) + " has a scale that is not finite";
      return false;
    }
  return true;
}

bool writeGpuW8A8Blob(const kernels::RefQuantMatrix &ref, const GpuW8A8BlobLayout &l,
                      uint8_t *blob, std::string *error) {
  if (ref.bits != 8 || ref.groupSize != 0 || !ref.symmetric) {
    *error = "W8A8 weights must be int8 per-channel symmetric, got " + std::to_string(ref.bits) +
             "-bit, group size " + std::to_string(ref.groupSize) +
             (ref.symmetric ? ", symmetric" : ", asymmetric");
    return false;
  }
  if (!checkW8A8Matrix(ref, l, error))
    return false;
  std::memset(blob, 0, size_t(l.totalBytes));
  // Symmetric codes are stored offset by 128; cuBLASLt reads signed int8.
  int8_t *codes = reinterpret_cast<int8_t *>(blob + l.codesOffset);
  for (int64_t i = 0; i < l.rows * l.cols; ++i)
    codes[i] = int8_t(int(ref.codes[i]) - 128);
  std::memcpy(blob + l.scalesOffset, ref.scales, size_t(l.scalesBytes));
  return true;
}

bool writeGpuW8A8Fp8Blob(const kernels::RefQuantMatrix &ref, const GpuW8A8BlobLayout &l,
                         uint8_t *blob, std::string *error) {
  if (ref.bits != 8 || ref.groupSize != 0 || !ref.symmetric) {
    *error = "FP8 W8A8 weights must be fp8_e4m3 per-channel, got " + std::to_string(ref.bits) +
             "-bit, group size " + std::to_string(ref.groupSize);
    return false;
  }
  if (!checkW8A8Matrix(ref, l, error))
    return false;
  // E4M3 "fn" has no infinities; 0x7f / 0xff are its only NaNs.
  for (int64_t i = 0; i < l.rows * l.cols; ++i)
    if ((ref.codes[i] & 0x7f) == 0x7f) {
      *error = "FP8 W8A8 weights: the code of row " + std::to_string(i / l.cols) + ", column " +
               std::to_string(i % l.cols) + " is NaN";
      return false;
    }
  std::memset(blob, 0, size_t(l.totalBytes));
  // The quantizer's codes are the E4M3 bytes cuBLASLt reads: no re-encoding.
  std::memcpy(blob + l.codesOffset, ref.codes, size_t(l.codesBytes));
  std::memcpy(blob + l.scalesOffset, ref.scales, size_t(l.scalesBytes));
  return true;
}

} // namespace qrt
