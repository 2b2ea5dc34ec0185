//===- GpuArtifact.cpp - GPU targets and GPU-packed blobs of an artifact ---===//
#include "qopt-rt/artifact/GpuArtifact.h"

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

} // namespace qrt
