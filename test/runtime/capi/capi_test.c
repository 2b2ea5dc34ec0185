/*===- capi_test.c - the runtime's C API, used from C ----------------------===*
 *
 *   capi_test                          model-free checks: bad inputs, defaults
 *   capi_test ART CASES PPL_TEXT PPL   also the model checks on an artifact of
 *                                      austen-llama-7m, against CASES (written by
 *                                      run_capi_austen.py from ../shared's
 *                                      reference.json and config.json) and the
 *                                      reference perplexity PPL of PPL_TEXT
 *
 * Written in C99 on purpose: it proves qopt.h is a C header and that the
 * library links into a C program (plus the C++ standard library).
 *
 *===----------------------------------------------------------------------===*/
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include "qopt-rt/qopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    if (!(cond)) {                                                              \
      ++failures;                                                               \
      fprintf(stderr, "%s:%d: FAIL: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                             \
      fputc('\n', stderr);                                                      \
    }                                                                           \
  } while (0)

/* An error message is one non-empty line that mentions `word`. */
static void check_error(char *err, const char *word, int line) {
  if (!err) {
    ++failures;
    fprintf(stderr, "capi_test.c:%d: FAIL: no error message\n", line);
    return;
  }
  if (!*err || strchr(err, '\n') || !strstr(err, word)) {
    ++failures;
    fprintf(stderr, "capi_test.c:%d: FAIL: error '%s' should be one line naming '%s'\n", line,
            err, word);
  }
  qopt_free(err);
}
#define CHECK_ERROR(err, word) check_error((err), (word), __LINE__)

/*------------------------------------------------------ model-free checks --*/

static void test_without_model(void) {
  CHECK(qopt_api_version() == QOPT_API_VERSION, "library %d, header %d", qopt_api_version(),
        QOPT_API_VERSION);

  qopt_model_options o;
  qopt_model_options_init(&o);
  CHECK(o.max_batch == 8 && o.prefix_caching == 1 && o.threads == 0 && o.kv_dtype == NULL,
        "model option defaults");
  qopt_sampling s;
  qopt_sampling_init(&s);
  CHECK(s.temperature == 0.0f && s.top_p == 1.0f && s.max_tokens == 64 && s.num_stop == 0,
        "sampling defaults");

  char *err = NULL;
  CHECK(qopt_model_open("/nonexistent/dir.qopt", NULL, &err) == NULL, "opened a missing dir");
  CHECK_ERROR(err, "/nonexistent/dir.qopt");

  /* A corrupt manifest: an artifact directory whose manifest is not JSON. */
  char dir[] = "/tmp/qopt_capi_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char path[256];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  FILE *f = fopen(path, "w");
  fputs("{\"format\": \"qopt-artifact\", \"version\": 1, \"tensors\": [", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/weights.bin", dir);
  f = fopen(path, "w");
  fputs("not weights", f);
  fclose(f);
  err = NULL;
  CHECK(qopt_model_open(dir, NULL, &err) == NULL, "opened a corrupt manifest");
  CHECK_ERROR(err, "manifest");
  remove(path);
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  remove(path);
  rmdir(dir);

  /* NULL everywhere: errors, not crashes. A NULL error pointer is allowed. */
  err = NULL;
  CHECK(qopt_model_open(NULL, NULL, &err) == NULL, "NULL dir");
  CHECK_ERROR(err, "NULL");
  CHECK(qopt_model_open("/nonexistent", NULL, NULL) == NULL, "no error pointer");
  err = NULL;
  CHECK(qopt_engine_create(NULL, &err) == NULL, "engine of NULL");
  CHECK_ERROR(err, "model is NULL");
  err = NULL;
  CHECK(qopt_engine_step(NULL, &err) == -1, "step NULL");
  CHECK_ERROR(err, "engine is NULL");
  CHECK(qopt_engine_cancel(NULL, 0) == -1, "cancel NULL");
  qopt_model_close(NULL);
  qopt_engine_destroy(NULL);
  qopt_free(NULL);
  CHECK(strcmp(qopt_finish_reason_name(QOPT_FINISH_LENGTH), "length") == 0, "reason name");
}

/*----------------------------------------------------------- the cases --*/

#define MAX_PROMPTS 8
#define MAX_IDS 256

typedef struct {
  char *prompt;        /* NUL-terminated */
  char *text;          /* reference greedy text (decode without skipping) */
  int32_t ids[MAX_IDS];
  size_t n_ids;
  int32_t greedy[MAX_IDS];
  size_t n_greedy;
} prompt_case;

typedef struct {
  int32_t vocab, bos, eos, context;
  prompt_case prompts[MAX_PROMPTS];
  size_t n;
} cases;

static char *unhex(const char *h) {
  size_t n = strlen(h) / 2;
  char *s = malloc(n + 1);
  for (size_t i = 0; i < n; ++i) {
    unsigned v;
    sscanf(h + 2 * i, "%2x", &v);
    s[i] = (char)v;
  }
  s[n] = 0;
  return s;
}

static size_t parse_ids(const char *s, int32_t *out) {
  size_t n = 0;
  char *end;
  for (long v = strtol(s, &end, 10); end != s && n < MAX_IDS; v = strtol(s, &end, 10)) {
    out[n++] = (int32_t)v;
    s = end;
  }
  return n;
}

static int read_cases(const char *path, cases *c) {
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  static char line[65536];
  memset(c, 0, sizeof *c);
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *v = strchr(line, ' ');
    if (!v)
      continue;
    *v++ = 0;
    prompt_case *p = c->n ? &c->prompts[c->n - 1] : NULL;
    if (!strcmp(line, "vocab")) c->vocab = atoi(v);
    else if (!strcmp(line, "bos")) c->bos = atoi(v);
    else if (!strcmp(line, "eos")) c->eos = atoi(v);
    else if (!strcmp(line, "context")) c->context = atoi(v);
    else if (!strcmp(line, "prompt") && c->n < MAX_PROMPTS) c->prompts[c->n++].prompt = unhex(v);
    else if (!strcmp(line, "ids") && p) p->n_ids = parse_ids(v, p->ids);
    else if (!strcmp(line, "greedy") && p) p->n_greedy = parse_ids(v, p->greedy);
    else if (!strcmp(line, "text") && p) p->text = unhex(v);
  }
  fclose(f);
  return c->n > 0;
}

