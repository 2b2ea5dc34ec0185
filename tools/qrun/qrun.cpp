//===- qrun.cpp - run a compiled qopt artifact on the CPU --------------------===//
//
//   qrun ART -p PROMPT [-n N]                  stream a continuation
//   qrun ART --prompts FILE.jsonl [--concurrency C]   serve many requests
//   qrun ART --perplexity TEXT [--ctx 256] [--chunks 40]
//
// Links only the runtime (no LLVM/MLIR). Errors: one line, exit 1; in
// --prompts mode a bad request fails alone and the others go on.
//
//===----------------------------------------------------------------------===//
#include "Options.h"
#include "Serve.h"

#include <cstdio>

int main(int argc, char **argv) {
  qrun::Options o;
  std::string error;
  if (!qrun::parseOptions(argc, argv, &o, &error)) {
    std::fprintf(stderr, "qrun: error: %s\n", error.c_str());
    return 1;
  }
  if (o.help) {
    std::fputs(qrun::usage(), stdout);
    return 0;
  }
  qrun::Runtime rt;
  if (!rt.load(o, &error)) {
    std::fprintf(stderr, "qrun: error: %s\n", error.c_str());
    return 1;
  }
  bool ok;
  if (!o.perplexityPath.empty())
    ok = qrun::runPerplexity(rt, o, &error);
  else if (!o.promptsPath.empty())
    ok = qrun::runPromptsFile(rt, o, &error);
  else
    ok = qrun::runSingle(rt, o, &error);
  if (!ok) {
    std::fprintf(stderr, "qrun: error: %s\n", error.c_str());
    return 1;
  }
  return 0;
}
