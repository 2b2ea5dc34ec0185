//===- Quantizer.cpp - the reference quantize / dequantize / store -------===//
//
// Every method ends here: RTN calls quantizeRTN, GPTQ and AWQ choose codes
// their own way but share groupParams / quantizeValue and storeQuantized,
// and the executor reads the result back with loadQuantized + dequantize.
// One implementation of the arithmetic means the IR's promise ("these
// codes, these scales") is the same everywhere.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/Quantizer.h"

#include "qopt-rt/half.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/STLExtras.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

namespace qopt::quant {

//===----------------------------------------------------------------------===//
// Element encodings
//===----------------------------------------------------------------------===//

// bitsandbytes' NF4 table (create_normal_map): 8 negative and 8
// non-negative quantiles of N(0, 1), normalized to [-1, 1].
const float kNF4Levels[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

uint8_t nf4Encode(float x) {
  if (x != x) // NaN: the zero level, never a crash
    return 7;
  // The 15 midpoints between neighbouring levels decide.
  static const auto mids = [] {
    std::array<float, 15> m{};
    for (int i = 0; i < 15; ++i)
      m[i] = 0.5f * (kNF4Levels[i] + kNF4Levels[i + 1]);
    return m;
  }();
  // Branch-free count of the midpoints below x (= lower_bound's index):
  // a search's unpredictable branches cost more than 15 compares.
  uint8_t i = 0;
  for (int j = 0; j < 15; ++j)
    i += x > mids[j];
  // x == mids[i]: a tie between levels i and i + 1 goes to the even code.
  if (i < 15 && x == mids[i] && (i & 1))
    ++i;
  return i;
}

uint8_t fp8e4m3Encode(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) // NaN stays NaN
    return uint8_t(sign | 0x7f);
  float a;
  std::memcpy(&a, &absu, 4);
  if (a >= kFP8E4M3Max) // saturate, infinity included
    return uint8_t(sign | 0x7e);
  if (a < 0.015625f) {
    // Below 2^-6, the smallest normal: subnormal steps of 2^-9 (a * 512 is
    // exact), zero included; a code of 8 is the smallest normal, 0x08.
    return uint8_t(sign | uint8_t(std::nearbyint(a * 512.0f)));
  }
  // Normal: keep 3 of fp32's 23 mantissa bits, round to nearest even.
  int exp = int(absu >> 23) - 127;
  uint32_t man = absu & 0x7fffffu;
  uint32_t mant = (man + 0x7ffffu + ((man >> 20) & 1u)) >> 20;
  if (mant == 8) {
    mant = 0;
    ++exp;
  }
  int biased = exp + 7;
  if (biased > 15 || (biased == 15 && mant == 7)) // 480 is NaN's slot: saturate
    return uint8_t(sign | 0x7e);
  return uint8_t(sign | uint8_t(biased << 3) | uint8_t(mant));
}

float fp8e4m3Decode(uint8_t bits) {
  float sign = (bits & 0x80) ? -1.0f : 1.0f;
  int biased = (bits >> 3) & 0xf;
  int mant = bits & 0x7;
  if (biased == 15 && mant == 7)
    return std::nanf("");
  if (biased == 0)
    return sign * std::ldexp(float(mant), -9);
  return sign * std::ldexp(float(8 + mant), biased - 7 - 3);
}

//===----------------------------------------------------------------------===//
// Groups
//===----------------------------------------------------------------------===//

/// Rounds a positive scale to fp16, never to zero or infinity (a zero
/// scale would divide by zero; the smallest subnormal keeps codes finite).
static float roundScaleF16(float s) {
  float r = qrt::f16ToF32(qrt::f32ToF16(s));
  if (!(r > 0))
    r = qrt::f16ToF32(1); // 2^-24
  if (std::isinf(r))
    r = 65504.0f;
  return r;
}

static float intMidpoint(const Format &f) { return float(1u << (f.bits - 1)); }
static float intMaxCode(const Format &f) { return float((1u << f.bits) - 1); }

void groupParams(const float *x, int64_t n, const Format &format, float clip, float *scale,
                 float *zero) {
  float mn = 0, mx = 0, amax = 0;
  for (int64_t i = 0; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  // The grid always holds 0 (min <= 0 <= max), as GPTQ's and most RTN
  // quantizers do: zero weights stay exactly zero, a constant group needs
  // no special case.
  mn *= clip;
  mx *= clip;
  amax = std::max(-mn, mx);
  switch (format.kind) {
  case qllm::ElementKind::Int:
    if (format.symmetric) {
      float qpos = intMidpoint(format) - 1;
      *scale = amax > 0 ? roundScaleF16(amax / qpos) : 1.0f;
      *zero = intMidpoint(format);
    } else {
      float qmax = intMaxCode(format);
      *scale = mx > mn ? roundScaleF16((mx - mn) / qmax) : 1.0f;
      *zero = std::clamp(std::nearbyint(-mn / *scale), 0.0f, qmax);
    }
    return;
  case qllm::ElementKind::NF4:
    // The raw absmax; quantizeRTN double-quantizes a matrix's worth of them.
    *scale = amax;
    *zero = 0;
    return;
  case qllm::ElementKind::FP8E4M3:
    *scale = amax > 0 ? amax / kFP8E4M3Max : 1.0f;
    *zero = 0;
    return;
  }
}

uint8_t quantizeValue(float x, float scale, float zero, const Format &format) {
  switch (format.kind) {
  case qllm::ElementKind::Int: {
    float z = format.symmetric ? intMidpoint(format) : zero;
    float q = std::nearbyint(x / scale) + z;
    return uint8_t(std::clamp(q, 0.0f, intMaxCode(format)));
  }
  case qllm::ElementKind::NF4:
    return nf4Encode(scale > 0 ? x / scale : 0.0f);
  case qllm::ElementKind::FP8E4M3:
    return fp8e4m3Encode(x / scale);
  }
  return 0;
}

float dequantizeValue(uint8_t code, float scale, float zero, const Format &format) {
  switch (format.kind) {
  case qllm::ElementKind::Int:
    return (float(code) - (format.symmetric ? intMidpoint(format) : zero)) * scale;
  case qllm::ElementKind::NF4:
    return kNF4Levels[code & 0xf] * scale;
  case qllm::ElementKind::FP8E4M3:
    return fp8e4m3Decode(code) * scale;
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// Matrices
//===----------------------------------------------------------------------===//

void doubleQuantizeAbsmax(QuantizedMatrix *q) {
  const int64_t blocks = int64_t(q->scales.size());
  const int64_t chunks = (blocks + kNF4AbsmaxChunk - 1) / kNF4AbsmaxChunk;
  q->absmaxCodes.assign(size_t(blocks), 0);
  q->absmaxChunks.assign(size_t(chunks * 2), 0);
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b0 = c * kNF4AbsmaxChunk, b1 = std::min(blocks, b0 + kNF4AbsmaxChunk);
    float lo = q->scales[b0], hi = q->scales[b0];
    for (int64_t b = b0; b < b1; ++b) {
      lo = std::min(lo, q->scales[b]);
      hi = std::max(hi, q->scales[b]);
    }
    // Linear 8-bit codes between the chunk's smallest and largest absmax:
    // blocks of one weight matrix span a narrow range, so the relative
    // error stays far below NF4's own level spacing.
    float step = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    q->absmaxChunks[c * 2] = lo;
    q->absmaxChunks[c * 2 + 1] = step;
    for (int64_t b = b0; b < b1; ++b) {
      float code = std::clamp(std::nearbyint((q->scales[b] - lo) / step), 0.0f, 255.0f);
      q->absmaxCodes[b] = uint8_t(code);
      q->scales[b] = lo + code * step;
    }
  }
}

QuantizedMatrix quantizeRTN(const float *weights, int64_t rows, int64_t cols,
                            const Format &format) {
  QuantizedMatrix q;
  q.rows = rows;
  q.cols = cols;
  q.format = format;
  const int64_t groups = format.numGroups(cols);
  q.codes.resize(size_t(rows * cols));
  q.scales.resize(size_t(rows * groups));
  const bool hasZeros = format.kind == qllm::ElementKind::Int && !format.symmetric;
  if (hasZeros)
    q.zeros.resize(size_t(rows * groups));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      int64_t b = format.groupBegin(g, cols), e = format.groupEnd(g, cols);
      float s = 1, z = 0;
      groupParams(weights + r * cols + b, e - b, format, 1.0f, &s, &z);
      q.scales[r * groups + g] = s;
      if (hasZeros)
        q.zeros[r * groups + g] = z;
    }
  if (format.kind == qllm::ElementKind::NF4)
    doubleQuantizeAbsmax(&q);
  for (int64_t r = 0; r < rows; ++r) {
    const float *w = weights + r * cols;
    uint8_t *c = q.codes.data() + r * cols;
    for (int64_t g = 0; g < groups; ++g) {
      int64_t b = format.groupBegin(g, cols), e = format.groupEnd(g, cols);
      float s = q.scales[r * groups + g];
      float z = hasZeros ? q.zeros[r * groups + g] : 0.0f;
      if (format.kind == qllm::ElementKind::Int) {
        // The hot loop of RTN: kept free of the per-kind switch.
        float zz = format.symmetric ? intMidpoint(format) : z, qmax = intMaxCode(format);
        for (int64_t k = b; k < e; ++k)
          c[k] = uint8_t(std::clamp(std::nearbyint(w[k] / s) + zz, 0.0f, qmax));
      } else {
        for (int64_t k = b; k < e; ++k)
          c[k] = quantizeValue(w[k], s, z, format);
      }
    }
  }
  return q;
}

std::vector<float> dequantize(const QuantizedMatrix &q) {
  std::vector<float> out(size_t(q.rows * q.cols));
  const int64_t groups = q.format.numGroups(q.cols);
  const bool hasZeros = !q.zeros.empty();
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      int64_t b = q.format.groupBegin(g, q.cols), e = q.format.groupEnd(g, q.cols);
      float s = q.scales[r * groups + g];
      float z = hasZeros ? q.zeros[r * groups + g] : 0.0f;
      for (int64_t k = b; k < e; ++k)
        out[r * q.cols + k] = dequantizeValue(q.codes[r * q.cols + k], s, z, q.format);
    }
  return out;
}

//===----------------------------------------------------------------------===//
// Store
//===----------------------------------------------------------------------===//

std::vector<std::string> quantizedTensorNames(const std::string &name, const Format &format) {
  std::vector<std::string> names{name + ".qweight"};
  if (format.kind == qllm::ElementKind::NF4) {
    names.push_back(name + ".absmax_q");
    names.push_back(name + ".absmax_scale");
    return names;
  }
  names.push_back(name + ".scales");
  if (format.kind == qllm::ElementKind::Int && !format.symmetric)
    names.push_back(name + ".zeros");
  return names;
}

/// Packs one code per weight LSB-first along each row, rows padded to bytes.
static std::vector<uint8_t> packCodes(const QuantizedMatrix &q) {
  const int64_t rowBytes = q.format.packedRowBytes(q.cols);
  const unsigned bits = q.format.bits;
  std::vector<uint8_t> out(size_t(q.rows * rowBytes), 0);
  for (int64_t r = 0; r < q.rows; ++r) {
    const uint8_t *c = q.codes.data() + r * q.cols;
    uint8_t *dst = out.data() + r * rowBytes;
    if (bits == 8) {
      std::memcpy(dst, c, size_t(q.cols));
      continue;
    }
    uint64_t bit = 0;
    for (int64_t k = 0; k < q.cols; ++k, bit += bits) {
      uint32_t v = uint32_t(c[k]) << (bit & 7);
      dst[bit >> 3] |= uint8_t(v);
      if ((bit & 7) + bits > 8)
        dst[(bit >> 3) + 1] |= uint8_t(v >> 8);
    }
  }
  return out;
}

static void unpackCodes(const uint8_t *packed, int64_t rows, int64_t cols, unsigned bits,
                        std::vector<uint8_t> *codes) {
  const int64_t rowBytes = (cols * int64_t(bits) + 7) / 8;
  codes->resize(size_t(rows * cols));
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *src = packed + r * rowBytes;
    uint8_t *c = codes->data() + r * cols;
    if (bits == 8) {
      std::memcpy(c, src, size_t(cols));
      continue;
    }
    uint64_t bit = 0;
    for (int64_t k = 0; k < cols; ++k, bit += bits) {
      uint32_t v = src[bit >> 3];
      if ((bit & 7) + bits > 8)
        v |= uint32_t(src[(bit >> 3) + 1]) << 8;
      c[k] = uint8_t((v >> (bit & 7)) & mask);
    }
  }
}

