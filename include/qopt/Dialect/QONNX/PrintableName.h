//===- PrintableName.h - file-supplied names made safe for messages -*- C++ -*-===//
//
// Node and tensor names come from the ONNX file and may hold anything; the
// importer's errors must stay one readable line. Kept free of MLIR so the
// fuzzed loader can use it too.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_DIALECT_QONNX_PRINTABLENAME_H
#define QOPT_DIALECT_QONNX_PRINTABLENAME_H

#include <string>

namespace qopt {
namespace qonnx {

/// `text` with control bytes escaped as \xNN, cut after `limit` bytes.
inline std::string printableMessage(const std::string &text, size_t limit = std::string::npos) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : text) {
    if (out.size() >= limit) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  return out;
}

/// A name from the file, fit for a one-line message (at most ~200 bytes).
inline std::string printableName(const std::string &name) { return printableMessage(name, 200); }

} // namespace qonnx
} // namespace qopt

#endif
