//===- hf-tensor-dump.cpp - one stored tensor as a .npy file ----------===//
//
// Test helper: lets Python compare what qopt reads against the reference
// safetensors library.
//   hf-tensor-dump -dir MODEL_DIR NAME OUT.npy   (through importHuggingFaceDir)
//   hf-tensor-dump -file F.safetensors NAME OUT.npy
//   hf-tensor-dump -file F.safetensors -list     (name dtype shape per line)
// Float tensors are written as float32 via WeightStore::readF32 (the upcast
// under test); other dtypes as their raw bytes.
//
//===----------------------------------------------------------------------===//
#include "qopt/Import/HFImporter.h"
#include "qopt/Import/SafeTensors.h"

#include "mlir/IR/MLIRContext.h"

#include <cstdio>
#include <cstring>
#include <string>

using namespace qopt;

static int fail(const std::string &msg) {
  std::fprintf(stderr, "hf-tensor-dump: %s\n", msg.c_str());
  return 1;
}

static const char *npyDescr(DType t) {
  switch (t) {
  case DType::F32: case DType::F16: case DType::BF16: return "<f4";
  case DType::F64: return "<f8";
  case DType::I8: return "|i1";
  case DType::U8: return "|u1";
  case DType::I16: return "<i2";
  case DType::I32: return "<i4";
  case DType::I64: return "<i8";
  case DType::Bool: return "|b1";
  }
  return "?";
}

static bool writeNpy(const std::string &path, const char *descr, const std::vector<int64_t> &shape,
                     const void *data, size_t nbytes) {
  std::string shp = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    shp += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  shp += ")";
  std::string h = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " +
                  shp + ", }";
  while ((10 + h.size() + 1) % 64)
    h += ' ';
  h += '\n';
  std::FILE *f = std::fopen(path.c_str(), "wb");
  if (!f)
    return false;
  const char magic[] = "\x93NUMPY\x01\x00";
  uint16_t len = uint16_t(h.size());
  bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(&len, 1, 2, f) == 2 &&
            std::fwrite(h.data(), 1, h.size(), f) == h.size() &&
            (nbytes == 0 || std::fwrite(data, 1, nbytes, f) == nbytes);
  return std::fclose(f) == 0 && ok;
}

int main(int argc, char **argv) {
  if (argc < 4)
    return fail("usage: hf-tensor-dump (-dir DIR | -file F) (NAME OUT.npy | -list)");
  std::string mode = argv[1], src = argv[2], error;
  WeightStore store;
  mlir::MLIRContext ctx;
  if (mode == "-dir") {
    if (!importHuggingFaceDir(ctx, src, store, &error))
      return fail(error);
  } else if (mode == "-file") {
    if (!loadSafeTensors(src, store, &error))
      return fail(error);
  } else {
    return fail("unknown mode " + mode);
  }
  if (std::string(argv[3]) == "-list") {
    for (const std::string &n : store.names()) {
      const WeightEntry *e = store.find(n);
      std::printf("%s %s", n.c_str(), safeTensorsDTypeName(e->dtype));
      for (int64_t d : e->shape)
        std::printf(" %lld", (long long)d);
      std::printf("\n");
    }
    return 0;
  }
  if (argc < 5)
    return fail("missing output path");
  const WeightEntry *e = store.find(argv[3]);
  if (!e)
    return fail(std::string("no tensor '") + argv[3] + "'");
  bool ok;
  if (isFloat(e->dtype) && e->dtype != DType::F64) {
    std::vector<float> v = store.readF32(*e);
    ok = writeNpy(argv[4], "<f4", e->shape, v.data(), v.size() * 4);
  } else {
    ok = writeNpy(argv[4], npyDescr(e->dtype), e->shape, e->data, e->nbytes);
  }
  return ok ? 0 : fail(std::string("cannot write ") + argv[4]);
}