static std::vector<uint8_t> floatBytes(const std::vector<float> &v, DType dtype) {
  std::vector<uint8_t> out(v.size() * dtypeSize(dtype));
  if (dtype == DType::F16) {
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h = qrt::f32ToF16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  } else {
    std::memcpy(out.data(), v.data(), out.size());
  }
  return out;
}

bool storeQuantized(WeightStore &store, const std::string &name, const QuantizedMatrix &q,
                    std::string *error) {
  const int64_t groups = q.format.numGroups(q.cols);
  if (q.rows <= 0 || q.cols <= 0 || int64_t(q.codes.size()) != q.rows * q.cols ||
      int64_t(q.scales.size()) != q.rows * groups) {
    *error = "quantized weight '" + name + "': codes or scales do not match its shape";
    return false;
  }
  for (const std::string &n : quantizedTensorNames(name, q.format))
    if (store.contains(n)) {
      *error = "quantized weight '" + name + "': the weight store already holds '" + n +
               "' (quantized twice?)";
      return false;
    }
  if (!store.addOwned(name + ".qweight", DType::U8, {q.rows, q.format.packedRowBytes(q.cols)},
                      packCodes(q), error))
    return false;
  if (q.format.kind == qllm::ElementKind::NF4) {
    const int64_t chunks = q.format.absmaxChunks(q.rows, q.cols);
    if (int64_t(q.absmaxCodes.size()) != q.rows * groups ||
        int64_t(q.absmaxChunks.size()) != chunks * 2) {
      *error = "quantized weight '" + name + "': nf4 absmax codes are missing";
      return false;
    }
    return store.addOwned(name + ".absmax_q", DType::U8, {q.rows, groups}, q.absmaxCodes,
                          error) &&
           store.addOwned(name + ".absmax_scale", DType::F32, {chunks, 2},
                          floatBytes(q.absmaxChunks, DType::F32), error);
  }
  if (!store.addOwned(name + ".scales", q.format.scaleDType(), {q.rows, groups},
                      floatBytes(q.scales, q.format.scaleDType()), error))
    return false;
  if (q.format.kind == qllm::ElementKind::Int && !q.format.symmetric) {
    if (int64_t(q.zeros.size()) != q.rows * groups) {
      *error = "quantized weight '" + name + "': asymmetric format without zero points";
      return false;
    }
    std::vector<uint8_t> z(q.zeros.size());
    for (size_t i = 0; i < z.size(); ++i)
      z[i] = uint8_t(std::clamp(q.zeros[i], 0.0f, 255.0f));
    if (!store.addOwned(name + ".zeros", DType::U8, {q.rows, groups}, std::move(z), error))
      return false;
  }
  return true;
}

