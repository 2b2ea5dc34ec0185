//===- BlockPool.h - KV cache blocks: free list, refcounts, prefix cache -*- C++ -*-===//
//
// Book-keeping for the paged KV cache, independent of where the KV bytes
// live (KVCache.h) and of any model. A block holds `blockSize` consecutive
// token positions of one sequence. Blocks are shared between sequences by
// reference counting; only full, already computed blocks are ever shared, so
// a shared block is never written again and no copy-on-write is needed.
//
// Prefix caching: a full block can be registered under the hash of
// (hash of the previous block, token ids of this block). A block whose last
// reference goes away keeps its registration and waits in an LRU list of
// evictable blocks; a later lookup with the same key revives it, and
// allocate() recycles the least recently used one only when no plain free
// block is left.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_BLOCKPOOL_H
#define QOPT_RT_SERVING_BLOCKPOOL_H

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace qrt::serving {

/// Index of a block in the KV pool, in [0, numBlocks).
using BlockId = int32_t;
constexpr BlockId kNoBlock = -1;

/// Hash of the (empty) prefix before a sequence's first block. Different
/// salts keep caches apart (e.g. per tenant or per adapter).
uint64_t prefixRootHash(uint64_t salt);
/// Hash of one full block: a function of the previous block's hash and this
/// block's `n` token ids (vLLM's chained scheme), so equal hashes mean equal
/// whole prefixes up to a 64-bit collision, which lookups rule out by also
/// comparing the stored key.
uint64_t hashBlockTokens(uint64_t parentHash, const int32_t *tokens, int32_t n);

/// Counters of prefix-cache activity since the pool was created.
struct BlockPoolStats {
  int64_t lookups = 0;   ///< lookup() calls
  int64_t hits = 0;      ///< lookups that found a block
  int64_t evictions = 0; ///< cached blocks recycled by allocate()
};

/// Reference-counted blocks with a free list and a prefix cache. Every block
/// is in exactly one state: in use (refcount > 0), evictable (refcount 0,
/// still registered in the cache) or free (refcount 0, not registered).
/// Calls with an id that is not valid for the state are programming errors
/// of the scheduler, not user input, and are checked by verify() in tests.
class BlockPool {
public:
  /// `numBlocks` >= 0 blocks of `blockSize` >= 1 tokens each.
  BlockPool(int32_t numBlocks, int32_t blockSize);

  int32_t numBlocks() const { return int32_t(refCount_.size()); }
  int32_t blockSize() const { return blockSize_; }
  /// Blocks that allocate() can hand out now: free plus evictable.
  int32_t numAvailable() const { return numFree() + numEvictable_; }
  int32_t numFree() const { return int32_t(freeStack_.size()); }
  int32_t numEvictable() const { return numEvictable_; }

  /// Takes a block with refcount 1: a free one if any, else the least
  /// recently used evictable one (its cache entry is dropped). Returns
  /// kNoBlock when every block is in use.
  BlockId allocate();
  /// Adds a reference to a block in use or an evictable one (which leaves
  /// the LRU list: a cache hit revives it).
  void ref(BlockId b);
  /// Drops a reference. At zero the block becomes evictable (most recently
  /// used end) when it is registered in the cache, else free.
  void unref(BlockId b);
  int32_t refCount(BlockId b) const { return refCount_[size_t(b)]; }

  /// The registered block whose key is (hash, parentHash, tokens), or
  /// kNoBlock. `tokens` has blockSize() ids. Does not change any state but
  /// the statistics.
  BlockId lookup(uint64_t hash, uint64_t parentHash, const int32_t *tokens);
  /// Registers block `b` (in use, full, KV computed) under its key. Returns
  /// false and changes nothing when `b` is already registered or another
  /// block already holds this hash (two sequences computed the same prefix
  /// at once; the first one stays the cached copy).
  bool registerBlock(BlockId b, uint64_t hash, uint64_t parentHash,
                     const int32_t *tokens);
  bool isRegistered(BlockId b) const { return hashOf_[size_t(b)].valid; }
  /// Drops the registration of every evictable block (they become free);
  /// blocks in use keep theirs. For tests and for cache resets.
  void dropEvictable();

  /// Evictable blocks from least to most recently used (for tests).
  std::vector<BlockId> evictableLruOrder() const;
  const BlockPoolStats &stats() const { return stats_; }
  /// Checks every internal invariant; returns "" or the first violation.
  std::string verify() const;

private:
  struct Key {
    bool valid = false;
    uint64_t hash = 0;
    uint64_t parent = 0;
  };
  void lruRemove(BlockId b);
  void lruPushBack(BlockId b);
  void forget(BlockId b);

  int32_t blockSize_;
  std::vector<int32_t> refCount_;
  std::vector<BlockId> freeStack_;  ///< back() is handed out first
  std::vector<Key> hashOf_;         ///< registration of each block
  std::vector<int32_t> keyTokens_;  ///< [numBlocks, blockSize] registered ids
  std::unordered_map<uint64_t, BlockId> cache_;
  // Evictable blocks as an intrusive doubly linked list, head = LRU.
  std::vector<BlockId> prev_, next_;
  std::vector<uint8_t> inLru_;
  BlockId lruHead_ = kNoBlock, lruTail_ = kNoBlock;
  int32_t numEvictable_ = 0;
  BlockPoolStats stats_;
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_BLOCKPOOL_H
