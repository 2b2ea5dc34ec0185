//===- FakeModel.h - a deterministic stand-in model for serving tests -*- C++ -*-===//
//
// Its logits are a hash of the whole context, so any mistake in what the
// engine feeds it (a wrong token, position or block) changes the output.
// It really uses the paged KV pool: each step writes every new token's id
// and position into K/V through the slot mapping, and then rebuilds each
// sequence's context by reading positions 0..len-1 back through the block
// table - so a block shared, evicted or reused wrongly corrupts the context
// just as it would corrupt attention. The oracle, referenceLogits(), hashes
// the true token list directly, with no cache involved.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_TEST_RUNTIME_SERVING_FAKEMODEL_H
#define QOPT_TEST_RUNTIME_SERVING_FAKEMODEL_H

#include "qopt-rt/half.h"
#include "qopt-rt/serving/Executor.h"
#include "qopt-rt/serving/KVCache.h"
#include "qopt-rt/serving/Sampler.h"

#include <functional>
#include <string>
#include <vector>

namespace qrt::serving::test {

inline uint64_t mix64(uint64_t h) {
  h ^= h >> 31;
  h *= 0x7fb5d329728ea185ull;
  h ^= h >> 27;
  h *= 0x81dadef4bc2dd44dull;
  h ^= h >> 33;
  return h;
}

/// The model's function: logits of the next token after `ctx`.
inline void referenceLogits(const std::vector<int32_t> &ctx, int32_t vocab,
                            float *out) {
  uint64_t h = 0x1234567;
  for (int32_t t : ctx)
    h = mix64(h ^ (uint64_t(uint32_t(t)) + 0x9e3779b97f4a7c15ull));
  for (int32_t v = 0; v < vocab; ++v) {
    uint64_t r = mix64(h + 0x632be59bd9b4e019ull * uint64_t(v + 1));
    // 24-bit values: exact in float, ties practically never.
    out[v] = float(r >> 40) * (8.0f / 16777216.0f) - 4.0f;
  }
}

/// KV pool shape the fake model needs: 2 heads x 2 dims, bf16 holds 0..255
/// exactly, so K = (id low byte, id high byte), V = (pos low, pos high).
inline KVCacheSpec fakeKVSpec(int32_t blockSize) {
  KVCacheSpec s;
  s.numLayers = 2;
  s.numKVHeads = 2;
  s.headDim = 2;
  s.blockSize = blockSize;
  s.dtype = KVDType::BF16;
  return s;
}

class FakeModel : public ModelExecutor {
public:
  FakeModel(KVCache &kv, int32_t vocab) : kv_(kv), vocab_(vocab) {}
  int32_t vocabSize() const override { return vocab_; }

  /// Called with every batch before it runs (for per-step checks).
  std::function<void(const StepBatch &)> onStep;
  /// A batch with this token id at position 0 fails (to test error
  /// isolation; only prompts put tokens at position 0).
  int32_t poisonToken = -1;
  /// First inconsistency seen in a batch or in the cache ("" if none).
  std::string problem;
  int64_t steps = 0;

