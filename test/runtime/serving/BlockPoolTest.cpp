//===- BlockPoolTest.cpp - refcounts, free list, prefix cache, LRU --------===//
//
// A shadow model (plain maps and a list, written independently of the pool's
// intrusive structures) follows random operations with a fixed seed; after
// every operation the pool must agree with it and pass verify().
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/serving/BlockPool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <list>
#include <map>
#include <random>
#include <set>

using namespace qrt::serving;

namespace {

std::vector<int32_t> tokensOf(uint32_t seed, int32_t n) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t &x : t)
    x = int32_t(rng() % 1000);
  return t;
}

TEST(BlockPool, AllocatesEveryBlockOnceThenNone) {
  BlockPool pool(5, 4);
  std::set<BlockId> got;
  for (int i = 0; i < 5; ++i) {
    BlockId b = pool.allocate();
    ASSERT_NE(b, kNoBlock);
    EXPECT_TRUE(got.insert(b).second);
    EXPECT_EQ(pool.refCount(b), 1);
  }
  EXPECT_EQ(pool.allocate(), kNoBlock);
  EXPECT_EQ(pool.numAvailable(), 0);
  pool.ref(2);
  pool.unref(2);
  EXPECT_EQ(pool.numAvailable(), 0);
  pool.unref(2);
  EXPECT_EQ(pool.numFree(), 1);
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_EQ(pool.verify(), "");
}

TEST(BlockPool, EvictsLeastRecentlyUsedAndRevivesOnHit) {
  const int32_t bs = 4;
  BlockPool pool(4, bs);
  std::vector<std::vector<int32_t>> key;
  for (BlockId b = 0; b < 4; ++b) {
    ASSERT_EQ(pool.allocate(), b);
    key.push_back(tokensOf(uint32_t(b), bs));
    EXPECT_TRUE(pool.registerBlock(b, 100 + uint64_t(b), 7, key[size_t(b)].data()));
  }
  for (BlockId b : {2, 0, 3, 1})
    pool.unref(b);
  EXPECT_EQ(pool.evictableLruOrder(), (std::vector<BlockId>{2, 0, 3, 1}));
  EXPECT_EQ(pool.numFree(), 0);
  EXPECT_EQ(pool.numAvailable(), 4);
  // A hit on block 0 takes it out of the LRU list; released, it is newest.
  EXPECT_EQ(pool.lookup(100, 7, key[0].data()), 0);
  pool.ref(0);
  EXPECT_EQ(pool.evictableLruOrder(), (std::vector<BlockId>{2, 3, 1}));
  pool.unref(0);
  EXPECT_EQ(pool.evictableLruOrder(), (std::vector<BlockId>{2, 3, 1, 0}));
  // With no free block, allocation recycles the LRU one and forgets it.
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_FALSE(pool.isRegistered(2));
  EXPECT_EQ(pool.lookup(102, 7, key[2].data()), kNoBlock);
  EXPECT_EQ(pool.allocate(), 3);
  EXPECT_EQ(pool.lookup(101, 7, key[1].data()), 1);
  EXPECT_EQ(pool.stats().evictions, 2);
  // A freed unregistered block is preferred to evicting a cached one.
  pool.unref(2);
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_EQ(pool.verify(), "");
}

TEST(BlockPool, LookupComparesTheWholeKey) {
  BlockPool pool(3, 4);
  auto a = tokensOf(1, 4), b = tokensOf(2, 4);
  BlockId x = pool.allocate(), y = pool.allocate();
  EXPECT_TRUE(pool.registerBlock(x, 55, 9, a.data()));
  // Same hash, different content (a collision): never a hit, not stored.
  EXPECT_EQ(pool.lookup(55, 9, b.data()), kNoBlock);
  EXPECT_EQ(pool.lookup(55, 8, a.data()), kNoBlock);
  EXPECT_FALSE(pool.registerBlock(y, 55, 9, b.data()));
  EXPECT_FALSE(pool.registerBlock(x, 56, 9, a.data())); // already registered
  EXPECT_EQ(pool.lookup(55, 9, a.data()), x);
  EXPECT_EQ(pool.verify(), "");
}

TEST(BlockPool, ChainedHashesDependOnTheWholePrefix) {
  auto t = tokensOf(3, 16);
  uint64_t r0 = prefixRootHash(0), r1 = prefixRootHash(1);
  EXPECT_NE(r0, r1);
  uint64_t h = hashBlockTokens(r0, t.data(), 16);
  EXPECT_EQ(h, hashBlockTokens(r0, t.data(), 16));
  EXPECT_NE(h, hashBlockTokens(r1, t.data(), 16));
  std::set<uint64_t> seen{h};
  for (int i = 0; i < 16; ++i) { // every single-token change changes it
    auto u = t;
    u[size_t(i)] += 1;
    EXPECT_TRUE(seen.insert(hashBlockTokens(r0, u.data(), 16)).second);
  }
  auto swapped = t;
  std::swap(swapped[0], swapped[1]);
  if (swapped != t) {
    EXPECT_NE(h, hashBlockTokens(r0, swapped.data(), 16));
  }
}

