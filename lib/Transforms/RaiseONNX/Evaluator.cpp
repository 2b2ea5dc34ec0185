//===- Evaluator.cpp - shapes and small values of a generic ONNX graph ===//
//
// One interpretation per ONNX op the decoder exporters emit, in double
// precision for floats (exact enough to recover rotary frequencies from a
// cos table) and int64 for integers. Data is only computed for tensors of
// at most kMaxData elements, so a 7B model's activations cost nothing.
//
//===----------------------------------------------------------------------===//
#include "Evaluator.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Dialect/QONNX/QONNXOps.h"
#include "qopt/Weights/WeightStore.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <optional>

using namespace mlir;

namespace qopt {
namespace raise {

namespace {
constexpr int64_t kMaxData = int64_t(1) << 20;
constexpr int64_t kMaxParamData = int64_t(1) << 18;
using Kind = AbsTensor::Kind;
using Shape = SmallVector<int64_t, 4>;

int64_t product(ArrayRef<int64_t> s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0 || (d != 0 && n > (int64_t(1) << 40) / d))
      return -1;
    n *= d;
  }
  return n;
}

Shape stridesOf(ArrayRef<int64_t> s) {
  Shape st(s.size(), 1);
  for (int i = int(s.size()) - 2; i >= 0; --i)
    st[i] = st[i + 1] * s[i + 1];
  return st;
}

std::optional<Shape> broadcast(ArrayRef<Shape> shapes) {
  size_t rank = 0;
  for (auto &s : shapes)
    rank = std::max(rank, s.size());
  Shape out(rank, 1);
  for (auto &s : shapes)
    for (size_t k = 0; k < s.size(); ++k) {
      int64_t &o = out[rank - s.size() + k];
      int64_t d = s[k];
      if (o == 1)
        o = d;
      else if (d != 1 && d != o)
        return std::nullopt;
    }
  return out;
}

/// Maps each output element to the element of `in` it reads under
/// numpy broadcasting.
std::vector<int64_t> broadcastIndex(ArrayRef<int64_t> out, ArrayRef<int64_t> in) {
  int64_t n = product(out);
  std::vector<int64_t> idx(static_cast<size_t>(std::max<int64_t>(n, 0)));
  Shape inStr = stridesOf(in);
  Shape bstr(out.size(), 0);
  for (size_t k = 0; k < in.size(); ++k)
    if (in[k] != 1)
      bstr[out.size() - in.size() + k] = inStr[k];
  Shape counter(out.size(), 0);
  int64_t off = 0;
  for (int64_t e = 0; e < n; ++e) {
    idx[size_t(e)] = off;
    for (int k = int(out.size()) - 1; k >= 0; --k) {
      if (++counter[k] < out[k]) {
        off += bstr[k];
        break;
      }
      off -= bstr[k] * (out[k] - 1);
      counter[k] = 0;
    }
  }
  return idx;
}

/// double -> int64 without undefined behavior: saturates, NaN -> 0.
int64_t toInt64(double v) {
  if (std::isnan(v))
    return 0;
  if (v >= 9.2e18)
    return INT64_MAX;
  if (v <= -9.2e18)
    return INT64_MIN;
  return int64_t(v);
}

int64_t normAxis(int64_t a, size_t rank) { return a < 0 ? a + int64_t(rank) : a; }

struct Ctx {
  qonnx::NodeOp node;
  SmallVector<const AbsTensor *> in;
  SmallVector<AbsTensor> out;

