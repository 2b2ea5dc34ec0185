//===- FakeQuant.cpp - quantize-dequantize of activations and KV ------===//
//
// Rounding follows what the W8A8 and FP8 kernels of the field do: int8 is
// symmetric with round-half-to-even (torch.round), saturating at 127; fp8 is
// e4m3fn (no infinities, max 448) with round-to-nearest-even and saturation
// (vLLM's scaled_fp8_quant clamps before converting).
//
//===----------------------------------------------------------------------===//
#include "FakeQuant.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"

#include <algorithm>
#include <cmath>

namespace qopt::exec {

bool parseFakeQuantType(const std::string &name, FakeQuantType *type) {
  if (name == "int8")
    *type = FakeQuantType::Int8;
  else if (name == "fp8_e4m3")
    *type = FakeQuantType::FP8E4M3;
  else
    return false;
  return true;
}

float fakeQuantMax(FakeQuantType type) { return type == FakeQuantType::Int8 ? 127.0f : 448.0f; }

float roundToFp8E4M3(float x) {
  if (std::isnan(x))
    return x;
  float a = std::fabs(x);
  if (a >= 448.0f)
    return std::copysign(448.0f, x);
  // Spacing of representable values around a: 2^(e-3) for a normal a in
  // [2^e, 2^(e+1)), 2^-9 for subnormals (a < 2^-6). Dividing and
  // multiplying by a power of two is exact, so nearbyint's ties-to-even on
  // the scaled value is the format's ties-to-even.
  int e;
  std::frexp(a, &e); // a = m * 2^e, m in [0.5, 1)
  int exponent = std::max(e - 1, -6);
  float step = std::ldexp(1.0f, exponent - 3);
  float r = std::nearbyint(a / step) * step;
  return std::copysign(std::min(r, 448.0f), x);
}

float fakeQuantValue(float x, float scale, FakeQuantType type) {
  float y = x / scale;
  if (type == FakeQuantType::Int8)
    return std::clamp(std::nearbyint(y), -127.0f, 127.0f) * scale;
  return roundToFp8E4M3(y) * scale;
}

/// Elements per piece: enough work that waking a thread pays off.
static int64_t grainRows(int64_t dim) {
  return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(dim, 1));
}

void fakeQuantPerToken(const float *x, int64_t rows, int64_t dim, FakeQuantType type, float *out,
                       ThreadPool &pool) {
  const float qmax = fakeQuantMax(type);
  pool.parallelFor(rows, grainRows(dim), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const float *row = x + r * dim;
      float amax = 0;
      for (int64_t j = 0; j < dim; ++j)
        amax = std::max(amax, std::fabs(row[j]));
      float *o = out + r * dim;
      if (!(amax > 0) || !std::isfinite(amax)) {
        // An all-zero row stays zero; a non-finite one is passed through
        // so that the problem shows in the logits instead of hiding.
        std::copy(row, row + dim, o);
        continue;
      }
      float scale = amax / qmax;
      for (int64_t j = 0; j < dim; ++j)
        o[j] = fakeQuantValue(row[j], scale, type);
    }
  });
}

void fakeQuantPerTensor(const float *x, int64_t n, float scale, FakeQuantType type, float *out,
                        ThreadPool &pool) {
  pool.parallelFor(n, 1 << 14, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = fakeQuantValue(x[i], scale, type);
  });
}

void fakeQuantPerHead(const float *x, int64_t rows, int64_t heads, int64_t headDim,
                      const float *scales, FakeQuantType type, float *out, ThreadPool &pool) {
  const int64_t dim = heads * headDim;
  pool.parallelFor(rows, grainRows(dim), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t h = 0; h < heads; ++h) {
        const float *in = x + r * dim + h * headDim;
        float *o = out + r * dim + h * headDim;
        for (int64_t j = 0; j < headDim; ++j)
          o[j] = fakeQuantValue(in[j], scales[h], type);
      }
  });
}

bool decodeActQuant(mlir::Operation *op, ActQuant *q, std::string *error) {
  *q = ActQuant();
  auto linear = llvm::dyn_cast<qllm::LinearOp>(op);
  if (!linear || !linear.getActQuant())
    return true;
  std::string mode = linear.getActQuant()->str();
  std::string type = linear.getActQuantType() ? linear.getActQuantType()->str() : "int8";
  q->enabled = true;
  q->perTensor = mode == "per_tensor";
  if (q->perTensor && linear.getActScale())
    q->scale = float(linear.getActScale()->convertToDouble());
  bool ok = (mode == "per_token" || mode == "per_tensor") && parseFakeQuantType(type, &q->type) &&
            (!q->perTensor || (q->scale > 0 && std::isfinite(q->scale)));
  if (!ok)
    *error = "reference executor: 'qllm.linear' has an invalid activation quantization "
             "(act_quant = \"" +
             mode + "\", act_quant_type = \"" + type + "\"; per_tensor needs a positive act_scale)";
  return ok;
}

bool decodeKVQuant(mlir::Operation *op, int64_t kvHeads, KVQuant *q, std::string *error) {
  *q = KVQuant();
  auto attention = llvm::dyn_cast<qllm::AttentionOp>(op);
  if (!attention || !attention.getKvCacheDtype())
    return true;
  std::string type = attention.getKvCacheDtype()->str();
  q->enabled = true;
  if (auto k = attention.getKScales())
    q->kScales.assign(k->begin(), k->end());
  if (auto v = attention.getVScales())
    q->vScales.assign(v->begin(), v->end());
  bool ok = parseFakeQuantType(type, &q->type) && int64_t(q->kScales.size()) == kvHeads &&
            int64_t(q->vScales.size()) == kvHeads;
  for (float s : q->kScales)
    ok = ok && s > 0 && std::isfinite(s);
  for (float s : q->vScales)
    ok = ok && s > 0 && std::isfinite(s);
  if (!ok)
    *error = "reference executor: 'qllm.attention' has an invalid KV-cache quantization "
             "(kv_cache_dtype = \"" +
             type +
             "\" needs positive k_scales and v_scales, "
             "one per KV head)";
  return ok;
}

const float *applyActQuant(const ActQuant &q, const float *x, int64_t rows, int64_t dim,
                           std::vector<float> &scratch, ThreadPool &pool) {
  if (!q.enabled)
    return x;
  scratch.resize(size_t(rows * dim));
  if (q.perTensor)
    fakeQuantPerTensor(x, rows * dim, q.scale, q.type, scratch.data(), pool);
  else
    fakeQuantPerToken(x, rows, dim, q.type, scratch.data(), pool);
  return scratch.data();
}

} // namespace qopt::exec
