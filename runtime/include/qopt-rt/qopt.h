/*===- qopt.h - the qopt runtime's C API ---------------------------*- C -*-===*
 *
 * A plain C99 interface to the runtime: open a compiled artifact (OUT.qopt),
 * tokenize, generate with continuous batching and streaming, measure
 * perplexity. The implementation is C++ (runtime/src/capi/); nothing here
 * exposes a C++ type, and no C++ exception ever crosses this boundary.
 *
 * Conventions:
 *  - Handles are opaque; every *_open / *_create has a matching *_close /
 *    *_destroy that accepts NULL.
 *  - Functions that can fail take `char **error` (may be NULL). On failure
 *    they return NULL or a negative number and, when `error` is not NULL,
 *    store a malloc'ed one-line message in *error that the caller frees with
 *    qopt_free(). On success *error is left untouched.
 *  - Memory the library hands out (ids, text, messages) is freed with
 *    qopt_free().
 *  - Option structs are filled with their *_init function first, so fields
 *    added by later versions get their defaults.
 *  - Threads: a model and the engines made from it are used from one thread
 *    at a time (the model's worker threads are internal). Different models
 *    are independent.
 *
 * docs/runtime.md ("C API") has a complete example.
 *
 *===----------------------------------------------------------------------===*/
#ifndef QOPT_RT_QOPT_H
#define QOPT_RT_QOPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header: MAJOR changes break callers, MINOR adds. */
#define QOPT_API_VERSION_MAJOR 0
#define QOPT_API_VERSION_MINOR 1
#define QOPT_API_VERSION (QOPT_API_VERSION_MAJOR * 100 + QOPT_API_VERSION_MINOR)

/* QOPT_API_VERSION of the library that is linked (compare with the header's). */
int qopt_api_version(void);

/* Frees memory returned by this API (messages, ids, text). NULL is a no-op. */
void qopt_free(void *p);

/*---------------------------------------------------------------- model --*/

typedef struct qopt_model qopt_model;

typedef struct qopt_model_options {
  /* Worker threads of the CPU kernels; 0 = all cores. */
  int32_t threads;
  /* Context length (prompt + generated tokens); 0 = the model's. */
  int32_t max_context;
  /* Requests an engine runs at once (continuous batching); default 8. */
  int32_t max_batch;
  /* Bytes of an engine's KV pool; 0 = enough for max_batch requests of
   * max_context tokens, capped at 1 GiB. */
  uint64_t kv_pool_bytes;
  /* KV-cache element type: NULL = the artifact's; "bf16" or "f16" override
   * it (int8/fp8 need the artifact's calibrated scales, so only the
   * artifact's own quantized type is accepted). */
  const char *kv_dtype;
  /* Reuse the KV of shared prompt prefixes across requests; default 1. */
  int prefix_caching;
  /* int8 activations (per 32 columns) in the quantized GEMMs: faster,
   * slightly less exact; default 1. 0 = fp32 activations, what qopt's
   * reference executor computes. */
  int int8_activations;
} qopt_model_options;

/* Fills `o` with the defaults. */
void qopt_model_options_init(qopt_model_options *o);

/* Opens the artifact directory `artifact_dir` (checks the manifest, maps the
 * weights, loads tokenizer.json when present). `opts` may be NULL for the
 * defaults. NULL + *error on failure. */
qopt_model *qopt_model_open(const char *artifact_dir, const qopt_model_options *opts,
                            char **error);
void qopt_model_close(qopt_model *model);

/* Model information. */
int32_t qopt_model_vocab_size(const qopt_model *model);
/* The context length in use (max_context, or the model's). */
int32_t qopt_model_context_length(const qopt_model *model);
/* End/beginning-of-sequence ids; -1 when the model has none. */
int32_t qopt_model_eos_id(const qopt_model *model);
int32_t qopt_model_bos_id(const qopt_model *model);
/* The ISA the artifact was compiled for ("host", "x86-64-v3", ...); owned
 * by the model. */
const char *qopt_model_target(const qopt_model *model);
/* The KV-cache element type in use ("bf16", "f16", "int8", "fp8_e4m3"). */
const char *qopt_model_kv_dtype(const qopt_model *model);
/* 1 when the artifact has a tokenizer (text in and out), else 0. */
int qopt_model_has_tokenizer(const qopt_model *model);

/*------------------------------------------------------------ tokenizer --*/

/* Encodes `len` bytes of UTF-8 `text` (invalid bytes become U+FFFD).
 * add_special != 0 adds the tokenizer's special tokens (e.g. BOS), as a
 * text prompt to qopt_engine_submit does. *ids (free with qopt_free; NULL
 * when *n is 0) receives *n ids. 0 on success, -1 on error. */
int qopt_tokenize(const qopt_model *model, const char *text, size_t len, int add_special,
                  int32_t **ids, size_t *n, char **error);

/* Decodes `n` ids into NUL-terminated UTF-8 *text (free with qopt_free),
 * *len bytes before the NUL (len may be NULL). skip_special != 0 leaves
 * special tokens out. Ids outside the vocabulary are an error. 0 or -1. */
int qopt_detokenize(const qopt_model *model, const int32_t *ids, size_t n, int skip_special,
                    char **text, size_t *len, char **error);

/*----------------------------------------------------------- generation --*/

