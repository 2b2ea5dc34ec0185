//===- qopt.cpp - the qopt compiler driver ----------------------------===//
//
// Imports a model (Hugging Face directory or ONNX file) into QLLM IR and
// runs what the flags ask for: quantize it (the pipeline of
// qopt/Quant/Pipeline.h), print the IR, measure perplexity or what
// quantization cost, write a report, or generate greedily with the
// reference executor. The driver only maps flags onto library calls;
// everything it does is reachable from the libraries. Every flag
// combination is checked before any work starts.
//
//===----------------------------------------------------------------------===//
#include "ModelLoader.h"
#include "Npy.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "qopt-rt/tokenizer.h"
#include "qopt/CodeGen/ArtifactWriter.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Dialect/QONNX/QONNXOps.h"
#include "qopt/Exec/ReferenceExecutor.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Quant/Pipeline.h"
#include "qopt/Quant/QualityEval.h"
#include "qopt/Quant/QuantFormat.h"
#include "qopt/Quant/QuantReport.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <cstdio>
#include <unistd.h>

namespace cl = llvm::cl;
using namespace qopt;

static cl::OptionCategory cat("qopt options");

static cl::opt<std::string> modelPath(cl::Positional, cl::desc("<model: Hugging Face directory or .onnx file>"),
                                      cl::Required, cl::cat(cat));
static cl::opt<std::string> emit("emit", cl::desc("Print the imported IR: -emit=mlir"),
                                 cl::value_desc("mlir"), cl::init(""), cl::cat(cat));
// -o: a path ending in ".qopt" is the deployable artifact (docs/artifact.md);
// any other path is where -emit writes (default: stdout).
static cl::opt<std::string> outputPath("o", cl::desc("Output: OUT.qopt writes the deployable "
                                                     "artifact; any other path receives -emit's "
                                                     "output (default: stdout)"),
                                       cl::value_desc("file"), cl::init("-"), cl::cat(cat));
static cl::opt<std::string> target("target",
                                   cl::desc("Artifact target (-o OUT.qopt): cpu (this host, "
                                            "default), x86-64-v3 (AVX2), x86-64-v4 (AVX-512), "
                                            "sm80 / sm89 / sm90 (CUDA: qrun --device cuda)"),
                                   cl::init("cpu"), cl::cat(cat));
static cl::opt<bool> noKernelCodegen(
    "no-kernel-codegen",
    cl::desc("Artifact (-o OUT.qopt): ship no generated kernels; the runtime's generic kernels "
             "run (docs/codegen.md)"),
    cl::init(false), cl::cat(cat));
static cl::opt<std::string> kernelCache(
    "kernel-cache",
    cl::desc("Cache of compiled kernels (default $QOPT_CACHE_DIR, else $XDG_CACHE_HOME/qopt, "
             "else ~/.cache/qopt)"),
    cl::value_desc("dir"), cl::init(""), cl::cat(cat));
static cl::opt<std::string> evalPpl("eval-ppl", cl::desc("Measure perplexity on a text file"),
                                    cl::value_desc("text file"), cl::init(""), cl::cat(cat));
static cl::opt<int64_t> evalCtx("eval-ctx", cl::desc("Perplexity window in tokens (default 256)"),
                                cl::init(256), cl::cat(cat));
static cl::opt<int64_t> evalChunks("eval-chunks",
                                   cl::desc("Number of windows scored, 0 = all (default 40)"),
                                   cl::init(40), cl::cat(cat));
static cl::opt<std::string> prompt("prompt", cl::desc("Generate a greedy continuation of this text"),
                                   cl::value_desc("text"), cl::init(""), cl::cat(cat));
static cl::opt<std::string> tokenIds("token-ids",
                                     cl::desc("Comma-separated token ids instead of -prompt"),
                                     cl::value_desc("ids"), cl::init(""), cl::cat(cat));
static cl::opt<int> maxNewTokens("max-new-tokens",
                                 cl::desc("Tokens to generate for -prompt/-token-ids (default 32)"),
                                 cl::init(32), cl::cat(cat));
static cl::opt<bool> addSpecial("add-special-tokens",
                                cl::desc("Encode -prompt with the tokenizer's special tokens (BOS)"),
                                cl::init(false), cl::cat(cat));
static cl::opt<bool> printIds("print-ids", cl::desc("Print generated token ids as a JSON list"),
                              cl::init(false), cl::cat(cat));
