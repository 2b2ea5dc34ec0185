//===- Pipeline.cpp - flags -> passes for quantization -----------------===//
//
// The one place that knows which method makes which format and which
// methods need calibration, so the driver and qopt-opt's "qopt-quantize"
// pipeline refuse the same nonsense with the same words, before any work.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/Pipeline.h"

#include "qopt/Quant/LinearSelection.h"
#include "qopt/Quant/Passes.h"
#include "qopt/Quant/QuantFormat.h"

#include "mlir/Pass/Pass.h"
#include <cstdio>
#include "mlir/Pass/PassRegistry.h"

namespace qopt::quant {

/// 0.5, not 0.500000.
static std::string shortNumber(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", x);
  return buffer;
}

static bool isWeightMethod(const std::string &m) {
  return m == "rtn" || m == "gptq" || m == "awq" || m == "smoothquant";
}

/// -wquant=w8a8 is SmoothQuant whatever -method says (rtn is the default).
static bool isSmoothQuant(const QuantPipelineOptions &o) {
  return o.method == "smoothquant" || o.wquant == "w8a8";
}

bool quantPipelineIsEmpty(const QuantPipelineOptions &o) {
  return o.wquant.empty() && o.kvCache.empty() && !isSmoothQuant(o);
}

bool quantPipelineNeedsCalibration(const QuantPipelineOptions &o) {
  bool weights = !o.wquant.empty() || isSmoothQuant(o);
  return (weights && (o.method == "gptq" || o.method == "awq" || isSmoothQuant(o))) ||
         !o.kvCache.empty();
}

bool validateQuantPipelineOptions(const QuantPipelineOptions &o, std::string *error) {
  if (!isWeightMethod(o.method)) {
    *error = "-method=" + o.method + ": unknown method (expected rtn, gptq, awq or smoothquant)";
    return false;
  }
  if (o.method == "smoothquant") {
    if (!o.wquant.empty() && o.wquant != "w8a8" && o.wquant != "fp8") {
      *error = "-method=smoothquant makes W8A8 (int8 per-channel weights, int8 activations; "
               "or fp8 e4m3 for both with -wquant=fp8); it cannot produce -wquant=" +
               o.wquant + " (use -wquant=w8a8, -wquant=fp8 or leave it out)";
      return false;
    }
  } else if (o.wquant == "w8a8") {
    if (o.method != "rtn") { // rtn is the default: -wquant=w8a8 alone picks smoothquant
      *error = "-wquant=w8a8 is made by -method=smoothquant, not -method=" + o.method;
      return false;
    }
  } else if (!o.wquant.empty()) {
    Format f;
    if (!parseFormat(o.wquant, o.groupSize, o.symmetric, &f, error)) {
      *error = "-wquant: " + *error;
      return false;
    }
    if ((o.method == "gptq" || o.method == "awq") && f.kind != qllm::ElementKind::Int) {
      *error = "-method=" + o.method + " quantizes to int formats (int2..int8); it cannot "
               "produce " + o.wquant + " (use -method=rtn for nf4 and fp8)";
      return false;
    }
    WeightSelection selection;
    if (!WeightSelection::create(f, o.overrides, o.quantizeEmbeddings, o.quantizeLmHead,
                                 &selection, error))
      return false;
    for (const OverrideRule &r : selection.rules())
      if (r.format && (o.method == "gptq" || o.method == "awq") &&
          r.format->kind != qllm::ElementKind::Int) {
        *error = "-wquant-override '" + r.pattern + "': -method=" + o.method +
                 " quantizes to int formats only, not " + r.format->str();
        return false;
      }
  } else if (o.method != "rtn") {
    *error = "-method=" + o.method + " needs a weight format: -wquant=int4 (or int2..int8)";
    return false;
  }
  if (o.wquant.empty() && !o.overrides.empty()) {
    *error = "-wquant-override needs -wquant (the format of the weights no rule matches)";
    return false;
  }
  if (o.wquant.empty() && (o.quantizeEmbeddings || o.quantizeLmHead)) {
    *error = "-quantize-embeddings / -quantize-lm-head need -wquant";
    return false;
  }
  if (!o.kvCache.empty() && o.kvCache != "int8" && o.kvCache != "fp8") {
    *error = "-kv-cache=" + o.kvCache + ": expected int8 or fp8";
    return false;
  }
  if (o.groupSize == 0 || o.groupSize < -1) {
    *error = "-group-size must be -1 (per channel) or positive, got " +
             std::to_string(o.groupSize);
    return false;
  }
  if (quantPipelineNeedsCalibration(o)) {
    if (o.calib.empty()) {
      std::string who = isSmoothQuant(o)        ? "-method=smoothquant"
                        : o.method != "rtn" ? "-method=" + o.method
                                            : "-kv-cache";
      *error = who + " needs calibration text: -calib=FILE";
      return false;
    }
    if (o.calibSamples < 1) {
      *error = "-calib-samples must be at least 1, got " + std::to_string(o.calibSamples);
      return false;
    }
    if (o.calibSeqlen < 2) {
      *error = "-calib-seqlen must be at least 2, got " + std::to_string(o.calibSeqlen);
      return false;
    }
  }
  if (o.method == "gptq") {
    if (!(o.gptqDamp >= 0 && o.gptqDamp < 1)) {
      *error = "-gptq-damp must be in [0, 1), got " + shortNumber(o.gptqDamp);
      return false;
    }
    if (o.gptqBlockSize < 1) {
      *error = "-gptq-block-size must be positive";
      return false;
    }
  }
  if (o.method == "awq" && o.awqGrid < 1) {
    *error = "-awq-grid must be at least 1, got " + std::to_string(o.awqGrid);
    return false;
  }
  if (isSmoothQuant(o)) {
    if (!(o.smoothquantAlpha >= 0 && o.smoothquantAlpha <= 1)) {
      *error = "-smoothquant-alpha must be in [0, 1], got " + shortNumber(o.smoothquantAlpha);
      return false;
    }
    if (o.actQuant != "per-token" && o.actQuant != "per-tensor") {
      *error = "-act-quant=" + o.actQuant + ": expected per-token or per-tensor";
      return false;
    }
  }
  return true;
}

/// The option groups every pass shares (WeightFormatOptions and
/// CalibrationOptions in Passes.td): the generated option structs spell
/// them alike, so one copy serves all passes.
template <typename PassOptions>
static void copyWeightFormat(PassOptions &p, const QuantPipelineOptions &o) {
  p.wquant = o.wquant;
  p.groupSize = o.groupSize;
  p.symmetric = o.symmetric;
  p.overrides = o.overrides;
  p.quantizeEmbeddings = o.quantizeEmbeddings;
  p.quantizeLmHead = o.quantizeLmHead;
}

template <typename PassOptions>
static void copyCalibration(PassOptions &p, const QuantPipelineOptions &o) {
  p.calib = o.calib;
  p.tokenizer = o.tokenizer;
  p.calibSamples = o.calibSamples;
  p.calibSeqlen = o.calibSeqlen;
  p.seed = o.seed;
  p.threads = o.threads;
}

void buildQuantizationPipeline(mlir::OpPassManager &pm, const QuantPipelineOptions &o) {
  const bool weights = !o.wquant.empty() && o.wquant != "w8a8";
  if (o.method == "smoothquant" || o.wquant == "w8a8") {
    SmoothQuantOptions s;
    copyCalibration(s, o);
    s.alpha = o.smoothquantAlpha;
    s.actQuant = o.actQuant;
    s.wquant = o.wquant == "fp8" ? "fp8" : "int8"; // FP8 W8A8
    pm.addPass(createSmoothQuant(s));
  } else if (weights && o.method == "gptq") {
    GPTQOptions g;
    copyWeightFormat(g, o);
    copyCalibration(g, o);
    g.damp = o.gptqDamp;
    g.blockSize = o.gptqBlockSize;
    g.actOrder = o.actOrder;
    pm.addPass(createGPTQ(g));
  } else if (weights && o.method == "awq") {
    AWQOptions a;
    copyWeightFormat(a, o);
    copyCalibration(a, o);
    a.gridSize = o.awqGrid;
    a.clipSearch = o.awqClip;
    pm.addPass(createAWQ(a));
  } else if (weights) {
    QuantizeRTNOptions r;
    copyWeightFormat(r, o);
    pm.addPass(createQuantizeRTN(r));
  }
  if (!o.kvCache.empty()) {
    KVCacheQuantOptions k;
    copyCalibration(k, o);
    k.kvCache = o.kvCache;
    pm.addPass(createKVCacheQuant(k));
  }
}

namespace {
/// Stands in for a pipeline whose options do not make sense.
struct InvalidPipelinePass
    : mlir::PassWrapper<InvalidPipelinePass, mlir::OperationPass<mlir::ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(InvalidPipelinePass)
  explicit InvalidPipelinePass(std::string message) : message(std::move(message)) {}
  llvm::StringRef getArgument() const override { return "qopt-invalid-quantize-pipeline"; }
  void runOnOperation() override {
    getOperation().emitError() << message;
    signalPassFailure();
  }
  std::string message;
};

/// The pipeline's options under the driver's flag names.
struct QuantizePipelineCLOptions : mlir::PassPipelineOptions<QuantizePipelineCLOptions> {
  Option<std::string> method{*this, "method", llvm::cl::desc("rtn | gptq | awq | smoothquant"),
                             llvm::cl::init("rtn")};
  Option<std::string> wquant{*this, "wquant",
                             llvm::cl::desc("int2..int8 | nf4 | fp8 | w8a8 (empty: float)"),
                             llvm::cl::init("")};
  Option<int64_t> groupSize{*this, "group-size", llvm::cl::desc("-1 = per channel"),
                            llvm::cl::init(128)};
  Option<bool> symmetric{*this, "symmetric", llvm::cl::init(false)};
  ListOption<std::string> overrides{*this, "wquant-override",
                                    llvm::cl::desc("REGEX=FORMAT rules")};
  Option<bool> quantizeEmbeddings{*this, "quantize-embeddings", llvm::cl::init(false)};
  Option<bool> quantizeLmHead{*this, "quantize-lm-head", llvm::cl::init(false)};
  Option<std::string> calib{*this, "calib", llvm::cl::init("")};
  Option<std::string> tokenizer{*this, "tokenizer", llvm::cl::init("")};
  Option<int64_t> calibSamples{*this, "calib-samples", llvm::cl::init(128)};
  Option<int64_t> calibSeqlen{*this, "calib-seqlen", llvm::cl::init(512)};
  Option<uint64_t> seed{*this, "seed", llvm::cl::init(0)};
  Option<int> threads{*this, "threads", llvm::cl::init(0)};
  Option<double> gptqDamp{*this, "gptq-damp", llvm::cl::init(0.01)};
  Option<bool> actOrder{*this, "act-order", llvm::cl::init(false)};
  Option<int64_t> awqGrid{*this, "awq-grid", llvm::cl::init(20)};
  Option<double> alpha{*this, "smoothquant-alpha", llvm::cl::init(0.5)};
  Option<std::string> actQuant{*this, "act-quant", llvm::cl::init("per-token")};
  Option<std::string> kvCache{*this, "kv-cache", llvm::cl::init("")};
};
} // namespace

