//===- quant_tool.cpp - the reference quantizer on .npy files (tests) ---===//
//
// test_quantizer_vs_numpy.py generates matrices with numpy, runs this tool,
// and compares what comes back with its own numpy / ml_dtypes encodings:
//   quant_tool IN.npy FORMAT GROUP SYM OUTDIR
// writes OUTDIR/{codes,scales,zeros,deq,packed}.npy (zeros only for
// asymmetric int; NF4 also absmax_q.npy and absmax_scale.npy), everything
// read back from the weight store through loadQuantized.
//
//===----------------------------------------------------------------------===//
#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Quant/QuantFormat.h"
#include "qopt/Quant/Quantizer.h"

#include "mlir/IR/MLIRContext.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace qopt;
using namespace qopt::quant;

static int die(const std::string &m) {
  std::fprintf(stderr, "quant_tool: %s\n", m.c_str());
  return 1;
}

/// Reads a 2-D little-endian float32 C-order .npy.
static bool readNpy(const std::string &path, std::vector<float> *data, int64_t *rows,
                    int64_t *cols) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    return false;
  size_t headerLen = uint8_t(bytes[8]) | (size_t(uint8_t(bytes[9])) << 8), start = 10;
  if (bytes[6] >= 2) {
    headerLen = 0;
    for (int i = 0; i < 4; ++i)
      headerLen |= size_t(uint8_t(bytes[8 + i])) << (8 * i);
    start = 12;
  }
  std::string header = bytes.substr(start, headerLen);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") ==
                                                        std::string::npos)
    return false;
  size_t p = header.find("'shape': (");
  if (p == std::string::npos || std::sscanf(header.c_str() + p + 10, "%ld, %ld", rows, cols) != 2)
    return false;
  size_t n = size_t(*rows * *cols);
  if (bytes.size() < start + headerLen + n * 4)
    return false;
  data->resize(n);
  std::memcpy(data->data(), bytes.data() + start + headerLen, n * 4);
  return true;
}

static void writeNpy(const std::string &path, const char *descr, std::vector<int64_t> shape,
                     const void *data, size_t nbytes) {
  std::ostringstream h;
  h << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i)
    h << shape[i] << (shape.size() == 1 || i + 1 < shape.size() ? ", " : "");
  h << "), }";
  std::string header = h.str();
  while ((10 + header.size() + 1) % 64)
    header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = uint16_t(header.size());
  f.write(reinterpret_cast<const char *>(&len), 2);
  f << header;
  f.write(reinterpret_cast<const char *>(data), std::streamsize(nbytes));
}

int main(int argc, char **argv) {
  if (argc != 6)
    return die("usage: quant_tool IN.npy FORMAT GROUP SYM(0|1) OUTDIR");
  std::vector<float> w;
  int64_t rows, cols;
  if (!readNpy(argv[1], &w, &rows, &cols))
    return die(std::string(argv[1]) + ": not a 2-D float32 .npy");
  Format f;
  std::string err;
  if (!parseFormat(argv[2], std::stoll(argv[3]), std::string(argv[4]) == "1", &f, &err))
    return die(err);
  mlir::MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect>();
  QuantizedMatrix q = quantizeRTN(w.data(), rows, cols, f), back;
  WeightStore store;
  if (!storeQuantized(store, "w", q, &err) ||
      !loadQuantized(store, "w", toAttr(&ctx, f), rows, cols, &back, &err))
    return die(err);
  std::string out = argv[5];
  const int64_t groups = f.numGroups(cols);
  writeNpy(out + "/codes.npy", "|u1", {rows, cols}, back.codes.data(), back.codes.size());
  writeNpy(out + "/scales.npy", "<f4", {rows, groups}, back.scales.data(), back.scales.size() * 4);
  if (!back.zeros.empty())
    writeNpy(out + "/zeros.npy", "<f4", {rows, groups}, back.zeros.data(), back.zeros.size() * 4);
  std::vector<float> deq = dequantize(back);
  writeNpy(out + "/deq.npy", "<f4", {rows, cols}, deq.data(), deq.size() * 4);
  const WeightEntry *packed = store.find("w.qweight");
  writeNpy(out + "/packed.npy", "|u1", packed->shape, packed->data, packed->nbytes);
  if (const WeightEntry *a = store.find("w.absmax_q"))
    writeNpy(out + "/absmax_q.npy", "|u1", a->shape, a->data, a->nbytes);
  if (const WeightEntry *a = store.find("w.absmax_scale"))
    writeNpy(out + "/absmax_scale.npy", "<f4", a->shape, a->data, a->nbytes);
  std::printf("%.6f\n", f.bitsPerWeight(rows, cols));
  return 0;
}