static cl::opt<std::string> logitsOut("logits-out",
                                      cl::desc("Write the prompt's logits [seq, vocab] as .npy"),
                                      cl::value_desc("file.npy"), cl::init(""), cl::cat(cat));
static cl::opt<std::string> tokenizerPath("tokenizer",
                                          cl::desc("tokenizer.json (default: beside the model)"),
                                          cl::value_desc("file"), cl::init(""), cl::cat(cat));


// Quantization (docs/quantization.md). Option names are the passes' too.
static cl::OptionCategory quantCat("qopt quantization options");
static cl::opt<std::string> wquant("wquant",
                                   cl::desc("Weight format: int2..int8, nf4, fp8, w8a8 "
                                            "(SmoothQuant), none (default: float)"),
                                   cl::value_desc("format"), cl::init(""), cl::cat(quantCat));
static cl::opt<std::string> method("method", cl::desc("rtn (default), gptq, awq, smoothquant"),
                                   cl::init("rtn"), cl::cat(quantCat));
static cl::opt<int64_t> groupSize("group-size",
                                  cl::desc("Weights sharing a scale along K; -1 = per output "
                                           "channel (default 128; nf4: 64; fp8: per channel)"),
                                  cl::init(quant::kDefaultGroupSize), cl::cat(quantCat));
static cl::opt<bool> wquantSym("wquant-sym", cl::desc("Symmetric int formats (no zero points)"),
                               cl::init(false), cl::cat(quantCat));
static cl::list<std::string> wquantOverride(
    "wquant-override",
    cl::desc("REGEX=FORMAT: weights whose name matches get FORMAT (int8, int3:g32, nf4, "
             "fp8, none); repeatable, first match wins"),
    cl::value_desc("regex=format"), cl::cat(quantCat));
static cl::opt<bool> quantizeEmbeddings("quantize-embeddings",
                                        cl::desc("Also quantize the token embedding"),
                                        cl::init(false), cl::cat(quantCat));
static cl::opt<bool> quantizeLmHead("quantize-lm-head", cl::desc("Also quantize the lm_head"),
                                    cl::init(false), cl::cat(quantCat));
static cl::list<std::string> calib("calib",
                                   cl::desc("Calibration text file(s): repeatable or "
                                            "comma-separated; several are concatenated"),
                                   cl::value_desc("file"), cl::CommaSeparated, cl::cat(quantCat));
static cl::opt<int64_t> calibSamples("calib-samples", cl::desc("Calibration samples (default 128)"),
                                     cl::init(128), cl::cat(quantCat));
static cl::opt<int64_t> calibSeqlen("calib-seqlen",
                                    cl::desc("Tokens per calibration sample (default 512)"),
                                    cl::init(512), cl::cat(quantCat));
static cl::opt<uint64_t> seed("seed", cl::desc("Seed of the calibration sampling (default 0)"),
                              cl::init(0), cl::cat(quantCat));
static cl::opt<double> gptqDamp("gptq-damp",
                                cl::desc("GPTQ dampening, fraction of the mean Hessian "
                                         "diagonal (default 0.01)"),
                                cl::init(0.01), cl::cat(quantCat));
static cl::opt<int64_t> gptqBlockSize("gptq-block-size",
                                      cl::desc("GPTQ columns per lazy block update (default 128)"),
                                      cl::init(128), cl::cat(quantCat));
static cl::opt<bool> actOrder("act-order",
                              cl::desc("GPTQ: columns in order of decreasing Hessian diagonal"),
                              cl::init(false), cl::cat(quantCat));
static cl::opt<int64_t> awqGrid("awq-grid", cl::desc("AWQ grid points of alpha (default 20)"),
                                cl::init(20), cl::cat(quantCat));
static cl::opt<bool> awqClip("awq-clip", cl::desc("AWQ clipping search (default true)"),
                             cl::init(true), cl::cat(quantCat));
static cl::opt<double> smoothquantAlpha("smoothquant-alpha",
                                        cl::desc("SmoothQuant migration strength (default 0.5)"),
                                        cl::init(0.5), cl::cat(quantCat));
static cl::opt<std::string> actQuant("act-quant",
                                     cl::desc("SmoothQuant activations: per-token (dynamic, "
                                              "default) or per-tensor (static)"),
                                     cl::init("per-token"), cl::cat(quantCat));
static cl::opt<std::string> kvCache("kv-cache", cl::desc("KV cache element type: int8 or fp8"),
                                    cl::init(""), cl::cat(quantCat));