  StringRef type() { return node.getOpType(); }
  int64_t opset() { return node.getOpset(); }
  Attribute attr(StringRef name) { return node.getOnnxAttrs().get(name); }
  int64_t attrInt(StringRef name, int64_t dflt) {
    if (auto a = dyn_cast_or_null<IntegerAttr>(attr(name)))
      return a.getInt();
    return dflt;
  }
  std::optional<std::vector<int64_t>> attrInts(StringRef name) {
    if (auto a = dyn_cast_or_null<DenseI64ArrayAttr>(attr(name)))
      return std::vector<int64_t>(a.asArrayRef().begin(), a.asArrayRef().end());
    return std::nullopt;
  }
  bool inKnown(size_t k) { return k < in.size() && in[k]->known; }
  bool inData(size_t k) { return k < in.size() && in[k]->known && in[k]->hasData; }
  /// Integer data of input k (an axes / shape operand).
  std::optional<std::vector<int64_t>> ints(size_t k) {
    if (!inData(k) || in[k]->isFloat())
      return std::nullopt;
    return in[k]->i;
  }
};

void setShape(AbsTensor &t, ArrayRef<int64_t> s, Kind kind) {
  t.known = true;
  t.shape.assign(s.begin(), s.end());
  t.kind = kind;
}

/// Data may be computed for this tensor.
bool dataSized(const AbsTensor &t) {
  int64_t n = t.numel();
  return n >= 0 && n <= kMaxData;
}

void unary(Ctx &c, Kind outKind, const std::function<double(double)> &fn) {
  const AbsTensor &x = *c.in[0];
  AbsTensor &o = c.out[0];
  setShape(o, x.shape, outKind);
  if (!x.hasData)
    return;
  size_t n = size_t(x.numel());
  o.hasData = true;
  if (outKind == Kind::Float) {
    o.f.resize(n);
    for (size_t k = 0; k < n; ++k)
      o.f[k] = fn(x.at(k));
  } else {
    o.i.resize(n);
    for (size_t k = 0; k < n; ++k)
      o.i[k] = toInt64(fn(x.at(k)));
  }
}

void binary(Ctx &c) {
  StringRef t = c.type();
  const AbsTensor &a = *c.in[0], &b = *c.in[1];
  auto shape = broadcast({a.shape, b.shape});
  if (!shape)
    return;
  bool compare = t == "Equal" || t == "Less" || t == "LessOrEqual" || t == "Greater" ||
                 t == "GreaterOrEqual" || t == "And" || t == "Or" || t == "Xor";
  Kind kind = compare ? Kind::Bool : a.kind;
  AbsTensor &o = c.out[0];
  setShape(o, *shape, kind);
  if (!a.hasData || !b.hasData || !dataSized(o))
    return;
  auto ia = broadcastIndex(*shape, a.shape), ib = broadcastIndex(*shape, b.shape);
  size_t n = ia.size();
  bool asFloat = a.isFloat() || b.isFloat();
  o.hasData = true;
  if (kind == Kind::Float || (asFloat && !compare)) {
    o.kind = Kind::Float;
    o.f.resize(n);
    for (size_t k = 0; k < n; ++k) {
      double x = a.at(size_t(ia[k])), y = b.at(size_t(ib[k]));
      double r = 0;
      if (t == "Add") r = x + y;
      else if (t == "Sub") r = x - y;
      else if (t == "Mul") r = x * y;
      else if (t == "Div") r = x / y;
      else if (t == "Pow") r = std::pow(x, y);
      else if (t == "Max") r = std::max(x, y);
      else if (t == "Min") r = std::min(x, y);
      else if (t == "Mod") r = std::fmod(x, y);
      o.f[k] = r;
    }
    return;
  }
  o.i.resize(n);
  for (size_t k = 0; k < n; ++k) {
    size_t ka = size_t(ia[k]), kb = size_t(ib[k]);
    if (compare && asFloat) {
      double x = a.at(ka), y = b.at(kb);
      bool r = t == "Equal" ? x == y : t == "Less" ? x < y : t == "LessOrEqual" ? x <= y
             : t == "Greater" ? x > y : x >= y;
      o.i[k] = r;
      continue;
    }
    int64_t x = a.i[ka], y = b.i[kb], r = 0;
    if (t == "Add") r = int64_t(uint64_t(x) + uint64_t(y));
    else if (t == "Sub") r = int64_t(uint64_t(x) - uint64_t(y));
    else if (t == "Mul") r = int64_t(uint64_t(x) * uint64_t(y));
    else if (t == "Div") r = y == 0 || (x == INT64_MIN && y == -1) ? 0 : x / y;
    else if (t == "Mod") r = y == 0 || (x == INT64_MIN && y == -1) ? 0 : x % y;
    else if (t == "Pow") r = toInt64(std::pow(double(x), double(y)));
    else if (t == "Max") r = std::max(x, y);
    else if (t == "Min") r = std::min(x, y);
    else if (t == "Equal") r = x == y;
    else if (t == "Less") r = x < y;
    else if (t == "LessOrEqual") r = x <= y;
    else if (t == "Greater") r = x > y;
    else if (t == "GreaterOrEqual") r = x >= y;
    else if (t == "And") r = (x != 0) && (y != 0);
    else if (t == "Or") r = (x != 0) || (y != 0);
    else if (t == "Xor") r = (x != 0) != (y != 0);
    o.i[k] = r;
  }
}

/// Gathers `src` into a tensor of `shape` by a flat source index per element.
void gatherInto(AbsTensor &o, const AbsTensor &src, const std::vector<int64_t> &idx) {
  o.hasData = true;
  if (src.isFloat()) {
    o.f.resize(idx.size());
    for (size_t k = 0; k < idx.size(); ++k)
      o.f[k] = src.f[size_t(idx[k])];
  } else {
    o.i.resize(idx.size());
    for (size_t k = 0; k < idx.size(); ++k)
      o.i[k] = src.i[size_t(idx[k])];
  }
}

void copyData(AbsTensor &o, const AbsTensor &x) {
  if (!x.hasData)
    return;
  o.hasData = true;
  o.f = x.f;
  o.i = x.i;
}

void opReshape(Ctx &c) {
  auto target = c.ints(1);
  if (!c.inKnown(0) || !target)
    return;
  const AbsTensor &x = *c.in[0];
  bool allowZero = c.attrInt("allowzero", 0) != 0;
  Shape s;
  int64_t inferAt = -1, known = 1;
  for (size_t k = 0; k < target->size(); ++k) {
    int64_t d = (*target)[k];
    if (d == 0 && !allowZero) {
      if (k >= x.shape.size())
        return;
      d = x.shape[k];
    }
    if (d == -1) {
      if (inferAt >= 0)
        return;
      inferAt = int64_t(k);
      s.push_back(1);
      continue;
    }
    if (d < 0)
      return;
    s.push_back(d);
    known *= d;
  }
  int64_t n = x.numel();
  if (inferAt >= 0) {
    if (known == 0 || n % known)
      return;
    s[size_t(inferAt)] = n / known;
  } else if (product(s) != n) {
    return;
  }
  setShape(c.out[0], s, x.kind);
  copyData(c.out[0], x);
}

void opTranspose(Ctx &c) {
  const AbsTensor &x = *c.in[0];
  size_t r = x.shape.size();
  std::vector<int64_t> perm;
  if (auto p = c.attrInts("perm"))
    perm = *p;
  else
    for (size_t k = 0; k < r; ++k)
      perm.push_back(int64_t(r - 1 - k));
  if (perm.size() != r)
    return;
  Shape s;
  std::vector<bool> seen(r, false);
  for (int64_t p : perm) {
    if (p < 0 || size_t(p) >= r || seen[size_t(p)])
      return; // not a permutation
    seen[size_t(p)] = true;
    s.push_back(x.shape[size_t(p)]);
  }
  AbsTensor &o = c.out[0];
  setShape(o, s, x.kind);
  if (!x.hasData)
    return;
  Shape inStr = stridesOf(x.shape);
  int64_t n = x.numel();
  std::vector<int64_t> idx(static_cast<size_t>(n));
  Shape counter(r, 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t off = 0;
    for (size_t k = 0; k < r; ++k)
      off += counter[k] * inStr[size_t(perm[k])];
    idx[size_t(e)] = off;
    for (int k = int(r) - 1; k >= 0; --k) {
      if (++counter[k] < s[k])
        break;
      counter[k] = 0;
    }
  }
  gatherInto(o, x, idx);
}

void opUnsqueezeSqueeze(Ctx &c, bool unsqueeze) {
  const AbsTensor &x = *c.in[0];
  std::optional<std::vector<int64_t>> axes;
  if (c.opset() < 13)
    axes = c.attrInts("axes");
  else if (c.in.size() > 1 && c.in[1]->known)
    axes = c.ints(1);
  Shape s;
  if (unsqueeze) {
    if (!axes)
      return;
    size_t rank = x.shape.size() + axes->size();
    std::vector<bool> isNew(rank, false);
    for (int64_t a : *axes) {
      a = normAxis(a, rank);
      if (a < 0 || size_t(a) >= rank || isNew[size_t(a)])
        return;
      isNew[size_t(a)] = true;
    }
    size_t src = 0;
    for (size_t k = 0; k < rank; ++k)
      s.push_back(isNew[k] ? 1 : x.shape[src++]);
  } else {
    std::vector<bool> drop(x.shape.size(), false);
    if (axes) {
      for (int64_t a : *axes) {
        a = normAxis(a, x.shape.size());
        if (a < 0 || size_t(a) >= x.shape.size() || x.shape[size_t(a)] != 1)
          return;
        drop[size_t(a)] = true;
      }
    } else {
      for (size_t k = 0; k < x.shape.size(); ++k)
        drop[k] = x.shape[k] == 1;
    }
    for (size_t k = 0; k < x.shape.size(); ++k)
      if (!drop[k])
        s.push_back(x.shape[k]);
  }
  setShape(c.out[0], s, x.kind);
  copyData(c.out[0], x);
}

void opConcat(Ctx &c) {
  int64_t axis = c.attrInt("axis", 0);
  if (c.in.empty())
    return;
  for (size_t k = 0; k < c.in.size(); ++k)
    if (!c.inKnown(k))
      return;
  size_t r = c.in[0]->shape.size();
  axis = normAxis(axis, r);
  if (axis < 0 || size_t(axis) >= r)
    return;
  Shape s(c.in[0]->shape);
  s[size_t(axis)] = 0;
  bool data = true;
  for (auto *t : c.in) {
    if (t->shape.size() != r)
      return;
    for (size_t k = 0; k < r; ++k)
      if (k != size_t(axis) && t->shape[k] != s[k])
        return;
    s[size_t(axis)] += t->shape[size_t(axis)];
    data = data && t->hasData && t->kind == c.in[0]->kind;
  }
  AbsTensor &o = c.out[0];
  setShape(o, s, c.in[0]->kind);
  if (!data || !dataSized(o))
    return;
  int64_t outer = product(ArrayRef<int64_t>(s).take_front(size_t(axis)));
  o.hasData = true;
  for (int64_t b = 0; b < outer; ++b)
    for (auto *t : c.in) {
      int64_t chunk = product(ArrayRef<int64_t>(t->shape).drop_front(size_t(axis)));
      for (int64_t e = 0; e < chunk; ++e) {
        size_t k = size_t(b * chunk + e);
        if (t->isFloat())
          o.f.push_back(t->f[k]);
        else
          o.i.push_back(t->i[k]);
      }
    }
}

void opSlice(Ctx &c) {
  const AbsTensor &x = *c.in[0];
  size_t r = x.shape.size();
  std::optional<std::vector<int64_t>> starts, ends, axes, steps;
  if (c.opset() < 10) {
    starts = c.attrInts("starts");
    ends = c.attrInts("ends");
    axes = c.attrInts("axes");
  } else {
    starts = c.ints(1);
    ends = c.ints(2);
    if (c.in.size() > 3 && c.in[3]->known)
      axes = c.ints(3);
    if (c.in.size() > 4 && c.in[4]->known)
      steps = c.ints(4);
    if ((c.in.size() > 3 && c.in[3]->known && !axes) ||
        (c.in.size() > 4 && c.in[4]->known && !steps))
      return;
  }
  if (!starts || !ends || starts->size() != ends->size())
    return;
  if (!axes) {
    axes.emplace();
    for (size_t k = 0; k < starts->size(); ++k)
      axes->push_back(int64_t(k));
  }
  if (!steps)
    steps = std::vector<int64_t>(starts->size(), 1);
  if (axes->size() != starts->size() || steps->size() != starts->size())
    return;
  Shape begin(r, 0), step(r, 1), s(x.shape);
  for (size_t k = 0; k < starts->size(); ++k) {
    int64_t a = normAxis((*axes)[k], r);
    if (a < 0 || size_t(a) >= r)
      return;
    int64_t dim = x.shape[size_t(a)], st = (*steps)[k];
    if (st == 0 || st == INT64_MIN)
      return;
    if (dim == 0) {
      s[size_t(a)] = 0;
      continue;
    }
    int64_t b = (*starts)[k], e = (*ends)[k];
    if (b < 0) b += dim;
    if (e < 0) e += dim;
    int64_t cnt;
    if (st > 0) {
      b = std::clamp<int64_t>(b, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      cnt = e > b ? 1 + (e - b - 1) / st : 0;
    } else {
      b = std::clamp<int64_t>(b, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      cnt = b > e ? 1 + (b - e - 1) / -st : 0;
    }
    begin[size_t(a)] = b;
    step[size_t(a)] = st;
    s[size_t(a)] = cnt;
  }
  AbsTensor &o = c.out[0];
  setShape(o, s, x.kind);
  if (!x.hasData)
    return;
  Shape inStr = stridesOf(x.shape);
  int64_t n = o.numel();
  std::vector<int64_t> idx(static_cast<size_t>(n));
  Shape counter(r, 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t off = 0;
    for (size_t k = 0; k < r; ++k)
      off += (begin[k] + counter[k] * step[k]) * inStr[k];
    idx[size_t(e)] = off;
    for (int k = int(r) - 1; k >= 0; --k) {
      if (++counter[k] < s[k])
        break;
      counter[k] = 0;
    }
  }
  gatherInto(o, x, idx);
}

void opGather(Ctx &c) {
  if (!c.inKnown(1))
    return;
  const AbsTensor &x = *c.in[0], &ind = *c.in[1];
  int64_t axis = normAxis(c.attrInt("axis", 0), x.shape.size());
  if (axis < 0 || size_t(axis) >= x.shape.size() || ind.isFloat())
    return;
  Shape s(x.shape.begin(), x.shape.begin() + axis);
  s.append(ind.shape.begin(), ind.shape.end());
  s.append(x.shape.begin() + axis + 1, x.shape.end());
  AbsTensor &o = c.out[0];
  setShape(o, s, x.kind);
  if (!x.hasData || !ind.hasData || !dataSized(o))
    return;
  int64_t outer = product(ArrayRef<int64_t>(x.shape).take_front(size_t(axis)));
  int64_t inner = product(ArrayRef<int64_t>(x.shape).drop_front(size_t(axis) + 1));
  int64_t dim = x.shape[size_t(axis)];
  std::vector<int64_t> idx;
  for (int64_t b = 0; b < outer; ++b)
    for (int64_t j : ind.i) {
      if (j < 0) j += dim;
      if (j < 0 || j >= dim)
        return;
      for (int64_t e = 0; e < inner; ++e)
        idx.push_back((b * dim + j) * inner + e);
    }
  gatherInto(o, x, idx);
}

void opGatherND(Ctx &c) {
  if (!c.inKnown(1) || c.attrInt("batch_dims", 0) != 0)
    return;
  const AbsTensor &x = *c.in[0], &ind = *c.in[1];
  if (ind.shape.empty() || ind.isFloat())
    return;
  int64_t q = ind.shape.back();
  if (q < 1 || size_t(q) > x.shape.size())
    return;
  Shape s(ind.shape.begin(), ind.shape.end() - 1);
  s.append(x.shape.begin() + q, x.shape.end());
  AbsTensor &o = c.out[0];
  setShape(o, s, x.kind);
  if (!x.hasData || !ind.hasData || !dataSized(o))
    return;
  Shape str = stridesOf(x.shape);
  int64_t inner = product(ArrayRef<int64_t>(x.shape).drop_front(size_t(q)));
  int64_t tuples = ind.numel() / q;
  std::vector<int64_t> idx;
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t off = 0;
    for (int64_t k = 0; k < q; ++k) {
      int64_t j = ind.i[size_t(t * q + k)], dim = x.shape[size_t(k)];
      if (j < 0) j += dim;
      if (j < 0 || j >= dim)
        return;
      off += j * str[size_t(k)];
    }
    for (int64_t e = 0; e < inner; ++e)
      idx.push_back(off + e);
  }
  gatherInto(o, x, idx);
}

void opExpand(Ctx &c) {
  auto target = c.ints(1);
  if (!target)
    return;
  const AbsTensor &x = *c.in[0];
  auto s = broadcast({x.shape, Shape(target->begin(), target->end())});
  if (!s)
    return;
  AbsTensor &o = c.out[0];
  setShape(o, *s, x.kind);
  if (x.hasData && dataSized(o))
    gatherInto(o, x, broadcastIndex(*s, x.shape));
}

void opWhere(Ctx &c) {
  const AbsTensor &cond = *c.in[0], &a = *c.in[1], &b = *c.in[2];
  auto s = broadcast({cond.shape, a.shape, b.shape});
  if (!s)
    return;
  AbsTensor &o = c.out[0];
  setShape(o, *s, a.kind);
  if (!cond.hasData || !a.hasData || !b.hasData || !dataSized(o) || a.kind != b.kind)
    return;
  auto ic = broadcastIndex(*s, cond.shape), ia = broadcastIndex(*s, a.shape),
       ib = broadcastIndex(*s, b.shape);
  o.hasData = true;
  for (size_t k = 0; k < ic.size(); ++k) {
    bool t = cond.at(size_t(ic[k])) != 0;
    if (a.isFloat())
      o.f.push_back(t ? a.f[size_t(ia[k])] : b.f[size_t(ib[k])]);
    else
      o.i.push_back(t ? a.i[size_t(ia[k])] : b.i[size_t(ib[k])]);
  }
}

void opRange(Ctx &c) {
  for (size_t k = 0; k < 3; ++k)
    if (!c.inData(k) || c.in[k]->numel() != 1)
      return;
  AbsTensor &o = c.out[0];
  const AbsTensor &st = *c.in[0];
  if (st.isFloat()) {
    double a = c.in[0]->at(0), l = c.in[1]->at(0), d = c.in[2]->at(0);
    if (d == 0)
      return;
    double cnt = std::max(0.0, std::ceil((l - a) / d));
    if (cnt > double(kMaxData))
      return;
    setShape(o, {int64_t(cnt)}, Kind::Float);
    o.hasData = true;
    for (int64_t k = 0; k < int64_t(cnt); ++k)
      o.f.push_back(a + double(k) * d);
    return;
  }
  int64_t a = st.i[0], l = c.in[1]->i[0], d = c.in[2]->i[0];
  if (d == 0)
    return;
  double cnt = std::max(0.0, std::ceil((double(l) - double(a)) / double(d)));
  if (cnt > double(kMaxData))
    return;
  setShape(o, {int64_t(cnt)}, Kind::Int);
  o.hasData = true;
  for (int64_t k = 0; k < int64_t(cnt); ++k)
    o.i.push_back(int64_t(uint64_t(a) + uint64_t(k) * uint64_t(d)));
}

void opConstantOfShape(Ctx &c) {
  auto s = c.ints(0);
  if (!s)
    return;
  for (int64_t d : *s)
    if (d < 0)
      return;
  AbsTensor &o = c.out[0];
  Kind kind = Kind::Float;
  double fv = 0;
  int64_t iv = 0;
  if (auto v = dyn_cast_or_null<DenseElementsAttr>(c.attr("value"))) {
    Type et = v.getElementType();
    if (v.getNumElements() != 1)
      return;
    if (auto ft = dyn_cast<FloatType>(et)) {
      fv = (*v.getValues<APFloat>().begin()).convertToDouble();
      (void)ft;
    } else if (et.isInteger(1)) {
      kind = Kind::Bool;
      iv = *v.getValues<bool>().begin();
    } else {
      kind = Kind::Int;
      iv = (*v.getValues<APInt>().begin()).getSExtValue();
    }
  }
  setShape(o, *s, kind);
  if (!dataSized(o))
    return;
  o.hasData = true;
  if (kind == Kind::Float)
    o.f.assign(size_t(o.numel()), fv);
  else
    o.i.assign(size_t(o.numel()), iv);
}

void opCumSum(Ctx &c) {
  const AbsTensor &x = *c.in[0];
  AbsTensor &o = c.out[0];
  setShape(o, x.shape, x.kind == Kind::Bool ? Kind::Int : x.kind);
  auto ax = c.ints(1);
  if (!x.hasData || !ax || ax->size() != 1)
    return;
  int64_t axis = normAxis((*ax)[0], x.shape.size());
  if (axis < 0 || size_t(axis) >= x.shape.size())
    return;
  bool excl = c.attrInt("exclusive", 0), rev = c.attrInt("reverse", 0);
  int64_t dim = x.shape[size_t(axis)];
  int64_t inner = product(ArrayRef<int64_t>(x.shape).drop_front(size_t(axis) + 1));
  int64_t outer = product(ArrayRef<int64_t>(x.shape).take_front(size_t(axis)));
  o.hasData = true;
  o.f.assign(x.isFloat() ? size_t(x.numel()) : 0, 0);
  o.i.assign(x.isFloat() ? 0 : size_t(x.numel()), 0);
  for (int64_t b = 0; b < outer; ++b)
    for (int64_t e = 0; e < inner; ++e) {
      double accF = 0;
      int64_t accI = 0;
      for (int64_t t = 0; t < dim; ++t) {
        int64_t j = rev ? dim - 1 - t : t;
        size_t k = size_t((b * dim + j) * inner + e);
        if (x.isFloat()) {
          if (excl) { o.f[k] = accF; accF += x.f[k]; }
          else { accF += x.f[k]; o.f[k] = accF; }
        } else {
          int64_t next = int64_t(uint64_t(accI) + uint64_t(x.i[k]));
          o.i[k] = excl ? accI : next;
          accI = next;
        }
      }
    }
}

void opTrilu(Ctx &c) {
  const AbsTensor &x = *c.in[0];
  AbsTensor &o = c.out[0];
  if (x.shape.size() < 2)
    return;
  setShape(o, x.shape, x.kind);
  int64_t k = 0;
  if (c.in.size() > 1 && c.in[1]->known) {
    auto kv = c.ints(1);
    if (!kv || kv->size() != 1)
      return;
    k = (*kv)[0];
  }
  if (!x.hasData)
    return;
  bool upper = c.attrInt("upper", 1) != 0;
  int64_t rows = x.shape[x.shape.size() - 2], cols = x.shape.back();
  copyData(o, x);
  for (int64_t e = 0; e < x.numel(); ++e) {
    int64_t j = e % cols, i = (e / cols) % rows;
    bool keep = upper ? j - i >= k : j - i <= k;
    if (!keep) {
      if (o.isFloat()) o.f[size_t(e)] = 0;
      else o.i[size_t(e)] = 0;
    }
  }
}

void opMatMul(Ctx &c) {
  const AbsTensor &a = *c.in[0], &b = *c.in[1];
  if (a.shape.empty() || b.shape.empty())
    return;
  Shape as(a.shape), bs(b.shape);
  bool va = as.size() == 1, vb = bs.size() == 1;
  if (va) as.insert(as.begin(), 1);
  if (vb) bs.push_back(1);
  int64_t m = as[as.size() - 2], k = as.back(), k2 = bs[bs.size() - 2], n = bs.back();
  if (k != k2)
    return;
  auto batch = broadcast({Shape(as.begin(), as.end() - 2), Shape(bs.begin(), bs.end() - 2)});
  if (!batch)
    return;
  Shape s(*batch);
  if (!va) s.push_back(m);
  if (!vb) s.push_back(n);
  AbsTensor &o = c.out[0];
  setShape(o, s, a.kind);
  if (!a.hasData || !b.hasData || !dataSized(o) || o.numel() * k > kMaxData * 8)
    return;
  Shape full(*batch);
  full.push_back(m);
  full.push_back(n);
  Shape aFull(*batch), bFull(*batch);
  Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  auto ia = broadcastIndex(*batch, ab), ib = broadcastIndex(*batch, bb);
  int64_t nb = product(*batch);
  o.hasData = true;
  o.f.assign(a.isFloat() ? size_t(nb * m * n) : 0, 0);
  o.i.assign(a.isFloat() ? 0 : size_t(nb * m * n), 0);
  for (int64_t t = 0; t < nb; ++t)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t q = 0; q < n; ++q) {
        double acc = 0;
        for (int64_t e = 0; e < k; ++e)
          acc += a.at(size_t(ia[size_t(t)] * m * k + r * k + e)) *
                 b.at(size_t(ib[size_t(t)] * k * n + e * n + q));
        size_t dst = size_t((t * m + r) * n + q);
        if (a.isFloat()) o.f[dst] = acc;
        else o.i[dst] = toInt64(acc);
      }
}

void opReduce(Ctx &c) {
  const AbsTensor &x = *c.in[0];
  StringRef t = c.type();
  std::optional<std::vector<int64_t>> axes;
  bool axesAsInput = (t == "ReduceSum" && c.opset() >= 13) || c.opset() >= 18;
  if (axesAsInput) {
    if (c.in.size() > 1 && c.in[1]->known) {
      axes = c.ints(1);
      if (!axes)
        return;
    }
  } else {
    axes = c.attrInts("axes");
  }
  bool keep = c.attrInt("keepdims", 1) != 0;
  size_t r = x.shape.size();
  std::vector<bool> red(r, false);
  if (!axes || axes->empty()) {
    if (axesAsInput && c.attrInt("noop_with_empty_axes", 0)) {
      setShape(c.out[0], x.shape, x.kind);
      copyData(c.out[0], x);
      return;
    }
    red.assign(r, true);
  } else {
    for (int64_t a : *axes) {
      a = normAxis(a, r);
      if (a < 0 || size_t(a) >= r)
        return;
      red[size_t(a)] = true;
    }
  }
  Shape s;
  for (size_t k = 0; k < r; ++k)
    if (!red[k]) s.push_back(x.shape[k]);
    else if (keep) s.push_back(1);
  AbsTensor &o = c.out[0];
  setShape(o, s, x.kind);
  if (!x.hasData || !x.isFloat())
    return;
  // Output index for each input element (the reduced dims collapse to 0).
  Shape outFull;
  for (size_t k = 0; k < r; ++k)
    outFull.push_back(red[k] ? 1 : x.shape[k]);
  Shape oStr = stridesOf(outFull);
  int64_t n = x.numel(), on = product(outFull);
  std::vector<double> acc(size_t(on), t == "ReduceMax" ? -INFINITY : t == "ReduceMin" ? INFINITY : 0.0);
  Shape counter(r, 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t off = 0;
    for (size_t k = 0; k < r; ++k)
      off += red[k] ? 0 : counter[k] * oStr[k];
    double v = x.f[size_t(e)];
    double &d = acc[size_t(off)];
    if (t == "ReduceMax") d = std::max(d, v);
    else if (t == "ReduceMin") d = std::min(d, v);
    else d += v;
    for (int k = int(r) - 1; k >= 0; --k) {
      if (++counter[k] < x.shape[k])
        break;
      counter[k] = 0;
    }
  }
  if (t == "ReduceMean" && on > 0)
    for (double &d : acc)
      d /= double(n / on);
  o.hasData = true;
  o.f = std::move(acc);
}

void opSoftmax(Ctx &c) {
  const AbsTensor &x = *c.in[0];
  AbsTensor &o = c.out[0];
  setShape(o, x.shape, x.kind);
  if (!x.hasData || !x.isFloat() || x.shape.empty() || c.opset() < 13)
    return;
  int64_t axis = normAxis(c.attrInt("axis", -1), x.shape.size());
  if (size_t(axis) != x.shape.size() - 1)
    return;
  int64_t cols = x.shape.back();
  o.hasData = true;
  o.f = x.f;
  for (int64_t r = 0; cols > 0 && r < x.numel() / cols; ++r) {
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < cols; ++j)
      mx = std::max(mx, x.f[size_t(r * cols + j)]);
    for (int64_t j = 0; j < cols; ++j)
      sum += (o.f[size_t(r * cols + j)] = std::exp(x.f[size_t(r * cols + j)] - mx));
    for (int64_t j = 0; j < cols; ++j)
      o.f[size_t(r * cols + j)] /= sum;
  }
}

