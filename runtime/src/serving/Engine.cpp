//===- Engine.cpp - the serving loop: schedule, execute, sample, stop -----===//
//
// Every failure is scoped to the requests it concerns: a refused request is
// reported through the same output stream as a finished one, and a failed
// forward pass fails only the requests in that batch (their KV may be half
// written, so they cannot simply be retried in place).
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/serving/Engine.h"

#include "qopt-rt/serving/StopChecker.h"

#include <algorithm>
#include <climits>

namespace qrt::serving {

struct Engine::RequestState {
  SamplingParams params; // StopChecker refers to it: keep the address fixed
  uint64_t seed = 0;
  int32_t numPrompt = 0;
  int32_t numGenerated = 0;
  int32_t maxTotal = 0;
  std::unique_ptr<StopChecker> stop;
};

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::create(const EngineConfig &config,
                                       ModelExecutor &executor,
                                       const Tokenizer *tokenizer,
                                       std::string *error) {
  if (executor.vocabSize() < 1) {
    if (error)
      *error = "engine: the model's vocabulary is empty";
    return nullptr;
  }
  std::unique_ptr<Engine> e(new Engine());
  e->sched_ = Scheduler::create(config.scheduler, error);
  if (!e->sched_)
    return nullptr;
  e->exec_ = &executor;
  e->tok_ = tokenizer;
  e->seed_ = config.seed;
  e->eos_ = config.eosTokenIds;
  if (e->eos_.empty() && tokenizer)
    if (auto eos = tokenizer->eosId())
      e->eos_.push_back(*eos);
  return e;
}

void Engine::fail(RequestId id, FinishReason reason, std::string message) {
  RequestOutput out;
  out.id = id;
  out.finished = true;
  out.finishReason = reason;
  if (reason == FinishReason::Error)
    out.error = "request " + std::to_string(id) + ": " + message;
  auto it = reqs_.find(id);
  if (it != reqs_.end()) {
    out.numPromptTokens = it->second->numPrompt;
    out.numCachedTokens = sched_->numCachedPromptTokens(id);
    out.newText = it->second->stop->takeNewText();
    reqs_.erase(it);
  }
  sched_->finish(id);
  pending_.push_back(std::move(out));
}

RequestId Engine::addRequest(std::vector<int32_t> promptIds,
                             const SamplingParams &params) {
  RequestId id = nextId_++;
  std::string why = validateSamplingParams(params);
  if (why.empty() && !params.stop.empty() && !tok_)
    why = "stop strings need a tokenizer, and this engine has none";
  const int32_t vocab = exec_->vocabSize();
  for (size_t i = 0; why.empty() && i < promptIds.size(); ++i)
    if (promptIds[i] < 0 || promptIds[i] >= vocab)
      why = "prompt token " + std::to_string(i) + " has id " +
            std::to_string(promptIds[i]) + ", outside the vocabulary [0, " +
            std::to_string(vocab) + ")";
  auto st = std::make_unique<RequestState>();
  st->params = params;
  st->numPrompt = int32_t(promptIds.size());
  if (why.empty()) {
    int64_t total = int64_t(promptIds.size()) + params.maxTokens;
    st->maxTotal = int32_t(std::min<int64_t>(total, INT32_MAX));
    if (!sched_->add(id, std::move(promptIds), st->maxTotal, &why) &&
        why.empty())
      why = "refused by the scheduler";
    st->maxTotal = std::min(st->maxTotal, sched_->config().maxModelLen);
  }
  if (!why.empty()) {
    RequestOutput out;
    out.id = id;
    out.finished = true;
    out.finishReason = FinishReason::Error;
    out.error = "request " + std::to_string(id) + ": " + why;
    out.numPromptTokens = st->numPrompt;
    pending_.push_back(std::move(out));
    return id;
  }
  st->seed = params.seed ? *params.seed
                         : splitmix64(seed_ ^ splitmix64(uint64_t(id)));
  st->stop = std::make_unique<StopChecker>(tok_, st->params, eos_);
  reqs_.emplace(id, std::move(st));
  return id;
}

RequestId Engine::addRequest(std::string_view prompt,
                             const SamplingParams &params) {
  if (!tok_) {
    RequestId id = nextId_++;
    RequestOutput out;
    out.id = id;
    out.finished = true;
    out.finishReason = FinishReason::Error;
    out.error = "request " + std::to_string(id) +
                ": a text prompt needs a tokenizer, and this engine has none";
    pending_.push_back(std::move(out));
    return id;
  }
  return addRequest(tok_->encode(prompt, /*addSpecial=*/true), params);
}

void Engine::abort(RequestId id) {
  if (reqs_.count(id))
    fail(id, FinishReason::Abort, "");
}

bool Engine::hasUnfinished() const {
  return !pending_.empty() || sched_->hasUnfinished();
}

std::vector<RequestOutput> Engine::step() {
  std::vector<RequestOutput> outs;
  const StepBatch &batch = sched_->schedule();
  if (!batch.empty()) {
    const int32_t vocab = exec_->vocabSize();
    const size_t rows = batch.sampleIndices.size();
    // An executor that samples where the logits are returns token ids only;
    // otherwise the logits come here and the host samples.
    const bool onDevice = exec_->canSampleOnDevice();
    std::vector<int32_t> drawn;
    std::string err;
    bool ok;
    if (onDevice) {
      std::vector<SampleSpec> specs(rows);
      for (size_t r = 0; r < rows; ++r) {
        const RequestState &st = *reqs_.at(batch.seqIds[size_t(batch.sampleIndices[r])]);
        specs[r].params = st.params;
        specs[r].seed = st.seed;
        specs[r].index = uint64_t(st.numGenerated);
      }
      drawn.resize(rows);
      ok = exec_->executeAndSample(batch, specs, drawn.data(), &err);
    } else {
      // No zero fill: the executor writes every row (this can be 100+ MB).
      logits_.resize(rows * size_t(vocab));
      ok = exec_->execute(batch, logits_.data(), &err);
    }
    if (!ok) {
      if (err.empty())
        err = "unknown error";
      std::vector<RequestId> ids = batch.seqIds; // fail() changes the batch
      for (RequestId id : ids)
        fail(id, FinishReason::Error, "model execution failed: " + err);
    } else {
      sched_->completeStep();
      for (size_t r = 0; r < rows; ++r) {
        RequestId id = batch.seqIds[size_t(batch.sampleIndices[r])];
        RequestState &st = *reqs_.at(id);
        int32_t tok = onDevice ? drawn[r]
                               : sampleToken(logits_.data() + r * size_t(vocab), vocab,
                                             st.params, st.seed, uint64_t(st.numGenerated),
                                             &scratch_);
        if (tok < 0) {
          fail(id, FinishReason::Error,
               "the model's logits have no finite value at generated token " +
                   std::to_string(st.numGenerated));
          continue;
        }
        ++st.numGenerated;
        sched_->appendToken(id, tok);
        FinishReason reason =
            st.stop->push(tok, st.numGenerated,
                          st.numPrompt + st.numGenerated, st.maxTotal);
        RequestOutput out;
        out.id = id;
        out.newTokenIds.push_back(tok);
        out.newText = st.stop->takeNewText();
        out.numPromptTokens = st.numPrompt;
        out.numCachedTokens = sched_->numCachedPromptTokens(id);
        if (reason != FinishReason::None) {
          out.finished = true;
          out.finishReason = reason;
          out.stopReason = st.stop->stopReason();
          sched_->finish(id);
          reqs_.erase(id);
        }
        outs.push_back(std::move(out));
      }
    }
  }
  // Refusals, aborts and failures first, in the order they happened.
  outs.insert(outs.begin(), std::make_move_iterator(pending_.begin()),
              std::make_move_iterator(pending_.end()));
  pending_.clear();
  return outs;
}

} // namespace qrt::serving
