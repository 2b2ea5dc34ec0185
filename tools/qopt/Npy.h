//===- Npy.h - write NumPy .npy files -------------------------*- C++ -*-===//
#ifndef QOPT_TOOLS_QOPT_NPY_H
#define QOPT_TOOLS_QOPT_NPY_H

#include <cstdint>
#include <string>
#include <vector>

namespace qopt {
/// Writes a little-endian float32 C-order array. False with *error.
bool writeNpyF32(const std::string &path, const std::vector<int64_t> &shape,
                 const float *data, std::string *error);
} // namespace qopt

#endif