void opSplit(Ctx &c) {
  const AbsTensor &x = *c.in[0];
  int64_t axis = normAxis(c.attrInt("axis", 0), x.shape.size());
  if (axis < 0 || size_t(axis) >= x.shape.size())
    return;
  int64_t dim = x.shape[size_t(axis)];
  std::vector<int64_t> sizes;
  size_t nOut = c.out.size();
  if (c.opset() < 13) {
    if (auto s = c.attrInts("split"))
      sizes = *s;
  } else if (c.in.size() > 1 && c.in[1]->known) {
    auto s = c.ints(1);
    if (!s)
      return;
    sizes = *s;
  }
  if (sizes.empty()) {
    int64_t chunk = (dim + int64_t(nOut) - 1) / int64_t(nOut);
    for (size_t k = 0; k < nOut; ++k)
      sizes.push_back(std::min(chunk, dim - chunk * int64_t(k)));
  }
  for (int64_t z : sizes)
    if (z < 0 || z > dim)
      return;
  if (sizes.size() != nOut || std::accumulate(sizes.begin(), sizes.end(), int64_t(0)) != dim)
    return;
  int64_t begin = 0;
  for (size_t k = 0; k < nOut; ++k) {
    Shape s(x.shape);
    s[size_t(axis)] = sizes[k];
    setShape(c.out[k], s, x.kind);
    if (x.hasData) {
      int64_t outer = product(ArrayRef<int64_t>(x.shape).take_front(size_t(axis)));
      int64_t inner = product(ArrayRef<int64_t>(x.shape).drop_front(size_t(axis) + 1));
      std::vector<int64_t> idx;
      for (int64_t b = 0; b < outer; ++b)
        for (int64_t j = 0; j < sizes[k]; ++j)
          for (int64_t e = 0; e < inner; ++e)
            idx.push_back((b * dim + begin + j) * inner + e);
      gatherInto(c.out[k], x, idx);
    }
    begin += sizes[k];
  }
}