/*------------------------------------------------------ streamed output --*/

/* What the callback collected for one request. */
typedef struct {
  int32_t ids[MAX_IDS];
  size_t n;
  char text[8192];
  size_t text_len;
  int finished_events;
  qopt_finish_reason reason;
  char error[512];
  int32_t cached_tokens;
  int cancel_after; /* > 0: ask to cancel once this many tokens came */
} stream;

static int collect(const qopt_token_event *ev, void *user) {
  stream *s = user;
  if (ev->token_id >= 0 && s->n < MAX_IDS)
    s->ids[s->n++] = ev->token_id;
  if (s->text_len + ev->text_len < sizeof s->text) {
    memcpy(s->text + s->text_len, ev->text, ev->text_len);
    s->text_len += ev->text_len;
    s->text[s->text_len] = 0;
  }
  s->cached_tokens = ev->cached_tokens;
  if (ev->finished) {
    ++s->finished_events;
    s->reason = ev->finish_reason;
    if (ev->error)
      snprintf(s->error, sizeof s->error, "%s", ev->error);
  }
  return s->cancel_after > 0 && (int)s->n >= s->cancel_after;
}

static int same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
  return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static size_t max_greedy(const cases *c) {
  size_t m = 0;
  for (size_t i = 0; i < c->n; ++i)
    m = c->prompts[i].n_greedy > m ? c->prompts[i].n_greedy : m;
  return m;
}

/* The reference generated up to max_greedy tokens and stopped at EOS:
 * shorter lists end with EOS (finish "stop"), the others hit "length". */
static void check_stream(const stream *s, const prompt_case *p, const cases *c,
                         const char *what) {
  CHECK(same_ids(s->ids, s->n, p->greedy, p->n_greedy), "%s '%s': %zu ids differ from the reference's %zu",
        what, p->prompt, s->n, p->n_greedy);
  CHECK(s->finished_events == 1, "%s: %d final events", what, s->finished_events);
  qopt_finish_reason want = p->n_greedy < max_greedy(c) ? QOPT_FINISH_STOP : QOPT_FINISH_LENGTH;
  CHECK(s->reason == want, "%s '%s': finish %s, want %s", what, p->prompt,
        qopt_finish_reason_name(s->reason), qopt_finish_reason_name(want));
}

