//===- CApi.h - what the C API's handles hold (internal) ---------*- C++ -*-===//
//
// The opaque structs of qopt.h and the helpers the C API's source files
// share: turning errors into malloc'ed strings, and a guard that keeps every
// C++ exception on this side of the boundary.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_CAPI_CAPI_H
#define QOPT_RT_CAPI_CAPI_H

#include "qopt-rt/qopt.h"

#include "qopt-rt/artifact/Artifact.h"
#include "qopt-rt/kernels/ThreadPool.h"
#include "qopt-rt/model/CpuModelExecutor.h"
#include "qopt-rt/model/FromArtifact.h"
#include "qopt-rt/serving/KVCache.h"
#include "qopt-rt/tokenizer.h"

#include <exception>
#include <memory>
#include <new>
#include <string>

/// An opened artifact and the settings its engines use. Engines and
/// perplexity runs each make their own KV pool and executor over it.
struct qopt_model {
  std::unique_ptr<qrt::Artifact> artifact;
  std::unique_ptr<qrt::Tokenizer> tokenizer; ///< null when the artifact has none
  qrt::model::ArtifactModel weights;
  std::unique_ptr<qrt::kernels::ThreadPool> pool;
  qrt::serving::KVDType kvType = qrt::serving::KVDType::BF16;
  int32_t maxContext = 0;
  int32_t maxBatch = 8;
  uint64_t kvPoolBytes = 0; ///< 0: sized from the need
  bool prefixCaching = true;
  bool int8Activations = false;
  int32_t eosId = -1, bosId = -1;
};

namespace qrt::capi {

/// A KV pool and the executor that writes it.
struct ModelRunner {
  std::unique_ptr<serving::KVCache> kv;
  std::unique_ptr<model::CpuModelExecutor> executor;
};

/// Makes a runner over `m` with a KV pool for `seqs` sequences of `tokens`
/// tokens (or `m.kvPoolBytes` when set and `exactSize` is false).
bool makeRunner(const qopt_model &m, int32_t seqs, int32_t tokens, bool exactSize,
                ModelRunner *out, std::string *error);

/// Stores a malloc'ed copy of `message` in *error (when error is not null).
void setError(char **error, const std::string &message);

/// A malloc'ed NUL-terminated copy of `s` (null when out of memory).
char *copyString(const std::string &s);

/// Runs `body` (which returns R and reports failures through a
/// std::string*), turning a false/failed result and any exception into
/// `failValue` plus a one-line *error prefixed with `fn`.
template <class R, class F>
R guarded(const char *fn, char **error, R failValue, F &&body) {
  std::string why;
  try {
    R r = body(&why);
    if (why.empty())
      return r;
  } catch (const std::bad_alloc &) {
    why = "out of memory";
  } catch (const std::exception &e) {
    why = std::string("internal error: ") + e.what();
  } catch (...) {
    why = "internal error";
  }
  setError(error, std::string(fn) + ": " + why);
  return failValue;
}

} // namespace qrt::capi

#endif // QOPT_RT_CAPI_CAPI_H
