//===- onnx_import_tool.cpp - print what the ONNX importer makes of a file ===//
//
// A test helper: `qopt-onnx-import-tool [-generic] [-weights] FILE.onnx`
// prints the generic (1:1) or raised module, and with -weights one line per
// store tensor (name dtype shape transposed). Errors go to stderr, exit 1.
//
//===----------------------------------------------------------------------===//
#include "qopt/Import/ONNXImporter.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/raw_ostream.h"

#include <cstring>

int main(int argc, char **argv) {
  bool generic = false, weights = false;
  const char *path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "-generic"))
      generic = true;
    else if (!std::strcmp(argv[i], "-weights"))
      weights = true;
    else
      path = argv[i];
  }
  if (!path) {
    llvm::errs() << "usage: qopt-onnx-import-tool [-generic] [-weights] FILE.onnx\n";
    return 2;
  }
  mlir::MLIRContext ctx;
  qopt::WeightStore store;
  std::string error;
  auto module = generic ? qopt::importONNXGeneric(ctx, path, store, &error)
                        : qopt::importONNX(ctx, path, store, &error);
  if (!module) {
    llvm::errs() << "error: " << error << "\n";
    return 1;
  }
  module->print(llvm::outs());
  llvm::outs() << "\n";
  if (weights)
    for (const std::string &n : store.names()) {
      const qopt::WeightEntry *e = store.find(n);
      llvm::outs() << n << " " << qopt::dtypeName(e->dtype) << " [";
      for (size_t i = 0; i < e->shape.size(); ++i)
        llvm::outs() << (i ? "," : "") << e->shape[i];
      llvm::outs() << "]" << (e->transposed ? " transposed" : "") << "\n";
    }
  return 0;
}
