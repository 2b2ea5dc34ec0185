//===- Scheduler.h - continuous batching over a paged KV cache -*- C++ -*-===//
//
// Decides, step by step, which positions of which sequences the model
// computes, and owns the block tables. Model-independent: it sees token ids
// and block counts, never tensors. Policy (docs/runtime.md has the why):
//  - continuous batching: sequences join and leave at every step;
//  - a per-step token budget: decodes first, in arrival order, then running
//    prefills, then waiting requests (FIFO), each prefill taking a chunk of
//    what is left of the budget (chunked prefill);
//  - blocks allocated on demand as sequences grow; when none is left the
//    most recently arrived running sequence is preempted by recompute: its
//    blocks are released and it waits at the front of the queue with its
//    generated tokens kept, to be prefilled again (mostly from the prefix
//    cache) when there is room;
//  - prefix caching: full computed blocks are registered by hash; a new or
//    resumed sequence starts with every leading block it finds there.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_SCHEDULER_H
#define QOPT_RT_SERVING_SCHEDULER_H

#include "qopt-rt/serving/BlockPool.h"
#include "qopt-rt/serving/StepBatch.h"

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace qrt::serving {

/// Scheduler limits. Names follow vLLM's engine arguments.
struct SchedulerConfig {
  int32_t blockSize = 16;
  /// Blocks in the KV pool (KVCache::numBlocks()).
  int32_t numBlocks = 0;
  /// Tokens computed per step at most (max_num_batched_tokens).
  int32_t maxNumBatchedTokens = 2048;
  /// Sequences running at once at most (max_num_seqs).
  int32_t maxNumSeqs = 256;
  /// Context length: prompt plus generated tokens at most (max_model_len).
  int32_t maxModelLen = 2048;
  /// Split prefills over steps; without it a prompt is computed in one step
  /// and maxNumBatchedTokens must cover maxModelLen.
  bool enableChunkedPrefill = true;
  /// Caps one sequence's prefill chunk per step (0: the budget is the only
  /// cap), so one long prompt leaves room for new arrivals' first tokens
  /// (long_prefill_token_threshold). Needs chunked prefill.
  int32_t longPrefillTokenThreshold = 0;
  bool enablePrefixCaching = true;
  /// Salt of the prefix-cache hashes (e.g. a hash of the model artifact).
  uint64_t cacheSalt = 0;
};

/// Counters since the scheduler was created.
struct SchedulerStats {
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t cachedPromptTokens = 0; ///< prompt tokens served by prefix hits
  int64_t computedTokens = 0;     ///< tokens scheduled for computation
  int64_t chunkedPrefills = 0;    ///< prefill chunks that left a remainder
};

/// The scheduler. Use:
///   add(...) any time;  then per step:
///   const StepBatch &b = schedule();   // run the model on b
///   completeStep();                    // its KV is now computed
///   appendToken(id, t) for sampled sequences; finish(id) for ended ones.
class Scheduler {
public:
  /// Returns nullptr and sets *error when the configuration is unusable.
  static std::unique_ptr<Scheduler> create(const SchedulerConfig &config,
                                           std::string *error);
  ~Scheduler();
  Scheduler(const Scheduler &) = delete;
  Scheduler &operator=(const Scheduler &) = delete;

  /// Queues a sequence with `tokens` (its prompt; non-empty) that will end
  /// after `maxTotalTokens` tokens (prompt + generated, <= max_model_len).
  /// Requests that can never run are refused here with a one-line reason:
  /// a prompt with no room left in max_model_len, or a sequence that needs
  /// more KV blocks than the whole pool holds. Duplicate ids are refused.
  bool add(RequestId id, std::vector<int32_t> tokens, int32_t maxTotalTokens,
           std::string *error);
  /// Builds the next step; empty when nothing can run. Valid until the next
  /// schedule() call. Calling it again without completeStep() drops the
  /// previous step (its positions stay uncomputed).
  const StepBatch &schedule();
  /// Marks the positions of the last schedule() as computed and registers
  /// the blocks they filled in the prefix cache.
  void completeStep();
  /// Appends a sampled token to a running sequence.
  void appendToken(RequestId id, int32_t token);
  /// Removes a sequence (finished, aborted or failed) and frees its blocks.
  /// Unknown ids are ignored.
  void finish(RequestId id);

  bool hasUnfinished() const { return !seqs_.empty(); }
  int32_t numRunning() const { return int32_t(running_.size()); }
  int32_t numWaiting() const { return int32_t(waiting_.size()); }
  /// Prompt tokens that came from the prefix cache when the sequence was
  /// first scheduled (0 before that or for unknown ids).
  int32_t numCachedPromptTokens(RequestId id) const;
  /// All tokens of a live sequence (prompt + generated), or nullptr.
  const std::vector<int32_t> *tokens(RequestId id) const;
  const SchedulerConfig &config() const { return cfg_; }
  const SchedulerStats &stats() const { return stats_; }
  const BlockPool &blockPool() const { return pool_; }
  /// Checks block tables against the pool's reference counts, the queues
  /// and the pool itself; "" or the first violation (for tests).
  std::string verify() const;

private:
  struct Seq;
  explicit Scheduler(const SchedulerConfig &config);
  void updateHashes(Seq &s);
  bool growTo(Seq &s, int32_t numTokens, int32_t &budget);
  void preempt(Seq &victim, int32_t &budget);
  void releaseBlocks(Seq &s);
  bool admit(Seq &s, int32_t &budget);
  int32_t chunkLimit(int32_t budget) const;
  void scheduleChunk(Seq &s, int32_t n, int32_t &budget);
  void buildBatch();

  SchedulerConfig cfg_;
  BlockPool pool_;
  uint64_t rootHash_;
  uint64_t nextArrival_ = 0;
  std::unordered_map<RequestId, std::unique_ptr<Seq>> seqs_;
  std::vector<Seq *> running_; ///< by arrival
  std::deque<Seq *> waiting_;  ///< by arrival (preempted ones come first)
  std::vector<std::pair<Seq *, int32_t>> scheduled_; ///< this step
  StepBatch batch_;
  SchedulerStats stats_;
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_SCHEDULER_H
