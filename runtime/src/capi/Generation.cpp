//===- Generation.cpp - C API: engines, requests, streaming, qopt_generate -===//
//
// A qopt_engine wraps a serving::Engine with its own KV pool and turns each
// RequestOutput into per-token callback events. Requests that can be judged
// at once (empty, too long for the context, bad sampling values) are refused
// by submit itself, so a C caller gets the error where it made the mistake;
// what only the scheduler can tell (more KV than the pool holds) arrives as
// a QOPT_FINISH_ERROR event, and never stops the other requests.
//
//===----------------------------------------------------------------------===//
#include "CApi.h"

#include "qopt-rt/serving/Engine.h"

#include <algorithm>
#include <climits>
#include <unordered_map>

using namespace qrt;
using namespace qrt::capi;

/// Where a request's events go.
struct RequestSink {
  qopt_token_callback cb = nullptr;
  void *user = nullptr;
  bool cancelled = false;
};

struct qopt_engine {
  qopt_model *model = nullptr;
  ModelRunner runner;
  std::unique_ptr<serving::Engine> engine;
  std::unordered_map<serving::RequestId, RequestSink> live;
  /// Set when an exception escaped a step: the engine's state is unknown.
  std::string broken;
};

namespace {

std::unique_ptr<qopt_engine> createEngine(qopt_model *m, int32_t maxSeqs, std::string *error) {
  auto e = std::make_unique<qopt_engine>();
  e->model = m;
  if (!makeRunner(*m, maxSeqs, m->maxContext, /*exactSize=*/false, &e->runner, error))
    return nullptr;
  serving::EngineConfig c;
  c.scheduler.blockSize = e->runner.kv->spec().blockSize;
  c.scheduler.numBlocks = e->runner.kv->numBlocks();
  c.scheduler.maxNumSeqs = maxSeqs;
  c.scheduler.maxNumBatchedTokens = std::max<int32_t>(512, maxSeqs);
  c.scheduler.maxModelLen = m->maxContext;
  c.scheduler.enablePrefixCaching = m->prefixCaching;
  if (m->eosId >= 0)
    c.eosTokenIds.push_back(m->eosId);
  e->engine = serving::Engine::create(c, *e->runner.executor, m->tokenizer.get(), error);
  if (!e->engine)
    return nullptr;
  return e;
}

/// The C sampling settings as the engine's; "" or a one-line reason.
std::string toParams(const qopt_model &m, const qopt_sampling *s, serving::SamplingParams *p) {
  qopt_sampling d;
  qopt_sampling_init(&d);
  if (!s)
    s = &d;
  p->temperature = s->temperature;
  p->topK = s->top_k;
  p->topP = s->top_p;
  if (s->has_seed)
    p->seed = s->seed;
  p->maxTokens = s->max_tokens;
  p->ignoreEos = s->ignore_eos != 0;
  if (s->num_stop && !s->stop)
    return "num_stop is " + std::to_string(s->num_stop) + " but stop is NULL";
  for (size_t i = 0; i < s->num_stop; ++i) {
    if (!s->stop[i])
      return "stop string " + std::to_string(i) + " is NULL";
    p->stop.emplace_back(s->stop[i]);
  }
  if (!p->stop.empty() && !m.tokenizer)
    return "stop strings need a tokenizer, and the artifact has none";
  return serving::validateSamplingParams(*p);
}

/// Checks a prompt the way the scheduler would, but now.
std::string checkPrompt(const qopt_model &m, const std::vector<int32_t> &ids) {
  if (ids.empty())
    return "the prompt is empty";
  const int32_t vocab = m.weights.weights.dims.vocab;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return "prompt token " + std::to_string(i) + " has id " + std::to_string(ids[i]) +
             ", outside the vocabulary [0, " + std::to_string(vocab) + ")";
  if (int64_t(ids.size()) >= m.maxContext)
    return "the prompt has " + std::to_string(ids.size()) + " tokens but the context is " +
           std::to_string(m.maxContext) + " tokens (max_context), leaving no room to generate";
  return "";
}

qopt_request_id submit(qopt_engine *e, std::vector<int32_t> ids, const qopt_sampling *s,
                       qopt_token_callback cb, void *user, std::string *why) {
  serving::SamplingParams p;
  *why = toParams(*e->model, s, &p);
  if (why->empty())
    *why = checkPrompt(*e->model, ids);
  if (!why->empty())
    return -1;
  serving::RequestId id = e->engine->addRequest(std::move(ids), p);
  e->live[id] = RequestSink{cb, user, false};
  return id;
}

qopt_request_id submitText(qopt_engine *e, const char *prompt, size_t len,
                           const qopt_sampling *s, qopt_token_callback cb, void *user,
                           std::string *why) {
  if (!e->model->tokenizer) {
    *why = e->model->artifact->dir() +
           " has no tokenizer.json: give prompt ids (qopt_engine_submit_ids)";
    return -1;
  }
  // Same encoding as serving::Engine's text prompts: with special tokens.
  std::vector<int32_t> ids =
      e->model->tokenizer->encode(std::string_view(prompt ? prompt : "", len), /*addSpecial=*/true);
  return submit(e, std::move(ids), s, cb, user, why);
}

qopt_finish_reason toC(serving::FinishReason r) {
  switch (r) {
  case serving::FinishReason::None: return QOPT_FINISH_NONE;
  case serving::FinishReason::Stop: return QOPT_FINISH_STOP;
  case serving::FinishReason::Length: return QOPT_FINISH_LENGTH;
  case serving::FinishReason::Abort: return QOPT_FINISH_CANCEL;
  case serving::FinishReason::Error: return QOPT_FINISH_ERROR;
  }
  return QOPT_FINISH_ERROR;
}

/// Delivers one RequestOutput as events: one per new token (the output's
/// text rides on the last), or a single token-less event when it carries
/// none (a refusal, a cancel).
void deliver(qopt_engine *e, const serving::RequestOutput &out) {
  auto it = e->live.find(out.id);
  if (it == e->live.end())
    return;
  RequestSink sink = it->second;
  if (out.finished)
    e->live.erase(it);
  if (!sink.cb)
    return;
  qopt_token_event ev{};
  ev.request = out.id;
  ev.prompt_tokens = out.numPromptTokens;
  ev.cached_tokens = out.numCachedTokens;
  size_t n = out.newTokenIds.size();
  if (n == 0 && !out.finished && out.newText.empty())
    return;
  size_t events = std::max<size_t>(n, 1);
  bool cancel = false;
  for (size_t k = 0; k < events; ++k) {
    bool last = k + 1 == events;
    ev.token_id = n ? out.newTokenIds[k] : -1;
    ev.text = last ? out.newText.c_str() : "";
    ev.text_len = last ? out.newText.size() : 0;
    ev.finished = last && out.finished;
    ev.finish_reason = ev.finished ? toC(out.finishReason) : QOPT_FINISH_NONE;
    ev.error = ev.finished && out.finishReason == serving::FinishReason::Error
                   ? out.error.c_str()
                   : nullptr;
    cancel = sink.cb(&ev, sink.user) != 0 || cancel;
  }
  // The callback may have cancelled (or the request may have finished)
  // meanwhile: only a live, not yet cancelled request is aborted here.
  if (cancel && !out.finished) {
    auto again = e->live.find(out.id);
    if (again != e->live.end() && !again->second.cancelled) {
      again->second.cancelled = true;
      e->engine->abort(out.id);
    }
  }
}

int stepOnce(qopt_engine *e, std::string *why) {
  if (!e->broken.empty()) {
    *why = e->broken;
    return -1;
  }
  try {
    std::vector<serving::RequestOutput> outs = e->engine->step();
    for (const serving::RequestOutput &out : outs)
      deliver(e, out);
  } catch (...) {
    e->broken = "the engine is unusable after an earlier internal error";
    throw;
  }
  return int(std::min<size_t>(e->live.size(), INT32_MAX));
}

} // namespace

