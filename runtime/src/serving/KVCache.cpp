//===- KVCache.cpp - the paged KV pool's memory ----------------------------===//
//
// One allocation for all layers keeps the pool a single mapping (easy to
// account for in the peak-memory breakdown). Each K or V pool starts on a
// page so kernels get aligned bases, and pages are only touched when blocks
// are written: glibc serves an allocation this large with mmap, so untouched
// blocks cost no resident memory.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/serving/KVCache.h"

#include <cmath>
#include <cstdlib>
#include <new>
#include <utility>

namespace qrt::serving {

namespace {
constexpr size_t kPage = 4096;
constexpr uint64_t kMaxDim = 1u << 20; // far above any real model's sizes

/// Bytes of one K (or V) block of one layer; 0 for invalid specs.
uint64_t blockBytesOneLayer(const KVCacheSpec &s) {
  if (!KVCache::validate(s).empty())
    return 0;
  return uint64_t(s.blockSize) * uint64_t(s.numKVHeads) *
         uint64_t(s.headDim) * kvElementBytes(s.dtype);
}
} // namespace

size_t kvElementBytes(KVDType t) {
  return (t == KVDType::BF16 || t == KVDType::F16) ? 2 : 1;
}

const char *kvDTypeName(KVDType t) {
  switch (t) {
  case KVDType::BF16:
    return "bf16";
  case KVDType::F16:
    return "f16";
  case KVDType::I8:
    return "int8";
  case KVDType::FP8E4M3:
    return "fp8_e4m3";
  }
  return "?";
}

bool parseKVDType(const std::string &name, KVDType *out) {
  static const std::pair<const char *, KVDType> names[] = {
      {"bf16", KVDType::BF16},    {"f16", KVDType::F16},
      {"fp16", KVDType::F16},     {"int8", KVDType::I8},
      {"fp8", KVDType::FP8E4M3}, {"fp8_e4m3", KVDType::FP8E4M3}};
  for (const auto &[n, t] : names)
    if (name == n) {
      *out = t;
      return true;
    }
  return false;
}

std::string KVCache::validate(const KVCacheSpec &s) {
  auto bad = [](const char *what, int32_t v) {
    return std::string("KV cache: ") + what + " must be in [1, 2^20], got " +
           std::to_string(v);
  };
  if (s.numLayers < 1 || uint64_t(s.numLayers) > kMaxDim)
    return bad("num_layers", s.numLayers);
  if (s.numKVHeads < 1 || uint64_t(s.numKVHeads) > kMaxDim)
    return bad("kv_heads", s.numKVHeads);
  if (s.headDim < 1 || uint64_t(s.headDim) > kMaxDim)
    return bad("head_dim", s.headDim);
  if (s.blockSize < 1 || s.blockSize > 4096)
    return "KV cache: block_size must be in [1, 4096], got " +
           std::to_string(s.blockSize);
  if (uint64_t(s.numKVHeads) * uint64_t(s.headDim) > kMaxDim)
    return "KV cache: kv_heads * head_dim is implausibly large";
  return "";
}

uint64_t KVCache::bytesPerBlock(const KVCacheSpec &s) {
  return blockBytesOneLayer(s) * 2 * uint64_t(s.numLayers);
}

std::unique_ptr<KVCache> KVCache::create(const KVCacheSpec &spec,
                                         uint64_t byteBudget,
                                         std::string *error,
                                         int32_t maxBlocks) {
  auto fail = [&](std::string msg) {
    if (error)
      *error = std::move(msg);
    return nullptr;
  };
  if (std::string why = validate(spec); !why.empty())
    return fail(why);
  uint64_t perBlock = bytesPerBlock(spec);
  uint64_t blocks = byteBudget / perBlock;
  uint64_t cap = maxBlocks > 0 ? uint64_t(maxBlocks) : uint64_t(INT32_MAX);
  if (blocks > cap)
    blocks = cap;
  if (blocks == 0)
    return fail("KV cache: a budget of " + std::to_string(byteBudget) +
                " bytes holds no block (one block of " +
                std::to_string(spec.blockSize) + " tokens takes " +
                std::to_string(perBlock) + " bytes over " +
                std::to_string(spec.numLayers) + " layers)");
  uint64_t pool = blocks * blockBytesOneLayer(spec);
  pool = (pool + kPage - 1) / kPage * kPage;
  uint64_t total = pool * 2 * uint64_t(spec.numLayers);
  if (total / 2 / uint64_t(spec.numLayers) != pool || total > SIZE_MAX)
    return fail("KV cache: size overflows");
  void *mem = std::aligned_alloc(kPage, size_t(total));
  if (!mem)
    return fail("KV cache: cannot allocate " + std::to_string(total) +
                " bytes for " + std::to_string(blocks) + " blocks");
  std::unique_ptr<KVCache> kv(new KVCache());
  kv->spec_ = spec;
  kv->numBlocks_ = int32_t(blocks);
  kv->base_ = static_cast<uint8_t *>(mem);
  kv->bytes_ = size_t(total);
  kv->poolBytes_ = size_t(pool);
  kv->scales_.assign(size_t(spec.numLayers) * 2 * size_t(spec.numKVHeads),
                     1.0f);
  return kv;
}

KVCache::~KVCache() { std::free(base_); }

KVLayerView KVCache::layer(int32_t l) const {
  KVLayerView v;
  if (l < 0 || l >= spec_.numLayers)
    return v;
  uint8_t *k = base_ + size_t(l) * 2 * poolBytes_;
  v.k = k;
  v.v = k + poolBytes_;
  v.headStride = spec_.headDim;
  v.tokenStride = int64_t(spec_.numKVHeads) * spec_.headDim;
  v.blockStride = v.tokenStride * spec_.blockSize;
  if (kvIsQuantized(spec_.dtype)) {
    const float *s = scales_.data() + size_t(l) * 2 * size_t(spec_.numKVHeads);
    v.kScale = s;
    v.vScale = s + spec_.numKVHeads;
  }
  return v;
}

bool KVCache::setScales(int32_t l, const float *kScale, const float *vScale,
                        std::string *error) {
  auto fail = [&](std::string msg) {
    if (error)
      *error = std::move(msg);
    return false;
  };
  if (!kvIsQuantized(spec_.dtype))
    return fail(std::string("KV cache: scales given for a ") +
                kvDTypeName(spec_.dtype) + " pool (only int8/fp8 use them)");
  if (l < 0 || l >= spec_.numLayers)
    return fail("KV cache: scales for layer " + std::to_string(l) +
                " of a " + std::to_string(spec_.numLayers) + "-layer pool");
  float *dst = scales_.data() + size_t(l) * 2 * size_t(spec_.numKVHeads);
  for (int32_t h = 0; h < spec_.numKVHeads; ++h)
    for (const float *src : {kScale, vScale})
      if (!(std::isfinite(src[h]) && src[h] > 0))
        return fail("KV cache: layer " + std::to_string(l) + " head " +
                    std::to_string(h) + " has scale " +
                    std::to_string(src[h]) + " (must be finite and > 0)");
  for (int32_t h = 0; h < spec_.numKVHeads; ++h) {
    dst[h] = kScale[h];
    dst[spec_.numKVHeads + h] = vScale[h];
  }
  return true;
}

} // namespace qrt::serving
