//===- QuantReport.cpp - sizes, bits per weight, per-linear error ------===//
//
// Sizes are counted from what is stored (Format::storedBytes for quantized
// weights, dtype x elements for float ones), never from a formula of the
// nominal bit width, so the report's bits per weight is what a file holds.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/QuantReport.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Exec/ReferenceExecutor.h"
#include "qopt/Quant/QuantFormat.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <cblas.h>
#include <cmath>

namespace qopt::quant {

static std::string roleOf(mlir::Value weight) {
  std::string role;
  for (mlir::OpOperand &use : weight.getUses()) {
    mlir::Operation *user = use.getOwner();
    std::string r = "other";
    if (mlir::isa<qllm::LinearOp>(user))
      r = use.getOperandNumber() == 1 ? "linear" : "bias";
    else if (mlir::isa<qllm::EmbeddingOp>(user))
      r = "embedding";
    else if (mlir::isa<qllm::LMHeadOp>(user))
      r = "lm_head";
    else if (mlir::isa<qllm::RMSNormOp>(user))
      r = "norm";
    if (role.empty())
      role = r;
    else if (role.find(r) == std::string::npos)
      role += "+" + r;
  }
  return role.empty() ? "unused" : role;
}

bool describeWeights(mlir::ModuleOp module, const WeightStore &store, ModelReport *report,
                     std::string *error) {
  *report = ModelReport();
  auto func = module.lookupSymbol<mlir::func::FuncOp>("forward");
  if (!func || func.isExternal()) {
    *error = "report: the module has no func.func @forward with a body";
    return false;
  }
  bool ok = true;
  int64_t quantBits = 0;
  func.walk([&](mlir::Operation *op) {
    if (!ok)
      return;
    WeightReport w;
    if (auto p = mlir::dyn_cast<qllm::ParamOp>(op)) {
      w.name = p.getName().str();
      const WeightEntry *e = store.find(w.name);
      if (!e) {
        *error = "report: weight '" + w.name + "' is not in the weight store";
        ok = false;
        return;
      }
      w.role = roleOf(p.getResult());
      w.format = dtypeName(e->dtype);
      w.shape = e->shape;
      w.parameters = e->numElements();
      w.floatBytes = w.bytes = int64_t(e->nbytes);
      w.bitsPerWeight = 8.0 * double(dtypeSize(e->dtype));
    } else if (auto q = mlir::dyn_cast<qllm::QParamOp>(op)) {
      w.name = q.getName().str();
      auto type = q.getResult().getType();
      Format f = fromAttr(type.getQuant());
      w.role = roleOf(q.getResult());
      w.format = f.spec();
      w.quantized = true;
      w.shape.assign(type.getShape().begin(), type.getShape().end());
      w.parameters = w.shape[0] * w.shape[1];
      w.bytes = f.storedBytes(w.shape[0], w.shape[1]);
      w.bitsPerWeight = f.bitsPerWeight(w.shape[0], w.shape[1]);
      // The float original, when the store still has it.
      const WeightEntry *e = store.find(w.name);
      w.floatBytes = e ? int64_t(e->nbytes) : w.parameters * 2;
      report->quantizedParameters += w.parameters;
      quantBits += w.bytes * 8;
    } else {
      return;
    }
    report->parameters += w.parameters;
    report->floatBytes += w.floatBytes;
    report->bytes += w.bytes;
    report->weights.push_back(std::move(w));
  });
  if (!ok)
    return false;
  if (report->quantizedParameters)
    report->quantizedBitsPerWeight = double(quantBits) / double(report->quantizedParameters);
  if (report->parameters)
    report->averageBitsPerWeight = double(report->bytes) * 8.0 / double(report->parameters);
  return true;
}

namespace {
struct ErrorSums {
  double diff = 0, ref = 0;
};
} // namespace

bool measureLinearErrors(mlir::ModuleOp module, const WeightStore &store,
                         const std::vector<std::vector<int32_t>> &windows, int threads,
                         ModelReport *report, std::string *error) {
  std::map<std::string, ErrorSums> sums;
  std::string observerError;
  ExecutorOptions options;
  options.threads = threads;
  options.observer = [&](mlir::Operation *op, const Tensor &input, const Tensor &output) {
    auto linear = mlir::dyn_cast<qllm::LinearOp>(op);
    if (!linear)
      return;
    auto qparam = linear.getWeight().getDefiningOp<qllm::QParamOp>();
    if (!qparam)
      return;
    std::string name = qparam.getName().str();
    const WeightEntry *e = store.find(name);
    if (!e || !isFloat(e->dtype) || e->shape.size() != 2)
      return; // no float original to compare with: left unmeasured
    const int64_t n = e->shape[0], k = e->shape[1];
    if (input.shape.empty() || input.shape.back() != k || output.shape.back() != n)
      return;
    const int64_t m = input.numElements() / k;
    std::vector<float> w = store.readF32(*e);
    std::vector<float> ref(size_t(m * n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), 1.0f,
                input.data.data(), int(k), w.data(), int(k), 0.0f, ref.data(), int(n));
    if (mlir::Value bias = linear.getBias()) {
      auto bp = bias.getDefiningOp<qllm::ParamOp>();
      const WeightEntry *be = bp ? store.find(bp.getName().str()) : nullptr;
      if (be && isFloat(be->dtype) && be->numElements() == n) {
        std::vector<float> b = store.readF32(*be);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j)
            ref[i * n + j] += b[j];
      }
    }
    ErrorSums &s = sums[name];
    for (int64_t i = 0; i < m * n; ++i) {
      double d = double(ref[i]) - double(output.data[i]);
      s.diff += d * d;
      s.ref += double(ref[i]) * double(ref[i]);
    }
  };
  auto exec = ReferenceExecutor::create(module, store, error, options);
  if (!exec)
    return false;
  Tensor logits;
  // One window per forward: the observer's inputs stay one window's size.
  for (const std::vector<int32_t> &w : windows)
    if (!exec->forward({w}, &logits, error))
      return false;
  for (WeightReport &w : report->weights) {
    auto it = sums.find(w.name);
    if (it != sums.end() && it->second.ref > 0)
      w.relOutputError = std::sqrt(it->second.diff / it->second.ref);
  }
  return true;
}

