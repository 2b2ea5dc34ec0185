//===- Model.cpp - C API: version, memory, opening a model, its info -------===//
#include "CApi.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

using namespace qrt;

namespace qrt::capi {

char *copyString(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p) {
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
  }
  return p;
}

void setError(char **error, const std::string &message) {
  if (!error)
    return;
  // One line: messages from deep inside (e.g. a JSON parser) may hold breaks.
  std::string line = message;
  std::replace(line.begin(), line.end(), '\n', ' ');
  *error = copyString(line);
}

bool makeRunner(const qopt_model &m, int32_t seqs, int32_t tokens, bool exactSize,
                ModelRunner *out, std::string *error) {
  out->kv = model::createKVPool(m.weights, m.kvType, seqs, tokens, m.kvPoolBytes, exactSize,
                                error);
  if (!out->kv)
    return false;
  model::ExecutorOptions eo;
  eo.pool = m.pool.get();
  eo.activations = m.int8Activations ? kernels::Activations::Int8 : kernels::Activations::Float;
  out->executor = model::CpuModelExecutor::create(m.weights.weights, *out->kv, eo, error);
  return out->executor != nullptr;
}

} // namespace qrt::capi

using namespace qrt::capi;

extern "C" {

int qopt_api_version(void) { return QOPT_API_VERSION; }

void qopt_free(void *p) { std::free(p); }

void qopt_model_options_init(qopt_model_options *o) {
  if (!o)
    return;
  std::memset(o, 0, sizeof *o);
  o->max_batch = 8;
  o->prefix_caching = 1;
  o->int8_activations = 1;
}

/// Applies `o` to `m`; false with *error on a bad value.
static bool applyOptions(const qopt_model_options &o, qopt_model *m, std::string *error) {
  if (o.threads < 0 || o.threads > 1024) {
    *error = "threads must be in [0, 1024], got " + std::to_string(o.threads);
    return false;
  }
  if (o.max_context < 0 || o.max_context == 1) {
    *error = "max_context must be 0 (the model's) or >= 2, got " + std::to_string(o.max_context);
    return false;
  }
  if (o.max_batch < 1 || o.max_batch > 4096) {
    *error = "max_batch must be in [1, 4096], got " + std::to_string(o.max_batch);
    return false;
  }
  if (o.kv_dtype) {
    serving::KVDType t;
    if (!serving::parseKVDType(o.kv_dtype, &t)) {
      *error = std::string("kv_dtype '") + o.kv_dtype +
               "' is not a KV type (bf16, f16, int8, fp8_e4m3)";
      return false;
    }
    // Quantized KV needs the calibrated scales the artifact carries.
    if (serving::kvIsQuantized(t) && t != m->kvType) {
      *error = std::string("kv_dtype '") + o.kv_dtype +
               "' needs calibrated KV scales, and the artifact's KV type is " +
               serving::kvDTypeName(m->kvType) + " (recompile with -kv-cache=...)";
      return false;
    }
    m->kvType = t;
  }
  m->maxContext = o.max_context ? o.max_context : m->weights.weights.dims.maxPositions;
  m->maxBatch = o.max_batch;
  m->kvPoolBytes = o.kv_pool_bytes;
  m->prefixCaching = o.prefix_caching != 0;
  m->int8Activations = o.int8_activations != 0;
  m->pool = std::make_unique<kernels::ThreadPool>(o.threads);
  return true;
}

qopt_model *qopt_model_open(const char *artifact_dir, const qopt_model_options *opts,
                            char **error) {
  return guarded("qopt_model_open", error, (qopt_model *)nullptr,
                 [&](std::string *why) -> qopt_model * {
    if (!artifact_dir) {
      *why = "artifact_dir is NULL";
      return nullptr;
    }
    qopt_model_options o;
    qopt_model_options_init(&o);
    if (opts)
      o = *opts;
    auto m = std::make_unique<qopt_model>();
    m->artifact = Artifact::open(artifact_dir, why);
    if (!m->artifact)
      return nullptr;
    if (!model::modelFromArtifact(*m->artifact, &m->weights, why))
      return nullptr;
    std::string tp = m->artifact->tokenizerPath();
    if (!tp.empty()) {
      m->tokenizer = Tokenizer::fromFile(tp, why);
      if (!m->tokenizer)
        return nullptr;
    }
    m->kvType = m->weights.kvType;
    if (!applyOptions(o, m.get(), why)) {
      *why = std::string(artifact_dir) + ": " + *why;
      return nullptr;
    }
    const ArtifactConfig &c = m->artifact->config();
    m->eosId = int32_t(c.eosTokenId);
    m->bosId = int32_t(c.bosTokenId);
    if (m->eosId < 0 && m->tokenizer)
      m->eosId = m->tokenizer->eosId().value_or(-1);
    if (m->bosId < 0 && m->tokenizer)
      m->bosId = m->tokenizer->bosId().value_or(-1);
    return m.release();
  });
}

void qopt_model_close(qopt_model *model) { delete model; }

int32_t qopt_model_vocab_size(const qopt_model *m) {
  return m ? m->weights.weights.dims.vocab : 0;
}
int32_t qopt_model_context_length(const qopt_model *m) { return m ? m->maxContext : 0; }
int32_t qopt_model_eos_id(const qopt_model *m) { return m ? m->eosId : -1; }
int32_t qopt_model_bos_id(const qopt_model *m) { return m ? m->bosId : -1; }
const char *qopt_model_target(const qopt_model *m) {
  return m ? m->artifact->target().isa.c_str() : "";
}
const char *qopt_model_kv_dtype(const qopt_model *m) {
  return m ? serving::kvDTypeName(m->kvType) : "";
}
int qopt_model_has_tokenizer(const qopt_model *m) { return m && m->tokenizer ? 1 : 0; }

} // extern "C"
