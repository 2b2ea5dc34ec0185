//===- Npy.cpp - write NumPy .npy files (format version 1.0) ----------===//
#include "Npy.h"

#include <cstdio>

namespace qopt {

bool writeNpyF32(const std::string &path, const std::vector<int64_t> &shape,
                 const float *data, std::string *error) {
  std::string dims;
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
    n *= shape[i];
  }
  std::string header =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header, padded to 64 bytes with '\n' last.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f) {
    *error = path + ": cannot write";
    return false;
  }
  uint16_t len = uint16_t(header.size());
  const char magic[] = "\x93NUMPY\x01\x00";
  bool ok = std::fwrite(magic, 1, 8, f) == 8 &&
            std::fputc(len & 0xff, f) != EOF && std::fputc(len >> 8, f) != EOF &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(data, sizeof(float), size_t(n), f) == size_t(n);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok)
    *error = path + ": write failed";
  return ok;
}

} // namespace qopt