/*--------------------------------------------------------- model checks --*/

static void test_info_and_tokenizer(qopt_model *m, const cases *c) {
  CHECK(qopt_model_vocab_size(m) == c->vocab, "vocab %d, config %d", qopt_model_vocab_size(m),
        c->vocab);
  CHECK(qopt_model_eos_id(m) == c->eos, "eos %d, config %d", qopt_model_eos_id(m), c->eos);
  CHECK(qopt_model_bos_id(m) == c->bos, "bos %d, config %d", qopt_model_bos_id(m), c->bos);
  CHECK(qopt_model_context_length(m) == c->context, "context %d, config %d",
        qopt_model_context_length(m), c->context);
  CHECK(qopt_model_has_tokenizer(m) == 1, "tokenizer");
  CHECK(strcmp(qopt_model_kv_dtype(m), "bf16") == 0, "kv %s", qopt_model_kv_dtype(m));
  CHECK(strlen(qopt_model_target(m)) > 0, "target");

  for (size_t i = 0; i < c->n; ++i) {
    const prompt_case *p = &c->prompts[i];
    int32_t *ids = NULL;
    size_t n = 0;
    char *err = NULL;
    CHECK(qopt_tokenize(m, p->prompt, strlen(p->prompt), 0, &ids, &n, &err) == 0, "%s", err);
    CHECK(same_ids(ids, n, p->ids, p->n_ids), "tokenize '%s'", p->prompt);
    qopt_free(ids);
    /* With special tokens: BOS first, then the same ids. */
    CHECK(qopt_tokenize(m, p->prompt, strlen(p->prompt), 1, &ids, &n, &err) == 0, "%s", err);
    CHECK(n == p->n_ids + 1 && ids[0] == c->bos && same_ids(ids + 1, n - 1, p->ids, p->n_ids),
          "tokenize with BOS '%s'", p->prompt);
    qopt_free(ids);
    char *text = NULL;
    size_t len = 0;
    CHECK(qopt_detokenize(m, p->greedy, p->n_greedy, 0, &text, &len, &err) == 0, "%s", err);
    CHECK(text && strcmp(text, p->text) == 0 && len == strlen(p->text),
          "detokenize: '%s' vs reference '%s'", text, p->text);
    qopt_free(text);
  }
  char *err = NULL;
  char *text = NULL;
  int32_t bad[2] = {5, 1 << 30};
  CHECK(qopt_detokenize(m, bad, 2, 0, &text, NULL, &err) == -1, "detokenize a bad id");
  CHECK_ERROR(err, "vocabulary");
}

/* Greedy ids of every reference prompt, one request at a time. */
static void test_greedy_one_at_a_time(qopt_model *m, const cases *c) {
  qopt_sampling s;
  qopt_sampling_init(&s);
  s.max_tokens = (int32_t)max_greedy(c);
  for (size_t i = 0; i < c->n; ++i) {
    const prompt_case *p = &c->prompts[i];
    char *err = NULL;
    qopt_engine *e = qopt_engine_create(m, &err);
    CHECK(e != NULL, "%s", err);
    if (!e)
      return;
    stream st;
    memset(&st, 0, sizeof st);
    qopt_request_id id = qopt_engine_submit_ids(e, p->ids, p->n_ids, &s, collect, &st, &err);
    CHECK(id >= 0, "%s", err);
    CHECK(qopt_engine_run_until_done(e, &err) == 0, "%s", err);
    check_stream(&st, p, c, "alone");
    /* The streamed text is the decoded ids, special tokens left out. */
    char *text = NULL;
    CHECK(qopt_detokenize(m, st.ids, st.n, 1, &text, NULL, &err) == 0, "%s", err);
    CHECK(text && strcmp(text, st.text) == 0, "streamed '%s' vs decoded '%s'", st.text, text);
    qopt_free(text);
    qopt_engine_destroy(e);
  }
}

