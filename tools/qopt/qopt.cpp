//===- qopt.cpp - the qopt compiler driver ----------------------------===//
//
// Imports a model (Hugging Face directory or ONNX file) into QLLM IR and
// runs what the flags ask for: print the IR, measure perplexity, or
// generate greedily with the reference executor. The driver only maps flags
// onto library calls; everything it does is reachable from the libraries.
//
//===----------------------------------------------------------------------===//
#include "ModelLoader.h"
#include "Npy.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "qopt-rt/tokenizer.h"
#include "qopt/Dialect/QLLM/QLLMDialect.h"
#include "qopt/Dialect/QONNX/QONNXOps.h"
#include "qopt/Exec/ReferenceExecutor.h"
#include "qopt/Import/DecoderBuilder.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdio>
#include <unistd.h>

namespace cl = llvm::cl;
using namespace qopt;

static cl::OptionCategory cat("qopt options");

static cl::opt<std::string> modelPath(cl::Positional, cl::desc("<model: Hugging Face directory or .onnx file>"),
                                      cl::Required, cl::cat(cat));
static cl::opt<std::string> emit("emit", cl::desc("Print the imported IR: -emit=mlir"),
                                 cl::value_desc("mlir"), cl::init(""), cl::cat(cat));
static cl::opt<std::string> outputPath("o", cl::desc("Output file for -emit (default: stdout)"),
                                       cl::value_desc("file"), cl::init("-"), cl::cat(cat));
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

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  // libLLVM registers an undocumented "threads" option of its own; ours
  // replaces it, so it is created here rather than at static-init time.
  auto &registered = cl::getRegisteredOptions();
  if (auto it = registered.find("threads"); it != registered.end())
    it->second->removeArgument();
  static cl::opt<int> threads("threads", cl::desc("Worker threads, 0 = all cores (default 0)"),
                              cl::init(0), cl::cat(cat));
  cl::HideUnrelatedOptions(cat);
  cl::ParseCommandLineOptions(
      argc, argv,
      "qopt: compiles LLMs (Hugging Face directories, ONNX files) through the "
      "QLLM MLIR dialect\n\n"
      "  qopt MODEL -emit=mlir               print the imported IR\n"
      "  qopt MODEL -eval-ppl=TEXT           perplexity (fp32 reference executor)\n"
      "  qopt MODEL -prompt=TEXT             greedy continuation\n");

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

  mlir::MLIRContext ctx;
  ctx.loadDialect<qllm::QLLMDialect, qonnx::QONNXDialect, mlir::func::FuncDialect>();
  const bool tty = isatty(2);
  auto t0 = std::chrono::steady_clock::now();
  LoadedModel model;
  std::string error;
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

  bool didSomething = false;
  if (emit == "mlir") {
    didSomething = true;
    std::error_code ec;
    llvm::ToolOutputFile out(outputPath, ec, llvm::sys::fs::OF_Text);
    if (ec)
      return fail(outputPath + ": " + ec.message());
    model.module->print(out.os());
    out.os() << "\n";
    out.keep();
  }

  bool wantsExec = !evalPpl.empty() || !prompt.empty() || !tokenIds.empty();
  if (!wantsExec) {
    if (!didSomething)
      llvm::errs() << "qopt: " << modelPath
                   << " imported and verified; nothing else asked (see -emit=mlir, "
                      "-eval-ppl=TEXT, -prompt=TEXT, --help)\n";
    return 0;
  }

  ExecutorOptions options;
  options.threads = threads;
  auto exec = ReferenceExecutor::create(*model.module, model.store, &error, options);
  if (!exec)
    return fail(error);

  if (!evalPpl.empty()) {
    auto tok = loadTokenizer(model, &error);
    if (!tok)
      return fail(error);
    auto buffer = llvm::MemoryBuffer::getFile(evalPpl);
    if (!buffer)
      return fail(evalPpl + ": " + buffer.getError().message());
    std::vector<int32_t> tokens = tok->encode((*buffer)->getBuffer().str(), false);
    PerplexityResult r;
    auto t1 = std::chrono::steady_clock::now();
    if (!evaluatePerplexity(*exec, tokens, evalCtx, evalChunks, &r, &error))
      return fail(evalPpl + ": " + error);
    llvm::outs() << llvm::format("perplexity: %.4f  (%s: %lld windows x %lld tokens, %lld "
                                 "predicted, mean NLL %.5f, %.1f s)\n",
                                 r.perplexity, evalPpl.c_str(), (long long)r.windows,
                                 (long long)evalCtx.getValue(), (long long)r.predicted,
                                 r.meanNll, secondsSince(t1));
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