typedef struct qopt_sampling {
  /* 0 = greedy (argmax, lowest id on ties); default 0. */
  float temperature;
  /* Keep the k most likely tokens; 0 = off (default). */
  int32_t top_k;
  /* Nucleus sampling, in (0, 1]; 1 = off (default). */
  float top_p;
  /* Makes sampling reproducible when has_seed != 0; default: unseeded. */
  uint64_t seed;
  int has_seed;
  /* Generated tokens at most (>= 1); default 64. */
  int32_t max_tokens;
  /* Generation ends at the first of these strings (cut before it);
   * num_stop strings, not copied beyond the submit call. */
  const char *const *stop;
  size_t num_stop;
  /* Do not stop at the end-of-sequence id; default 0. */
  int ignore_eos;
} qopt_sampling;

/* Fills `s` with the defaults (greedy, 64 tokens, stop at EOS). */
void qopt_sampling_init(qopt_sampling *s);

typedef int64_t qopt_request_id;

typedef enum qopt_finish_reason {
  QOPT_FINISH_NONE = 0,   /* still running */
  QOPT_FINISH_STOP = 1,   /* EOS or a stop string */
  QOPT_FINISH_LENGTH = 2, /* max_tokens or the context length */
  QOPT_FINISH_CANCEL = 3, /* qopt_engine_cancel or the callback asked */
  QOPT_FINISH_ERROR = 4   /* the request could not be served: see `error` */
} qopt_finish_reason;

/* "none", "stop", "length", "cancel", "error". */
const char *qopt_finish_reason_name(qopt_finish_reason r);

/* One streamed event of one request. Pointers are valid only during the
 * callback. */
typedef struct qopt_token_event {
  qopt_request_id request;
  /* The new token, or -1 for an event that only ends the request (an error,
   * a cancel). */
  int32_t token_id;
  /* UTF-8 text completed by this event (text_len bytes, NUL-terminated). It
   * may lag the tokens: text is held back while it could be the start of a
   * stop string or an incomplete character, and comes out with a later
   * token or the final event. Empty without a tokenizer. */
  const char *text;
  size_t text_len;
  /* Non-zero on the request's last event. */
  int finished;
  qopt_finish_reason finish_reason;
  /* One line for QOPT_FINISH_ERROR, else NULL. */
  const char *error;
  int32_t prompt_tokens;
  /* Prompt tokens whose KV came from the prefix cache. */
  int32_t cached_tokens;
} qopt_token_event;

/* Called for every event from qopt_engine_step. Return 0 to go on, non-zero
 * to cancel the request (it then ends with QOPT_FINISH_CANCEL at the next
 * step). The callback may submit or cancel requests, but must not destroy
 * the engine or close the model. */
typedef int (*qopt_token_callback)(const qopt_token_event *event, void *user);

typedef struct qopt_engine qopt_engine;

/* An engine: its own KV pool (sized from the model's options) and request
 * queue over `model`, which must outlive it. NULL + *error on failure. */
qopt_engine *qopt_engine_create(qopt_model *model, char **error);
void qopt_engine_destroy(qopt_engine *engine);

/* Queues a request with a text prompt (`len` bytes, tokenized with the
 * special tokens, e.g. BOS) or with prompt ids. `s` may be NULL for the
 * defaults; `cb` may be NULL. Returns the request id (>= 0), or -1 with
 * *error when the request is refused now: no tokenizer for a text prompt,
 * an empty prompt, ids outside the vocabulary, a prompt that leaves no room
 * in the context, bad sampling values. Problems found later end the
 * request with a QOPT_FINISH_ERROR event. */
qopt_request_id qopt_engine_submit(qopt_engine *engine, const char *prompt, size_t len,
                                   const qopt_sampling *s, qopt_token_callback cb, void *user,
                                   char **error);
qopt_request_id qopt_engine_submit_ids(qopt_engine *engine, const int32_t *ids, size_t n,
                                       const qopt_sampling *s, qopt_token_callback cb,
                                       void *user, char **error);

/* Runs one forward pass over every scheduled request and delivers the
 * events. Returns the number of requests still unfinished (0 = idle), or
 * -1 with *error on an internal failure. */
int qopt_engine_step(qopt_engine *engine, char **error);

/* Steps until every request has finished. 0 or -1. */
int qopt_engine_run_until_done(qopt_engine *engine, char **error);

/* Cancels a request; its final event (QOPT_FINISH_CANCEL) comes at the next
 * step. 0, or -1 when the id is unknown or already finished. */
int qopt_engine_cancel(qopt_engine *engine, qopt_request_id request);

/* One-shot: a fresh one-request engine generates a continuation of the text
 * `prompt` (len bytes), streaming through `cb` (may be NULL). When `text`
 * is not NULL it receives the whole generated text (free with qopt_free).
 * 0, or -1 with *error (including a request that ended in an error). */
int qopt_generate(qopt_model *model, const char *prompt, size_t len, const qopt_sampling *s,
                  qopt_token_callback cb, void *user, char **text, char **error);

/*----------------------------------------------------------- perplexity --*/

typedef struct qopt_perplexity_result {
  double perplexity;   /* exp(mean_nll) */
  double mean_nll;     /* mean negative log-likelihood, nats */
  int64_t windows;     /* windows scored */
  int64_t predictions; /* positions scored: windows * (context - 1) */
} qopt_perplexity_result;

/* Perplexity of `len` bytes of text with the shared protocol of qopt
 * -eval-ppl and qrun --perplexity: the text's tokens without special
 * tokens, non-overlapping windows of `context` tokens from the start, the
 * first `max_windows` (0 = all), each scored alone. 0, or -1 with *error
 * (no tokenizer, fewer tokens than one window, ...). */
int qopt_perplexity(qopt_model *model, const char *text, size_t len, int32_t context,
                    int32_t max_windows, qopt_perplexity_result *result, char **error);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* QOPT_RT_QOPT_H */