/// Independent model of the pool: refcounts, a set of free blocks, an LRU
/// list of evictable ones, and the registered keys.
struct Shadow {
  std::map<BlockId, int> refs;
  std::set<BlockId> freeSet;
  std::list<BlockId> lru;
  std::map<BlockId, uint32_t> keyOf; // registered block -> key seed
  std::map<uint32_t, BlockId> blockOfKey;
};

TEST(BlockPool, RandomOperationsKeepInvariants) {
  const int32_t n = 24, bs = 3;
  for (uint32_t seed : {1u, 2u, 3u}) {
    BlockPool pool(n, bs);
    Shadow sh;
    for (BlockId b = 0; b < n; ++b) {
      sh.refs[b] = 0;
      sh.freeSet.insert(b);
    }
    std::vector<BlockId> held; // one entry per reference we hold
    std::mt19937 rng(seed);
    uint32_t nextKey = 1;
    auto keyHash = [](uint32_t k) { return uint64_t(k) * 0x9e3779b97f4a7c15ull; };
    for (int op = 0; op < 20000; ++op) {
      int what = int(rng() % 100);
      if (what < 30) { // allocate
        BlockId b = pool.allocate();
        if (sh.freeSet.empty() && sh.lru.empty()) {
          EXPECT_EQ(b, kNoBlock);
          continue;
        }
        ASSERT_NE(b, kNoBlock);
        if (!sh.freeSet.empty()) {
          ASSERT_EQ(sh.freeSet.count(b), 1u) << "handed out a non-free block";
          sh.freeSet.erase(b);
        } else {
          ASSERT_EQ(b, sh.lru.front()) << "did not evict the LRU block";
          sh.lru.pop_front();
          sh.blockOfKey.erase(sh.keyOf[b]);
          sh.keyOf.erase(b);
        }
        sh.refs[b] = 1;
        held.push_back(b);
      } else if (what < 45 && !held.empty()) { // share
        BlockId b = held[rng() % held.size()];
        pool.ref(b);
        ++sh.refs[b];
        held.push_back(b);
      } else if (what < 75 && !held.empty()) { // release
        size_t i = rng() % held.size();
        BlockId b = held[i];
        held.erase(held.begin() + long(i));
        pool.unref(b);
        if (--sh.refs[b] == 0) {
          if (sh.keyOf.count(b))
            sh.lru.push_back(b);
          else
            sh.freeSet.insert(b);
        }
      } else if (what < 85 && !held.empty()) { // register
        BlockId b = held[rng() % held.size()];
        uint32_t k = nextKey++;
        auto toks = tokensOf(k, bs);
        bool ok = pool.registerBlock(b, keyHash(k), k, toks.data());
        EXPECT_EQ(ok, sh.keyOf.count(b) == 0);
        if (ok) {
          sh.keyOf[b] = k;
          sh.blockOfKey[k] = b;
        }
      } else if (what < 98) { // lookup a key, known or forgotten
        uint32_t k = 1 + uint32_t(rng() % nextKey);
        auto toks = tokensOf(k, bs);
        BlockId b = pool.lookup(keyHash(k), k, toks.data());
        auto it = sh.blockOfKey.find(k);
        ASSERT_EQ(b, it == sh.blockOfKey.end() ? kNoBlock : it->second);
        if (b != kNoBlock && rng() % 2) { // hit: take a reference
          pool.ref(b);
          if (sh.refs[b]++ == 0)
            sh.lru.remove(b);
          held.push_back(b);
        }
      } else { // reset the cache
        pool.dropEvictable();
        for (BlockId b : sh.lru) {
          sh.blockOfKey.erase(sh.keyOf[b]);
          sh.keyOf.erase(b);
          sh.freeSet.insert(b);
        }
        sh.lru.clear();
      }
      std::string why = pool.verify();
      ASSERT_EQ(why, "") << "seed " << seed << " op " << op;
      ASSERT_EQ(pool.numFree(), int32_t(sh.freeSet.size()));
      ASSERT_EQ(pool.numEvictable(), int32_t(sh.lru.size()));
      ASSERT_EQ(pool.evictableLruOrder(),
                std::vector<BlockId>(sh.lru.begin(), sh.lru.end()));
      for (BlockId b = 0; b < n; ++b) {
        ASSERT_EQ(pool.refCount(b), sh.refs[b]);
        ASSERT_EQ(pool.isRegistered(b), sh.keyOf.count(b) == 1);
      }
    }
    while (!held.empty()) {
      pool.unref(held.back());
      held.pop_back();
    }
    EXPECT_EQ(pool.numAvailable(), n);
    EXPECT_EQ(pool.verify(), "");
  }
}

} // namespace
