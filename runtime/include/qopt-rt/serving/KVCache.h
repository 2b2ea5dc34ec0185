//===- KVCache.h - the paged KV pool's memory ------------------*- C++ -*-===//
//
// The bytes behind the blocks that BlockPool hands out: for every layer one
// K pool and one V pool, each laid out [num_blocks, block_size, kv_heads,
// head_dim], all in one page-aligned allocation sized from a byte budget.
// Kernels address token t of a sequence through its block table:
//   k + table[t / block_size] * blockStride + (t % block_size) * tokenStride
//     + head * headStride + d
// (strides in elements), which is also what a StepBatch's slot mapping
// encodes: slot = block * block_size + offset.
//
// Quantized KV (int8, fp8 e4m3) uses the compiled static scales, one per
// layer and KV head for K and one for V: stored = round(x / scale).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_KVCACHE_H
#define QOPT_RT_SERVING_KVCACHE_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qrt::serving {

/// Element type of the KV pool.
enum class KVDType : uint8_t { BF16, F16, I8, FP8E4M3 };

/// Bytes of one element of `t`.
size_t kvElementBytes(KVDType t);
/// "bf16", "f16", "int8", "fp8_e4m3" (the names of qllm.attention's
/// kv_cache_dtype where it has one).
const char *kvDTypeName(KVDType t);
/// Parses those names, plus "fp16" and "fp8" (= fp8_e4m3). False if unknown.
bool parseKVDType(const std::string &name, KVDType *out);
/// True for the types that need scales (int8, fp8).
inline bool kvIsQuantized(KVDType t) {
  return t == KVDType::I8 || t == KVDType::FP8E4M3;
}

/// Shape of the KV pool (everything but the number of blocks).
struct KVCacheSpec {
  int32_t numLayers = 0;
  int32_t numKVHeads = 0;
  int32_t headDim = 0;
  int32_t blockSize = 16; ///< tokens per block
  KVDType dtype = KVDType::BF16;
};

/// What a kernel needs to read and write one layer's KV. Strides are in
/// elements of the pool's type.
struct KVLayerView {
  void *k = nullptr;
  void *v = nullptr;
  int64_t blockStride = 0; ///< block_size * kv_heads * head_dim
  int64_t tokenStride = 0; ///< kv_heads * head_dim
  int64_t headStride = 0;  ///< head_dim
  /// [kv_heads] static scales for int8/fp8 pools; null for bf16/f16.
  const float *kScale = nullptr;
  const float *vScale = nullptr;
};

/// The KV pool's memory. Not copyable; the executor holds a reference while
/// the scheduler hands out block ids in [0, numBlocks()).
class KVCache {
public:
  /// Bytes one block takes over all layers, K and V; 0 when `spec` is
  /// invalid (see validate()).
  static uint64_t bytesPerBlock(const KVCacheSpec &spec);
  /// "" when `spec` is usable, else a one-line reason.
  static std::string validate(const KVCacheSpec &spec);
  /// Allocates as many blocks as fit in `byteBudget` bytes (the allocation
  /// is a little larger: each pool is padded to a page). Returns nullptr and
  /// sets *error when the spec is invalid, the budget holds no block, or the
  /// memory cannot be had. `maxBlocks` > 0 caps the count (the scheduler's
  /// block ids are int32).
  static std::unique_ptr<KVCache> create(const KVCacheSpec &spec,
                                         uint64_t byteBudget,
                                         std::string *error,
                                         int32_t maxBlocks = 0);
  ~KVCache();
  KVCache(const KVCache &) = delete;
  KVCache &operator=(const KVCache &) = delete;

  const KVCacheSpec &spec() const { return spec_; }
  int32_t numBlocks() const { return numBlocks_; }
  /// Size of the allocation in bytes.
  size_t allocatedBytes() const { return bytes_; }
  /// Pointers and strides of layer `layer` in [0, numLayers).
  KVLayerView layer(int32_t layer) const;
  /// Sets the static scales of `layer` (kv_heads values each, all finite and
  /// > 0). Only for int8/fp8 pools; all scales start at 1.
  bool setScales(int32_t layer, const float *kScale, const float *vScale,
                 std::string *error);

private:
  KVCache() = default;
  KVCacheSpec spec_;
  int32_t numBlocks_ = 0;
  uint8_t *base_ = nullptr;
  size_t bytes_ = 0;
  size_t poolBytes_ = 0; ///< one K or V pool of one layer, page-padded
  std::vector<float> scales_; ///< [layers][2][kv_heads]
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_KVCACHE_H
