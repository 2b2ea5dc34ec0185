/* capi_example.c - the C API's minimal example (docs/runtime.md, "C API").
 * Streams a greedy continuation of a prompt:  capi_example ART.qopt "Once upon a time" */
#include "qopt-rt/qopt.h"

#include <stdio.h>
#include <string.h>

static int print_piece(const qopt_token_event *ev, void *user) {
  (void)user;
  fwrite(ev->text, 1, ev->text_len, stdout);
  if (ev->finished)
    printf("\n[%s]\n", qopt_finish_reason_name(ev->finish_reason));
  return 0; /* non-zero would cancel the request */
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ART.qopt PROMPT\n", argv[0]);
    return 2;
  }
  char *err = NULL;
  qopt_model *model = qopt_model_open(argv[1], NULL, &err);
  if (!model) {
    fprintf(stderr, "error: %s\n", err);
    qopt_free(err);
    return 1;
  }
  qopt_engine *engine = qopt_engine_create(model, &err);
  qopt_sampling s;
  qopt_sampling_init(&s); /* greedy, 64 tokens, stop at EOS */
  s.max_tokens = 32;
  if (!engine ||
      qopt_engine_submit(engine, argv[2], strlen(argv[2]), &s, print_piece, NULL, &err) < 0 ||
      qopt_engine_run_until_done(engine, &err) < 0) {
    fprintf(stderr, "error: %s\n", err);
    qopt_free(err);
    qopt_engine_destroy(engine);
    qopt_model_close(model);
    return 1;
  }
  qopt_engine_destroy(engine);
  qopt_model_close(model);
  return 0;
}