extern "C" {

void qopt_sampling_init(qopt_sampling *s) {
  if (!s)
    return;
  *s = qopt_sampling{};
  s->temperature = 0.0f;
  s->top_p = 1.0f;
  s->max_tokens = 64;
}

const char *qopt_finish_reason_name(qopt_finish_reason r) {
  switch (r) {
  case QOPT_FINISH_NONE: return "none";
  case QOPT_FINISH_STOP: return "stop";
  case QOPT_FINISH_LENGTH: return "length";
  case QOPT_FINISH_CANCEL: return "cancel";
  case QOPT_FINISH_ERROR: return "error";
  }
  return "unknown";
}

qopt_engine *qopt_engine_create(qopt_model *model, char **error) {
  return guarded("qopt_engine_create", error, (qopt_engine *)nullptr,
                 [&](std::string *why) -> qopt_engine * {
    if (!model) {
      *why = "model is NULL";
      return nullptr;
    }
    return createEngine(model, model->maxBatch, why).release();
  });
}

void qopt_engine_destroy(qopt_engine *engine) { delete engine; }

qopt_request_id qopt_engine_submit(qopt_engine *engine, const char *prompt, size_t len,
                                   const qopt_sampling *s, qopt_token_callback cb, void *user,
                                   char **error) {
  return guarded("qopt_engine_submit", error, qopt_request_id(-1),
                 [&](std::string *why) -> qopt_request_id {
    if (!engine || (!prompt && len)) {
      *why = !engine ? "engine is NULL" : "prompt is NULL";
      return -1;
    }
    return submitText(engine, prompt, len, s, cb, user, why);
  });
}

qopt_request_id qopt_engine_submit_ids(qopt_engine *engine, const int32_t *ids, size_t n,
                                       const qopt_sampling *s, qopt_token_callback cb,
                                       void *user, char **error) {
  return guarded("qopt_engine_submit_ids", error, qopt_request_id(-1),
                 [&](std::string *why) -> qopt_request_id {
    if (!engine || (!ids && n)) {
      *why = !engine ? "engine is NULL" : "ids is NULL";
      return -1;
    }
    return submit(engine, std::vector<int32_t>(ids, ids + n), s, cb, user, why);
  });
}

int qopt_engine_step(qopt_engine *engine, char **error) {
  return guarded("qopt_engine_step", error, -1, [&](std::string *why) {
    if (!engine) {
      *why = "engine is NULL";
      return -1;
    }
    return stepOnce(engine, why);
  });
}

int qopt_engine_run_until_done(qopt_engine *engine, char **error) {
  return guarded("qopt_engine_run_until_done", error, -1, [&](std::string *why) {
    if (!engine) {
      *why = "engine is NULL";
      return -1;
    }
    while (!engine->live.empty())
      if (stepOnce(engine, why) < 0)
        return -1;
    return 0;
  });
}

int qopt_engine_cancel(qopt_engine *engine, qopt_request_id request) {
  if (!engine)
    return -1;
  auto it = engine->live.find(request);
  if (it == engine->live.end())
    return -1;
  if (!it->second.cancelled) {
    it->second.cancelled = true;
    engine->engine->abort(request);
  }
  return 0;
}

namespace {
/// qopt_generate's state: the caller's callback, the text, the error.
struct GenerateSink {
  qopt_token_callback cb;
  void *user;
  std::string text, error;
};

int generateCallback(const qopt_token_event *ev, void *user) {
  auto *g = static_cast<GenerateSink *>(user);
  g->text.append(ev->text, ev->text_len);
  if (ev->finish_reason == QOPT_FINISH_ERROR && ev->error)
    g->error = ev->error;
  return g->cb ? g->cb(ev, g->user) : 0;
}
} // namespace

int qopt_generate(qopt_model *model, const char *prompt, size_t len, const qopt_sampling *s,
                  qopt_token_callback cb, void *user, char **text, char **error) {
  return guarded("qopt_generate", error, -1, [&](std::string *why) {
    if (!model) {
      *why = "model is NULL";
      return -1;
    }
    std::unique_ptr<qopt_engine> e = createEngine(model, 1, why);
    if (!e)
      return -1;
    if (!prompt && len) {
      *why = "prompt is NULL";
      return -1;
    }
    GenerateSink g{cb, user, {}, {}};
    if (submitText(e.get(), prompt, len, s, generateCallback, &g, why) < 0)
      return -1;
    while (!e->live.empty())
      if (stepOnce(e.get(), why) < 0)
        return -1;
    if (!g.error.empty()) {
      *why = g.error;
      return -1;
    }
    if (text) {
      *text = copyString(g.text);
      if (!*text)
        throw std::bad_alloc();
    }
    return 0;
  });
}

} // extern "C"
