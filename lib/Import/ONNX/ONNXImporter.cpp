//===- ONNXImporter.cpp - ONNX file -> canonical QLLM module ----------===//
//
// importONNX = importONNXGeneric + qopt-raise-onnx with the weight store,
// plus the few facts an ONNX graph cannot hold (bos/eos token ids, the
// architecture name, max_position_embeddings), taken from a config.json
// beside the .onnx file when one is there and describes the same model.
//
//===----------------------------------------------------------------------===//
#include "qopt/Import/ONNXImporter.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Dialect/QONNX/PrintableName.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Transforms/Passes.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <set>

using namespace mlir;

namespace qopt {
namespace {

/// Reads config.json beside `onnxPath`; only used if its structural fields
/// agree with what the graph gave (otherwise it belongs to another model).
void applySidecarConfig(ModuleOp module, const std::string &onnxPath) {
  size_t slash = onnxPath.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : onnxPath.substr(0, slash);
  auto buf = llvm::MemoryBuffer::getFile(dir + "/config.json");
  if (!buf)
    return;
  llvm::Expected<llvm::json::Value> json = llvm::json::parse((*buf)->getBuffer());
  if (!json) {
    llvm::consumeError(json.takeError());
    return;
  }
  const llvm::json::Object *o = json->getAsObject();
  ModelConfig c;
  std::string error;
  if (!o || !getConfigAttr(module, &c, &error))
    return;
  auto agrees = [&](const char *key, int64_t have) {
    auto v = o->getInteger(key);
    return !v || *v == have;
  };
  if (!agrees("hidden_size", c.hiddenSize) || !agrees("num_hidden_layers", c.numLayers) ||
      !agrees("vocab_size", c.vocabSize) || !agrees("num_attention_heads", c.numHeads) ||
      !agrees("intermediate_size", c.intermediateSize))
    return;
  auto tokenId = [&](const char *key) -> std::optional<int64_t> {
    if (auto v = o->getInteger(key))
      return *v;
    if (auto *a = o->getArray(key))
      if (!a->empty())
        if (auto v = a->front().getAsInteger())
          return *v;
    return std::nullopt;
  };
  c.bosTokenId = tokenId("bos_token_id");
  c.eosTokenId = tokenId("eos_token_id");
  if (auto v = o->getInteger("max_position_embeddings"); v && *v > 0)
    c.maxPositionEmbeddings = *v;
  if (auto *a = o->getArray("architectures"))
    if (!a->empty())
      if (auto s = a->front().getAsString())
        c.architecture = s->str();
  setConfigAttr(module, c);
}

} // namespace

OwningOpRef<ModuleOp> importONNX(MLIRContext &ctx, const std::string &path, WeightStore &store,
                                 std::string *error) {
  std::vector<std::string> namesBefore = store.names();
  std::set<std::string> before(namesBefore.begin(), namesBefore.end());
  // Drops what this import added, keeping the caller's store as it was.
  auto dropOurs = [&](const std::set<std::string> &keep) {
    for (const std::string &n : store.names())
      if (!before.count(n) && !keep.count(n))
        store.erase(n);
  };
  OwningOpRef<ModuleOp> module = importONNXGeneric(ctx, path, store, error);
  if (!module) {
    dropOurs({});
    return nullptr;
  }
  PassManager pm(&ctx);
  pm.addPass(createRaiseONNXPass(&store));
  std::string message;
  LogicalResult result = failure();
  {
    ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
      if (d.getSeverity() == DiagnosticSeverity::Error && message.empty())
        message = d.str();
      return success();
    });
    result = pm.run(*module);
  }
  if (failed(result)) {
    *error = qonnx::printableMessage(
        path + ": cannot raise to QLLM: " +
        (message.empty() ? std::string("the qopt-raise-onnx pass failed") : message));
    dropOurs({});
    return nullptr;
  }
  // Initializers the decoder does not use (inv_freq, a duplicated tied
  // lm_head) leave the store.
  std::set<std::string> used;
  module->walk([&](qllm::ParamOp p) { used.insert(p.getName().str()); });
  dropOurs(used);
  applySidecarConfig(*module, path);
  return module;
}

} // namespace qopt
