//===- CpuModelExecutor.cpp - Llama decoder forward pass over a paged KV pool ===//
//
// One step = every new token of every scheduled sequence, concatenated
// ([T, hidden] activations). Per layer: norm -> q/k/v -> rotary + KV write
// through the slot mapping -> paged attention through the block tables ->
// o -> residual -> norm -> gate/up -> SwiGLU -> down -> residual. Matches
// the compiler's reference executor (lib/Exec/Kernels.cpp) formula for
// formula; only summation orders differ.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/model/CpuModelExecutor.h"

#include "PagedAttention.h"

#include "qopt-rt/half.h"
#include "qopt-rt/kernels/FloatGemm.h"
#include "qopt-rt/kernels/ThreadPool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace qrt::model {

using kernels::ThreadPool;
using serving::KVDType;
using serving::StepBatch;

// --- small helpers ---------------------------------------------------------

/// Runs f(begin, end) over [0, n) split evenly across the pool's workers
/// (inline when n is small).
template <class F>
static void parallelRange(ThreadPool &pool, int64_t n, int64_t minPerWorker, F &&f) {
  int64_t parts = std::min<int64_t>(pool.size(), std::max<int64_t>(1, n / std::max<int64_t>(1, minPerWorker)));
  if (parts <= 1) {
    if (n > 0)
      f(int64_t(0), n, 0);
    return;
  }
  pool.run(int(parts), [&](int w) {
    int64_t b = n * w / parts, e = n * (w + 1) / parts;
    if (b < e)
      f(b, e, w);
  });
}

/// Work (multiply-adds) below which a kernel stays on the calling thread:
/// a fork-join costs microseconds, and much more when the machine is
/// oversubscribed and a worker has to be scheduled first.
static constexpr int64_t kMinParallelMacs = int64_t(1) << 19;

static void rowToF32(const TensorView &t, int64_t row, float *out) {
  if (t.format == WeightFormat::F32) {
    std::memcpy(out, static_cast<const float *>(t.data) + row * t.cols, sizeof(float) * t.cols);
  } else {
    const uint16_t *src = static_cast<const uint16_t *>(t.data) + row * t.cols;
    for (int64_t i = 0; i < t.cols; ++i)
      out[i] = bf16ToF32(src[i]);
  }
}

/// The kernels' options for a quantized weight: W8A8 linears (act_quant)
/// always take int8 activations rounded as their act_quant says; the
/// others the executor's choice.
static kernels::GemmOptions gemmOptionsFor(const TensorView &w, kernels::Activations act,
                                           ThreadPool &pool) {
  kernels::GemmOptions o;
  o.activations = act;
  o.pool = &pool;
  if (w.actQuant.enabled) {
    o.activations = kernels::Activations::Int8;
    o.actQuant = w.actQuant.mode;
    o.staticScale = w.actQuant.scale;
  }
  return o;
}

/// out = x with each row quantized and dequantized as `q` says (a float
/// weight with act_quant: the reference rounds its input the same way).
static bool fakeQuantize(const ActivationQuant &q, const float *x, int64_t m, int64_t k,
                         ThreadPool &pool, std::vector<float> *out, std::string *error) {
  thread_local kernels::PreparedActivations prepared;
  kernels::GemmOptions o;
  o.isa = kernels::Isa::Scalar; // PerToken / Static quantize in scalar code anyway
  o.actQuant = q.mode;
  o.staticScale = q.scale;
  o.pool = &pool;
  if (!kernels::prepareActivations(x, m, k, k, k, o, &prepared, error))
    return false;
  out->resize(size_t(m * k));
  const int64_t kp = prepared.paddedCols, blocks = kp / kernels::kActBlock;
  for (int64_t r = 0; r < m; ++r) {
    const float s = prepared.sx[size_t(r * blocks)];
    for (int64_t c = 0; c < k; ++c)
      (*out)[size_t(r * k + c)] = float(prepared.q[size_t(r * kp + c)]) * s;
  }
  return true;
}

