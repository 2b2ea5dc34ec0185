//===- FakeQuant.h - quantize-dequantize of activations and KV --*- C++ -*-===//
//
// W8A8 linears (`act_quant` on qllm.linear) and quantized KV caches
// (`kv_cache_dtype` on qllm.attention) change what a kernel computes. The
// reference executor rounds those tensors exactly as the quantized kernel
// would (scale, round to int8 or fp8 e4m3, scale back), so perplexity and
// KL divergence measured in fp32 predict the quantized artifact.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_EXEC_FAKEQUANT_H
#define QOPT_LIB_EXEC_FAKEQUANT_H

#include "ThreadPool.h"

#include "mlir/IR/Operation.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qopt::exec {

/// Element type of a quantized activation or KV cache.
enum class FakeQuantType { Int8, FP8E4M3 };

/// Parses "int8" / "fp8_e4m3"; false on anything else.
bool parseFakeQuantType(const std::string &name, FakeQuantType *type);

/// Largest magnitude of the type: 127 (symmetric int8) or 448 (e4m3fn).
float fakeQuantMax(FakeQuantType type);

/// Nearest e4m3fn value (ties to even), saturating at +-448. NaN stays NaN.
float roundToFp8E4M3(float x);

/// x / scale rounded to the type (int8: nearest-even, clamped to
/// [-127, 127]), times scale.
float fakeQuantValue(float x, float scale, FakeQuantType type);

/// Per token (dynamic): each row of `dim` gets scale max|row| / qmax.
void fakeQuantPerToken(const float *x, int64_t rows, int64_t dim, FakeQuantType type, float *out,
                       ThreadPool &pool);

/// Per tensor (static): one calibrated scale for every element.
void fakeQuantPerTensor(const float *x, int64_t n, float scale, FakeQuantType type, float *out,
                        ThreadPool &pool);

/// Per head: x is [rows, heads * headDim]; head h uses scales[h].
void fakeQuantPerHead(const float *x, int64_t rows, int64_t heads, int64_t headDim,
                      const float *scales, FakeQuantType type, float *out, ThreadPool &pool);

/// A `qllm.linear`'s activation quantization, decoded once.
struct ActQuant {
  bool enabled = false;
  bool perTensor = false; ///< else per token
  float scale = 0;        ///< per tensor only
  FakeQuantType type = FakeQuantType::Int8;
};

/// A `qllm.attention`'s KV-cache quantization, decoded once.
struct KVQuant {
  bool enabled = false;
  FakeQuantType type = FakeQuantType::Int8;
  std::vector<float> kScales, vScales; ///< one per KV head
};

/// Reads act_quant / act_scale / act_quant_type of a `qllm.linear` (other
/// ops: disabled). False with *error on values the verifier would refuse.
bool decodeActQuant(mlir::Operation *op, ActQuant *q, std::string *error);
/// Reads kv_cache_dtype / k_scales / v_scales of a `qllm.attention`.
bool decodeKVQuant(mlir::Operation *op, int64_t kvHeads, KVQuant *q, std::string *error);

/// The linear's input as the W8A8 kernel sees it: `x` itself when
/// disabled, else a quantized copy in `scratch`.
const float *applyActQuant(const ActQuant &q, const float *x, int64_t rows, int64_t dim,
                           std::vector<float> &scratch, ThreadPool &pool);

} // namespace qopt::exec

#endif
