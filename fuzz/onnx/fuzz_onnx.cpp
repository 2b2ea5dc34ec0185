//===- fuzz_onnx.cpp - libFuzzer target for the ONNX loader -----------===//
//
// Feeds arbitrary bytes to the MLIR-free layer of the ONNX importer:
// protobuf parsing with limits, model validation, and the resolution of
// every initializer and Constant tensor (raw_data, typed fields, external
// data against a small real file), then registers the float ones in a
// WeightStore and reads them back the way the importer and executor do.
// Built with clang -fsanitize=fuzzer,address by run_fuzz_onnx.sh.
//
//===----------------------------------------------------------------------===//
#include "../../lib/Import/ONNX/ONNXLoader.h"

#include "onnx/onnx_pb.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

using namespace qopt;

static std::string dataDir;

static void removeDataDir() {
  std::remove((dataDir + "/weights.bin").c_str());
  ::rmdir(dataDir.c_str());
}

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  // A directory with a small external data file, so that inputs naming
  // "weights.bin" exercise the mapped-file path too.
  char tmpl[] = "/tmp/qopt_fuzz_onnx_XXXXXX";
  if (!mkdtemp(tmpl))
    std::abort();
  dataDir = tmpl;
  FILE *f = std::fopen((dataDir + "/weights.bin").c_str(), "wb");
  if (!f)
    std::abort();
  for (int i = 0; i < 4096; ++i)
    std::fputc(i * 37, f);
  std::fclose(f);
  std::atexit(removeDataDir);
  return 0;
}

static void resolveAndStore(const onnx::TensorProto &t, onnximport::LoadedModel &m,
                            WeightStore &store, int index) {
  onnximport::TensorData td;
  std::string error;
  if (!onnximport::resolveTensor(t, m, &td, &error)) {
    if (error.empty() || error.find('\n') != std::string::npos)
      std::abort(); // every failure must be one line
    return;
  }
  // Touch every byte: a resolved range must be readable.
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < td.nbytes; ++i)
    sink = sink ^ td.data[i];
  if (!isFloat(td.dtype))
    return;
  WeightEntry e;
  e.name = "t" + std::to_string(index);
  e.dtype = td.dtype;
  e.shape = td.shape;
  e.data = td.data;
  e.nbytes = td.nbytes;
  e.source = m.path;
  e.transposed = td.shape.size() == 2 && (index & 1);
  if (e.transposed)
    std::swap(e.shape[0], e.shape[1]);
  if (store.addExternal(e, td.keepAlive, &error) && td.nbytes <= (1u << 20))
    (void)store.readF32(e.name);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  onnximport::LoadedModel m;
  std::string error;
  if (!onnximport::loadModelBytes(data, size, "fuzz.onnx", dataDir, &m, &error)) {
    if (error.rfind("fuzz.onnx: not a valid ONNX model: ", 0) != 0)
      std::abort(); // the one message format callers rely on
    return 0;
  }
  WeightStore store;
  int index = 0;
  for (const auto &t : m.proto->graph().initializer())
    resolveAndStore(t, m, store, index++);
  for (const auto &n : m.proto->graph().node())
    for (const auto &a : n.attribute())
      if (a.has_t())
        resolveAndStore(a.t(), m, store, index++);
  return 0;
}
