//===- SafeTensors.h - reading and writing .safetensors files -*- C++ -*-===//
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON describing every tensor ({name: {dtype, shape, data_offsets}} plus an
// optional "__metadata__" string map), then the raw data region. Offsets are
// relative to the start of the data region.
//
// The reader treats the file as untrusted input: every header value is
// checked against the file before anything is sized from it, and every
// problem is one line "<file>: tensor '<name>': <problem>". It needs no LLVM
// (the fuzzer links it alone). Tensors are memory-mapped, never copied.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_IMPORT_SAFETENSORS_H
#define QOPT_IMPORT_SAFETENSORS_H

#include "qopt/Weights/WeightStore.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qopt {

/// Largest header the reader accepts (the reference implementation's limit).
constexpr uint64_t kSafeTensorsMaxHeaderBytes = 100u * 1000u * 1000u;

/// One tensor as the header describes it.
struct SafeTensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  /// Byte range [begin, end) relative to the data region.
  uint64_t begin = 0, end = 0;
};

/// A parsed header.
struct SafeTensorsHeader {
  /// Offset of the data region in the file (8 + header length).
  uint64_t dataOffset = 0;
  /// Size of the data region in bytes.
  uint64_t dataSize = 0;
  /// Tensors in the order the header lists them.
  std::vector<SafeTensorInfo> tensors;
  /// "__metadata__" entries in header order.
  std::vector<std::pair<std::string, std::string>> metadata;
};

/// The safetensors spelling of a dtype ("F32", "BF16", "BOOL", ...).
const char *safeTensorsDTypeName(DType t);
/// Parses a safetensors dtype string. False for unknown or unsupported ones.
bool parseSafeTensorsDType(const std::string &s, DType *out);

/// Parses and validates the header of a whole safetensors file held in
/// memory (`size` bytes at `data`). Every tensor's byte range is checked to
/// lie inside the buffer and to match shape x dtype. `source` names the file
/// in errors. Overlapping tensors and gaps between tensors are accepted
/// (they are harmless for a read-only map); everything else the format
/// forbids is an error.
bool parseSafeTensors(const uint8_t *data, size_t size, const std::string &source,
                      SafeTensorsHeader *out, std::string *error);

/// A memory-mapped safetensors file and its parsed header.
struct SafeTensorsFile {
  std::shared_ptr<MappedFile> file;
  SafeTensorsHeader header;

  /// The store entry for tensor `i` of the header, pointing into the map.
  WeightEntry entry(size_t i) const;
};

/// Maps and parses `path`.
bool openSafeTensors(const std::string &path, SafeTensorsFile *out, std::string *error);

/// Maps `path` and adds every tensor to `store` under its own name, zero
/// copy. `added` (optional) receives the names in header order.
bool loadSafeTensors(const std::string &path, WeightStore &store, std::string *error,
                     std::vector<std::string> *added = nullptr);

/// Name, dtype and shape of a tensor to write.
struct SafeTensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

/// Writes a safetensors file in a stream: the header is written by open()
/// from the specs, then the tensors' bytes are appended in spec order, so a
/// multi-GB model never has to be in memory. The header is padded with
/// spaces to a multiple of 8 bytes, as the reference implementation does,
/// so the data region starts 8-byte aligned.
class SafeTensorsWriter {
public:
  SafeTensorsWriter() = default;
  ~SafeTensorsWriter();
  SafeTensorsWriter(const SafeTensorsWriter &) = delete;
  SafeTensorsWriter &operator=(const SafeTensorsWriter &) = delete;

  /// Creates `path` and writes the header. False with *error on a bad spec
  /// (duplicate name, negative or overflowing shape) or an I/O failure.
  bool open(const std::string &path, const std::vector<SafeTensorSpec> &tensors,
            const std::vector<std::pair<std::string, std::string>> &metadata,
            std::string *error);
  /// Appends the next `n` bytes of the data region.
  bool append(const void *bytes, size_t n, std::string *error);
  /// Checks that exactly the declared bytes were written and closes the file.
  bool close(std::string *error);

  /// Bytes of the data region still expected.
  uint64_t remaining() const { return total_ - written_; }
  /// Size of the whole file once complete.
  uint64_t fileSize() const { return dataOffset_ + total_; }

private:
  std::FILE *f_ = nullptr;
  std::string path_;
  uint64_t total_ = 0, written_ = 0, dataOffset_ = 0;
};

/// A tensor held in memory, for writeSafeTensors.
struct SafeTensorData {
  SafeTensorSpec spec;
  /// shape x dtype bytes.
  const void *data = nullptr;
};

/// Writes a whole file from in-memory tensors (tests and small outputs).
bool writeSafeTensors(const std::string &path, const std::vector<SafeTensorData> &tensors,
                      const std::vector<std::pair<std::string, std::string>> &metadata,
                      std::string *error);

/// Byte size of shape x dtype, or false if a dimension is negative or the
/// product overflows.
bool safeTensorByteSize(const std::vector<int64_t> &shape, DType dtype, uint64_t *bytes);

} // namespace qopt

#endif
