//===- Scheduler.cpp - continuous batching over a paged KV cache ----------===//
//
// Invariants kept between calls (checked by verify()):
//  - a running sequence holds exactly ceil((computed + scheduled) / B)
//    blocks; a waiting one holds none and has nothing computed;
//  - a block's reference count is the number of block tables holding it;
//  - running and waiting are each ordered by arrival, so "the most recently
//    arrived running sequence" (the preemption victim) is running_.back().
// Progress: the oldest running sequence is never a victim while another one
// runs, gets its decode token first, and fits the pool alone (add() refuses
// sequences that don't), so it always advances; hence no livelock however
// small the pool or the budget.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/serving/Scheduler.h"

#include <algorithm>

namespace qrt::serving {

struct Scheduler::Seq {
  RequestId id = -1;
  uint64_t arrival = 0;
  std::vector<int32_t> tokens; ///< prompt, then generated tokens
  int32_t numPrompt = 0;
  int32_t maxTotal = 0;
  int32_t numComputed = 0;     ///< leading tokens whose KV is in the pool
  int32_t scheduledTokens = 0; ///< in the current step
  std::vector<BlockId> blocks;
  std::vector<uint64_t> hashes; ///< chained hashes of the full blocks
  int32_t numRegistered = 0;    ///< leading blocks already in the cache
  bool running = false;
  bool everScheduled = false;
  int32_t numCachedPrompt = 0;

