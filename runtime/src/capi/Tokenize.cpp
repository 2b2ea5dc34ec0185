//===- Tokenize.cpp - C API: text <-> ids with the artifact's tokenizer ----===//
#include "CApi.h"

#include <cstdlib>
#include <cstring>

using namespace qrt;
using namespace qrt::capi;

extern "C" {

int qopt_tokenize(const qopt_model *model, const char *text, size_t len, int add_special,
                  int32_t **ids, size_t *n, char **error) {
  return guarded("qopt_tokenize", error, -1, [&](std::string *why) {
    if (!model || !ids || !n || (!text && len)) {
      *why = !model ? "model is NULL" : (!ids || !n) ? "ids or n is NULL" : "text is NULL";
      return -1;
    }
    if (!model->tokenizer) {
      *why = model->artifact->dir() + " has no tokenizer.json";
      return -1;
    }
    std::vector<int32_t> v =
        model->tokenizer->encode(std::string_view(text ? text : "", len), add_special != 0);
    int32_t *out = nullptr;
    if (!v.empty()) {
      out = static_cast<int32_t *>(std::malloc(v.size() * sizeof(int32_t)));
      if (!out)
        throw std::bad_alloc();
      std::memcpy(out, v.data(), v.size() * sizeof(int32_t));
    }
    *ids = out;
    *n = v.size();
    return 0;
  });
}

int qopt_detokenize(const qopt_model *model, const int32_t *ids, size_t n, int skip_special,
                    char **text, size_t *len, char **error) {
  return guarded("qopt_detokenize", error, -1, [&](std::string *why) {
    if (!model || !text || (!ids && n)) {
      *why = !model ? "model is NULL" : !text ? "text is NULL" : "ids is NULL";
      return -1;
    }
    if (!model->tokenizer) {
      *why = model->artifact->dir() + " has no tokenizer.json";
      return -1;
    }
    // The tokenizer skips unknown ids silently; a C caller passing garbage
    // deserves to hear about it.
    const int32_t vocab = qopt_model_vocab_size(model);
    for (size_t i = 0; i < n; ++i)
      if (ids[i] < 0 || ids[i] >= vocab) {
        *why = "id " + std::to_string(i) + " is " + std::to_string(ids[i]) +
               ", outside the vocabulary [0, " + std::to_string(vocab) + ")";
        return -1;
      }
    std::string s = model->tokenizer->decode(std::vector<int32_t>(ids, ids + n), skip_special != 0);
    char *out = copyString(s);
    if (!out)
      throw std::bad_alloc();
    *text = out;
    if (len)
      *len = s.size();
    return 0;
  });
}

} // extern "C"
