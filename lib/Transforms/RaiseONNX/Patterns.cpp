//===- Patterns.cpp - decoder subgraph matchers over qonnx nodes ------===//
//
// The spellings accepted here are the ones the PyTorch exporters emit for
// Llama-family decoders: the dynamo exporter (opset 18-21: ReduceMean axes
// as an input, Reciprocal, Where-built masks, sqrt(scale) applied to q and
// k separately, the k^T done as Reshape/Transpose/Reshape) and the
// TorchScript exporter (opset 14-17: ReduceMean axes as an attribute, Div
// for 1/sqrt, Trilu or Where masks, Transpose for k^T, Div by sqrt(d)).
// Every structural assumption is checked against the evaluator's shapes.
//
//===----------------------------------------------------------------------===//
#include "Patterns.h"

#include "qopt-rt/half.h"

#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

using namespace mlir;

namespace qopt {
namespace raise {

namespace {
bool isDefaultDomain(qonnx::NodeOp n) {
  return n.getDomain().empty() || n.getDomain() == "ai.onnx";
}

bool isFloatTensor(Type t) {
  auto st = dyn_cast<ShapedType>(t);
  return st && isa<FloatType>(st.getElementType());
}

Value in(qonnx::NodeOp n, unsigned k) {
  return k < n.getInputs().size() ? n.getInputs()[k] : Value();
}

std::optional<std::vector<int64_t>> attrInts(qonnx::NodeOp n, StringRef name) {
  if (auto a = dyn_cast_or_null<DenseI64ArrayAttr>(n.getOnnxAttrs().get(name)))
    return std::vector<int64_t>(a.asArrayRef().begin(), a.asArrayRef().end());
  return std::nullopt;
}

int64_t attrInt(qonnx::NodeOp n, StringRef name, int64_t dflt) {
  if (auto a = dyn_cast_or_null<IntegerAttr>(n.getOnnxAttrs().get(name)))
    return a.getInt();
  return dflt;
}

bool hasPerm(qonnx::NodeOp t, ArrayRef<int64_t> perm) {
  auto p = attrInts(t, "perm");
  return p && ArrayRef<int64_t>(*p) == perm;
}

double roundToType(double x, Type t) {
  if (t && t.isF32())
    return double(float(x));
  if (t && t.isF16())
    return double(qrt::f16ToF32(qrt::f32ToF16(float(x))));
  if (t && t.isBF16())
    return double(qrt::bf16ToF32(qrt::f32ToBf16(float(x))));
  return x;
}

double relativePrecision(Type t) {
  if (t && t.isF16())
    return 1.0 / 2048; // 2^-11: half an fp16 ulp, relative
  if (t && t.isBF16())
    return 1.0 / 256;
  if (t && t.isF32())
    return 1.0 / (1 << 24);
  return 1e-16;
}

Type lowerPrecision(Type a, Type b) {
  return relativePrecision(a) >= relativePrecision(b) ? a : b;
}

Type elementTypeOf(Value v) {
  auto st = v ? dyn_cast<ShapedType>(v.getType()) : ShapedType();
  return st ? st.getElementType() : Type();
}

/// Shape of `v` in sample 0 (empty if unknown).
SmallVector<int64_t, 4> shape0(const AbsEvaluator &ev, Value v) {
  const AbsTensor &t = ev.get(v, 0);
  return t.known ? t.shape : SmallVector<int64_t, 4>();
}

/// The one operation using `v` (possibly several times), or null.
Operation *soleUser(Value v) {
  Operation *user = nullptr;
  for (Operation *u : v.getUsers()) {
    if (user && user != u)
      return nullptr;
    user = u;
  }
  return user;
}

/// Follows single-user float casts forward.
Value skipCastsForward(Value v) {
  while (Operation *u = soleUser(v)) {
    auto n = dyn_cast<qonnx::NodeOp>(u);
    if (!n || !isDefaultDomain(n) || (n.getOpType() != "Cast" && n.getOpType() != "Identity") ||
        !isFloatTensor(v.getType()) || !isFloatTensor(n.getResult(0).getType()))
      return v;
    v = n.getResult(0);
  }
  return v;
}

/// Peels multiplications and divisions by scalar constants, accumulating
/// the factor: the scale may sit on the scores, on q, or on k. *relErr
/// accumulates the rounding the constants' element types allow.
Value stripScale(Value v, const AbsEvaluator &ev, double *scale, double *relErr) {
  auto precision = [&](Value c) {
    return relativePrecision(lowerPrecision(elementTypeOf(c), elementTypeOf(stripCasts(c))));
  };
  for (int guard = 0; guard < 8; ++guard) {
    v = stripCasts(v);
    double c;
    if (auto mul = defNode(v, "Mul")) {
      if (ev.scalar(stripCasts(in(mul, 1)), &c)) {
        *scale *= c;
        *relErr += precision(in(mul, 1));
        v = in(mul, 0);
        continue;
      }
      if (ev.scalar(stripCasts(in(mul, 0)), &c)) {
        *scale *= c;
        *relErr += precision(in(mul, 0));
        v = in(mul, 1);
        continue;
      }
    }
    if (auto div = defNode(v, "Div"))
      if (ev.scalar(stripCasts(in(div, 1)), &c) && c != 0) {
        *scale /= c;
        *relErr += precision(in(div, 1));
        v = in(div, 0);
        continue;
      }
    break;
  }
  return stripCasts(v);
}

/// Transpose(Reshape(lin, [B,S,H,d]), [0,2,1,3]): `lin` [B,S,H*d] split into heads.
bool matchToHeads(Value v, const AbsEvaluator &ev, Value *lin, int64_t *heads, int64_t *dim) {
  auto t = defNode(stripCasts(v), "Transpose");
  if (!t || !hasPerm(t, {0, 2, 1, 3}))
    return false;
  auto r = defNode(stripCasts(in(t, 0)), "Reshape");
  if (!r)
    return false;
  auto s = shape0(ev, r.getResult(0));
  if (s.size() != 4)
    return false;
  int64_t h = s[2], d = s[3];
  Value x = stripCasts(in(r, 0));
  if (!ev.shapeIs(r.getResult(0), {kDimB, kDimS, h, d}) || !ev.shapeIs(x, {kDimB, kDimS, h * d}))
    return false;
  *lin = x;
  *heads = h;
  *dim = d;
  return true;
}

/// repeat_kv: Reshape(Expand(Unsqueeze(x, 2), [B,KV,rep,S,d]), [B,KV*rep,S,d]).
/// Without it, *src = v and *rep = 1.
void matchRepeatKV(Value v, const AbsEvaluator &ev, Value *src, int64_t *rep) {
  v = stripCasts(v);
  *src = v;
  *rep = 1;
  auto r = defNode(v, "Reshape");
  if (!r)
    return;
  auto e = defNode(stripCasts(in(r, 0)), "Expand");
  if (!e)
    return;
  auto u = defNode(stripCasts(in(e, 0)), "Unsqueeze");
  if (!u)
    return;
  Value x = stripCasts(in(u, 0));
  auto xs = shape0(ev, x), es = shape0(ev, e.getResult(0));
  if (xs.size() != 4 || es.size() != 5)
    return;
  int64_t kv = xs[1], d = xs[3], n = es[2];
  if (!ev.shapeIs(x, {kDimB, kv, kDimS, d}) || !ev.shapeIs(u.getResult(0), {kDimB, kv, 1, kDimS, d}) ||
      !ev.shapeIs(e.getResult(0), {kDimB, kv, n, kDimS, d}) ||
      !ev.shapeIs(r.getResult(0), {kDimB, kv * n, kDimS, d}))
    return;
  *src = x;
  *rep = n;
}

/// k^T over the last two dims: Transpose(x, [0,1,3,2]), or the dynamo
/// spelling Reshape(Transpose(Reshape(x, [B*H,S,d]), [0,2,1]), [B,H,d,S]).
bool matchTransposeLast2(Value v, const AbsEvaluator &ev, Value *src) {
  v = stripCasts(v);
  if (auto t = defNode(v, "Transpose")) {
    if (!hasPerm(t, {0, 1, 3, 2}))
      return false;
    *src = in(t, 0);
    return true;
  }
  auto r2 = defNode(v, "Reshape");
  if (!r2)
    return false;
  auto t = defNode(stripCasts(in(r2, 0)), "Transpose");
  if (!t || !hasPerm(t, {0, 2, 1}))
    return false;
  auto r1 = defNode(stripCasts(in(t, 0)), "Reshape");
  if (!r1)
    return false;
  Value x = stripCasts(in(r1, 0));
  for (unsigned s = 0; s < ev.numSamples(); ++s) {
    const AbsTensor &xs = ev.get(x, s), &a = ev.get(r1.getResult(0), s),
                     &b = ev.get(r2.getResult(0), s);
    if (!xs.known || !a.known || !b.known || xs.shape.size() != 4)
      return false;
    auto &X = xs.shape;
    SmallVector<int64_t, 4> wantA{X[0] * X[1], X[2], X[3]}, wantB{X[0], X[1], X[3], X[2]};
    if (a.shape != wantA || b.shape != wantB)
      return false;
  }
  *src = x;
  return true;
}

/// rotate_half(x) = Concat(-x[..., d/2:], x[..., :d/2]) on the last axis,
/// with Slice (or Split) halves.
bool matchRotateHalf(Value v, const AbsEvaluator &ev, Value *x) {
  auto cat = defNode(stripCasts(v), "Concat");
  if (!cat || cat.getInputs().size() != 2)
    return false;
  auto cs = shape0(ev, cat.getResult(0));
  if (cs.empty())
    return false;
  int64_t rank = int64_t(cs.size());
  int64_t axis = attrInt(cat, "axis", 0);
  if (axis != -1 && axis != rank - 1)
    return false;
  auto neg = defNode(stripCasts(in(cat, 0)), "Neg");
  if (!neg)
    return false;
  Value hi = stripCasts(in(neg, 0)), lo = stripCasts(in(cat, 1));
  int64_t d = cs.back();
  if (d % 2)
    return false;
  // Split variant.
  if (auto sp = hi.getDefiningOp<qonnx::NodeOp>())
    if (sp.getOpType() == "Split" && isDefaultDomain(sp) && sp.getNumResults() == 2 &&
        hi == sp.getResult(1) && lo == sp.getResult(0)) {
      int64_t a = attrInt(sp, "axis", 0);
      if ((a != -1 && a != rank - 1) || shape0(ev, hi).back() != d / 2 ||
          shape0(ev, lo).back() != d / 2)
        return false;
      *x = stripCasts(in(sp, 0));
      return true;
    }
  auto sliceOf = [&](Value s, int64_t start, Value *src) {
    auto sl = defNode(s, "Slice");
    if (!sl || sl.getInputs().size() < 3)
      return false;
    std::vector<int64_t> starts, ends, axes, steps;
    if (!ev.constInts(in(sl, 1), &starts) || !ev.constInts(in(sl, 2), &ends) ||
        starts.size() != 1 || ends.size() != 1)
      return false;
    if (sl.getInputs().size() > 3 && !isa<NoneType>(in(sl, 3).getType())) {
      if (!ev.constInts(in(sl, 3), &axes) || axes.size() != 1 ||
          (axes[0] != -1 && axes[0] != rank - 1))
        return false;
    } else if (rank != 1) {
      return false;
    }
    if (sl.getInputs().size() > 4 && !isa<NoneType>(in(sl, 4).getType()))
      if (!ev.constInts(in(sl, 4), &steps) || steps.size() != 1 || steps[0] != 1)
        return false;
    int64_t b = starts[0] < 0 ? starts[0] + d : starts[0];
    int64_t e = ends[0] < 0 ? ends[0] + d : std::min(ends[0], d);
    if (b != start || e != start + d / 2)
      return false;
    *src = stripCasts(in(sl, 0));
    return true;
  };
  Value x1, x2;
  if (!sliceOf(lo, 0, &x1) || !sliceOf(hi, d / 2, &x2) || x1 != x2)
    return false;
  if (shape0(ev, x1).size() != cs.size() || shape0(ev, x1).back() != d)
    return false;
  *x = x1;
  return true;
}

/// x * cos + rotate_half(x) * sin, in any operand order. The tables are
/// returned before any cast (their data is what the analysis reads).
/// *noData is set when the structure is there but the tables could not be
/// evaluated (they read initializers and the pass has no weight store).
bool matchRotary(Value v, const AbsEvaluator &ev, Value *x, Value *cosT, Value *sinT,
                 bool *noData) {
  auto add = defNode(stripCasts(v), "Add");
  if (!add)
    return false;
  for (int o = 0; o < 2; ++o) {
    auto m1 = defNode(stripCasts(in(add, o)), "Mul");
    auto m2 = defNode(stripCasts(in(add, 1 - o)), "Mul");
    if (!m1 || !m2)
      continue;
    for (int p = 0; p < 2; ++p) {
      Value xr;
      if (!matchRotateHalf(in(m2, p), ev, &xr))
        continue;
      Value s = stripCasts(in(m2, 1 - p));
      for (int q = 0; q < 2; ++q) {
        if (stripCasts(in(m1, q)) != xr)
          continue;
        Value c = stripCasts(in(m1, 1 - q));
        if (!ev.hasData(c) || !ev.hasData(s)) {
          *noData = true;
          continue;
        }
        *x = xr;
        *cosT = c;
        *sinT = s;
        return true;
      }
    }
  }
  return false;
}

/// Rounds `x` to `digits` significant decimal digits.
double roundSignificant(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", digits - 1, x);
  return std::strtod(buf, nullptr);
}

/// Recovers RoPE's theta (and a linear scaling factor) from the cos/sin
/// tables: at position 1 the angle atan2(sin, cos) is the frequency itself;
/// the frequencies of default RoPE are theta^(-2j/d), so log theta is a
/// least-squares slope. The estimate is then snapped to the shortest
/// decimal that reproduces every table entry of every sample as well as
/// the estimate itself does (config files hold round numbers like 10000 or
/// 500000; fp32 tables only pin theta to about 6 digits anyway).
bool analyzeRope(Value cosV, Value sinV, int64_t d, const AbsEvaluator &ev, RopeParams *out,
                 std::string *why) {
  auto fail = [&](const std::string &w) {
    *why = w;
    return false;
  };
  const int64_t half = d / 2;
  if (half < 2)
    return fail("head_dim " + std::to_string(d) + " is too small to recover rope theta");
  struct Table {
    const AbsTensor *c, *s;
    int64_t rows;
  };
  std::vector<Table> tables;
  for (unsigned smp = 0; smp < ev.numSamples(); ++smp) {
    const AbsTensor &c = ev.get(cosV, smp), &s = ev.get(sinV, smp);
    if (!c.known || !c.hasData || !s.known || !s.hasData || c.shape != s.shape ||
        c.shape.size() < 2 || c.shape.back() != d || !c.isFloat() || !s.isFloat())
      return fail("the rotary cos/sin tables are not [.., seq, head_dim] float tensors");
    int64_t rows = c.shape[c.shape.size() - 2];
    if (rows != ev.seqLen(smp))
      return fail("the rotary tables have " + std::to_string(rows) + " rows for a sequence of " +
                  std::to_string(ev.seqLen(smp)));
    // Every leading block (batch copies) must hold the same table.
    int64_t block = rows * d;
    for (int64_t e = block; e < c.numel(); ++e)
      if (c.f[size_t(e)] != c.f[size_t(e % block)] || s.f[size_t(e)] != s.f[size_t(e % block)])
        return fail("the rotary tables differ across the batch (position ids are not 0..S-1)");
    tables.push_back({&c, &s, rows});
  }
  const Table &big = tables.back();
  if (big.rows < 2)
    return fail("need at least two positions to recover rope theta");
  std::vector<double> inv(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j)
    inv[size_t(j)] = std::atan2(big.s->f[size_t(d + j)], big.c->f[size_t(d + j)]);
  for (int64_t j = 0; j < half; ++j)
    if (std::fabs(inv[size_t(j)] - inv[size_t(j + half)]) > 1e-6 * std::fabs(inv[size_t(j)]) + 1e-9)
      return fail("the rotary tables are not in the rotate_half layout cat(freqs, freqs)");
  if (!(inv[0] > 0))
    return fail("the rotary tables' first frequency is not positive");
  RopeParams p;
  double factor = 1.0 / inv[0];
  if (std::fabs(factor - 1.0) > 1e-5) {
    p.type = "linear";
    p.factor = factor;
    for (int digits = 1; digits <= 9; ++digits) {
      double c = roundSignificant(factor, digits);
      if (std::fabs(c - factor) <= 1e-5 * factor) {
        p.factor = c;
        break;
      }
    }
  }
  double sxy = 0, sxx = 0;
  for (int64_t j = 1; j < half; ++j) {
    double v = inv[size_t(j)] * p.factor;
    if (!(v > 0))
      return fail("the rotary tables' frequencies are not positive");
    double xj = 2.0 * double(j) / double(d);
    sxy += xj * std::log(v);
    sxx += xj * xj;
  }
  double estimate = std::exp(-sxy / sxx);
  auto error = [&](double theta) {
    double worst = 0;
    for (const Table &t : tables)
      for (int64_t r = 0; r < t.rows; ++r)
        for (int64_t j = 0; j < d; ++j) {
          double f = 1.0 / (p.factor * std::pow(theta, 2.0 * double(j % half) / double(d)));
          double a = double(r) * f;
          size_t k = size_t(r * d + j);
          worst = std::max(worst, std::fabs(t.c->f[k] - std::cos(a)));
          worst = std::max(worst, std::fabs(t.s->f[k] - std::sin(a)));
        }
    return worst;
  };
  double e0 = error(estimate);
  if (!(e0 <= 5e-3))
    return fail("the rotary tables do not follow RoPE (default or linear scaling): "
                "max deviation " + std::to_string(e0));
  double threshold = std::max(2e-5, 1.5 * e0 + 1e-7);
  p.theta = estimate;
  for (int digits = 1; digits <= 12; ++digits) {
    double c = roundSignificant(estimate, digits);
    if (error(c) <= threshold) {
      p.theta = c;
      break;
    }
  }
  *out = p;
  return true;
}

/// Checks that `mask` is the causal mask, numerically in every sample and
/// structurally. kind: 0 additive (0 / very negative), 1 boolean "keep",
/// 2 boolean "drop".
///
/// Limits: the mask's data is known only because it depends on the token
/// ids through Shape ops alone (the evaluator never knows the ids' values),
/// so it is a function of the batch and sequence sizes; it is checked for
/// the evaluator's sample lengths (5, 11, 17), and the subgraph must compare
/// positions (Less/LessOrEqual/Greater/GreaterOrEqual/Trilu). A mask that is
/// causal for those lengths but computed differently for others (say, a
/// special case past 1000 tokens) would not be caught.
bool checkCausal(Value mask, int kind, const AbsEvaluator &ev, std::string *why) {
  for (unsigned s = 0; s < ev.numSamples(); ++s) {
    const AbsTensor &m = ev.get(mask, s);
    int64_t S = ev.seqLen(s);
    if (!m.known || !m.hasData || m.shape.size() < 2 || m.shape.back() != S ||
        m.shape[m.shape.size() - 2] != S) {
      *why = "the attention mask is not a [.., seq, seq] tensor computable from the sequence "
             "length";
      return false;
    }
    for (int64_t e = 0; e < m.numel(); ++e) {
      int64_t j = e % S, i = (e / S) % S;
      bool visible = j <= i;
      double v = m.at(size_t(e));
      bool ok = kind == 0 ? (visible ? v == 0.0 : v <= -1e4)
                : kind == 1 ? ((v != 0) == visible)
                            : ((v != 0) != visible);
      if (!ok) {
        *why = "the attention mask is not causal (position " + std::to_string(i) +
               " vs key " + std::to_string(j) + " for length " + std::to_string(S) + ")";
        return false;
      }
    }
  }
  llvm::SmallPtrSet<Operation *, 32> seen;
  SmallVector<Value> work{mask};
  bool compares = false;
  while (!work.empty() && !compares && seen.size() < 4096) {
    Value v = work.pop_back_val();
    auto n = v.getDefiningOp<qonnx::NodeOp>();
    if (!n || !seen.insert(n).second)
      continue;
    StringRef t = n.getOpType();
    compares = t == "Less" || t == "LessOrEqual" || t == "Greater" || t == "GreaterOrEqual" ||
               t == "Trilu";
    for (Value x : n.getInputs())
      work.push_back(x);
  }
  if (!compares) {
    *why = "the attention mask is not computed by comparing positions";
    return false;
  }
  return true;
}
} // namespace

qonnx::NodeOp defNode(Value v, StringRef type) {
  if (!v)
    return {};
  auto n = v.getDefiningOp<qonnx::NodeOp>();
  if (!n || n.getOpType() != type || !isDefaultDomain(n))
    return {};
  return n;
}

Value stripCasts(Value v) {
  for (int guard = 0; v && guard < 16; ++guard) {
    auto n = v.getDefiningOp<qonnx::NodeOp>();
    if (!n || !isDefaultDomain(n) || (n.getOpType() != "Cast" && n.getOpType() != "Identity") ||
        n.getInputs().empty() || !isFloatTensor(n.getInputs()[0].getType()) ||
        !isFloatTensor(n.getResult(0).getType()))
      return v;
    v = n.getInputs()[0];
  }
  return v;
}

qllm::ParamOp paramOf(Value v) {
  v = stripCasts(v);
  return v ? v.getDefiningOp<qllm::ParamOp>() : qllm::ParamOp();
}

double snapToShortest(double x, Type t) {
  if (!t || t.isF64() || roundToType(x, t) != x)
    return x; // a double, or not a value of that type: keep as given
  char buf[64];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    double c = std::strtod(buf, nullptr);
    if (roundToType(c, t) == x)
      return c;
  }
  return x;
}

bool matchLinear(qonnx::NodeOp mm, const AbsEvaluator &ev, LinearMatch *m) {
  if (mm.getOpType() != "MatMul" || !isDefaultDomain(mm) || mm.getInputs().size() != 2)
    return false;
  auto t = defNode(stripCasts(in(mm, 1)), "Transpose");
  if (!t)
    return false;
  if (auto perm = attrInts(t, "perm"); perm && ArrayRef<int64_t>(*perm) != ArrayRef<int64_t>{1, 0})
    return false;
  qllm::ParamOp w = paramOf(in(t, 0));
  if (!w || w.getResult().getType().getRank() != 2)
    return false;
  int64_t out = w.getResult().getType().getDimSize(0), inF = w.getResult().getType().getDimSize(1);
  Value x = stripCasts(in(mm, 0));
  if (!ev.shapeIs(x, {kDimB, kDimS, inF}))
    return false;
  m->root = mm;
  m->input = x;
  m->weight = w;
  m->bias = {};
  // A bias is an Add of a 1-D [out] param right after the MatMul.
  if (Operation *u = soleUser(mm.getResult(0)))
    if (auto add = dyn_cast<qonnx::NodeOp>(u); add && add.getOpType() == "Add" &&
                                                isDefaultDomain(add) &&
                                                add.getInputs().size() == 2) {
      Value other = in(add, 0) == mm.getResult(0) ? in(add, 1) : in(add, 0);
      if (qllm::ParamOp b = paramOf(other))
        if (b.getResult().getType().getRank() == 1 &&
            b.getResult().getType().getDimSize(0) == out) {
          m->root = add;
          m->bias = b;
        }
    }
  return true;
}

bool matchGemmLinear(qonnx::NodeOp gemm, const AbsEvaluator &ev, LinearMatch *m) {
  if (gemm.getOpType() != "Gemm" || !isDefaultDomain(gemm) || gemm.getInputs().size() < 2 ||
      attrInt(gemm, "transA", 0) != 0)
    return false;
  for (const char *k : {"alpha", "beta"})
    if (auto f = dyn_cast_or_null<FloatAttr>(gemm.getOnnxAttrs().get(k)); f && f.getValueAsDouble() != 1.0)
      return false;
  qllm::ParamOp w;
  if (attrInt(gemm, "transB", 0)) {
    w = paramOf(in(gemm, 1));
  } else if (auto t = defNode(stripCasts(in(gemm, 1)), "Transpose")) {
    if (auto perm = attrInts(t, "perm"); perm && ArrayRef<int64_t>(*perm) != ArrayRef<int64_t>{1, 0})
      return false;
    w = paramOf(in(t, 0));
  }
  if (!w || w.getResult().getType().getRank() != 2)
    return false;
  int64_t out = w.getResult().getType().getDimSize(0), inF = w.getResult().getType().getDimSize(1);
  qllm::ParamOp bias;
  if (gemm.getInputs().size() > 2 && !isa<NoneType>(in(gemm, 2).getType())) {
    bias = paramOf(in(gemm, 2));
    if (!bias || bias.getResult().getType().getRank() != 1 ||
        bias.getResult().getType().getDimSize(0) != out)
      return false;
  }
  auto flat = defNode(stripCasts(in(gemm, 0)), "Reshape");
  if (!flat)
    return false;
  Value x = stripCasts(in(flat, 0));
  if (!ev.shapeIs(x, {kDimB, kDimS, inF}))
    return false;
  for (unsigned s = 0; s < ev.numSamples(); ++s) {
    const AbsTensor &f = ev.get(flat.getResult(0), s);
    if (!f.known || f.shape != SmallVector<int64_t, 4>{ev.batch(s) * ev.seqLen(s), inF})
      return false;
  }
  auto back = dyn_cast_or_null<qonnx::NodeOp>(soleUser(skipCastsForward(gemm.getResult(0))));
  if (!back || back.getOpType() != "Reshape" || !ev.shapeIs(back.getResult(0), {kDimB, kDimS, out}))
    return false;
  m->root = back;
  m->input = x;
  m->weight = w;
  m->bias = bias;
  return true;
}

bool matchEmbedding(qonnx::NodeOp g, Value ids, EmbeddingMatch *m) {
  if (g.getOpType() != "Gather" || !isDefaultDomain(g) || g.getInputs().size() != 2 ||
      attrInt(g, "axis", 0) != 0)
    return false;
  qllm::ParamOp table = paramOf(in(g, 0));
  if (!table || table.getResult().getType().getRank() != 2)
    return false;
  // The ids may be cast (int32 <-> int64) on their way.
  Value x = in(g, 1);
  while (auto c = defNode(x, "Cast"))
    x = in(c, 0);
  if (x != ids)
    return false;
  m->root = g;
  m->ids = ids;
  m->table = table;
  return true;
}

namespace {
/// 1 / sqrt(a) spelled Reciprocal(Sqrt(a)), Div(1, Sqrt(a)) or Pow(a, -0.5).
bool matchRsqrt(Value v, const AbsEvaluator &ev, Value *a) {
  v = stripCasts(v);
  double c;
  if (auto r = defNode(v, "Reciprocal"))
    if (auto s = defNode(stripCasts(in(r, 0)), "Sqrt")) {
      *a = stripCasts(in(s, 0));
      return true;
    }
  if (auto d = defNode(v, "Div"))
    if (ev.scalar(stripCasts(in(d, 0)), &c) && c == 1.0)
      if (auto s = defNode(stripCasts(in(d, 1)), "Sqrt")) {
        *a = stripCasts(in(s, 0));
        return true;
      }
  if (auto p = defNode(v, "Pow"))
    if (ev.scalar(stripCasts(in(p, 1)), &c) && c == -0.5) {
      *a = stripCasts(in(p, 0));
      return true;
    }
  return false;
}

/// a = mean(x^2, last axis, keepdims) + eps.
bool matchMeanSquarePlusEps(Value a, const AbsEvaluator &ev, Value *x, double *eps,
                            Type *epsType) {
  auto add = defNode(a, "Add");
  if (!add)
    return false;
  for (int o = 0; o < 2; ++o) {
    double e;
    if (!ev.scalar(stripCasts(in(add, 1 - o)), &e))
      continue;
    auto mean = defNode(stripCasts(in(add, o)), "ReduceMean");
    if (!mean || attrInt(mean, "keepdims", 1) != 1)
      continue;
    Value sq = stripCasts(in(mean, 0));
    auto s = shape0(ev, sq);
    if (s.empty())
      continue;
    std::vector<int64_t> axes;
    if (mean.getOpset() >= 18) {
      if (mean.getInputs().size() < 2 || !ev.constInts(in(mean, 1), &axes))
        continue;
    } else if (auto a = attrInts(mean, "axes")) {
      axes = *a;
    }
    if (axes.size() != 1 || (axes[0] != -1 && axes[0] != int64_t(s.size()) - 1))
      continue;
    Value base;
    double c;
    if (auto pw = defNode(sq, "Pow")) {
      if (!ev.scalar(stripCasts(in(pw, 1)), &c) || c != 2.0)
        continue;
      base = stripCasts(in(pw, 0));
    } else if (auto mul = defNode(sq, "Mul")) {
      if (stripCasts(in(mul, 0)) != stripCasts(in(mul, 1)))
        continue;
      base = stripCasts(in(mul, 0));
    } else {
      continue;
    }
    *x = base;
    *eps = e;
    *epsType = lowerPrecision(elementTypeOf(in(add, 1 - o)), elementTypeOf(stripCasts(in(add, 1 - o))));
    return true;
  }
  return false;
}

/// x / sqrt(mean(x^2) + eps) in its spellings; *x is before any cast.
bool matchNormalized(Value y, const AbsEvaluator &ev, Value *x, double *eps, Type *epsType) {
  y = stripCasts(y);
  if (auto mul = defNode(y, "Mul"))
    for (int o = 0; o < 2; ++o) {
      Value a, base;
      if (!matchRsqrt(in(mul, o), ev, &a) || !matchMeanSquarePlusEps(a, ev, &base, eps, epsType))
        continue;
      if (stripCasts(in(mul, 1 - o)) != base)
        continue;
      *x = base;
      return true;
    }
  if (auto div = defNode(y, "Div"))
    if (auto s = defNode(stripCasts(in(div, 1)), "Sqrt")) {
      Value base;
      if (matchMeanSquarePlusEps(stripCasts(in(s, 0)), ev, &base, eps, epsType) &&
          stripCasts(in(div, 0)) == base) {
        *x = base;
        return true;
      }
    }
  return false;
}
} // namespace

bool matchRMSNorm(qonnx::NodeOp root, const AbsEvaluator &ev, NormMatch *m) {
  StringRef t = root.getOpType();
  if (t == "RMSNormalization" || t == "SimplifiedLayerNormalization") {
    if (root.getInputs().size() < 2 || root.getNumResults() < 1)
      return false;
    for (unsigned k = 1; k < root.getNumResults(); ++k)
      if (!root.getResult(k).use_empty())
        return false; // the inverse std-dev output is used: not a plain norm
    Value x = stripCasts(in(root, 0));
    auto s = shape0(ev, x);
    int64_t axis = attrInt(root, "axis", -1);
    if (s.size() != 3 || (axis != -1 && axis != 2))
      return false;
    qllm::ParamOp w = paramOf(in(root, 1));
    if (!w || w.getResult().getType().getRank() != 1 || !ev.shapeIs(x, {kDimB, kDimS, s[2]}) ||
        w.getResult().getType().getDimSize(0) != s[2])
      return false;
    double eps = 1e-5;
    if (auto e = dyn_cast_or_null<FloatAttr>(root.getOnnxAttrs().get("epsilon")))
      eps = e.getValueAsDouble();
    m->root = root;
    m->input = x;
    m->weight = w;
    m->epsilon = snapToShortest(eps, Float32Type::get(root.getContext()));
    return true;
  }
  if (t != "Mul" || !isDefaultDomain(root))
    return false;
  for (int o = 0; o < 2; ++o) {
    qllm::ParamOp w = paramOf(in(root, o));
    if (!w || w.getResult().getType().getRank() != 1)
      continue;
    Value x;
    double eps;
    Type epsType;
    if (!matchNormalized(in(root, 1 - o), ev, &x, &eps, &epsType))
      continue;
    int64_t D = w.getResult().getType().getDimSize(0);
    if (!ev.shapeIs(x, {kDimB, kDimS, D}))
      continue;
    m->root = root;
    m->input = x;
    m->weight = w;
    m->epsilon = snapToShortest(eps, epsType);
    return true;
  }
  return false;
}

bool matchSwiGLU(qonnx::NodeOp mul, const AbsEvaluator &ev, SwiGLUMatch *m) {
  if (mul.getOpType() != "Mul" || !isDefaultDomain(mul) || mul.getInputs().size() != 2)
    return false;
  for (int o = 0; o < 2; ++o) {
    auto silu = defNode(stripCasts(in(mul, o)), "Mul");
    if (!silu)
      continue;
    for (int p = 0; p < 2; ++p) {
      auto sig = defNode(stripCasts(in(silu, p)), "Sigmoid");
      if (!sig)
        continue;
      Value g = stripCasts(in(silu, 1 - p));
      if (stripCasts(in(sig, 0)) != g)
        continue;
      Value u = stripCasts(in(mul, 1 - o));
      auto gs = shape0(ev, g);
      if (gs.size() != 3 || !ev.shapeIs(g, {kDimB, kDimS, gs[2]}) ||
          !ev.shapeIs(u, {kDimB, kDimS, gs[2]}))
        continue;
      m->root = mul;
      m->gate = g;
      m->up = u;
      return true;
    }
  }
  return false;
}

bool matchAttention(qonnx::NodeOp sm, const AbsEvaluator &ev, AttentionMatch *m,
                    std::string *why) {
  auto fail = [&](const std::string &w) {
    *why = w;
    return false;
  };
  if (sm.getOpType() != "Softmax" || !isDefaultDomain(sm) || sm.getInputs().size() != 1)
    return fail("not a Softmax");
  Value scores = stripCasts(in(sm, 0));
  auto ss = shape0(ev, scores);
  if (ss.size() != 4)
    return fail("the softmax input is not a 4-D [batch, heads, seq, seq] tensor");
  int64_t axis = attrInt(sm, "axis", sm.getOpset() >= 13 ? -1 : 1);
  if (axis != -1 && axis != 3)
    return fail("the softmax is not over the last axis");

  // Causal mask.
  Value mask;
  int kind;
  if (auto add = defNode(scores, "Add")) {
    if (ev.hasData(stripCasts(in(add, 1)))) {
      mask = stripCasts(in(add, 1));
      scores = in(add, 0);
    } else if (ev.hasData(stripCasts(in(add, 0)))) {
      mask = stripCasts(in(add, 0));
      scores = in(add, 1);
    } else {
      return fail("the Add before the softmax adds no mask that depends on the sequence "
                  "length alone");
    }
    kind = 0;
  } else if (auto wh = defNode(scores, "Where")) {
    double fill;
    mask = stripCasts(in(wh, 0));
    if (ev.scalar(stripCasts(in(wh, 2)), &fill) && fill <= -1e4) {
      scores = in(wh, 1);
      kind = 1;
    } else if (ev.scalar(stripCasts(in(wh, 1)), &fill) && fill <= -1e4) {
      scores = in(wh, 2);
      kind = 2;
    } else {
      return fail("the Where before the softmax does not fill with a large negative value");
    }
    if (!ev.hasData(mask))
      return fail("the attention mask depends on more than the sequence length");
  } else {
    return fail("no causal mask (an Add of a mask, or a Where) feeds the softmax");
  }
  if (!checkCausal(mask, kind, ev, why))
    return false;

  double scale = 1.0, scaleErr = 0;
  auto qk = defNode(stripScale(scores, ev, &scale, &scaleErr), "MatMul");
  if (!qk)
    return fail("the attention scores are not a MatMul of q and k^T");
  Value qSide = stripScale(in(qk, 0), ev, &scale, &scaleErr);
  Value kT;
  if (!matchTransposeLast2(stripScale(in(qk, 1), ev, &scale, &scaleErr), ev, &kT))
    return fail("the keys are not transposed over their last two dims before q k^T");
  Value kRep = stripScale(kT, ev, &scale, &scaleErr);

  Value xq, cosQ, sinQ, qLin;
  int64_t H, d;
  bool noData = false;
  const char *noTables = "the rotary cos/sin tables cannot be evaluated from constants and "
                         "shapes (reading initializers needs the weight store: import the "
                         "file with importONNX / qopt)";
  if (!matchRotary(qSide, ev, &xq, &cosQ, &sinQ, &noData))
    return fail(noData ? noTables
                       : "no rotary embedding (q*cos + rotate_half(q)*sin) on the queries");
  if (!matchToHeads(xq, ev, &qLin, &H, &d))
    return fail("the queries are not split into heads by Reshape [B,S,H,d] + Transpose(0,2,1,3)");
  Value kRot, xk, cosK, sinK, kLin;
  int64_t repK, KV, dk;
  matchRepeatKV(kRep, ev, &kRot, &repK);
  if (!matchRotary(kRot, ev, &xk, &cosK, &sinK, &noData))
    return fail(noData ? noTables
                       : "no rotary embedding (k*cos + rotate_half(k)*sin) on the keys");
  if (!matchToHeads(xk, ev, &kLin, &KV, &dk) || dk != d)
    return fail("the keys are not split into heads like the queries");

  // Softmax output, through casts and the dynamo export's NaN guard.
  Value p = sm.getResult(0);
  qonnx::NodeOp pv;
  for (int guard = 0; guard < 8 && !pv; ++guard) {
    SmallVector<Operation *> users;
    for (Operation *u : p.getUsers())
      if (!llvm::is_contained(users, u))
        users.push_back(u);
    if (users.size() == 1) {
      auto n = dyn_cast<qonnx::NodeOp>(users[0]);
      if (!n || !isDefaultDomain(n))
        break;
      if ((n.getOpType() == "Cast" || n.getOpType() == "Identity") &&
          isFloatTensor(n.getResult(0).getType())) {
        p = n.getResult(0);
        continue;
      }
      if (n.getOpType() == "MatMul" && in(n, 0) == p && in(n, 1) != p)
        pv = n;
      break;
    }
    if (users.size() == 2) {
      // Where(IsNaN(p), 0, p): rows that are fully masked become 0, which a
      // causal mask never produces.
      qonnx::NodeOp isnan, where;
      for (Operation *u : users)
        if (auto n = dyn_cast<qonnx::NodeOp>(u)) {
          if (n.getOpType() == "IsNaN")
            isnan = n;
          else if (n.getOpType() == "Where")
            where = n;
        }
      double zero;
      if (!isnan || !where || in(where, 0) != isnan.getResult(0) || in(where, 2) != p ||
          !ev.scalar(stripCasts(in(where, 1)), &zero) || zero != 0.0 ||
          !isnan.getResult(0).hasOneUse())
        break;
      p = where.getResult(0);
      continue;
    }
    break;
  }
  if (!pv)
    return fail("the softmax output does not feed a single MatMul with the values");
  Value vRep = stripCasts(in(pv, 1)), vh, vLin;
  int64_t repV, KVv, dv;
  matchRepeatKV(vRep, ev, &vh, &repV);
  if (!matchToHeads(vh, ev, &vLin, &KVv, &dv) || dv != d || KVv != KV)
    return fail("the values are not split into heads like the keys");
  if (KV * repK != H || KV * repV != H)
    return fail("query heads (" + std::to_string(H) + ") do not match key/value heads (" +
                std::to_string(KV) + ") times their repeat factor");
  if (!ev.shapeIs(qk.getResult(0), {kDimB, H, kDimS, kDimS}))
    return fail("the attention scores are not [B, heads, S, S]");

  // Heads merged back: Transpose(0,2,1,3) then Reshape [B,S,H*d].
  Value o = skipCastsForward(pv.getResult(0));
  auto t = dyn_cast_or_null<qonnx::NodeOp>(soleUser(o));
  if (!t || t.getOpType() != "Transpose" || !hasPerm(t, {0, 2, 1, 3}))
    return fail("the attention output is not transposed back to [B,S,H,d]");
  auto r = dyn_cast_or_null<qonnx::NodeOp>(soleUser(skipCastsForward(t.getResult(0))));
  if (!r || r.getOpType() != "Reshape" || !ev.shapeIs(r.getResult(0), {kDimB, kDimS, H * d}))
    return fail("the attention output is not reshaped back to [B,S,H*d]");

  RopeParams rq, rk;
  if (!analyzeRope(cosQ, sinQ, d, ev, &rq, why))
    return false;
  if (cosK != cosQ || sinK != sinQ) {
    if (!analyzeRope(cosK, sinK, d, ev, &rk, why))
      return false;
    if (rk.theta != rq.theta || rk.type != rq.type || rk.factor != rq.factor)
      return fail("queries and keys use different rotary tables");
  }
  m->root = r;
  m->q = qLin;
  m->k = kLin;
  m->v = vLin;
  m->numHeads = H;
  m->numKvHeads = KV;
  m->headDim = d;
  // transformers scales by 1/sqrt(head_dim); exporters write that factor
  // as one or two constants of the model's float type (dynamo: sqrt of it
  // on q and on k, in fp16 for fp16 models). Within the rounding those
  // types allow it is that value exactly; otherwise the recovered value
  // stays and the canonical form rejects it.
  double canonical = 1.0 / std::sqrt(double(d));
  m->scale = std::fabs(scale - canonical) <= canonical * (2 * scaleErr + 1e-7) ? canonical : scale;
  m->rope = rq;
  return true;
}

} // namespace raise
} // namespace qopt