int64_t kvBytesPerToken(const ModelConfig &config, int64_t bytesPerElement) {
  return 2 * config.numLayers * config.numKvHeads * config.headDim * bytesPerElement;
}

llvm::json::Array weightsJson(const ModelReport &report) {
  llvm::json::Array weights;
  for (const WeightReport &w : report.weights) {
    llvm::json::Array shape;
    for (int64_t d : w.shape)
      shape.push_back(d);
    weights.push_back(llvm::json::Object{
        {"name", w.name},
        {"role", w.role},
        {"format", w.format},
        {"quantized", w.quantized},
        {"shape", std::move(shape)},
        {"parameters", w.parameters},
        {"bytes", w.bytes},
        {"bits_per_weight", w.bitsPerWeight},
        {"rel_output_error",
         w.relOutputError ? llvm::json::Value(*w.relOutputError) : llvm::json::Value(nullptr)},
    });
  }
  return weights;
}

llvm::json::Object memoryBudgetJson(const ModelConfig &config, const ModelReport &report,
                                    int64_t maxContext, int64_t maxBatch,
                                    int64_t kvBytesPerElement) {
  const int64_t kvPerToken = kvBytesPerToken(config, kvBytesPerElement);
  const int64_t kvTotal = kvPerToken * maxContext * maxBatch;
  return llvm::json::Object{{"max_context", maxContext},
                            {"max_batch", maxBatch},
                            {"kv_bytes_per_element", kvBytesPerElement},
                            {"kv_bytes_per_token", kvPerToken},
                            {"weights_bytes", report.bytes},
                            {"kv_cache_bytes", kvTotal},
                            {"total_bytes", report.bytes + kvTotal}};
}

} // namespace qopt::quant