/// The store tensor `tensor` with `dtype`s allowed and `shape`; *error
/// names the weight and the mismatch otherwise.
static const WeightEntry *findTensor(const WeightStore &store, const std::string &weight,
                                     const std::string &tensor, std::initializer_list<DType> dtypes,
                                     const std::vector<int64_t> &shape, std::string *error) {
  const WeightEntry *e = store.find(tensor);
  auto shapeStr = [](const std::vector<int64_t> &s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i)
      r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
  };
  if (!e) {
    *error = "quantized weight '" + weight + "': '" + tensor + "' is not in the weight store";
    return nullptr;
  }
  if (!llvm::is_contained(dtypes, e->dtype)) {
    *error = "quantized weight '" + weight + "': '" + tensor + "' has dtype " +
             dtypeName(e->dtype) + ", not the one the format needs";
    return nullptr;
  }
  if (e->shape != shape || e->transposed) {
    *error = "quantized weight '" + weight + "': '" + tensor + "' has shape " +
             shapeStr(e->shape) + ", expected " + shapeStr(shape);
    return nullptr;
  }
  return e;
}

static std::vector<float> readFloats(const WeightEntry &e) {
  std::vector<float> out(size_t(e.numElements()));
  if (e.dtype == DType::F16) {
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, e.data + 2 * i, 2);
      out[i] = qrt::f16ToF32(h);
    }
  } else {
    std::memcpy(out.data(), e.data, out.size() * 4);
  }
  return out;
}