bool linearForward(const TensorView &w, const float *x, int64_t m, float *y,
                   const float *bias, kernels::Activations act, ThreadPool &pool,
                   std::string *error) {
  if (m <= 0)
    return true;
  if (w.format == WeightFormat::Packed) {
    kernels::GemmOptions o = gemmOptionsFor(w, act, pool);
    const int64_t k = w.packed.geometry.cols, n = w.packed.geometry.rows;
    // A small GEMV finishes before a second thread would wake up.
    if (m * n * k < kMinParallelMacs)
      o.threads = 1;
    return kernels::qgemm(w.packed, x, m, k, y, n, bias, o, error);
  }
  // fp32 / bf16 weights (typically the lm_head): register-tiled kernel,
  // bf16 widened in registers (kernels/FloatGemm.h).
  thread_local std::vector<float> rounded;
  if (w.actQuant.enabled) {
    if (!fakeQuantize(w.actQuant, x, m, w.cols, pool, &rounded, error))
      return false;
    x = rounded.data();
  }
  const kernels::FloatWeight fw{w.format == WeightFormat::BF16 ? kernels::FloatFormat::BF16
                                                                 : kernels::FloatFormat::F32,
                                w.rows, w.cols, w.data};
  kernels::FloatGemmOptions o;
  o.pool = &pool;
  return kernels::floatGemm(fw, x, m, w.cols, y, w.rows, bias, o, error);
}

std::vector<float> ropeInvFreq(int32_t rotaryDim, double theta, const RopeScaling &s) {
  // 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in fp32, as transformers.
  const int32_t half = rotaryDim / 2;
  std::vector<float> inv(half);
  const float base = float(theta);
  for (int32_t i = 0; i < half; ++i)
    inv[i] = 1.0f / std::pow(base, float(2 * i) / float(rotaryDim));
  if (s.type == "linear") {
    for (float &f : inv)
      f = f / float(s.factor);
  } else if (s.type == "llama3") {
    // transformers' _compute_llama3_parameters with fp32 tensors.
    const float factor = float(s.factor);
    const float oldCtx = float(s.originalMaxPositionEmbeddings);
    const float lowWavelen = float(s.originalMaxPositionEmbeddings / s.lowFreqFactor);
    const float highWavelen = float(s.originalMaxPositionEmbeddings / s.highFreqFactor);
    const float twoPi = float(2.0 * M_PI);
    const float lowF = float(s.lowFreqFactor);
    const float span = float(s.highFreqFactor - s.lowFreqFactor);
    for (float &f : inv) {
      float wavelen = (1.0f / f) * twoPi;
      float llama = wavelen > lowWavelen ? f / factor : f;
      float smooth = ((1.0f / wavelen) * oldCtx - lowF) / span;
      float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
      bool medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      f = medium ? smoothed : llama;
    }
  }
  return inv;
}

static float fp8Decode(uint8_t b) {
  int e = (b >> 3) & 15, m = b & 7;
  float v = e == 0 ? std::ldexp(float(m) / 8.0f, -6) : std::ldexp(1.0f + float(m) / 8.0f, e - 7);
  return (b & 0x80) ? -v : v;
}

// --- construction ----------------------------------------------------------

CpuModelExecutor::CpuModelExecutor(const ModelWeights &w, serving::KVCache &kv,
                                   const ExecutorOptions &o)
    : w_(w), kv_(kv), opt_(o), pool_(o.pool ? o.pool : &ThreadPool::global()) {}

CpuModelExecutor::~CpuModelExecutor() = default;

static std::vector<float> toF32(const TensorView &t) {
  std::vector<float> v(size_t(t.rows * t.cols));
  for (int64_t r = 0; r < t.rows; ++r)
    rowToF32(t, r, v.data() + r * t.cols);
  return v;
}