void opGemm(Ctx &c) {
  const AbsTensor &a = *c.in[0], &b = *c.in[1];
  if (a.shape.size() != 2 || b.shape.size() != 2)
    return;
  int64_t m = c.attrInt("transA", 0) ? a.shape[1] : a.shape[0];
  int64_t n = c.attrInt("transB", 0) ? b.shape[0] : b.shape[1];
  setShape(c.out[0], {m, n}, a.kind);
}

void opCast(Ctx &c, Type toType) {
  const AbsTensor &x = *c.in[0];
  Kind kind = isa<FloatType>(toType) ? Kind::Float
              : toType.isInteger(1)  ? Kind::Bool
                                     : Kind::Int;
  AbsTensor &o = c.out[0];
  setShape(o, x.shape, kind);
  if (!x.hasData)
    return;
  o.hasData = true;
  size_t n = size_t(x.numel());
  if (kind == Kind::Float) {
    // Float-to-float casts keep full precision: fp16 exports cast the
    // rotary tables down, and the analysis wants the function the tables
    // compute, not its fp16 rounding (QLLM computes activations in fp32).
    o.f.resize(n);
    for (size_t k = 0; k < n; ++k)
      o.f[k] = x.at(k);
  } else {
    o.i.resize(n);
    for (size_t k = 0; k < n; ++k) {
      double v = x.at(k);
      if (kind == Kind::Bool)
        o.i[k] = v != 0;
      else if (x.isFloat())
        o.i[k] = std::isfinite(v) ? toInt64(v) : 0;
      else
        o.i[k] = x.i[k];
    }
  }
}