/* Two copies of every prompt submitted at once (8 requests for the four
 * reference prompts): each stream is still the reference's greedy ids.
 * Then a prompt long enough to fill blocks (a reference continuation and
 * its prompt) twice in a row: the second reuses the first's KV from the
 * prefix cache and must generate the same tokens. */
static void test_greedy_batched(qopt_model *m, const cases *c) {
  qopt_sampling s;
  qopt_sampling_init(&s);
  s.max_tokens = (int32_t)max_greedy(c);
  char *err = NULL;
  qopt_engine *e = qopt_engine_create(m, &err);
  CHECK(e != NULL, "%s", err);
  if (!e)
    return;
  static stream st[2 * MAX_PROMPTS];
  memset(st, 0, sizeof st);
  size_t n = 2 * c->n;
  for (size_t r = 0; r < n; ++r) {
    const prompt_case *p = &c->prompts[r % c->n];
    CHECK(qopt_engine_submit_ids(e, p->ids, p->n_ids, &s, collect, &st[r], &err) >= 0, "%s", err);
  }
  int running = qopt_engine_step(e, &err);
  CHECK(running == (int)n, "after one step %d of %zu requests run (%s)", running, n,
        running < 0 ? err : "");
  CHECK(qopt_engine_run_until_done(e, &err) == 0, "%s", err);
  for (size_t r = 0; r < n; ++r)
    check_stream(&st[r], &c->prompts[r % c->n], c, "batched");

  const prompt_case *p = &c->prompts[0];
  int32_t longp[2 * MAX_IDS];
  /* Continuation first: no earlier request's blocks start this way. */
  memcpy(longp, p->greedy, p->n_greedy * sizeof *longp);
  memcpy(longp + p->n_greedy, p->ids, p->n_ids * sizeof *longp);
  size_t nl = p->n_ids + p->n_greedy;
  s.max_tokens = 16;
  s.ignore_eos = 1;
  for (int k = 0; k < 2; ++k) {
    memset(&st[k], 0, sizeof st[k]);
    CHECK(qopt_engine_submit_ids(e, longp, nl, &s, collect, &st[k], &err) >= 0, "%s", err);
    CHECK(qopt_engine_run_until_done(e, &err) == 0, "%s", err);
  }
  CHECK(st[0].cached_tokens == 0 && st[1].cached_tokens >= 16,
        "prefix cache: %d then %d cached tokens of %zu", st[0].cached_tokens,
        st[1].cached_tokens, nl);
  CHECK(st[0].n == 16 && same_ids(st[0].ids, st[0].n, st[1].ids, st[1].n),
        "a prefix-cache hit changed the tokens");
  qopt_engine_destroy(e);
}

static void test_generate(qopt_model *m, const cases *c) {
  /* qopt_generate tokenizes with BOS, which the reference prompts lack, so
   * its reference is the same request through the engine. */
  const prompt_case *p = &c->prompts[0];
  qopt_sampling s;
  qopt_sampling_init(&s);
  s.max_tokens = 12;
  char *err = NULL, *text = NULL;
  stream a;
  memset(&a, 0, sizeof a);
  CHECK(qopt_generate(m, p->prompt, strlen(p->prompt), &s, collect, &a, &text, &err) == 0, "%s",
        err);
  CHECK(text && strcmp(text, a.text) == 0, "returned '%s' vs streamed '%s'", text, a.text);
  qopt_free(text);
  qopt_engine *e = qopt_engine_create(m, &err);
  stream b;
  memset(&b, 0, sizeof b);
  CHECK(qopt_engine_submit(e, p->prompt, strlen(p->prompt), &s, collect, &b, &err) >= 0, "%s", err);
  CHECK(qopt_engine_run_until_done(e, &err) == 0, "%s", err);
  CHECK(a.n == 12 && same_ids(a.ids, a.n, b.ids, b.n), "generate %zu ids vs engine %zu", a.n, b.n);
  qopt_engine_destroy(e);

  /* A stop string cuts the text before it: take one from the middle of
   * the text just generated and expect exactly the text before it. */
  char stop_str[5] = {0};
  size_t mid = a.text_len / 2;
  CHECK(a.text_len >= 8, "short text '%s'", a.text);
  memcpy(stop_str, a.text + mid, 4);
  const char *stop[] = {stop_str};
  s.stop = stop;
  s.num_stop = 1;
  CHECK(qopt_generate(m, p->prompt, strlen(p->prompt), &s, NULL, NULL, &text, &err) == 0, "%s", err);
  size_t cut = (size_t)(strstr(a.text, stop_str) - a.text);
  CHECK(text && strlen(text) == cut && strncmp(text, a.text, cut) == 0,
        "with stop '%s': '%s', want the first %zu bytes of '%s'", stop_str, text, cut, a.text);
  qopt_free(text);
}

