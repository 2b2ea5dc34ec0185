//===- fuzz_safetensors.cpp - libFuzzer target for the safetensors reader ===//
//
// Feeds arbitrary bytes to parseSafeTensors as a whole file. Whatever it
// accepts must describe byte ranges inside the buffer: the target touches
// the first and last byte of every tensor (ASan catches an out-of-bounds
// range) and upcasts small float tensors through the WeightStore.
//
//===----------------------------------------------------------------------===//
#include "qopt/Import/SafeTensors.h"

#include <cstdlib>
#include <memory>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qopt::SafeTensorsHeader h;
  std::string error;
  if (!qopt::parseSafeTensors(data, size, "fuzz", &h, &error)) {
    if (error.empty() || error.find('\n') != std::string::npos)
      std::abort(); // every rejection must be one line
    return 0;
  }
  qopt::WeightStore store;
  volatile uint8_t sink = 0;
  for (const qopt::SafeTensorInfo &t : h.tensors) {
    uint64_t bytes;
    if (!qopt::safeTensorByteSize(t.shape, t.dtype, &bytes) || t.end < t.begin ||
        t.end - t.begin != bytes || h.dataOffset + t.end > size)
      std::abort(); // accepted a tensor that does not fit
    const uint8_t *p = data + h.dataOffset + t.begin;
    if (bytes) {
      sink ^= p[0];
      sink ^= p[bytes - 1];
    }
    qopt::WeightEntry e;
    e.name = t.name;
    e.dtype = t.dtype;
    e.shape = t.shape;
    e.data = p;
    e.nbytes = size_t(bytes);
    e.source = "fuzz";
    if (!store.addExternal(e, nullptr, &error))
      std::abort(); // the parser and the store disagree on validity
  }
  for (const std::string &name : store.names()) {
    const qopt::WeightEntry *e = store.find(name);
    // Empty tensors are skipped: WeightStore::readF32 memcpy's from/to null
    // for them (UBSan: nonnull argument; reported to its owner).
    if (qopt::isFloat(e->dtype) && e->nbytes > 0 && e->nbytes <= (1u << 16))
      for (float v : store.readF32(*e))
        sink ^= uint8_t(v == v);
  }
  (void)sink;
  return 0;
}