void registerQuantizationPipeline() {
  mlir::PassPipelineRegistration<QuantizePipelineCLOptions>(
      "qopt-quantize", "The qopt driver's quantization pipeline, options as its flags",
      [](mlir::OpPassManager &pm, const QuantizePipelineCLOptions &cl) {
        QuantPipelineOptions o;
        o.method = cl.method;
        o.wquant = cl.wquant;
        o.groupSize = cl.groupSize;
        o.symmetric = cl.symmetric;
        o.overrides.assign(cl.overrides.begin(), cl.overrides.end());
        o.quantizeEmbeddings = cl.quantizeEmbeddings;
        o.quantizeLmHead = cl.quantizeLmHead;
        o.calib = cl.calib;
        o.tokenizer = cl.tokenizer;
        o.calibSamples = cl.calibSamples;
        o.calibSeqlen = cl.calibSeqlen;
        o.seed = cl.seed;
        o.threads = cl.threads;
        o.gptqDamp = cl.gptqDamp;
        o.actOrder = cl.actOrder;
        o.awqGrid = cl.awqGrid;
        o.smoothquantAlpha = cl.alpha;
        o.actQuant = cl.actQuant;
        o.kvCache = cl.kvCache;
        // The registration callback cannot fail: a bad combination
        // becomes a pass that reports it and fails the run.
        std::string error;
        if (!validateQuantPipelineOptions(o, &error)) {
          pm.addPass(std::make_unique<InvalidPipelinePass>("qopt-quantize: " + error));
          return;
        }
        buildQuantizationPipeline(pm, o);
      });
}

} // namespace qopt::quant
