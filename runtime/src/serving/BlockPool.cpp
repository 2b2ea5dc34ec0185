//===- BlockPool.cpp - KV cache blocks: free list, refcounts, prefix cache ===//
//
// All operations are O(1) (hash map + intrusive list) except verify(), so the
// scheduler can call them per block per step.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/serving/BlockPool.h"

#include <cstring>

namespace qrt::serving {

namespace {
/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche, so
/// chaining it keeps every input bit in play.
inline uint64_t fmix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}
} // namespace

uint64_t prefixRootHash(uint64_t salt) {
  return fmix64(salt ^ 0x5152545f70726678ull); // "QRT_prfx"
}

uint64_t hashBlockTokens(uint64_t parentHash, const int32_t *tokens,
                         int32_t n) {
  uint64_t h = fmix64(parentHash + 0x9e3779b97f4a7c15ull);
  for (int32_t i = 0; i < n; ++i)
    h = fmix64(h ^ (uint64_t(uint32_t(tokens[i])) +
                    0x9e3779b97f4a7c15ull * uint64_t(i + 1)));
  return fmix64(h ^ uint64_t(n));
}

BlockPool::BlockPool(int32_t numBlocks, int32_t blockSize)
    : blockSize_(blockSize < 1 ? 1 : blockSize),
      refCount_(size_t(numBlocks < 0 ? 0 : numBlocks), 0) {
  size_t n = refCount_.size();
  freeStack_.reserve(n);
  for (size_t i = n; i-- > 0;)
    freeStack_.push_back(BlockId(i)); // block 0 is handed out first
  hashOf_.resize(n);
  keyTokens_.resize(n * size_t(blockSize_));
  prev_.assign(n, kNoBlock);
  next_.assign(n, kNoBlock);
  inLru_.assign(n, 0);
}

void BlockPool::lruRemove(BlockId b) {
  BlockId p = prev_[size_t(b)], q = next_[size_t(b)];
  (p == kNoBlock ? lruHead_ : next_[size_t(p)]) = q;
  (q == kNoBlock ? lruTail_ : prev_[size_t(q)]) = p;
  prev_[size_t(b)] = next_[size_t(b)] = kNoBlock;
  inLru_[size_t(b)] = 0;
  --numEvictable_;
}

void BlockPool::lruPushBack(BlockId b) {
  prev_[size_t(b)] = lruTail_;
  next_[size_t(b)] = kNoBlock;
  (lruTail_ == kNoBlock ? lruHead_ : next_[size_t(lruTail_)]) = b;
  lruTail_ = b;
  inLru_[size_t(b)] = 1;
  ++numEvictable_;
}

void BlockPool::forget(BlockId b) {
  Key &k = hashOf_[size_t(b)];
  if (!k.valid)
    return;
  auto it = cache_.find(k.hash);
  if (it != cache_.end() && it->second == b)
    cache_.erase(it);
  k = Key();
}

BlockId BlockPool::allocate() {
  BlockId b;
  if (!freeStack_.empty()) {
    b = freeStack_.back();
    freeStack_.pop_back();
  } else if (lruHead_ != kNoBlock) {
    b = lruHead_;
    lruRemove(b);
    forget(b);
    ++stats_.evictions;
  } else {
    return kNoBlock;
  }
  refCount_[size_t(b)] = 1;
  return b;
}

void BlockPool::ref(BlockId b) {
  if (refCount_[size_t(b)]++ == 0 && inLru_[size_t(b)])
    lruRemove(b);
}

void BlockPool::unref(BlockId b) {
  if (--refCount_[size_t(b)] > 0)
    return;
  if (hashOf_[size_t(b)].valid)
    lruPushBack(b);
  else
    freeStack_.push_back(b);
}

BlockId BlockPool::lookup(uint64_t hash, uint64_t parentHash,
                          const int32_t *tokens) {
  ++stats_.lookups;
  auto it = cache_.find(hash);
  if (it == cache_.end())
    return kNoBlock;
  BlockId b = it->second;
  const Key &k = hashOf_[size_t(b)];
  if (k.parent != parentHash ||
      std::memcmp(&keyTokens_[size_t(b) * size_t(blockSize_)], tokens,
                  size_t(blockSize_) * sizeof(int32_t)) != 0)
    return kNoBlock; // 64-bit collision: a different prefix
  ++stats_.hits;
  return b;
}

bool BlockPool::registerBlock(BlockId b, uint64_t hash, uint64_t parentHash,
                              const int32_t *tokens) {
  if (hashOf_[size_t(b)].valid || cache_.count(hash))
    return false;
  cache_.emplace(hash, b);
  hashOf_[size_t(b)] = Key{true, hash, parentHash};
  std::memcpy(&keyTokens_[size_t(b) * size_t(blockSize_)], tokens,
              size_t(blockSize_) * sizeof(int32_t));
  return true;
}

void BlockPool::dropEvictable() {
  while (lruHead_ != kNoBlock) {
    BlockId b = lruHead_;
    lruRemove(b);
    forget(b);
    freeStack_.push_back(b);
  }
}

std::vector<BlockId> BlockPool::evictableLruOrder() const {
  std::vector<BlockId> out;
  for (BlockId b = lruHead_; b != kNoBlock; b = next_[size_t(b)])
    out.push_back(b);
  return out;
}

std::string BlockPool::verify() const {
  size_t n = refCount_.size();
  std::vector<int> seen(n, 0); // 1 free, 2 evictable
  for (BlockId b : freeStack_) {
    if (b < 0 || size_t(b) >= n)
      return "free list holds out-of-range block " + std::to_string(b);
    if (seen[size_t(b)])
      return "block " + std::to_string(b) + " is twice on the free list";
    seen[size_t(b)] = 1;
  }
  int32_t lruCount = 0;
  BlockId prev = kNoBlock;
  for (BlockId b = lruHead_; b != kNoBlock; b = next_[size_t(b)]) {
    if (size_t(b) >= n || seen[size_t(b)] || ++lruCount > int32_t(n))
      return "LRU list is corrupt at block " + std::to_string(b);
    if (prev_[size_t(b)] != prev)
      return "LRU back link of block " + std::to_string(b) + " is wrong";
    seen[size_t(b)] = 2;
    prev = b;
  }
  if (prev != lruTail_ || lruCount != numEvictable_)
    return "LRU tail or count is wrong";
  size_t registered = 0;
  for (size_t b = 0; b < n; ++b) {
    std::string id = "block " + std::to_string(b);
    int32_t rc = refCount_[b];
    bool reg = hashOf_[b].valid;
    registered += reg;
    if (rc < 0)
      return id + " has negative refcount";
    if (rc > 0 && seen[b])
      return id + " is in use and also on a free/LRU list";
    if (rc == 0 && !seen[b])
      return id + " is unreferenced but on no list (leaked)";
    if (seen[b] == 1 && reg)
      return id + " is free but still registered";
    if (seen[b] == 2 && !reg)
      return id + " is evictable but not registered";
    if ((seen[b] == 2) != bool(inLru_[b]))
      return id + " has a stale LRU flag";
    if (reg) {
      auto it = cache_.find(hashOf_[b].hash);
      if (it == cache_.end() || size_t(it->second) != b)
        return id + " is registered but the hash map disagrees";
    }
  }
  if (registered != cache_.size())
    return "hash map has entries for unregistered blocks";
  return "";
}

} // namespace qrt::serving