static cl::opt<std::string> reportPath("report",
                                       cl::desc("Write a JSON report: per-weight format, bits "
                                                "per weight, output error; sizes; memory budget"),
                                       cl::value_desc("file.json"), cl::init(""),
                                       cl::cat(quantCat));
static cl::opt<int64_t> maxContext("max-context",
                                   cl::desc("Context length of the report's memory budget "
                                            "(default: the model's maximum)"),
                                   cl::init(0), cl::cat(quantCat));
static cl::opt<int64_t> maxBatch("max-batch",
                                 cl::desc("Sequences of the report's memory budget (default 1)"),
                                 cl::init(1), cl::cat(quantCat));

static int fail(const std::string &message) {
  llvm::errs() << "qopt: error: " << message << "\n";
  return 1;
}

static double secondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static bool parseIds(const std::string &text, std::vector<int32_t> *ids, std::string *error) {
  llvm::SmallVector<llvm::StringRef> parts;
  llvm::StringRef(text).split(parts, ',', -1, false);
  for (llvm::StringRef p : parts) {
    int64_t v;
    if (p.trim().getAsInteger(10, v) || v < 0 || v > INT32_MAX) {
      *error = "-token-ids: '" + p.trim().str() + "' is not a token id";
      return false;
    }
    ids->push_back(int32_t(v));
  }
  if (ids->empty()) {
    *error = "-token-ids: no ids given";
    return false;
  }
  return true;
}

static std::unique_ptr<qrt::Tokenizer> loadTokenizer(const LoadedModel &model, std::string *error) {
  std::string path = tokenizerPath.empty() ? model.defaultTokenizerPath : tokenizerPath.getValue();
  if (!llvm::sys::fs::exists(path)) {
    *error = path + ": no tokenizer.json (needed for text; pass -tokenizer=FILE or use -token-ids)";
    return nullptr;
  }
  return qrt::Tokenizer::fromFile(path, error);
}


/// A text file a flag names: it must exist and hold something.
static bool readTextFile(const std::string &path, const std::string &flag, std::string *text,
                         std::string *error) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer) {
    *error = flag + "=" + path + ": " + buffer.getError().message();
    return false;
  }
  *text = (*buffer)->getBuffer().str();
  if (llvm::StringRef(*text).trim().empty()) {
    *error = flag + "=" + path + ": the file is empty";
    return false;
  }
  return true;
}

/// Whether a flag was given on the command line.
template <typename T> static bool given(const T &option) { return option.getNumOccurrences() > 0; }

/// Maps the quantization flags onto pipeline options and checks every
/// combination that can be checked without the files.
static bool quantOptionsFromFlags(quant::QuantPipelineOptions *o, std::string *error) {
  o->method = method;
  o->wquant = wquant == "none" ? "" : wquant.getValue();
  if (o->wquant == "w8a8" && !given(method))
    o->method = "smoothquant";
  if (o->method == "smoothquant" && o->wquant.empty())
    o->wquant = "w8a8";
  // nf4 and fp8 have their own default group; an explicit -group-size is
  // passed on as a modifier so the format parser sees that it was chosen.
  if (given(groupSize) && (o->wquant == "nf4" || o->wquant == "fp8" || o->wquant == "fp8_e4m3"))
    o->wquant += groupSize == -1 ? ":gchannel" : ":g" + std::to_string(groupSize);
  o->groupSize = groupSize;
  o->symmetric = wquantSym;
  o->overrides.assign(wquantOverride.begin(), wquantOverride.end());
  o->quantizeEmbeddings = quantizeEmbeddings;
  o->quantizeLmHead = quantizeLmHead;
  // The real path is settled once the files are read (several are joined);
  // validation only needs to know whether one was named.
  o->calib = calib.empty() ? "" : calib.front();
  o->calibSamples = calibSamples;
  o->calibSeqlen = calibSeqlen;
  o->seed = seed;
  o->gptqDamp = gptqDamp;
  o->gptqBlockSize = gptqBlockSize;
  o->actOrder = actOrder;
  o->awqGrid = awqGrid;
  o->awqClip = awqClip;
  o->smoothquantAlpha = smoothquantAlpha;
  o->actQuant = actQuant;
  o->kvCache = kvCache;
  // Flags of one method given to another are a mistake worth naming.
  auto only = [&](bool isGiven, const char *flag, const char *forMethod) {
    if (isGiven && o->method != forMethod) {
      *error = std::string(flag) + " applies to -method=" + forMethod + ", not -method=" +
               o->method;
      return false;
    }
    return true;
  };
  if (!only(given(gptqDamp), "-gptq-damp", "gptq") ||
      !only(given(gptqBlockSize), "-gptq-block-size", "gptq") ||
      !only(given(actOrder), "-act-order", "gptq") || !only(given(awqGrid), "-awq-grid", "awq") ||
      !only(given(awqClip), "-awq-clip", "awq") ||
      !only(given(smoothquantAlpha), "-smoothquant-alpha", "smoothquant") ||
      !only(given(actQuant), "-act-quant", "smoothquant"))
    return false;
  if (o->method == "smoothquant" && (given(groupSize) || given(wquantSym))) {
    *error = "-method=smoothquant quantizes weights int8 per channel, symmetric: "
             "-group-size and -wquant-sym do not apply";
    return false;
  }
  if (!calib.empty() && !quant::quantPipelineNeedsCalibration(*o) && !given(reportPath)) {
    *error = "-calib is used by -method=gptq/awq/smoothquant, -kv-cache and -report; "
             "nothing here reads it";
    return false;
  }
  if (maxContext < 0 || maxBatch < 1) {
    *error = "-max-context must be >= 0 and -max-batch >= 1";
    return false;
  }
  return quant::validateQuantPipelineOptions(*o, error);
}

