//===- PerplexityApi.cpp - C API: qopt_perplexity ---------------------------===//
#include "CApi.h"

#include "qopt-rt/eval/Perplexity.h"

using namespace qrt;
using namespace qrt::capi;

extern "C" int qopt_perplexity(qopt_model *model, const char *text, size_t len, int32_t context,
                               int32_t max_windows, qopt_perplexity_result *result,
                               char **error) {
  return guarded("qopt_perplexity", error, -1, [&](std::string *why) {
    if (!model || !result || (!text && len)) {
      *why = !model ? "model is NULL" : !result ? "result is NULL" : "text is NULL";
      return -1;
    }
    if (!model->tokenizer) {
      *why = model->artifact->dir() + " has no tokenizer.json";
      return -1;
    }
    if (context < 2 || max_windows < 0) {
      *why = context < 2 ? "context must be >= 2 tokens, got " + std::to_string(context)
                         : "max_windows must be >= 0, got " + std::to_string(max_windows);
      return -1;
    }
    std::vector<int32_t> ids =
        model->tokenizer->encode(std::string_view(text ? text : "", len), /*addSpecial=*/false);
    // One window's KV, whatever the engines' pool size: windows run alone.
    ModelRunner r;
    if (!makeRunner(*model, 1, context, /*exactSize=*/true, &r, why))
      return -1;
    eval::PerplexityResult p;
    if (!eval::perplexity(*r.executor, *r.kv, ids, context, max_windows, &p, why))
      return -1;
    result->perplexity = p.perplexity();
    result->mean_nll = p.meanNll;
    result->windows = p.windows;
    result->predictions = p.predictions;
    return 0;
  });
}