/// ONNX's `to` attribute value -> the MLIR element type it names.
Type castTarget(MLIRContext *ctx, int64_t to) {
  Builder b(ctx);
  switch (to) {
  case 1: return b.getF32Type();
  case 10: return b.getF16Type();
  case 16: return b.getBF16Type();
  case 11: return b.getF64Type();
  case 9: return b.getI1Type();
  case 2: case 3: case 4: case 5: case 6: case 7: case 12: case 13:
    return b.getI64Type();
  default: return {};
  }
}
} // namespace

int64_t AbsTensor::numel() const { return known ? product(shape) : -1; }

AbsEvaluator::AbsEvaluator(func::FuncOp func, const WeightStore *store) : store_(store) {
  // Sample sizes: distinct sequence lengths (so that a dimension equal to
  // the sequence length in every sample really is it), from 5 to 17 so the
  // cos tables and masks have enough rows to check; batch sizes follow the
  // input's declared batch when it is static (dynamo exports fix it to 1).
  int64_t fixedB = ShapedType::kDynamic, fixedS = ShapedType::kDynamic;
  if (func.getNumArguments() > 0)
    if (auto t = dyn_cast<RankedTensorType>(func.getArgument(0).getType()))
      if (t.getRank() == 2) {
        fixedB = t.getDimSize(0);
        fixedS = t.getDimSize(1);
      }
  const int64_t bs[] = {2, 3, 1}, ss[] = {5, 11, 17};
  for (int k = 0; k < 3; ++k) {
    batch_.push_back(ShapedType::isDynamic(fixedB) ? bs[k] : fixedB);
    seq_.push_back(ShapedType::isDynamic(fixedS) ? ss[k] : fixedS);
  }
  for (unsigned s = 0; s < numSamples(); ++s) {
    for (BlockArgument a : func.getArguments()) {
      auto &vec = values_[a];
      vec.resize(numSamples());
      AbsTensor &t = vec[s];
      auto rt = dyn_cast<RankedTensorType>(a.getType());
      if (!rt)
        continue;
      Shape shape;
      for (int64_t d = 0; d < rt.getRank(); ++d) {
        int64_t v = rt.getDimSize(d);
        if (ShapedType::isDynamic(v))
          v = d == 0 ? batch_[s] : d == 1 ? seq_[s] : -1;
        shape.push_back(v);
      }
      if (llvm::is_contained(shape, -1))
        continue;
      setShape(t, shape, isa<FloatType>(rt.getElementType()) ? Kind::Float : Kind::Int);
    }
    for (Operation &op : func.getBody().front())
      evaluate(&op, s);
  }
}

