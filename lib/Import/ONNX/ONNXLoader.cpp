//===- ONNXLoader.cpp - parse ONNX files and resolve tensor bytes -----===//
//
// Nothing here trusts the file: protobuf parsing runs with a byte and a
// nesting limit and its result is checked, tensor sizes are computed with
// overflow checks before any allocation, and external data must stay inside
// the model's directory and inside the data file.
//
//===----------------------------------------------------------------------===//
#include "ONNXLoader.h"

#include "qopt/Dialect/QONNX/PrintableName.h"

#include "onnx/onnx_pb.h" // the ONNX_ML variant: ONNX_ML=1 is defined by CMake
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <climits>
#include <cstring>

namespace qopt {
namespace onnximport {

int64_t TensorData::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

bool dtypeFromONNX(int32_t t, DType *out) {
  switch (t) {
  case onnx::TensorProto::FLOAT: *out = DType::F32; return true;
  case onnx::TensorProto::FLOAT16: *out = DType::F16; return true;
  case onnx::TensorProto::BFLOAT16: *out = DType::BF16; return true;
  case onnx::TensorProto::DOUBLE: *out = DType::F64; return true;
  case onnx::TensorProto::INT8: *out = DType::I8; return true;
  case onnx::TensorProto::UINT8: *out = DType::U8; return true;
  case onnx::TensorProto::INT16: *out = DType::I16; return true;
  case onnx::TensorProto::INT32: *out = DType::I32; return true;
  case onnx::TensorProto::INT64: *out = DType::I64; return true;
  case onnx::TensorProto::BOOL: *out = DType::Bool; return true;
  default: return false;
  }
}

static std::string dirOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool loadModelFile(const std::string &path, LoadedModel *out, std::string *error) {
  std::string why;
  std::shared_ptr<MappedFile> file = MappedFile::open(path, &why);
  if (!file) {
    *error = why;
    return false;
  }
  return loadModelBytes(file->data(), file->size(), path, dirOf(path), out, error);
}

bool loadModelBytes(const void *data, size_t size, const std::string &name,
                    const std::string &dir, LoadedModel *out, std::string *error) {
  auto bad = [&](const std::string &why) {
    *error = qonnx::printableMessage(name + ": not a valid ONNX model: " + why);
    return false;
  };
  if (size == 0)
    return bad("the file is empty");
  // Protobuf messages are limited to 2 GiB; bigger models must keep their
  // weights as external data, which is mapped, not parsed.
  if (size > size_t(INT_MAX))
    return bad("the file is " + std::to_string(size) +
               " bytes; a protobuf is limited to 2 GiB (export weights as external data)");
  auto proto = std::make_shared<onnx::ModelProto>();
  {
    google::protobuf::io::ArrayInputStream raw(data, int(size));
    google::protobuf::io::CodedInputStream coded(&raw);
    coded.SetTotalBytesLimit(INT_MAX);
    // Real models nest a handful of levels (model/graph/node/attribute/
    // tensor; subgraphs add a few each); the default 100 is kept lower so a
    // crafted file cannot recurse deeply through nested graph attributes.
    coded.SetRecursionLimit(64);
    if (!proto->ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage())
      return bad("protobuf parse failed (truncated or corrupt file)");
  }
  // A random byte string can parse as a protobuf with only unknown fields;
  // what makes it an ONNX model is a graph and an opset.
  if (!proto->has_graph())
    return bad("it has no graph");
  if (proto->ir_version() <= 0)
    return bad("missing ir_version");
  int64_t opset = -1;
  for (const auto &o : proto->opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx")
      opset = o.version();
  if (opset < 0)
    return bad("no opset_import for the default domain");
  if (proto->graph().output_size() == 0)
    return bad("the graph has no outputs");
  out->proto = std::move(proto);
  out->path = name;
  out->dir = dir;
  out->opset = opset;
  out->externalFiles.clear();
  return true;
}

/// True if `location` is a relative path that stays inside its directory:
/// no absolute path, no ".." component, no empty name.
static bool isSafeRelativePath(const std::string &location) {
  if (location.empty() || location[0] == '/' || location.find('\0') != std::string::npos)
    return false;
  size_t start = 0;
  while (start <= location.size()) {
    size_t end = location.find('/', start);
    if (end == std::string::npos)
      end = location.size();
    if (location.compare(start, end - start, "..") == 0 && end - start == 2)
      return false;
    start = end + 1;
  }
  return true;
}

/// Parses a non-negative decimal integer without exceptions.
static bool parseSize(const std::string &s, uint64_t *out) {
  if (s.empty() || s.size() > 19)
    return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + uint64_t(c - '0');
  }
  *out = v;
  return true;
}

bool resolveTensor(const onnx::TensorProto &t, LoadedModel &m, TensorData *out,
                   std::string *error) {
  const std::string tname =
      t.name().empty() ? std::string("<unnamed>") : qonnx::printableName(t.name());
  auto fail = [&](const std::string &why) {
    *error = qonnx::printableMessage(m.path + ": tensor '" + tname + "': " + why);
    return false;
  };
  DType dt;
  if (!dtypeFromONNX(t.data_type(), &dt))
    return fail("unsupported data type " + std::to_string(t.data_type()));
  if (t.has_segment())
    return fail("segmented tensors are not supported");
  std::vector<int64_t> shape;
  uint64_t n = 1;
  // 2^40 bytes is far beyond any model this project handles and keeps every
  // product below overflow.
  const uint64_t kMaxBytes = uint64_t(1) << 40;
  for (int64_t d : t.dims()) {
    if (d < 0)
      return fail("negative dimension " + std::to_string(d));
    if (d != 0 && n > kMaxBytes / uint64_t(d))
      return fail("implausibly large shape");
    n *= uint64_t(d);
    shape.push_back(d);
  }
  const size_t esize = dtypeSize(dt);
  if (n > kMaxBytes / esize)
    return fail("implausibly large shape");
  const size_t nbytes = size_t(n * esize);
  out->dtype = dt;
  out->shape = shape;
  out->nbytes = nbytes;

  if (t.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    uint64_t offset = 0, length = 0;
    bool hasLength = false;
    for (const auto &kv : t.external_data()) {
      if (kv.key() == "location")
        location = kv.value();
      else if (kv.key() == "offset") {
        if (!parseSize(kv.value(), &offset))
          return fail("bad external data offset '" + kv.value() + "'");
      } else if (kv.key() == "length") {
        if (!parseSize(kv.value(), &length))
          return fail("bad external data length '" + kv.value() + "'");
        hasLength = true;
      }
    }
    if (location.empty())
      return fail("external data without a location");
    if (!isSafeRelativePath(location))
      return fail("external data location '" + qonnx::printableName(location) +
                  "' must be a relative path inside the model's directory");
    if (hasLength && length != nbytes)
      return fail("external data length " + std::to_string(length) +
                  " does not match its shape and dtype (" + std::to_string(nbytes) +
                  " bytes)");
    std::string full = m.dir + "/" + location;
    auto it = m.externalFiles.find(full);
    if (it == m.externalFiles.end()) {
      std::string why;
      std::shared_ptr<MappedFile> f = MappedFile::open(full, &why);
      if (!f)
        return fail("external data file missing or unreadable: " + why);
      it = m.externalFiles.emplace(full, std::move(f)).first;
    }
    const MappedFile &f = *it->second;
    if (offset > f.size() || nbytes > f.size() - offset)
      return fail("external data range [" + std::to_string(offset) + ", +" +
                  std::to_string(nbytes) + ") lies past the end of " + full + " (" +
                  std::to_string(f.size()) + " bytes)");
    out->data = f.data() + offset;
    out->keepAlive = it->second;
    return true;
  }

  if (t.has_raw_data()) {
    if (t.raw_data().size() != nbytes)
      return fail("raw_data holds " + std::to_string(t.raw_data().size()) +
                  " bytes but its shape and dtype need " + std::to_string(nbytes));
    out->data = reinterpret_cast<const uint8_t *>(t.raw_data().data());
    out->keepAlive = m.proto;
    return true;
  }

  // Typed repeated fields. Where the field's element already has the
  // tensor's layout we point into it; otherwise (narrow types packed in
  // int32_data) we convert into an owned buffer.
  auto count = [&](int have) -> bool {
    if (uint64_t(have) != n)
      return fail("holds " + std::to_string(have) + " elements but its shape needs " +
                  std::to_string(n));
    return true;
  };
  auto pointInto = [&](const void *p) {
    out->data = static_cast<const uint8_t *>(p);
    out->keepAlive = m.proto;
    return true;
  };
  switch (dt) {
  case DType::F32:
    if (!count(t.float_data_size())) return false;
    return pointInto(t.float_data().data());
  case DType::F64:
    if (!count(t.double_data_size())) return false;
    return pointInto(t.double_data().data());
  case DType::I64:
    if (!count(t.int64_data_size())) return false;
    return pointInto(t.int64_data().data());
  case DType::I32:
    if (!count(t.int32_data_size())) return false;
    return pointInto(t.int32_data().data());
  case DType::F16:
  case DType::BF16:
  case DType::I16:
  case DType::I8:
  case DType::U8:
  case DType::Bool: {
    // The ONNX spec stores these one per int32 element, in the low bits.
    if (!count(t.int32_data_size())) return false;
    auto owned = std::make_shared<std::vector<uint8_t>>(nbytes);
    for (uint64_t i = 0; i < n; ++i) {
      uint32_t v = uint32_t(t.int32_data(int(i)));
      if (esize == 2) {
        uint16_t h = uint16_t(v);
        std::memcpy(owned->data() + 2 * i, &h, 2);
      } else {
        (*owned)[i] = uint8_t(v);
      }
    }
    out->data = owned->data();
    out->keepAlive = owned;
    return true;
  }
  }
  return fail("unsupported data type");
}

} // namespace onnximport
} // namespace qopt