  int32_t len() const { return int32_t(tokens.size()); }
};

void StepBatch::clear() {
  tokenIds.clear();
  positions.clear();
  slotMapping.clear();
  seqIds.clear();
  queryStart.clear();
  contextLens.clear();
  blockTableStart.clear();
  blockTable.clear();
  sampleIndices.clear();
  preempted.clear();
}

namespace {
int32_t ceilDiv(int32_t a, int32_t b) { return (a + b - 1) / b; }
} // namespace

std::unique_ptr<Scheduler> Scheduler::create(const SchedulerConfig &c,
                                             std::string *error) {
  auto fail = [&](std::string msg) {
    if (error)
      *error = "scheduler: " + msg;
    return nullptr;
  };
  if (c.blockSize < 1 || c.blockSize > 4096)
    return fail("block_size must be in [1, 4096], got " +
                std::to_string(c.blockSize));
  if (c.numBlocks < 1)
    return fail("the KV pool has no block (num_blocks = " +
                std::to_string(c.numBlocks) + ")");
  if (c.maxNumSeqs < 1)
    return fail("max_num_seqs must be >= 1");
  if (c.maxModelLen < 2 || c.maxModelLen > (1 << 24))
    return fail("max_model_len must be in [2, 2^24], got " +
                std::to_string(c.maxModelLen));
  if (c.maxNumBatchedTokens < c.maxNumSeqs)
    return fail("max_num_batched_tokens (" +
                std::to_string(c.maxNumBatchedTokens) +
                ") must be >= max_num_seqs (" + std::to_string(c.maxNumSeqs) +
                ") so that every running sequence can decode in one step");
  if (c.longPrefillTokenThreshold < 0 ||
      (c.longPrefillTokenThreshold > 0 && !c.enableChunkedPrefill))
    return fail("long_prefill_token_threshold must be >= 0 and needs "
                "chunked prefill");
  if (!c.enableChunkedPrefill && c.maxNumBatchedTokens < c.maxModelLen)
    return fail("without chunked prefill, max_num_batched_tokens (" +
                std::to_string(c.maxNumBatchedTokens) +
                ") must be >= max_model_len (" +
                std::to_string(c.maxModelLen) + ")");
  return std::unique_ptr<Scheduler>(new Scheduler(c));
}

Scheduler::Scheduler(const SchedulerConfig &c)
    : cfg_(c), pool_(c.numBlocks, c.blockSize),
      rootHash_(prefixRootHash(c.cacheSalt)) {
  batch_.blockSize = c.blockSize;
}

Scheduler::~Scheduler() = default;

bool Scheduler::add(RequestId id, std::vector<int32_t> tokens,
                    int32_t maxTotalTokens, std::string *error) {
  auto fail = [&](std::string msg) {
    if (error)
      *error = std::move(msg);
    return false;
  };
  int64_t n = int64_t(tokens.size());
  if (seqs_.count(id))
    return fail("request id " + std::to_string(id) + " is already in use");
  if (n == 0)
    return fail("the prompt is empty");
  if (n >= cfg_.maxModelLen)
    return fail("the prompt has " + std::to_string(n) +
                " tokens but the context (max_model_len) is " +
                std::to_string(cfg_.maxModelLen) +
                " tokens, leaving no room to generate; shorten the prompt");
  int32_t maxTotal = std::min(maxTotalTokens, cfg_.maxModelLen);
  if (maxTotal <= n)
    return fail("nothing to generate (max total tokens " +
                std::to_string(maxTotalTokens) + " <= prompt length " +
                std::to_string(n) + ")");
  // The last generated token is never fed back, so its KV is never stored.
  int32_t needBlocks = ceilDiv(maxTotal - 1, cfg_.blockSize);
  if (needBlocks > cfg_.numBlocks)
    return fail("the request needs " + std::to_string(needBlocks) +
                " KV blocks (" + std::to_string(n) + " prompt + " +
                std::to_string(maxTotal - n) + " new tokens, " +
                std::to_string(cfg_.blockSize) +
                " per block) but the whole pool holds " +
                std::to_string(cfg_.numBlocks) +
                "; lower max_tokens or give the KV cache more memory");
  auto s = std::make_unique<Seq>();
  s->id = id;
  s->arrival = nextArrival_++;
  s->tokens = std::move(tokens);
  s->numPrompt = int32_t(n);
  s->maxTotal = maxTotal;
  updateHashes(*s);
  waiting_.push_back(s.get());
  seqs_.emplace(id, std::move(s));
  return true;
}

void Scheduler::updateHashes(Seq &s) {
  if (!cfg_.enablePrefixCaching)
    return;
  const int32_t bs = cfg_.blockSize;
  while (int32_t(s.hashes.size() + 1) * bs <= s.len()) {
    size_t i = s.hashes.size();
    uint64_t parent = i ? s.hashes[i - 1] : rootHash_;
    s.hashes.push_back(hashBlockTokens(parent, &s.tokens[i * size_t(bs)], bs));
  }
}

void Scheduler::releaseBlocks(Seq &s) {
  // Tail first: the LRU list then evicts a sequence's last blocks (the
  // least likely to be shared) before its first ones.
  for (size_t i = s.blocks.size(); i-- > 0;)
    pool_.unref(s.blocks[i]);
  s.blocks.clear();
  s.numComputed = 0;
  s.numRegistered = 0;
}

void Scheduler::preempt(Seq &v, int32_t &budget) {
  if (v.scheduledTokens > 0) { // already in this step: take it back out
    budget += v.scheduledTokens;
    v.scheduledTokens = 0;
    scheduled_.erase(std::find_if(scheduled_.begin(), scheduled_.end(),
                                  [&](const auto &e) { return e.first == &v; }));
  }
  releaseBlocks(v);
  running_.erase(std::find(running_.begin(), running_.end(), &v));
  v.running = false;
  auto pos = std::find_if(waiting_.begin(), waiting_.end(),
                          [&](Seq *w) { return w->arrival > v.arrival; });
  waiting_.insert(pos, &v);
  batch_.preempted.push_back(v.id);
  ++stats_.preemptions;
}

bool Scheduler::growTo(Seq &s, int32_t numTokens, int32_t &budget) {
  int32_t need = ceilDiv(numTokens, cfg_.blockSize) - int32_t(s.blocks.size());
  while (need > pool_.numAvailable()) {
    Seq *victim = running_.back();
    preempt(*victim, budget);
    if (victim == &s)
      return false;
  }
  for (int32_t i = 0; i < need; ++i)
    s.blocks.push_back(pool_.allocate());
  return true;
}

void Scheduler::scheduleChunk(Seq &s, int32_t n, int32_t &budget) {
  s.scheduledTokens = n;
  budget -= n;
  scheduled_.emplace_back(&s, n);
  if (s.numComputed + n < s.len())
    ++stats_.chunkedPrefills;
}

int32_t Scheduler::chunkLimit(int32_t budget) const {
  int32_t cap = cfg_.longPrefillTokenThreshold;
  return cap > 0 ? std::min(cap, budget) : budget;
}

bool Scheduler::admit(Seq &s, int32_t &budget) {
  const int32_t bs = cfg_.blockSize;
  // Leading cached blocks, but never the whole sequence: the last token must
  // be computed to get logits, and it must not land in a shared block.
  std::vector<BlockId> hits;
  if (cfg_.enablePrefixCaching) {
    int32_t maxHits = std::min<int32_t>((s.len() - 1) / bs,
                                        int32_t(s.hashes.size()));
    uint64_t parent = rootHash_;
    for (int32_t i = 0; i < maxHits; ++i) {
      BlockId b = pool_.lookup(s.hashes[size_t(i)], parent,
                               &s.tokens[size_t(i) * size_t(bs)]);
      if (b == kNoBlock)
        break;
      hits.push_back(b);
      parent = s.hashes[size_t(i)];
    }
  }
  int32_t cached = int32_t(hits.size()) * bs;
  int32_t remaining = s.len() - cached;
  int32_t n = std::min(remaining, chunkLimit(budget));
  if (!cfg_.enableChunkedPrefill && n < remaining)
    return false;
  int32_t need = ceilDiv(cached + n, bs) - int32_t(hits.size());
  int32_t revived = 0; // hits sitting in the LRU list stop being available
  for (BlockId b : hits)
    revived += pool_.refCount(b) == 0;
  if (need + revived > pool_.numAvailable())
    return false; // new work never preempts running work
  for (BlockId b : hits)
    pool_.ref(b);
  s.blocks = hits;
  s.numRegistered = int32_t(hits.size());
  s.numComputed = cached;
  for (int32_t i = 0; i < need; ++i)
    s.blocks.push_back(pool_.allocate());
  if (!s.everScheduled) {
    s.everScheduled = true;
    s.numCachedPrompt = cached;
    stats_.cachedPromptTokens += cached;
  }
  s.running = true;
  auto pos = std::upper_bound(
      running_.begin(), running_.end(), s.arrival,
      [](uint64_t a, const Seq *r) { return a < r->arrival; });
  running_.insert(pos, &s);
  scheduleChunk(s, n, budget);
  return true;
}

const StepBatch &Scheduler::schedule() {
  // A step that was never completed (the executor failed and the engine
  // kept the sequences, or a caller skipped completeStep) is dropped: its
  // positions are not computed, and blocks allocated for them only are
  // returned (they were never registered, so they hold nothing shared).
  for (const auto &[sp, n] : scheduled_) {
    Seq &s = *sp;
    s.scheduledTokens = 0;
    size_t keep = size_t(ceilDiv(s.numComputed, cfg_.blockSize));
    while (s.blocks.size() > keep) {
      pool_.unref(s.blocks.back());
      s.blocks.pop_back();
    }
  }
  batch_.clear();
  scheduled_.clear();
  ++stats_.steps;
  int32_t budget = cfg_.maxNumBatchedTokens;
  // Decodes first so a long prompt never stalls them, then running prefills.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
      Seq &s = *running_[i];
      int32_t remaining = s.len() - s.numComputed;
      if (s.scheduledTokens > 0 || remaining <= 0 ||
          (pass == 0) != (remaining == 1))
        continue;
      int32_t n = std::min(remaining, chunkLimit(budget));
      // On failure s itself was preempted (it was the most recent arrival),
      // which removed it from the back of running_: the loop ends.
      if (growTo(s, s.numComputed + n, budget))
        scheduleChunk(s, n, budget);
    }
  }
  // After a preemption the pool is full: admitting new work would only
  // thrash (vLLM v1 does the same).
  while (batch_.preempted.empty() && !waiting_.empty() && budget > 0 &&
         int32_t(running_.size()) < cfg_.maxNumSeqs) {
    Seq *s = waiting_.front();
    if (!admit(*s, budget))
      break;
    waiting_.pop_front();
  }
  buildBatch();
  return batch_;
}