std::unique_ptr<CpuModelExecutor>
CpuModelExecutor::create(const ModelWeights &weights, serving::KVCache &kv,
                         const ExecutorOptions &options, std::string *error) {
  std::string e = validateWeights(weights);
  if (e.empty()) {
    const serving::KVCacheSpec &s = kv.spec();
    if (s.numLayers != weights.dims.layers || s.numKVHeads != weights.dims.kvHeads ||
        s.headDim != weights.dims.headDim)
      e = "the KV pool's shape (layers " + std::to_string(s.numLayers) + ", kv heads " +
          std::to_string(s.numKVHeads) + ", head_dim " + std::to_string(s.headDim) +
          ") does not match the model's";
  }
  if (!e.empty()) {
    if (error)
      *error = e;
    return nullptr;
  }
  std::unique_ptr<CpuModelExecutor> x(new CpuModelExecutor(weights, kv, options));
  x->invFreq_ = ropeInvFreq(weights.dims.headDim, weights.dims.ropeTheta,
                            weights.dims.ropeScaling);
  for (const LayerWeights &l : weights.layers) {
    x->inNorm_.push_back(toF32(l.inputNorm));
    x->postNorm_.push_back(toF32(l.postAttentionNorm));
  }
  x->finalNorm_ = toF32(weights.finalNorm);
  for (int c = 0; c < 127; ++c)
    x->fp8Table_.push_back(fp8Decode(uint8_t(c)));
  return x;
}

// --- batch validation ------------------------------------------------------

std::string CpuModelExecutor::checkBatch(const StepBatch &b) const {
  const int32_t T = b.numTokens(), S = b.numSeqs();
  if (int32_t(b.positions.size()) != T || int32_t(b.slotMapping.size()) != T)
    return "step batch: positions/slot mapping sizes differ from the token count";
  if (int32_t(b.queryStart.size()) != S + 1 || int32_t(b.contextLens.size()) != S ||
      int32_t(b.blockTableStart.size()) != S + 1)
    return "step batch: per-sequence array sizes are inconsistent";
  if (b.blockSize != kv_.spec().blockSize)
    return "step batch: block size " + std::to_string(b.blockSize) +
           " differs from the KV pool's " + std::to_string(kv_.spec().blockSize);
  if (S > 0 && (b.queryStart[0] != 0 || b.queryStart[S] != T))
    return "step batch: query starts do not cover the tokens";
  const int64_t slots = int64_t(kv_.numBlocks()) * b.blockSize;
  for (int32_t t = 0; t < T; ++t) {
    if (b.tokenIds[t] < 0 || b.tokenIds[t] >= w_.dims.vocab)
      return "step batch: token id " + std::to_string(b.tokenIds[t]) +
             " is outside the vocabulary (" + std::to_string(w_.dims.vocab) + ")";
    if (b.slotMapping[t] < 0 || b.slotMapping[t] >= slots)
      return "step batch: KV slot " + std::to_string(b.slotMapping[t]) + " is outside the pool";
    if (b.positions[t] < 0)
      return "step batch: negative position";
  }
  for (int32_t s = 0; s < S; ++s) {
    int32_t q0 = b.queryStart[s], q1 = b.queryStart[s + 1];
    if (q1 < q0)
      return "step batch: query starts decrease";
    int32_t ctx = b.contextLens[s];
    int64_t nb = b.blockTableStart[s + 1] - b.blockTableStart[s];
    if (ctx < q1 - q0 || nb * b.blockSize < ctx || b.blockTableStart[s] < 0 ||
        b.blockTableStart[s + 1] > int32_t(b.blockTable.size()))
      return "step batch: sequence " + std::to_string(s) + "'s block table does not cover its context";
    for (int64_t j = b.blockTableStart[s]; j < b.blockTableStart[s + 1]; ++j)
      if (b.blockTable[j] < 0 || b.blockTable[j] >= kv_.numBlocks())
        return "step batch: block id " + std::to_string(b.blockTable[j]) + " is outside the pool";
    for (int32_t t = q0; t < q1; ++t)
      if (b.positions[t] >= ctx)
        return "step batch: position " + std::to_string(b.positions[t]) +
               " is beyond the context length " + std::to_string(ctx);
  }
  for (size_t i = 0; i < b.sampleIndices.size(); ++i)
    if (b.sampleIndices[i] < 0 || b.sampleIndices[i] >= S ||
        b.queryStart[b.sampleIndices[i] + 1] == b.queryStart[b.sampleIndices[i]])
      return "step batch: bad sample index";
  return "";
}

