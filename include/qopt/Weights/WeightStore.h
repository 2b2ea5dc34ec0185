//===- WeightStore.h - named tensors outside the IR -----------*- C++ -*-===//
//
// The IR refers to weights by name (`qllm.param "model.norm.weight"`); the
// store maps each name to bytes that stay where they are: a memory map of
// the safetensors or ONNX file the importer read, so a multi-GB model imports
// in metadata-sized memory. Passes that create tensors (quantized codes,
// scales) add owned buffers under new names.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_WEIGHTS_WEIGHTSTORE_H
#define QOPT_WEIGHTS_WEIGHTSTORE_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qopt {

/// Element types a stored tensor can have.
enum class DType : uint8_t { F32, F16, BF16, F64, I8, U8, I16, I32, I64, Bool };

/// Bytes per element.
size_t dtypeSize(DType t);
/// Short lowercase name as MLIR spells it ("f32", "bf16", "i64", ...).
const char *dtypeName(DType t);
/// True for F32, F16, BF16, F64.
bool isFloat(DType t);

/// A read-only memory map of one file, shared by every tensor inside it.
class MappedFile {
public:
  /// Maps `path`; returns nullptr and sets *error ("<path>: <reason>") on failure.
  static std::shared_ptr<MappedFile> open(const std::string &path, std::string *error);
  ~MappedFile();
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  const uint8_t *data() const { return data_; }
  size_t size() const { return size_; }
  const std::string &path() const { return path_; }

private:
  MappedFile() = default;
  const uint8_t *data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

/// One named tensor. `data` points into a MappedFile or an owned buffer.
struct WeightEntry {
  std::string name;
  DType dtype = DType::F32;
  /// Logical shape (for a linear weight: [out_features, in_features]).
  std::vector<int64_t> shape;
  const uint8_t *data = nullptr;
  size_t nbytes = 0;
  /// The bytes hold the 2-D transpose of `shape` (ONNX MatMul weights are
  /// stored [in, out]); readers see the logical layout either way.
  bool transposed = false;
  /// Where the bytes came from, for error messages ("model.onnx", ...).
  std::string source;

  int64_t numElements() const;
};

/// The set of named tensors a module refers to.
class WeightStore {
public:
  /// Adds a tensor whose bytes live in `file` (kept alive by the store).
  /// Returns false and sets *error if the name exists or the byte range or
  /// size does not fit shape x dtype.
  bool addMapped(WeightEntry entry, std::shared_ptr<MappedFile> file, std::string *error);
  /// Adds a tensor whose bytes are kept alive by `keepAlive` (e.g. a parsed
  /// ONNX model holding raw_data). The caller guarantees the byte range.
  bool addExternal(WeightEntry entry, std::shared_ptr<const void> keepAlive,
                   std::string *error);
  /// Adds a tensor that owns its bytes.
  bool addOwned(const std::string &name, DType dtype, std::vector<int64_t> shape,
                std::vector<uint8_t> bytes, std::string *error,
                const std::string &source = "<generated>");
  /// Renames a tensor (importers give anonymous ONNX initializers their
  /// canonical names). False if `from` is missing or `to` exists.
  bool rename(const std::string &from, const std::string &to);
  /// Drops a tensor (its memory is released when nothing else refers to it).
  void erase(const std::string &name);

  const WeightEntry *find(const std::string &name) const;
  bool contains(const std::string &name) const { return find(name) != nullptr; }
  /// Names in sorted order.
  std::vector<std::string> names() const;
  size_t size() const { return entries_.size(); }

  /// The tensor as fp32 in its logical row-major layout (upcast from
  /// bf16/fp16, transposed back when stored transposed). Float dtypes only.
  std::vector<float> readF32(const WeightEntry &entry) const;
  std::vector<float> readF32(const std::string &name) const;

private:
  struct Slot {
    WeightEntry entry;
    std::shared_ptr<const void> keepAlive;
  };
  std::map<std::string, Slot> entries_;
};

} // namespace qopt

#endif
