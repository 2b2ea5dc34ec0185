//===- KVCacheTest.cpp - KV pool sizing, layout and scales ----------------===//
#include "qopt-rt/serving/KVCache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>

using namespace qrt::serving;

namespace {

KVCacheSpec spec(KVDType t, int32_t layers = 3, int32_t heads = 2,
                 int32_t dim = 5, int32_t bs = 7) {
  KVCacheSpec s;
  s.numLayers = layers;
  s.numKVHeads = heads;
  s.headDim = dim;
  s.blockSize = bs;
  s.dtype = t;
  return s;
}

TEST(KVCache, SizedFromTheByteBudget) {
  for (KVDType t : {KVDType::BF16, KVDType::F16, KVDType::I8,
                    KVDType::FP8E4M3}) {
    KVCacheSpec s = spec(t);
    uint64_t per = KVCache::bytesPerBlock(s);
    EXPECT_EQ(per, 2ull * 3 * 7 * 2 * 5 * kvElementBytes(t));
    std::string err;
    auto kv = KVCache::create(s, per * 11 + per - 1, &err);
    ASSERT_TRUE(kv) << err;
    EXPECT_EQ(kv->numBlocks(), 11);
    EXPECT_GE(kv->allocatedBytes(), per * 11);
    EXPECT_LE(kv->allocatedBytes(), per * 11 + 2 * 3 * 4096);
    auto capped = KVCache::create(s, per * 100, &err, 9);
    ASSERT_TRUE(capped);
    EXPECT_EQ(capped->numBlocks(), 9);
  }
}

TEST(KVCache, RefusesBadSpecsAndTinyBudgets) {
  std::string err;
  EXPECT_FALSE(KVCache::create(spec(KVDType::BF16), 10, &err));
  EXPECT_NE(err.find("holds no block"), std::string::npos) << err;
  EXPECT_FALSE(KVCache::create(spec(KVDType::BF16, 0), 1 << 20, &err));
  EXPECT_NE(err.find("num_layers"), std::string::npos) << err;
  EXPECT_FALSE(KVCache::create(spec(KVDType::BF16, 1, -4), 1 << 20, &err));
  EXPECT_NE(err.find("kv_heads"), std::string::npos) << err;
  EXPECT_FALSE(KVCache::create(spec(KVDType::BF16, 1, 1, 1, 0), 1 << 20, &err));
  EXPECT_NE(err.find("block_size"), std::string::npos) << err;
  EXPECT_EQ(KVCache::bytesPerBlock(spec(KVDType::BF16, 0)), 0u);
  // A header-sized number must not turn into a huge allocation attempt.
  EXPECT_FALSE(KVCache::create(spec(KVDType::BF16, 1, 1 << 30), 1 << 20, &err));
}

TEST(KVCache, EveryElementHasItsOwnAlignedAddress) {
  KVCacheSpec s = spec(KVDType::BF16);
  std::string err;
  auto kv = KVCache::create(s, KVCache::bytesPerBlock(s) * 6, &err);
  ASSERT_TRUE(kv) << err;
  const uint8_t *lo = nullptr, *hi = nullptr;
  std::set<const void *> seen;
  for (int32_t l = 0; l < s.numLayers; ++l) {
    KVLayerView v = kv->layer(l);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.k) % 4096, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.v) % 4096, 0u);
    EXPECT_EQ(v.headStride, s.headDim);
    EXPECT_EQ(v.tokenStride, int64_t(s.numKVHeads) * s.headDim);
    EXPECT_EQ(v.blockStride, v.tokenStride * s.blockSize);
    EXPECT_EQ(v.kScale, nullptr);
    for (void *base : {v.k, v.v})
      for (int32_t b = 0; b < kv->numBlocks(); ++b)
        for (int32_t t = 0; t < s.blockSize; ++t)
          for (int32_t h = 0; h < s.numKVHeads; ++h)
            for (int32_t d = 0; d < s.headDim; ++d) {
              uint16_t *e = static_cast<uint16_t *>(base) + b * v.blockStride +
                            t * v.tokenStride + h * v.headStride + d;
              EXPECT_TRUE(seen.insert(e).second);
              *e = 0xabcd; // touching it must be fine (ASan would catch)
              auto *p = reinterpret_cast<const uint8_t *>(e);
              lo = lo && lo < p ? lo : p;
              hi = hi && hi > p + 2 ? hi : p + 2;
            }
  }
  EXPECT_LE(size_t(hi - lo), kv->allocatedBytes());
  EXPECT_EQ(kv->layer(s.numLayers).k, nullptr);
}

TEST(KVCache, DTypeNamesRoundTrip) {
  for (KVDType t : {KVDType::BF16, KVDType::F16, KVDType::I8,
                    KVDType::FP8E4M3}) {
    KVDType back;
    ASSERT_TRUE(parseKVDType(kvDTypeName(t), &back));
    EXPECT_EQ(back, t);
  }
  KVDType t;
  EXPECT_TRUE(parseKVDType("fp8", &t));
  EXPECT_EQ(t, KVDType::FP8E4M3);
  EXPECT_FALSE(parseKVDType("int4", &t));
}

TEST(KVCache, ScalesOnlyForQuantizedPools) {
  std::string err;
  auto bf = KVCache::create(spec(KVDType::BF16), 1 << 20, &err);
  ASSERT_TRUE(bf);
  float ks[2] = {0.5f, 2.0f}, vs[2] = {0.25f, 4.0f};
  EXPECT_FALSE(bf->setScales(0, ks, vs, &err));
  EXPECT_NE(err.find("bf16"), std::string::npos) << err;

  auto q = KVCache::create(spec(KVDType::I8), 1 << 20, &err);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->layer(1).kScale[0], 1.0f); // default
  ASSERT_TRUE(q->setScales(1, ks, vs, &err)) << err;
  KVLayerView v = q->layer(1);
  EXPECT_EQ(v.kScale[1], 2.0f);
  EXPECT_EQ(v.vScale[0], 0.25f);
  EXPECT_EQ(q->layer(0).kScale[0], 1.0f);
  float bad[2] = {1.0f, 0.0f};
  EXPECT_FALSE(q->setScales(2, ks, bad, &err));
  EXPECT_NE(err.find("head 1"), std::string::npos) << err;
  EXPECT_FALSE(q->setScales(3, ks, vs, &err));
  EXPECT_EQ(q->layer(2).vScale[1], 1.0f); // unchanged after a refusal
}

} // namespace