bool loadQuantized(const WeightStore &store, const std::string &name, qllm::QuantAttr attr,
                   int64_t rows, int64_t cols, QuantizedMatrix *q, std::string *error) {
  Format f = fromAttr(attr);
  if (rows <= 0 || cols <= 0) {
    *error = "quantized weight '" + name + "': non-positive shape";
    return false;
  }
  if (attr.getLayout().getValue() != kPackedLayout) {
    *error = "quantized weight '" + name + "': layout '" + attr.getLayout().getValue().str() +
             "' is not the reference layout '" + kPackedLayout + "'";
    return false;
  }
  const int64_t groups = f.numGroups(cols);
  const WeightEntry *packed =
      findTensor(store, name, name + ".qweight", {DType::U8, DType::I8},
                 {rows, f.packedRowBytes(cols)}, error);
  if (!packed)
    return false;
  q->rows = rows;
  q->cols = cols;
  q->format = f;
  unpackCodes(packed->data, rows, cols, f.bits, &q->codes);
  q->zeros.clear();
  q->absmaxCodes.clear();
  q->absmaxChunks.clear();
  if (f.kind == qllm::ElementKind::NF4) {
    const int64_t chunks = f.absmaxChunks(rows, cols);
    const WeightEntry *codes =
        findTensor(store, name, name + ".absmax_q", {DType::U8}, {rows, groups}, error);
    const WeightEntry *chunkParams =
        codes ? findTensor(store, name, name + ".absmax_scale", {DType::F32}, {chunks, 2}, error)
              : nullptr;
    if (!chunkParams)
      return false;
    q->absmaxCodes.assign(codes->data, codes->data + rows * groups);
    q->absmaxChunks = readFloats(*chunkParams);
    q->scales.resize(size_t(rows * groups));
    for (int64_t b = 0; b < rows * groups; ++b) {
      int64_t c = b / kNF4AbsmaxChunk;
      q->scales[b] = q->absmaxChunks[c * 2] + float(q->absmaxCodes[b]) * q->absmaxChunks[c * 2 + 1];
    }
    return true;
  }
  const WeightEntry *scales =
      findTensor(store, name, name + ".scales", {DType::F16, DType::F32}, {rows, groups}, error);
  if (!scales)
    return false;
  q->scales = readFloats(*scales);
  if (f.kind == qllm::ElementKind::FP8E4M3) {
    for (uint8_t c : q->codes)
      if ((c & 0x7f) == 0x7f) {
        *error = "quantized weight '" + name + "': an fp8_e4m3 code is NaN";
        return false;
      }
  }
  if (f.kind == qllm::ElementKind::Int && !f.symmetric) {
    const WeightEntry *zeros =
        findTensor(store, name, name + ".zeros", {DType::U8}, {rows, groups}, error);
    if (!zeros)
      return false;
    q->zeros.resize(size_t(rows * groups));
    const float qmax = intMaxCode(f);
    for (int64_t i = 0; i < rows * groups; ++i) {
      if (zeros->data[i] > qmax) {
        *error = "quantized weight '" + name + "': zero point " + std::to_string(zeros->data[i]) +
                 " is outside the " + std::to_string(f.bits) + "-bit code range";
        return false;
      }
      q->zeros[i] = float(zeros->data[i]);
    }
  }
  return true;
}

bool replaceWithQuantized(qllm::ParamOp param, WeightStore &store, const QuantizedMatrix &q,
                          std::string *error) {
  std::string name = param.getName().str();
  auto shape = param.getResult().getType().getShape();
  if (shape.size() != 2 || shape[0] != q.rows || shape[1] != q.cols) {
    *error = "quantized weight '" + name + "': its shape differs from the parameter's";
    return false;
  }
  if (!storeQuantized(store, name, q, error))
    return false;
  mlir::OpBuilder b(param);
  auto type = qllm::QWeightType::get(param.getContext(), {q.rows, q.cols},
                                     toAttr(param.getContext(), q.format));
  auto qparam = b.create<qllm::QParamOp>(param.getLoc(), type, param.getNameAttr());
  param.getResult().replaceAllUsesWith(qparam.getResult());
  param.erase();
  return true;
}

} // namespace qopt::quant