void Scheduler::buildBatch() {
  const int32_t bs = cfg_.blockSize;
  batch_.queryStart.push_back(0);
  batch_.blockTableStart.push_back(0);
  for (const auto &[sp, n] : scheduled_) {
    const Seq &s = *sp;
    int32_t start = s.numComputed, end = start + n;
    for (int32_t p = start; p < end; ++p) {
      batch_.tokenIds.push_back(s.tokens[size_t(p)]);
      batch_.positions.push_back(p);
      batch_.slotMapping.push_back(int64_t(s.blocks[size_t(p / bs)]) * bs +
                                   p % bs);
    }
    if (end == s.len())
      batch_.sampleIndices.push_back(int32_t(batch_.seqIds.size()));
    batch_.seqIds.push_back(s.id);
    batch_.queryStart.push_back(int32_t(batch_.tokenIds.size()));
    batch_.contextLens.push_back(end);
    batch_.blockTable.insert(batch_.blockTable.end(), s.blocks.begin(),
                             s.blocks.begin() + ceilDiv(end, bs));
    batch_.blockTableStart.push_back(int32_t(batch_.blockTable.size()));
  }
  stats_.computedTokens += batch_.numTokens();
}

void Scheduler::completeStep() {
  const int32_t bs = cfg_.blockSize;
  for (const auto &[sp, n] : scheduled_) {
    Seq &s = *sp;
    s.numComputed += n;
    s.scheduledTokens = 0;
    if (!cfg_.enablePrefixCaching)
      continue;
    while (int32_t(s.numRegistered + 1) * bs <= s.numComputed) {
      size_t i = size_t(s.numRegistered);
      uint64_t parent = i ? s.hashes[i - 1] : rootHash_;
      pool_.registerBlock(s.blocks[i], s.hashes[i], parent,
                          &s.tokens[i * size_t(bs)]);
      ++s.numRegistered;
    }
  }
  scheduled_.clear();
}