// --- the forward pass ------------------------------------------------------

namespace {
/// Stores one KV element in the pool's type (PagedAttention.cpp reads them).
struct KVCodec {
  KVDType type;
  const std::vector<float> *fp8;
  inline void store(void *base, int64_t idx, float x, float scale) const {
    // Quantized pools: stored = round(x / scale), as the KV pool specifies.
    switch (type) {
    case KVDType::BF16:
      static_cast<uint16_t *>(base)[idx] = f32ToBf16(x);
      break;
    case KVDType::F16:
      static_cast<uint16_t *>(base)[idx] = f32ToF16(x);
      break;
    case KVDType::I8: {
      float r = std::nearbyint(x / scale);
      r = std::min(127.0f, std::max(-127.0f, r));
      static_cast<int8_t *>(base)[idx] = int8_t(r);
      break;
    }
    case KVDType::FP8E4M3: {
      float a = std::fabs(x / scale);
      uint8_t code;
      if (!(a == a)) {
        code = 0;
      } else {
        a = std::min(a, 448.0f);
        const std::vector<float> &t = *fp8;
        auto it = std::lower_bound(t.begin(), t.end(), a);
        size_t hi = size_t(it - t.begin());
        if (hi >= t.size())
          hi = t.size() - 1;
        size_t c = hi;
        if (hi > 0) {
          float dl = a - t[hi - 1], dh = t[hi] - a;
          if (dl < dh || (dl == dh && ((hi - 1) % 2 == 0)))
            c = hi - 1;
        }
        code = uint8_t(c);
      }
      if (std::signbit(x) && code != 0)
        code |= 0x80;
      static_cast<uint8_t *>(base)[idx] = code;
      break;
    }
    }
  }
};

void rmsNorm(const float *x, const float *weight, int64_t rows, int64_t dim, float eps,
             float *out) {
  // transformers: x * rsqrt(mean(x^2) + eps) * weight; sum of squares in double
  // as the reference executor does.
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i)
      ss += double(xr[i]) * double(xr[i]);
    float inv = 1.0f / std::sqrt(float(ss / double(dim)) + eps);
    float *o = out + r * dim;
    for (int64_t i = 0; i < dim; ++i)
      o[i] = weight[i] * (xr[i] * inv);
  }
}
} // namespace

bool CpuModelExecutor::execute(const StepBatch &batch, float *logits, std::string *error) {
  return run(batch, logits, false, error);
}

bool CpuModelExecutor::executeAllLogits(const StepBatch &batch, float *logits,
                                        std::string *error) {
  return run(batch, logits, true, error);
}