static void test_request_errors(qopt_model *m, const cases *c) {
  const prompt_case *p = &c->prompts[0];
  char *err = NULL;
  qopt_engine *e = qopt_engine_create(m, &err);
  CHECK(e != NULL, "%s", err);
  if (!e)
    return;
  qopt_sampling s;
  qopt_sampling_init(&s);

  /* A prompt as long as the context leaves no room: refused at submit. */
  int32_t *longp = calloc((size_t)c->context + 1, sizeof(int32_t));
  for (int32_t i = 0; i <= c->context; ++i)
    longp[i] = p->ids[(size_t)i % p->n_ids];
  CHECK(qopt_engine_submit_ids(e, longp, (size_t)c->context, &s, collect, NULL, &err) == -1,
        "long prompt accepted");
  CHECK_ERROR(err, "context");
  free(longp);
  int32_t outside[2] = {3, c->vocab};
  CHECK(qopt_engine_submit_ids(e, outside, 2, &s, NULL, NULL, &err) == -1, "bad id accepted");
  CHECK_ERROR(err, "vocabulary");
  CHECK(qopt_engine_submit_ids(e, p->ids, 0, &s, NULL, NULL, &err) == -1, "empty prompt");
  CHECK_ERROR(err, "empty");
  s.top_p = 0.0f;
  CHECK(qopt_engine_submit_ids(e, p->ids, p->n_ids, &s, NULL, NULL, &err) == -1, "top_p 0");
  CHECK_ERROR(err, "top_p");
  qopt_sampling_init(&s);
  s.num_stop = 1;
  CHECK(qopt_engine_submit_ids(e, p->ids, p->n_ids, &s, NULL, NULL, &err) == -1, "NULL stop");
  CHECK_ERROR(err, "stop");
  qopt_sampling_init(&s);

  /* Cancel from outside and from the callback; the others go on. */
  stream a, b, g;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&g, 0, sizeof g);
  b.cancel_after = 3;
  s.max_tokens = (int32_t)p->n_greedy;
  qopt_request_id ia = qopt_engine_submit_ids(e, p->ids, p->n_ids, &s, collect, &a, &err);
  qopt_engine_submit_ids(e, p->ids, p->n_ids, &s, collect, &b, &err);
  qopt_engine_submit_ids(e, p->ids, p->n_ids, &s, collect, &g, &err);
  CHECK(qopt_engine_step(e, &err) == 3, "three running");
  CHECK(qopt_engine_cancel(e, ia) == 0, "cancel");
  CHECK(qopt_engine_cancel(e, 12345) == -1, "cancel an unknown id");
  CHECK(qopt_engine_run_until_done(e, &err) == 0, "%s", err);
  CHECK(a.reason == QOPT_FINISH_CANCEL && a.n == 1 && a.finished_events == 1,
        "cancelled: %s after %zu", qopt_finish_reason_name(a.reason), a.n);
  CHECK(b.reason == QOPT_FINISH_CANCEL && b.n == 3, "callback cancel: %s after %zu",
        qopt_finish_reason_name(b.reason), b.n);
  CHECK(same_ids(g.ids, g.n, p->greedy, p->n_greedy), "the untouched request");
  CHECK(qopt_engine_cancel(e, ia) == -1, "cancel a finished request");
  qopt_engine_destroy(e);
}