void AbsEvaluator::evaluate(Operation *op, unsigned s) {
  auto slot = [&](Value v) -> AbsTensor & {
    auto &vec = values_[v];
    vec.resize(numSamples());
    return vec[s];
  };
  if (auto c = dyn_cast<qonnx::ConstantOp>(op)) {
    AbsTensor &t = slot(c.getResult());
    auto attr = dyn_cast<DenseElementsAttr>(c.getValue());
    if (!attr)
      return;
    auto type = attr.getType();
    Type et = type.getElementType();
    setShape(t, type.getShape(),
             isa<FloatType>(et) ? Kind::Float : et.isInteger(1) ? Kind::Bool : Kind::Int);
    if (!dataSized(t))
      return;
    t.hasData = true;
    if (isa<FloatType>(et)) {
      for (APFloat v : attr.getValues<APFloat>())
        t.f.push_back(v.convertToDouble());
    } else if (et.isInteger(1)) {
      for (bool v : attr.getValues<bool>())
        t.i.push_back(v);
    } else {
      bool isUnsigned = et.isUnsignedInteger();
      for (APInt v : attr.getValues<APInt>())
        t.i.push_back(isUnsigned ? int64_t(v.getZExtValue()) : v.getSExtValue());
    }
    return;
  }
  if (auto p = dyn_cast<qllm::ParamOp>(op)) {
    AbsTensor &t = slot(p.getResult());
    auto type = p.getResult().getType();
    setShape(t, type.getShape(), Kind::Float);
    if (store_ && t.numel() <= kMaxParamData)
      if (const WeightEntry *e = store_->find(p.getName().str())) {
        std::vector<float> v = store_->readF32(*e);
        if (int64_t(v.size()) == t.numel()) {
          t.hasData = true;
          t.f.assign(v.begin(), v.end());
        }
      }
    return;
  }
  auto node = dyn_cast<qonnx::NodeOp>(op);
  if (!node) {
    for (Value r : op->getResults())
      slot(r);
    return;
  }
  Ctx c;
  c.node = node;
  for (Value v : node.getInputs())
    c.in.push_back(&get(v, s));
  c.out.resize(node.getNumResults());
  StringRef t = node.getOpType();
  bool defaultDomain = node.getDomain().empty() || node.getDomain() == "ai.onnx";
  // Optional inputs (qonnx.none) are "unknown" but absent; ops that read
  // them check for themselves.
  bool firstKnown = !c.in.empty() && c.in[0]->known;
  if (defaultDomain && firstKnown) {
    auto unaryF = [&](double (*fn)(double)) { unary(c, c.in[0]->kind, fn); };
    if (t == "Identity") {
      setShape(c.out[0], c.in[0]->shape, c.in[0]->kind);
      copyData(c.out[0], *c.in[0]);
    } else if (t == "Neg") unary(c, c.in[0]->kind, [](double x) { return -x; });
    else if (t == "Abs") unary(c, c.in[0]->kind, [](double x) { return std::fabs(x); });
    else if (t == "Sqrt") unaryF([](double x) { return std::sqrt(x); });
    else if (t == "Reciprocal") unaryF([](double x) { return 1.0 / x; });
    else if (t == "Cos") unaryF([](double x) { return std::cos(x); });
    else if (t == "Sin") unaryF([](double x) { return std::sin(x); });
    else if (t == "Exp") unaryF([](double x) { return std::exp(x); });
    else if (t == "Log") unaryF([](double x) { return std::log(x); });
    else if (t == "Floor") unaryF([](double x) { return std::floor(x); });
    else if (t == "Ceil") unaryF([](double x) { return std::ceil(x); });
    else if (t == "Tanh") unaryF([](double x) { return std::tanh(x); });
    else if (t == "Sigmoid") unaryF([](double x) { return 1.0 / (1.0 + std::exp(-x)); });
    else if (t == "Relu") unaryF([](double x) { return x > 0 ? x : 0.0; });
    else if (t == "Not") unary(c, Kind::Bool, [](double x) { return x == 0 ? 1.0 : 0.0; });
    else if (t == "IsNaN") unary(c, Kind::Bool, [](double x) { return std::isnan(x) ? 1.0 : 0.0; });
    else if (t == "IsInf") unary(c, Kind::Bool, [](double x) { return std::isinf(x) ? 1.0 : 0.0; });
    else if (t == "Cast") {
      if (Type to = castTarget(op->getContext(), c.attrInt("to", 0)))
        opCast(c, to);
    } else if (t == "Add" || t == "Sub" || t == "Mul" || t == "Div" || t == "Pow" ||
               t == "Mod" || t == "Equal" || t == "Less" || t == "LessOrEqual" ||
               t == "Greater" || t == "GreaterOrEqual" || t == "And" || t == "Or" ||
               t == "Xor" || ((t == "Max" || t == "Min") && c.in.size() == 2)) {
      if (c.inKnown(1))
        binary(c);
    } else if ((t == "Max" || t == "Min") && c.in.size() == 1) {
      setShape(c.out[0], c.in[0]->shape, c.in[0]->kind);
      copyData(c.out[0], *c.in[0]);
    } else if (t == "Where") {
      if (c.inKnown(1) && c.inKnown(2))
        opWhere(c);
    } else if (t == "Shape") {
      const Shape &x = c.in[0]->shape;
      int64_t r = int64_t(x.size());
      int64_t st = c.attrInt("start", 0), en = c.attrInt("end", r);
      if (st < 0) st += r;
      if (en < 0) en += r;
      st = std::clamp<int64_t>(st, 0, r);
      en = std::clamp<int64_t>(en, 0, r);
      AbsTensor &o = c.out[0];
      setShape(o, {std::max<int64_t>(0, en - st)}, Kind::Int);
      o.hasData = true;
      for (int64_t k = st; k < en; ++k)
        o.i.push_back(x[size_t(k)]);
    } else if (t == "Size") {
      AbsTensor &o = c.out[0];
      setShape(o, {}, Kind::Int);
      o.hasData = true;
      o.i.push_back(c.in[0]->numel());
    } else if (t == "Reshape") opReshape(c);
    else if (t == "Flatten") {
      const Shape &x = c.in[0]->shape;
      int64_t axis = normAxis(c.attrInt("axis", 1), x.size());
      if (axis >= 0 && size_t(axis) <= x.size()) {
        setShape(c.out[0],
                 {product(ArrayRef<int64_t>(x).take_front(size_t(axis))),
                  product(ArrayRef<int64_t>(x).drop_front(size_t(axis)))},
                 c.in[0]->kind);
        copyData(c.out[0], *c.in[0]);
      }
    } else if (t == "Transpose") opTranspose(c);
    else if (t == "Unsqueeze") opUnsqueezeSqueeze(c, true);
    else if (t == "Squeeze") opUnsqueezeSqueeze(c, false);
    else if (t == "Concat") opConcat(c);
    else if (t == "Slice") opSlice(c);
    else if (t == "Gather") opGather(c);
    else if (t == "GatherND") opGatherND(c);
    else if (t == "Expand") opExpand(c);
    else if (t == "Range") opRange(c);
    else if (t == "ConstantOfShape") opConstantOfShape(c);
    else if (t == "CumSum") opCumSum(c);
    else if (t == "Trilu") opTrilu(c);
    else if (t == "MatMul") { if (c.inKnown(1)) opMatMul(c); }
    else if (t == "Gemm") { if (c.inKnown(1)) opGemm(c); }
    else if (t == "Softmax") opSoftmax(c);
    else if (t == "ReduceMean" || t == "ReduceSum" || t == "ReduceMax" || t == "ReduceMin")
      opReduce(c);
    else if (t == "Split") opSplit(c);
  }
  for (unsigned k = 0; k < node.getNumResults(); ++k) {
    AbsTensor &dst = slot(node.getResult(k));
    dst = std::move(c.out[k]);
    // A shape with negative or absurd sizes is treated as unknown.
    if (dst.known && dst.numel() < 0)
      dst = AbsTensor();
  }
}