void Scheduler::appendToken(RequestId id, int32_t token) {
  auto it = seqs_.find(id);
  if (it == seqs_.end())
    return;
  it->second->tokens.push_back(token);
  updateHashes(*it->second);
}

void Scheduler::finish(RequestId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end())
    return;
  Seq *s = it->second.get();
  scheduled_.erase(std::remove_if(scheduled_.begin(), scheduled_.end(),
                                  [&](const auto &e) { return e.first == s; }),
                   scheduled_.end());
  if (s->running)
    running_.erase(std::find(running_.begin(), running_.end(), s));
  else
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), s));
  releaseBlocks(*s);
  seqs_.erase(it);
}

int32_t Scheduler::numCachedPromptTokens(RequestId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? 0 : it->second->numCachedPrompt;
}

const std::vector<int32_t> *Scheduler::tokens(RequestId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? nullptr : &it->second->tokens;
}

std::string Scheduler::verify() const {
  if (std::string why = pool_.verify(); !why.empty())
    return "block pool: " + why;
  const int32_t bs = cfg_.blockSize;
  std::vector<int32_t> refs(size_t(pool_.numBlocks()), 0);
  if (running_.size() + waiting_.size() != seqs_.size())
    return "a sequence is neither running nor waiting";
  if (int32_t(running_.size()) > cfg_.maxNumSeqs)
    return "more than max_num_seqs sequences are running";
  for (size_t i = 0; i < running_.size(); ++i) {
    const Seq &s = *running_[i];
    std::string id = "sequence " + std::to_string(s.id);
    if (i && running_[i - 1]->arrival >= s.arrival)
      return "running list is not ordered by arrival at " + id;
    if (!s.running)
      return id + " is in the running list but not marked running";
    if (s.numComputed > s.len() || s.len() > s.maxTotal)
      return id + " has inconsistent lengths";
    if (int32_t(s.blocks.size()) != ceilDiv(s.numComputed + s.scheduledTokens, bs))
      return id + " holds " + std::to_string(s.blocks.size()) +
             " blocks for " + std::to_string(s.numComputed) + "+" +
             std::to_string(s.scheduledTokens) + " tokens";
    for (BlockId b : s.blocks) {
      if (b < 0 || b >= pool_.numBlocks())
        return id + " holds an invalid block";
      ++refs[size_t(b)];
    }
  }
  for (size_t i = 0; i < waiting_.size(); ++i) {
    const Seq &s = *waiting_[i];
    if (i && waiting_[i - 1]->arrival >= s.arrival)
      return "waiting queue is not ordered by arrival";
    if (s.running || !s.blocks.empty() || s.numComputed != 0)
      return "waiting sequence " + std::to_string(s.id) + " holds KV";
  }
  for (size_t b = 0; b < refs.size(); ++b)
    if (refs[b] != pool_.refCount(BlockId(b)))
      return "block " + std::to_string(b) + " has refcount " +
             std::to_string(pool_.refCount(BlockId(b))) + " but " +
             std::to_string(refs[b]) + " block tables hold it";
  return "";
}

} // namespace qrt::serving