  bool execute(const StepBatch &b, float *logits, std::string *error) override {
    ++steps;
    if (onStep)
      onStep(b);
    for (int32_t t = 0; t < b.numTokens(); ++t)
      if (b.positions[size_t(t)] == 0 && b.tokenIds[size_t(t)] == poisonToken) {
        *error = "poisoned token in batch";
        return false;
      }
    const KVCacheSpec &sp = kv_.spec();
    const int32_t bs = sp.blockSize;
    if (b.blockSize != bs)
      note("batch block size differs from the pool's");
    if (int32_t(b.queryStart.size()) != b.numSeqs() + 1 ||
        b.queryStart.back() != b.numTokens() ||
        b.positions.size() != b.tokenIds.size() ||
        b.slotMapping.size() != b.tokenIds.size())
      note("batch arrays have inconsistent sizes");
    // Write every new token's K/V through the slot mapping.
    for (int32_t t = 0; t < b.numTokens(); ++t) {
      int64_t slot = b.slotMapping[size_t(t)];
      if (slot < 0 || slot >= int64_t(kv_.numBlocks()) * bs) {
        note("slot out of the pool");
        continue;
      }
      for (int32_t l = 0; l < sp.numLayers; ++l)
        store(l, slot, b.tokenIds[size_t(t)], b.positions[size_t(t)] + l);
    }
    // Rebuild each sequence's context from the cache.
    size_t row = 0;
    std::vector<int32_t> ctx;
    for (int32_t i = 0; i < b.numSeqs(); ++i) {
      int32_t q0 = b.queryStart[size_t(i)], q1 = b.queryStart[size_t(i) + 1];
      int32_t len = b.contextLens[size_t(i)];
      const int32_t *table = &b.blockTable[size_t(b.blockTableStart[size_t(i)])];
      int32_t nb = b.blockTableStart[size_t(i) + 1] - b.blockTableStart[size_t(i)];
      if (nb != (len + bs - 1) / bs)
        note("block table length does not match the context");
      for (int32_t t = q0; t < q1; ++t) {
        int32_t p = len - (q1 - t);
        if (b.positions[size_t(t)] != p)
          note("positions are not the last ones of the context");
        if (p / bs < nb &&
            b.slotMapping[size_t(t)] != int64_t(table[p / bs]) * bs + p % bs)
          note("slot mapping disagrees with the block table");
      }
      ctx.clear();
      for (int32_t p = 0; p < len && p / bs < nb; ++p) {
        int64_t slot = int64_t(table[p / bs]) * bs + p % bs;
        int32_t l = p % sp.numLayers, id = 0, pos = 0;
        load(l, slot, &id, &pos);
        if (pos != p + l)
          note("cache holds position " + std::to_string(pos - l) +
               " where position " + std::to_string(p) + " belongs");
        ctx.push_back(id);
      }
      bool sample = row < b.sampleIndices.size() &&
                    b.sampleIndices[row] == i;
      if (sample)
        referenceLogits(ctx, vocab_, logits + row++ * size_t(vocab_));
    }
    if (row != b.sampleIndices.size())
      note("sampleIndices not increasing or out of range");
    return true;
  }

private:
  void note(const std::string &what) {
    if (problem.empty())
      problem = what;
  }
  uint16_t *at(void *base, int64_t slot, int32_t head) const {
    const KVCacheSpec &sp = kv_.spec();
    KVLayerView v = kv_.layer(0);
    int64_t blk = slot / sp.blockSize, off = slot % sp.blockSize;
    return static_cast<uint16_t *>(base) + blk * v.blockStride +
           off * v.tokenStride + head * v.headStride;
  }
  void store(int32_t l, int64_t slot, int32_t id, int32_t pos) {
    KVLayerView v = kv_.layer(l);
    uint16_t *k0 = at(v.k, slot, 0), *k1 = at(v.k, slot, 1);
    uint16_t *v0 = at(v.v, slot, 0), *v1 = at(v.v, slot, 1);
    k0[0] = f32ToBf16(float(id & 0xff));
    k1[0] = f32ToBf16(float((id >> 8) & 0xff));
    k0[1] = k1[1] = f32ToBf16(float(l)); // layer tag
    v0[0] = f32ToBf16(float(pos & 0xff));
    v1[0] = f32ToBf16(float((pos >> 8) & 0xff));
    v0[1] = v1[1] = f32ToBf16(float(l));
  }
  void load(int32_t l, int64_t slot, int32_t *id, int32_t *pos) {
    KVLayerView v = kv_.layer(l);
    const uint16_t *k0 = at(v.k, slot, 0), *k1 = at(v.k, slot, 1);
    const uint16_t *v0 = at(v.v, slot, 0), *v1 = at(v.v, slot, 1);
    if (bf16ToF32(k0[1]) != float(l) || bf16ToF32(v1[1]) != float(l))
      note("layer tag wrong: layers overlap in the pool");
    *id = int32_t(bf16ToF32(k0[0])) | int32_t(bf16ToF32(k1[0])) << 8;
    *pos = int32_t(bf16ToF32(v0[0])) | int32_t(bf16ToF32(v1[0])) << 8;
  }

  KVCache &kv_;
  int32_t vocab_;
};

/// The engine's generation rules replayed on referenceLogits, with no
/// batching, paging or caching: what a request must produce.
inline std::vector<int32_t>
referenceGenerate(std::vector<int32_t> ctx, const SamplingParams &p,
                  uint64_t seed, int32_t vocab, int32_t maxModelLen,
                  const std::vector<int32_t> &eos) {
  std::vector<int32_t> out;
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (;;) {
    referenceLogits(ctx, vocab, logits.data());
    int32_t t = sampleToken(logits.data(), vocab, p, seed, out.size());
    out.push_back(t);
    ctx.push_back(t);
    bool isEos = false;
    for (int32_t e : eos)
      isEos |= !p.ignoreEos && t == e;
    for (int32_t e : p.stopTokenIds)
      isEos |= t == e;
    if (isEos || int32_t(out.size()) >= p.maxTokens ||
        int32_t(ctx.size()) >= maxModelLen)
      return out;
  }
}

} // namespace qrt::serving::test

#endif // QOPT_TEST_RUNTIME_SERVING_FAKEMODEL_H
