//===- Engine.h - the serving loop: schedule, execute, sample, stop -*- C++ -*-===//
//
// Ties the scheduler, a model executor, the sampler and the stop rules into
// a step function: each step() runs one forward pass for everything that
// is scheduled and returns the new tokens (and text) of every request that
// advanced. Requests can be added and aborted between steps. A request that
// cannot be served (bad parameters, ids outside the vocabulary, a prompt
// that doesn't fit the context, more KV than the pool holds) ends with
// FinishReason::Error and a one-line message; the others are unaffected.
// Single-threaded by design: a server calls step() in a loop and feeds
// results to clients from there.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_ENGINE_H
#define QOPT_RT_SERVING_ENGINE_H

#include "qopt-rt/serving/Executor.h"
#include "qopt-rt/serving/Request.h"
#include "qopt-rt/serving/Sampler.h"
#include "qopt-rt/serving/Scheduler.h"
#include "qopt-rt/tokenizer.h"

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qrt::serving {

/// Engine settings.
struct EngineConfig {
  SchedulerConfig scheduler;
  /// Ids that end generation unless ignore_eos. Empty: the tokenizer's EOS
  /// id when there is one.
  std::vector<int32_t> eosTokenIds;
  /// Seeds requests that do not give their own seed.
  uint64_t seed = 0;
};

/// The serving loop.
class Engine {
public:
  /// `executor` and `tokenizer` (optional: without it there is no text and
  /// no stop strings) must outlive the engine. Returns nullptr and sets
  /// *error when the configuration is unusable.
  static std::unique_ptr<Engine> create(const EngineConfig &config,
                                        ModelExecutor &executor,
                                        const Tokenizer *tokenizer,
                                        std::string *error);
  ~Engine();

  /// Queues a request and returns its id. If it cannot be served, the next
  /// step() reports it finished with FinishReason::Error.
  RequestId addRequest(std::vector<int32_t> promptIds,
                       const SamplingParams &params);
  /// Same, encoding `prompt` with the tokenizer (adding its special tokens,
  /// e.g. BOS). Without a tokenizer the request fails.
  RequestId addRequest(std::string_view prompt, const SamplingParams &params);
  /// Ends a request now; the next step() reports FinishReason::Abort.
  /// Unknown or finished ids are ignored.
  void abort(RequestId id);
  /// Runs one step. Returns one output per request that produced a token or
  /// finished (including requests that failed or were aborted since the
  /// previous step).
  std::vector<RequestOutput> step();
  /// True while some request is queued, running or has a pending output.
  bool hasUnfinished() const;

  const Scheduler &scheduler() const { return *sched_; }
  const std::vector<int32_t> &eosTokenIds() const { return eos_; }

private:
  struct RequestState;
  Engine() = default;
  void fail(RequestId id, FinishReason reason, std::string message);

  ModelExecutor *exec_ = nullptr;
  const Tokenizer *tok_ = nullptr;
  std::unique_ptr<Scheduler> sched_;
  std::vector<int32_t> eos_;
  uint64_t seed_ = 0;
  RequestId nextId_ = 0;
  std::unordered_map<RequestId, std::unique_ptr<RequestState>> reqs_;
  std::vector<RequestOutput> pending_;
  std::vector<float> logits_;
  SamplerScratch scratch_;
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_ENGINE_H