/// Row of the quality table.
static void printQualityRow(const std::string &label, double bpw, double ppl,
                            std::optional<double> kld, std::optional<double> top1) {
  char kldText[32] = "        -", top1Text[32] = "      -";
  if (kld)
    std::snprintf(kldText, sizeof(kldText), "%9.5f", *kld);
  if (top1)
    std::snprintf(top1Text, sizeof(top1Text), "%6.2f%%", 100.0 * *top1);
  llvm::outs() << llvm::format("| %-28s | %11.3f | %10.4f | %s | %s |\n", label.c_str(), bpw,
                               ppl, (const char *)kldText, (const char *)top1Text);
}

/// The quantization label of the table and report: "int4 g128 asym rtn".
static std::string configLabel(const quant::QuantPipelineOptions &o) {
  std::string label;
  if (o.method == "smoothquant") {
    label = std::string(o.wquant == "fp8" ? "w8a8 fp8" : "w8a8") + " smoothquant " + o.actQuant;
  } else if (!o.wquant.empty()) {
    quant::Format f;
    std::string ignored;
    label = quant::parseFormat(o.wquant, o.groupSize, o.symmetric, &f, &ignored) ? f.str()
                                                                                  : o.wquant;
    label += " " + o.method;
    if (o.method == "gptq" && o.actOrder)
      label += " act-order";
  } else {
    label = "float";
  }
  if (!o.overrides.empty())
    label += " +" + std::to_string(o.overrides.size()) + " overrides";
  if (!o.kvCache.empty())
    label += " kv " + o.kvCache;
  return label;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  // libLLVM registers an undocumented "threads" option of its own; ours
  // replaces it, so it is created here rather than at static-init time.
  auto &registered = cl::getRegisteredOptions();
  if (auto it = registered.find("threads"); it != registered.end())
    it->second->removeArgument();
  static cl::opt<int> threads("threads", cl::desc("Worker threads, 0 = all cores (default 0)"),
                              cl::init(0), cl::cat(cat));
  cl::HideUnrelatedOptions({&cat, &quantCat});
  cl::ParseCommandLineOptions(
      argc, argv,
      "qopt: compiles LLMs (Hugging Face directories, ONNX files) through the "
      "QLLM MLIR dialect\n\n"
      "  qopt MODEL -emit=mlir               print the imported IR\n"
      "  qopt MODEL -eval-ppl=TEXT           perplexity (fp32 reference executor)\n"
      "  qopt MODEL -prompt=TEXT             greedy continuation\n"
      "  qopt MODEL -wquant=int4 [-method=gptq -calib=TEXT] [-eval-ppl=TEXT] [-report=F.json]\n"
      "                                      quantize; with -eval-ppl, what it cost\n"
      "  qopt MODEL [-wquant=int4] -o OUT.qopt [-target=cpu|x86-64-v3|x86-64-v4|sm80|sm89|sm90]\n"
      "                                      write the deployable artifact (docs/artifact.md)\n");

  if (!emit.empty() && emit != "mlir")
    return fail("-emit: unknown kind '" + emit + "' (supported: mlir)");
  if (!prompt.empty() && !tokenIds.empty())
    return fail("give -prompt or -token-ids, not both");
  if (evalCtx < 2)
    return fail("-eval-ctx must be at least 2");
  if (evalChunks < 0)
    return fail("-eval-chunks must be >= 0");
  if (maxNewTokens < 0)
    return fail("-max-new-tokens must be >= 0");
  const bool writesArtifact = !outputPath.empty() && isArtifactPath(outputPath);
  {
    std::vector<std::string> targets = artifactTargets();
    if (std::find(targets.begin(), targets.end(), target.getValue()) == targets.end())
      return fail("-target: unknown target '" + target +
                  "' (supported: cpu, x86-64-v3, x86-64-v4, sm80, sm89, sm90)");
    if (given(target) && !writesArtifact)
      return fail("-target applies to an artifact: add -o OUT.qopt");
  }

  // Quantization flags, then the files they name, before any work.
  std::string error;
  quant::QuantPipelineOptions qopts;
  if (!quantOptionsFromFlags(&qopts, &error))
    return fail(error);
  qopts.threads = threads;
  const bool quantize = !quant::quantPipelineIsEmpty(qopts);
  const std::string tokenizerFile =
      tokenizerPath.empty() ? defaultTokenizerPath(modelPath) : tokenizerPath.getValue();
  qopts.tokenizer = tokenizerFile;
  std::unique_ptr<qrt::Tokenizer> textTokenizer;
  auto needTokenizer = [&]() -> qrt::Tokenizer * {
    if (!textTokenizer) {
      if (!llvm::sys::fs::exists(modelPath)) {
        error = modelPath + ": no such file or directory";
        return nullptr;
      }
      if (!llvm::sys::fs::exists(tokenizerFile)) {
        error = tokenizerFile + ": no tokenizer.json (needed for text; pass -tokenizer=FILE)";
        return nullptr;
      }
      textTokenizer = qrt::Tokenizer::fromFile(tokenizerFile, &error);
    }
    return textTokenizer.get();
  };
  // Several calibration files become one temporary file: the passes take one.
  std::vector<int32_t> calibTokens;
  std::optional<llvm::FileRemover> calibTemp;
  if (!calib.empty()) {
    std::string all;
    for (const std::string &path : calib) {
      std::string text;
      if (!readTextFile(path, "-calib", &text, &error))
        return fail(error);
      all += all.empty() ? text : "\n\n" + text;
    }
    qrt::Tokenizer *tok = needTokenizer();
    if (!tok)
      return fail(error);
    calibTokens = tok->encode(all, false);
    if (int64_t(calibTokens.size()) < calibSeqlen)
      return fail("-calib: " + std::to_string(calibTokens.size()) +
                  " tokens, shorter than one calibration sample (-calib-seqlen=" +
                  std::to_string(calibSeqlen) + ")");
    if (calib.size() == 1) {
      qopts.calib = calib[0];
    } else {
      llvm::SmallString<128> tmp;
      int fd;
      if (auto ec = llvm::sys::fs::createTemporaryFile("qopt-calib", "txt", fd, tmp))
        return fail("-calib: cannot create a temporary file: " + ec.message());
      calibTemp.emplace(tmp);
      llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
      os << all;
      os.close();
      if (os.has_error())
        return fail("-calib: cannot write " + std::string(tmp));
      qopts.calib = std::string(tmp);
    }
  }
  std::vector<int32_t> evalTokens;
  if (!evalPpl.empty()) {
    std::string text;
    if (!readTextFile(evalPpl, "-eval-ppl", &text, &error))
      return fail(error);
    qrt::Tokenizer *tok = needTokenizer();
    if (!tok)
      return fail(error);
    evalTokens = tok->encode(text, false);
    if (int64_t(evalTokens.size()) < evalCtx)
      return fail("-eval-ppl=" + evalPpl + ": " + std::to_string(evalTokens.size()) +
                  " tokens, shorter than one window (-eval-ctx=" +
                  std::to_string(evalCtx.getValue()) + ")");
  }

  mlir::MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect, qonnx::QONNXDialect, mlir::func::FuncDialect>();
  const bool tty = isatty(2);
  auto t0 = std::chrono::steady_clock::now();
  LoadedModel model;
  if (!loadModel(ctx, modelPath, &model, &error))
    return fail(error);
  if (mlir::failed(mlir::verify(*model.module)))
    return fail(modelPath + ": imported IR does not verify (a bug: please report it)");
  ModelConfig config;
  getConfigAttr(*model.module, &config, &error);
  if (tty)
    llvm::errs() << llvm::format("qopt: imported %s in %.2f s: %lld layers, hidden %lld, "
                                 "%lld/%lld heads, vocab %lld, %zu tensors\n",
                                 modelPath.c_str(), secondsSince(t0), (long long)config.numLayers,
                                 (long long)config.hiddenSize, (long long)config.numHeads,
                                 (long long)config.numKvHeads, (long long)config.vocabSize,
                                 model.store.size());

  // The float model, measured side by side with the quantized one: its
  // executor is made before any pass rewrites the module (on a clone, so
  // the passes may erase what they like).
  mlir::OwningOpRef<mlir::ModuleOp> floatModule;
  std::unique_ptr<ReferenceExecutor> floatExec;
  ExecutorOptions execOptions;
  execOptions.threads = threads;
  const bool compare = quantize && !evalPpl.empty();
  if (compare) {
    floatModule = model.module->clone();
    floatExec = ReferenceExecutor::create(*floatModule, model.store, &error, execOptions);
    if (!floatExec)
      return fail(error);
  }
  quant::ModelReport floatReport;
  if (!reportPath.empty() && !quant::describeWeights(*model.module, model.store, &floatReport,
                                                     &error))
    return fail(error);

  if (quantize) {
    auto t1 = std::chrono::steady_clock::now();
    std::string diagnostics;
    mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &d) {
      if (d.getSeverity() == mlir::DiagnosticSeverity::Error)
        diagnostics += (diagnostics.empty() ? "" : "; ") + d.str();
      else
        llvm::errs() << "qopt: " << d.str() << "\n";
      return mlir::success();
    });
    mlir::PassManager pm(&ctx);
    quant::buildQuantizationPipeline(pm, qopts);
    if (mlir::failed(pm.run(*model.module)))
      return fail(diagnostics.empty() ? "quantization failed" : diagnostics);
    if (mlir::failed(mlir::verify(*model.module)))
      return fail("the quantized IR does not verify (a bug: please report it)");
    if (tty)
      llvm::errs() << llvm::format("qopt: quantized (%s) in %.2f s\n",
                                   configLabel(qopts).c_str(), secondsSince(t1));
  }

  bool didSomething = quantize || writesArtifact;
  if (emit == "mlir") {
    didSomething = true;
    std::error_code ec;
    llvm::ToolOutputFile out(writesArtifact ? std::string("-") : outputPath.getValue(), ec,
                             llvm::sys::fs::OF_Text);
    if (ec)
      return fail(outputPath + ": " + ec.message());
    model.module->print(out.os());
    out.os() << "\n";
    out.keep();
  }

  bool wantsExec = !evalPpl.empty() || !prompt.empty() || !tokenIds.empty();
  if (!wantsExec && !didSomething && reportPath.empty()) {
    llvm::errs() << "qopt: " << modelPath
                 << " imported and verified; nothing else asked (see -emit=mlir, "
                    "-eval-ppl=TEXT, -prompt=TEXT, -wquant=int4, --help)\n";
    return 0;
  }

  std::unique_ptr<ReferenceExecutor> exec;
  if (wantsExec) {
    exec = ReferenceExecutor::create(*model.module, model.store, &error, execOptions);
    if (!exec)
      return fail(error);
  }
  std::optional<quant::QualityResult> quality;
  std::optional<PerplexityResult> perplexity;

  if (!evalPpl.empty() && compare) {
    quant::QualityResult q;
    auto t1 = std::chrono::steady_clock::now();
    if (!quant::evaluateQuality(*floatExec, *exec, evalTokens, evalCtx, evalChunks, &q, &error))
      return fail(evalPpl + ": " + error);
    floatExec.reset();
    quant::ModelReport now;
    quant::ModelReport before;
    if (!quant::describeWeights(*model.module, model.store, &now, &error) ||
        !quant::describeWeights(*floatModule, model.store, &before, &error))
      return fail(error);
    // bits/weight of the weights the pipeline quantized, before and after.
    double floatBits = 0;
    int64_t floatParams = 0;
    std::map<std::string, bool> quantized;
    for (const quant::WeightReport &w : now.weights)
      if (w.quantized)
        quantized[w.name] = true;
    for (const quant::WeightReport &w : before.weights)
      if (quantized.count(w.name)) {
        floatBits += 8.0 * double(w.bytes);
        floatParams += w.parameters;
      }
    double floatBpw = floatParams ? floatBits / double(floatParams) : 0;
    double quantBpw = now.quantizedParameters ? now.quantizedBitsPerWeight : floatBpw;
    llvm::outs() << llvm::format("quality on %s: %lld windows x %lld tokens, %lld predicted "
                                 "(%.1f s); bits/weight of the quantized weights\n",
                                 evalPpl.c_str(), (long long)q.windows,
                                 (long long)evalCtx.getValue(), (long long)q.predicted,
                                 secondsSince(t1));
    llvm::outs() << "| weights                      | bits/weight | perplexity |  mean KLD |"
                    "   top-1 |\n";
    llvm::outs() << "|------------------------------|-------------|------------|-----------|"
                    "---------|\n";
    printQualityRow("float", floatBpw, q.reference.perplexity, std::nullopt, std::nullopt);
    printQualityRow(configLabel(qopts), quantBpw, q.quantized.perplexity, q.meanKld, q.top1);
    llvm::outs() << llvm::format("KLD: max %.5f, 99th percentile %.5f\n", q.maxKld, q.p99Kld);
    quality = q;
  } else if (!evalPpl.empty()) {
    PerplexityResult r;
    auto t1 = std::chrono::steady_clock::now();
    if (!evaluatePerplexity(*exec, evalTokens, evalCtx, evalChunks, &r, &error))
      return fail(evalPpl + ": " + error);
    llvm::outs() << llvm::format("perplexity: %.4f  (%s: %lld windows x %lld tokens, %lld "
                                 "predicted, mean NLL %.5f, %.1f s)\n",
                                 r.perplexity, evalPpl.c_str(), (long long)r.windows,
                                 (long long)evalCtx.getValue(), (long long)r.predicted,
                                 r.meanNll, secondsSince(t1));
    perplexity = r;
  }

  std::string reportText;
  if (!reportPath.empty()) {
    didSomething = true;
    quant::ModelReport report;
    if (!quant::describeWeights(*model.module, model.store, &report, &error))
      return fail(error);
    // Output error on calibration inputs: the -calib text, else the
    // -eval-ppl text; a few windows from the start.
    const std::vector<int32_t> &errTokens = !calibTokens.empty() ? calibTokens : evalTokens;
    const int64_t errLen = !calibTokens.empty() ? std::min<int64_t>(calibSeqlen, 512)
                                                : evalCtx.getValue();
    std::vector<std::vector<int32_t>> errWindows;
    for (int64_t w = 0; w < 4 && (w + 1) * errLen <= int64_t(errTokens.size()); ++w)
      errWindows.emplace_back(errTokens.begin() + w * errLen, errTokens.begin() + (w + 1) * errLen);
    if (quantize && !errWindows.empty() &&
        !quant::measureLinearErrors(*model.module, model.store, errWindows, threads, &report,
                                    &error))
      return fail(error);
    const int64_t ctxLen = maxContext > 0 ? maxContext.getValue() : config.maxPositionEmbeddings;
    const int64_t kvElem = kvCache.empty() ? 2 : 1;
    llvm::json::Array overrides;
    for (const std::string &r : qopts.overrides)
      overrides.push_back(r);
    llvm::json::Object root{
        {"model", modelPath},
        {"quantization",
         llvm::json::Object{{"label", configLabel(qopts)},
                            {"method", qopts.method},
                            {"wquant", qopts.wquant.empty() ? llvm::json::Value(nullptr)
                                                            : llvm::json::Value(qopts.wquant)},
                            {"group_size", qopts.groupSize},
                            {"symmetric", qopts.symmetric},
                            {"overrides", std::move(overrides)},
                            {"kv_cache", kvCache.empty() ? llvm::json::Value(nullptr)
                                                         : llvm::json::Value(kvCache)}}},
        {"weights", quant::weightsJson(report)},
        {"totals",
         llvm::json::Object{{"parameters", report.parameters},
                            {"float_bytes", floatReport.bytes},
                            {"quantized_bytes", report.bytes},
                            {"quantized_parameters", report.quantizedParameters},
                            {"quantized_bits_per_weight", report.quantizedBitsPerWeight},
                            {"average_bits_per_weight", report.averageBitsPerWeight}}},
        {"memory_budget",
         quant::memoryBudgetJson(config, report, ctxLen, maxBatch.getValue(), kvElem)},
    };
    if (quality) {
      const quant::QualityResult &q = *quality;
      root["quality"] = llvm::json::Object{
          {"text", evalPpl},
          {"windows", q.windows},
          {"ctx", evalCtx.getValue()},
          {"predicted", q.predicted},
          {"float_perplexity", q.reference.perplexity},
          {"perplexity", q.quantized.perplexity},
          {"mean_kld", q.meanKld},
          {"p99_kld", q.p99Kld},
          {"max_kld", q.maxKld},
          {"top1_agreement", q.top1}};
    } else if (perplexity) {
      root["quality"] = llvm::json::Object{{"text", evalPpl},
                                           {"windows", perplexity->windows},
                                           {"ctx", evalCtx.getValue()},
                                           {"predicted", perplexity->predicted},
                                           {"perplexity", perplexity->perplexity}};
    }
    reportText = llvm::formatv("{0:2}", llvm::json::Value(std::move(root))).str() + "\n";
    std::error_code ec;
    llvm::ToolOutputFile out(reportPath, ec, llvm::sys::fs::OF_Text);
    if (ec)
      return fail(reportPath + ": " + ec.message());
    out.os() << reportText;
    out.keep();
  }

  // The artifact last: with -report, its report.json is that report
  // (quality and output errors included), not only the weight summary the
  // writer can make from the module alone.
  if (writesArtifact) {
    auto t1 = std::chrono::steady_clock::now();
    ArtifactOptions aopts;
    aopts.outputPath = outputPath;
    aopts.target = target;
    aopts.tokenizerPath = tokenizerFile;
    llvm::SmallString<256> genConfig(llvm::sys::fs::is_directory(modelPath)
                                         ? modelPath.getValue()
                                         : llvm::sys::path::parent_path(modelPath).str());
    llvm::sys::path::append(genConfig, "generation_config.json");
    aopts.generationConfigPath = std::string(genConfig);
    aopts.reportJson = reportText;
    aopts.generateKernels = !noKernelCodegen;
    aopts.kernelBuild.cacheDir = kernelCache;
    ArtifactSummary summary;
    if (!writeArtifact(*model.module, model.store, aopts, &error, &summary))
      return fail(error);
    if (!summary.kernelNote.empty())
      llvm::errs() << "qopt: warning: " << summary.kernelNote << "\n";
    if (tty && summary.kernelShapes > 0) {
      std::string isas;
      for (const std::string &i : summary.kernelIsas)
        isas += (isas.empty() ? "" : ", ") + i;
      if (summary.kernelCacheHit)
        llvm::errs() << llvm::format("qopt: kernels: %zu shapes specialized for %s (cache hit)\n",
                                     summary.kernelShapes, isas.c_str());
      else
        llvm::errs() << llvm::format(
            "qopt: kernels: %zu shapes specialized for %s, compiled in %.1f s\n",
            summary.kernelShapes, isas.c_str(), summary.kernelSeconds);
    }
    if (tty)
      llvm::errs() << llvm::format("qopt: wrote %s (-target=%s) in %.2f s\n",
                                   outputPath.c_str(), target.c_str(), secondsSince(t1));
  }


  if (!prompt.empty() || !tokenIds.empty()) {
    std::unique_ptr<qrt::Tokenizer> tok;
    std::vector<int32_t> ids;
    if (!prompt.empty()) {
      if (!(tok = loadTokenizer(model, &error)))
        return fail(error);
      ids = tok->encode(prompt.getValue(), addSpecial);
      if (ids.empty())
        return fail("-prompt encodes to no tokens");
    } else {
      if (!parseIds(tokenIds, &ids, &error))
        return fail(error);
      if (llvm::sys::fs::exists(tokenizerPath.empty() ? model.defaultTokenizerPath
                                                       : tokenizerPath.getValue()))
        tok = loadTokenizer(model, &error);
    }
    if (!logitsOut.empty()) {
      Tensor logits;
      if (!exec->forward({ids}, &logits, &error))
        return fail(error);
      if (!writeNpyF32(logitsOut, {logits.shape[1], logits.shape[2]}, logits.data.data(), &error))
        return fail(error);
    }
    if (maxNewTokens > 0) {
      std::optional<int32_t> eos;
      if (config.eosTokenId)
        eos = int32_t(*config.eosTokenId);
      std::vector<int32_t> generated;
      if (!greedyGenerate(*exec, ids, maxNewTokens, eos, &generated, &error))
        return fail(error);
      if (printIds) {
        llvm::outs() << "[";
        for (size_t i = 0; i < generated.size(); ++i)
          llvm::outs() << (i ? ", " : "") << generated[i];
        llvm::outs() << "]\n";
      }
      if (tok)
        llvm::outs() << (prompt.empty() ? "" : prompt.getValue()) << tok->decode(generated)
                     << "\n";
    }
  }
  return 0;
}