/* Model options that cannot work are refused with a message naming them. */
static void test_model_options(const char *art, const cases *c) {
  const prompt_case *p = &c->prompts[0];
  qopt_model_options o;
  qopt_model_options_init(&o);
  o.kv_pool_bytes = 1; /* holds no block */
  char *err = NULL;
  qopt_model *m = qopt_model_open(art, &o, &err);
  CHECK(m != NULL, "%s", err);
  qopt_engine *e = qopt_engine_create(m, &err);
  CHECK(e == NULL, "an engine with an empty KV pool");
  CHECK_ERROR(err, "KV");
  qopt_model_close(m);
  qopt_model_options_init(&o);

  /* The context bound through max_context: refused at submit. */
  o.max_context = 8;
  m = qopt_model_open(art, &o, &err);
  CHECK(m != NULL, "%s", err);
  e = qopt_engine_create(m, &err);
  qopt_sampling s;
  qopt_sampling_init(&s);
  CHECK(qopt_engine_submit_ids(e, p->ids, p->n_ids, &s, NULL, NULL, &err) == -1, "9 > 8");
  CHECK_ERROR(err, "max_context");
  qopt_engine_destroy(e);
  qopt_model_close(m);

  o.max_context = 1;
  CHECK(qopt_model_open(art, &o, &err) == NULL, "max_context 1");
  CHECK_ERROR(err, "max_context");
  qopt_model_options_init(&o);
  o.kv_dtype = "int8";
  CHECK(qopt_model_open(art, &o, &err) == NULL, "int8 KV without scales");
  CHECK_ERROR(err, "scales");
  o.kv_dtype = "f16";
  m = qopt_model_open(art, &o, &err);
  CHECK(m && strcmp(qopt_model_kv_dtype(m), "f16") == 0, "f16 KV override");
  qopt_model_close(m);
}

static void test_perplexity(qopt_model *m, const char *path, double want) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL, "cannot read %s", path);
  if (!f)
    return;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)n);
  size_t got = fread(text, 1, (size_t)n, f);
  fclose(f);
  qopt_perplexity_result r;
  char *err = NULL;
  CHECK(qopt_perplexity(m, text, got, 256, 40, &r, &err) == 0, "%s", err);
  /* Same tolerance as qrun's test against the reference (bf16 KV). */
  CHECK(fabs(r.perplexity / want - 1) < 0.005, "perplexity %.4f vs reference %.4f", r.perplexity,
        want);
  CHECK(r.windows == 40 && r.predictions == 40 * 255, "%lld windows", (long long)r.windows);
  CHECK(fabs(exp(r.mean_nll) - r.perplexity) < 1e-9 * r.perplexity, "ppl = exp(nll)");
  printf("capi_test: perplexity %.4f (reference %.4f)\n", r.perplexity, want);
  CHECK(qopt_perplexity(m, text, 100, 256, 40, &r, &err) == -1, "100 bytes, a 256 window");
  CHECK_ERROR(err, "fewer than one window");
  free(text);
}

int main(int argc, char **argv) {
  test_without_model();
  if (argc == 5) {
    cases c;
    if (!read_cases(argv[2], &c)) {
      fprintf(stderr, "capi_test: cannot read the cases in %s\n", argv[2]);
      return 1;
    }
    char *err = NULL;
    qopt_model *m = qopt_model_open(argv[1], NULL, &err);
    if (!m) {
      fprintf(stderr, "capi_test: %s\n", err);
      qopt_free(err);
      return 1;
    }
    test_info_and_tokenizer(m, &c);
    test_greedy_one_at_a_time(m, &c);
    test_greedy_batched(m, &c);
    test_generate(m, &c);
    test_request_errors(m, &c);
    test_model_options(argv[1], &c);
    test_perplexity(m, argv[3], atof(argv[4]));
    qopt_model_close(m);
    printf("capi_test: %zu reference prompts checked alone and batched\n", c.n);
  } else if (argc != 1) {
    fprintf(stderr, "usage: capi_test [ARTIFACT CASES PPL_TEXT PPL]\n");
    return 2;
  }
  if (failures)
    fprintf(stderr, "capi_test: %d failures\n", failures);
  else
    printf("capi_test: ok\n");
  return failures ? 1 : 0;
}