bool CpuModelExecutor::run(const StepBatch &b, float *logits, bool allRows,
                           std::string *error) {
  std::string e = checkBatch(b);
  if (!e.empty()) {
    if (error)
      *error = e;
    return false;
  }
  const int64_t T = b.numTokens();
  if (T == 0)
    return true;
  const ModelDims &d = w_.dims;
  const int64_t H = d.hidden, hd = d.headDim, nH = d.heads, nKV = d.kvHeads;
  const int64_t Q = nH * hd, KV = nKV * hd, I = d.intermediate;
  const int64_t group = nH / nKV, half = hd / 2;
  const float eps = float(d.rmsEps);
  const float scale = 1.0f / std::sqrt(float(hd));
  ThreadPool &pool = *pool_;
  const int64_t QKV = Q + 2 * KV;
  x_.resize(T * H);
  h_.resize(T * std::max(H, Q));
  qkv_.resize(T * QKV);
  attn_.resize(T * Q);
  gateUp_.resize(T * 2 * I);
  act_.resize(T * I);

  // Sequence of each token (for its block table).
  std::vector<int32_t> seqOf(T);
  for (int32_t s = 0; s < b.numSeqs(); ++s)
    for (int32_t t = b.queryStart[s]; t < b.queryStart[s + 1]; ++t)
      seqOf[t] = s;

  // cos/sin per token (fp32 angles, as transformers).
  std::vector<float> cosT(T * half), sinT(T * half);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      float angle = float(b.positions[t]) * invFreq_[i];
      cosT[t * half + i] = float(std::cos(double(angle)));
      sinT[t * half + i] = float(std::sin(double(angle)));
    }

  for (int64_t t = 0; t < T; ++t)
    rowToF32(w_.embedding, b.tokenIds[t], x_.data() + t * H);

  const KVCodec codec{kv_.spec().dtype, &fp8Table_};
  const bool quantKV = serving::kvIsQuantized(kv_.spec().dtype);
  int32_t maxCtx = 0;
  for (int32_t c : b.contextLens)
    maxCtx = std::max(maxCtx, c);

  auto linear = [&](const TensorView &w, const float *in, float *out, const float *bias,
                    const char *what, int64_t layer) {
    std::string err;
    if (!linearForward(w, in, T, out, bias, opt_.activations, pool, &err)) {
      if (error)
        *error = "layer " + std::to_string(layer) + " " + what + ": " + err;
      return false;
    }
    return true;
  };

  // Pieces small enough to run inline (see kMinParallelMacs).
  const int64_t rowGrain = std::max<int64_t>(1, kMinParallelMacs / 8 / H);
  const int64_t ropeGrain = std::max<int64_t>(1, kMinParallelMacs / 8 / (Q + 2 * KV));
  // (token, KV head) items: each one is 2 * group * head_dim * context MACs.
  const int64_t attnGrain =
      std::max<int64_t>(1, kMinParallelMacs / (2 * group * hd * std::max<int32_t>(1, maxCtx)));
  // The widest padded K among the quantized weights that read one input
  // (0: none is quantized, nothing to prepare).
  auto paddedFor = [](std::initializer_list<const TensorView *> ws) {
    int64_t p = 0;
    for (const TensorView *w : ws)
      if (w->valid() && w->format == WeightFormat::Packed)
        p = std::max(p, w->packed.geometry.paddedCols);
    return p;
  };
  // The activation quantization one prepared input is made for: that of
  // the first quantized weight reading it. The writer fuses q/k/v (gate/up)
  // only when their act_quant agrees; separate ones that differ (mixed
  // precision) are each quantized by their own qgemm (see project).
  auto quantFor = [](std::initializer_list<const TensorView *> ws) {
    for (const TensorView *w : ws)
      if (w->valid() && w->format == WeightFormat::Packed)
        return w->actQuant;
    return ActivationQuant();
  };
  auto sizePrepared = [&](kernels::PreparedActivations *p, int64_t cols, int64_t pad,
                          const ActivationQuant &aq, int64_t layer) {
    std::string err;
    TensorView probe;
    probe.actQuant = aq;
    const kernels::GemmOptions o = gemmOptionsFor(probe, opt_.activations, pool);
    if (pad > 0 && !kernels::resizePrepared(p, T, cols, pad, o, &err)) {
      if (error)
        *error = "layer " + std::to_string(layer) + ": " + err;
      return false;
    }
    return true;
  };
  // y (row stride ldy) = in W^T + bias: quantized weights from the prepared
  // input, float ones from the plain rows `plain` ([T, w.cols]).
  auto project = [&](const TensorView &w, const kernels::PreparedActivations &prepared,
                     const float *plain, float *y, int64_t ldy, const float *bias,
                     const char *what, int64_t layer) {
    std::string err;
    bool ok;
    kernels::GemmOptions o = gemmOptionsFor(w, opt_.activations, pool);
    const bool fits = w.format == WeightFormat::Packed && prepared.activations == o.activations &&
                      (o.activations == kernels::Activations::Float ||
                       (prepared.actQuant == o.actQuant &&
                        prepared.staticScale ==
                            (o.actQuant == kernels::ActQuantMode::Static ? o.staticScale : 0.0f)));
    if (fits) {
      const int64_t n = w.packed.geometry.rows, k = w.packed.geometry.cols;
      // A small GEMV finishes before a second thread would wake up.
      if (T * n * k < kMinParallelMacs)
        o.threads = 1;
      ok = kernels::qgemmPrepared(w.packed, prepared, y, ldy, bias, o, &err);
    } else if (ldy == w.rows) {
      ok = linearForward(w, plain, T, y, bias, opt_.activations, pool, &err);
    } else {
      tmp_.resize(size_t(T * w.rows));
      ok = linearForward(w, plain, T, tmp_.data(), bias, opt_.activations, pool, &err);
      for (int64_t t = 0; ok && t < T; ++t)
        std::memcpy(y + t * ldy, tmp_.data() + t * w.rows, sizeof(float) * w.rows);
    }
    if (!ok && error)
      *error = "layer " + std::to_string(layer) + " " + what + ": " + err;
    return ok;
  };
  // rms_norm of x_ into h_, each row prepared for the quantized GEMMs
  // right after it is normed (still in cache; one fork-join for both).
  auto normInto = [&](const std::vector<float> &weight, kernels::PreparedActivations *p,
                      int64_t pad) {
    parallelRange(pool, T, rowGrain, [&](int64_t s, int64_t e2, int) {
      for (int64_t t = s; t < e2; ++t) {
        rmsNorm(x_.data() + t * H, weight.data(), 1, H, eps, h_.data() + t * H);
        if (pad > 0)
          kernels::prepareRows(p, h_.data() + t * H, H, t, t + 1);
      }
    });
  };

  for (int64_t l = 0; l < d.layers; ++l) {
    const LayerWeights &L = w_.layers[l];
    const serving::KVLayerView kv = kv_.layer(int32_t(l));
    // q, k, v side by side in qkv_ rows: one GEMM when fused.
    const int64_t padQkv = L.fusedQkv() ? paddedFor({&L.qkv}) : paddedFor({&L.q, &L.k, &L.v});
    const ActivationQuant aqQkv =
        L.fusedQkv() ? quantFor({&L.qkv}) : quantFor({&L.q, &L.k, &L.v});
    if (!sizePrepared(&normed_, H, padQkv, aqQkv, l))
      return false;
    normInto(inNorm_[l], &normed_, padQkv);
    float *qkv = qkv_.data();
    if (L.fusedQkv()) {
      if (!project(L.qkv, normed_, h_.data(), qkv, QKV, L.qkvBias, "qkv_proj", l))
        return false;
    } else if (!project(L.q, normed_, h_.data(), qkv, QKV, L.qBias, "q_proj", l) ||
               !project(L.k, normed_, h_.data(), qkv + Q, QKV, L.kBias, "k_proj", l) ||
               !project(L.v, normed_, h_.data(), qkv + Q + KV, QKV, L.vBias, "v_proj", l)) {
      return false;
    }

    // Rotary on q and k, and the K/V write into the paged pool.
    parallelRange(pool, T, ropeGrain, [&](int64_t s, int64_t e2, int) {
      for (int64_t t = s; t < e2; ++t) {
        const float *c = &cosT[t * half], *sn = &sinT[t * half];
        auto rope = [&](float *head) {
          for (int64_t i = 0; i < half; ++i) {
            float a = head[i], bb = head[i + half];
            head[i] = a * c[i] - bb * sn[i];
            head[i + half] = bb * c[i] + a * sn[i];
          }
        };
        for (int64_t h = 0; h < nH; ++h)
          rope(qkv + t * QKV + h * hd);
        const int64_t slot = b.slotMapping[t];
        const int64_t base = (slot / b.blockSize) * kv.blockStride + (slot % b.blockSize) * kv.tokenStride;
        for (int64_t h = 0; h < nKV; ++h) {
          float *kh = qkv + t * QKV + Q + h * hd;
          rope(kh);
          const float *vh = qkv + t * QKV + Q + KV + h * hd;
          float ik = quantKV ? kv.kScale[h] : 1.0f;
          float iv = quantKV ? kv.vScale[h] : 1.0f;
          for (int64_t i = 0; i < hd; ++i) {
            codec.store(kv.k, base + h * kv.headStride + i, kh[i], ik);
            codec.store(kv.v, base + h * kv.headStride + i, vh[i], iv);
          }
        }
      }
    });

    // Paged causal attention: one (token, KV head) per work item.
    PagedAttentionArgs pa;
    pa.kv = kv;
    pa.dtype = kv_.spec().dtype;
    pa.fp8Table = fp8Table_.data();
    pa.numTokens = T;
    pa.heads = nH;
    pa.kvHeads = nKV;
    pa.headDim = hd;
    pa.blockSize = b.blockSize;
    pa.scale = scale;
    pa.q = qkv;
    pa.qStride = QKV;
    pa.positions = b.positions.data();
    pa.seqOf = seqOf.data();
    pa.blockTable = b.blockTable.data();
    pa.blockTableStart = b.blockTableStart.data();
    pa.out = attn_.data();
    pa.outStride = Q;
    pagedAttention(pa, pool, attnGrain);

    if (!linear(L.o, attn_.data(), h_.data(), nullptr, "o_proj", l))
      return false;
    for (int64_t i = 0; i < T * H; ++i)
      x_[i] += h_[i];

    // gate and up side by side in gateUp_ rows: one GEMM when fused.
    const int64_t padGateUp =
        L.fusedGateUp() ? paddedFor({&L.gateUp}) : paddedFor({&L.gate, &L.up});
    const ActivationQuant aqGateUp =
        L.fusedGateUp() ? quantFor({&L.gateUp}) : quantFor({&L.gate, &L.up});
    if (!sizePrepared(&normed_, H, padGateUp, aqGateUp, l))
      return false;
    normInto(postNorm_[l], &normed_, padGateUp);
    float *gu = gateUp_.data();
    if (L.fusedGateUp()) {
      if (!project(L.gateUp, normed_, h_.data(), gu, 2 * I, nullptr, "gate_up_proj", l))
        return false;
    } else if (!project(L.gate, normed_, h_.data(), gu, 2 * I, nullptr, "gate_proj", l) ||
               !project(L.up, normed_, h_.data(), gu + I, 2 * I, nullptr, "up_proj", l)) {
      return false;
    }
    // SwiGLU row by row, each row prepared for down_proj while in cache.
    const int64_t padDown = paddedFor({&L.down});
    if (!sizePrepared(&swiglu_, I, padDown, quantFor({&L.down}), l))
      return false;
    parallelRange(pool, T, std::max<int64_t>(1, kMinParallelMacs / 8 / I),
                  [&](int64_t s, int64_t e2, int) {
      for (int64_t t = s; t < e2; ++t) {
        const float *g = gu + t * 2 * I, *u = g + I;
        float *a = act_.data() + t * I;
        for (int64_t i = 0; i < I; ++i)
          a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
        if (padDown > 0)
          kernels::prepareRows(&swiglu_, a, I, t, t + 1);
      }
    });
    if (!project(L.down, swiglu_, act_.data(), h_.data(), H, nullptr, "down_proj", l))
      return false;
    for (int64_t i = 0; i < T * H; ++i)
      x_[i] += h_[i];
  }

  // Final norm and lm_head on the rows whose logits are wanted.
  std::vector<int64_t> rows;
  if (allRows) {
    for (int64_t t = 0; t < T; ++t)
      rows.push_back(t);
  } else {
    for (int32_t s : b.sampleIndices)
      rows.push_back(b.queryStart[s + 1] - 1);
  }
  if (rows.empty())
    return true;
  const int64_t R = int64_t(rows.size());
  rows_.resize(R * H);
  for (int64_t r = 0; r < R; ++r)
    rmsNorm(x_.data() + rows[r] * H, finalNorm_.data(), 1, H, eps, rows_.data() + r * H);
  std::string err;
  if (!linearForward(w_.lmHead, rows_.data(), R, logits, nullptr, opt_.activations, pool, &err)) {
    if (error)
      *error = "lm_head: " + err;
    return false;
  }
  return true;
}

} // namespace qrt::model
