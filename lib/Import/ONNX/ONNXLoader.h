//===- ONNXLoader.h - parse ONNX files and resolve tensor bytes -*- C++ -*-===//
//
// The MLIR-free layer of the ONNX importer: protobuf parsing with limits,
// structural validation of the model, and resolution of every tensor's
// bytes (inline raw_data, typed repeated fields, external data files). It
// is kept apart so that the fuzzer can build it with clang and sanitizers
// without linking MLIR.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_IMPORT_ONNX_ONNXLOADER_H
#define QOPT_LIB_IMPORT_ONNX_ONNXLOADER_H

#include "qopt/Weights/WeightStore.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace onnx {
class ModelProto;
class TensorProto;
} // namespace onnx

namespace qopt {
namespace onnximport {

/// A parsed model plus what resolving its tensors needs.
struct LoadedModel {
  std::shared_ptr<onnx::ModelProto> proto;
  /// The path the user gave (prefixes every message).
  std::string path;
  /// Directory external data locations are relative to.
  std::string dir;
  /// Version of the default ("" / "ai.onnx") opset.
  int64_t opset = 0;
  /// External data files mapped so far, by resolved path.
  std::map<std::string, std::shared_ptr<MappedFile>> externalFiles;
};

/// Reads and parses `path`. On a missing, truncated or corrupt file returns
/// false with *error = "<path>: not a valid ONNX model: <why>" (or
/// "<path>: cannot open: ...").
bool loadModelFile(const std::string &path, LoadedModel *out, std::string *error);

/// Parses an in-memory model; `displayName` names it in messages and
/// `dir` is where external data would be found.
bool loadModelBytes(const void *data, size_t size, const std::string &displayName,
                    const std::string &dir, LoadedModel *out, std::string *error);

/// The bytes of one tensor, in the dtype and shape the file declares.
struct TensorData {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t *data = nullptr;
  size_t nbytes = 0;
  /// Keeps `data` valid: the parsed proto, a mapped file or an owned buffer.
  std::shared_ptr<const void> keepAlive;

  int64_t numElements() const;
};

/// Maps an ONNX TensorProto data type to a DType; false if unsupported.
bool dtypeFromONNX(int32_t onnxType, DType *out);

/// Resolves the bytes of `t` (which must live inside `model.proto`).
/// Checks dims, sizes, external-data paths (no absolute paths, no "..")
/// and byte ranges; errors name the file and the tensor.
bool resolveTensor(const onnx::TensorProto &t, LoadedModel &model, TensorData *out,
                   std::string *error);

} // namespace onnximport
} // namespace qopt

#endif