const AbsTensor &AbsEvaluator::get(Value v, unsigned s) const {
  auto it = values_.find(v);
  if (it == values_.end() || s >= it->second.size())
    return unknown_;
  return it->second[s];
}

bool AbsEvaluator::shapeIs(Value v, ArrayRef<int64_t> pattern) const {
  for (unsigned s = 0; s < numSamples(); ++s) {
    const AbsTensor &t = get(v, s);
    if (!t.known || t.shape.size() != pattern.size())
      return false;
    for (size_t k = 0; k < pattern.size(); ++k) {
      int64_t want = pattern[k] == kDimB   ? batch_[s]
                     : pattern[k] == kDimS ? seq_[s]
                                           : pattern[k];
      if (pattern[k] != kDimAny && t.shape[k] != want)
        return false;
    }
  }
  return true;
}

bool AbsEvaluator::hasData(Value v) const {
  for (unsigned s = 0; s < numSamples(); ++s)
    if (!get(v, s).known || !get(v, s).hasData)
      return false;
  return true;
}

bool AbsEvaluator::scalar(Value v, double *out) const {
  for (unsigned s = 0; s < numSamples(); ++s) {
    const AbsTensor &t = get(v, s);
    if (!t.known || !t.hasData || t.numel() != 1)
      return false;
    double x = t.at(0);
    if (s > 0 && !(x == *out || (std::isnan(x) && std::isnan(*out))))
      return false;
    *out = x;
  }
  return true;
}

bool AbsEvaluator::constInts(Value v, std::vector<int64_t> *out) const {
  for (unsigned s = 0; s < numSamples(); ++s) {
    const AbsTensor &t = get(v, s);
    if (!t.known || !t.hasData || t.isFloat())
      return false;
    if (s > 0 && t.i != *out)
      return false;
    *out = t.i;
  }
  return true;
}

void AbsEvaluator::alias(Value to, Value from) {
  auto it = values_.find(from);
  if (it != values_.end()) {
    auto copy = it->second;
    values_[to] = std::move(copy);
  }
}

} // namespace raise
} // namespace qopt
