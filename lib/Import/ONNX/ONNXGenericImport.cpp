//===- ONNXGenericImport.cpp - ONNX graph -> qonnx ops, 1:1 -----------===//
//
// Every node becomes one `qonnx.node` carrying its op type, name, domain,
// opset and attributes. Float initializers with more than one element are
// weights: they go to the WeightStore (pointing into the parsed proto or the
// mapped external file, no copy) and appear as `qllm.param`. Everything
// else (shape tensors, scalars, integer tables) becomes `qonnx.constant`.
//
// A 2-D float initializer used only as the [in, out] right operand of MatMul
// (or of Gemm with transB = 0) is how exporters store a linear weight. It is
// registered in its logical [out, in] layout with `transposed = true`, and
// the IR reads it back through an explicit `Transpose` node, so the generic
// IR still computes exactly what the ONNX graph does and the raising pass
// sees `MatMul(x, Transpose(W))`, i.e. a linear with W = [out, in].
//
//===----------------------------------------------------------------------===//
#include "ONNXLoader.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Dialect/QONNX/PrintableName.h"
#include "qopt/Dialect/QONNX/QONNXOps.h"
#include "qopt/Import/ONNXImporter.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <functional>
#include <map>

#include "onnx/onnx_pb.h" // the ONNX_ML variant: ONNX_ML=1 is defined by CMake

using namespace mlir;

namespace qopt {
namespace onnximport {
namespace {

Type elementTypeFromONNX(MLIRContext *ctx, int32_t t) {
  Builder b(ctx);
  switch (t) {
  case onnx::TensorProto::FLOAT: return b.getF32Type();
  case onnx::TensorProto::FLOAT16: return b.getF16Type();
  case onnx::TensorProto::BFLOAT16: return b.getBF16Type();
  case onnx::TensorProto::DOUBLE: return b.getF64Type();
  case onnx::TensorProto::INT8: return b.getIntegerType(8);
  case onnx::TensorProto::UINT8: return b.getIntegerType(8, /*isSigned=*/false);
  case onnx::TensorProto::INT16: return b.getIntegerType(16);
  case onnx::TensorProto::UINT16: return b.getIntegerType(16, false);
  case onnx::TensorProto::INT32: return b.getI32Type();
  case onnx::TensorProto::UINT32: return b.getIntegerType(32, false);
  case onnx::TensorProto::INT64: return b.getI64Type();
  case onnx::TensorProto::UINT64: return b.getIntegerType(64, false);
  case onnx::TensorProto::BOOL: return b.getI1Type();
  default: return {};
  }
}

Type elementTypeOf(MLIRContext *ctx, DType t) {
  Builder b(ctx);
  switch (t) {
  case DType::F32: return b.getF32Type();
  case DType::F16: return b.getF16Type();
  case DType::BF16: return b.getBF16Type();
  case DType::F64: return b.getF64Type();
  case DType::I8: return b.getIntegerType(8);
  case DType::U8: return b.getIntegerType(8, false);
  case DType::I16: return b.getIntegerType(16);
  case DType::I32: return b.getI32Type();
  case DType::I64: return b.getI64Type();
  case DType::Bool: return b.getI1Type();
  }
  return {};
}

/// The type a ValueInfo declares, or null when it declares no tensor type.
Type typeFromValueInfo(MLIRContext *ctx, const onnx::ValueInfoProto &vi) {
  if (!vi.has_type() || !vi.type().has_tensor_type())
    return {};
  const auto &tt = vi.type().tensor_type();
  Type et = elementTypeFromONNX(ctx, tt.elem_type());
  if (!et)
    return {};
  if (!tt.has_shape())
    return UnrankedTensorType::get(et);
  SmallVector<int64_t> dims;
  for (const auto &d : tt.shape().dim())
    dims.push_back(d.has_dim_value() && d.dim_value() >= 0 ? d.dim_value()
                                                           : ShapedType::kDynamic);
  return RankedTensorType::get(dims, et);
}

struct Importer {
  MLIRContext &ctx;
  LoadedModel &m;
  WeightStore &store;
  std::string *error;
  OpBuilder b;
  llvm::StringMap<Value> values;
  llvm::StringMap<Type> declaredTypes;
  Value none;

  Importer(MLIRContext &ctx, LoadedModel &m, WeightStore &store, std::string *error)
      : ctx(ctx), m(m), store(store), error(error), b(&ctx) {}

  /// Names in messages come from the file: control bytes are escaped so
  /// that every message stays one line.
  bool fail(const std::string &why) {
    *error = qonnx::printableMessage(m.path + ": " + why);
    return false;
  }

  /// Element type for a node output without a declared type: ONNX's typing
  /// rules for the ops decoders use, else the first input's element type.
  Type inferElementType(const onnx::NodeProto &n, ArrayRef<Value> inputs, int outIndex) {
    const std::string &op = n.op_type();
    auto attrInt = [&](const char *name, int64_t dflt) {
      for (const auto &a : n.attribute())
        if (a.name() == name)
          return a.i();
      return dflt;
    };
    if (op == "Shape" || op == "Size" || op == "NonZero" || op == "ArgMax" ||
        op == "ArgMin")
      return b.getI64Type();
    if (op == "Equal" || op == "Less" || op == "LessOrEqual" || op == "Greater" ||
        op == "GreaterOrEqual" || op == "Not" || op == "And" || op == "Or" ||
        op == "Xor" || op == "IsNaN" || op == "IsInf")
      return b.getI1Type();
    if (op == "Cast")
      if (Type t = elementTypeFromONNX(&ctx, int32_t(attrInt("to", 1))))
        return t;
    if (op == "ConstantOfShape") {
      for (const auto &a : n.attribute())
        if (a.name() == "value" && a.has_t())
          if (Type t = elementTypeFromONNX(&ctx, a.t().data_type()))
            return t;
      return b.getF32Type();
    }
    if (op == "Where" && inputs.size() > 1)
      if (auto st = dyn_cast<ShapedType>(inputs[1].getType()))
        return st.getElementType();
    if (op == "TopK" && outIndex == 1)
      return b.getI64Type();
    for (Value v : inputs)
      if (auto st = dyn_cast<ShapedType>(v.getType()))
        return st.getElementType();
    return b.getF32Type();
  }

  /// Emits one tensor (initializer or Constant value) named `name`.
  /// `transposedWeight`: register as [out, in] and read it via Transpose.
  bool emitTensor(const onnx::TensorProto &t, const std::string &name, bool transposedWeight,
                  Location loc) {
    TensorData td;
    if (!resolveTensor(t, m, &td, error))
      return false;
    Type et = elementTypeOf(&ctx, td.dtype);
    bool weight = isFloat(td.dtype) && td.numElements() > 1;
    if (weight) {
      WeightEntry e;
      e.name = name;
      e.dtype = td.dtype;
      e.shape = td.shape;
      e.data = td.data;
      e.nbytes = td.nbytes;
      e.source = m.path;
      if (transposedWeight) {
        std::swap(e.shape[0], e.shape[1]);
        e.transposed = true;
      }
      std::vector<int64_t> logical = e.shape;
      if (!store.addExternal(std::move(e), td.keepAlive, error))
        return false;
      auto type = RankedTensorType::get(logical, et);
      Value v = b.create<qllm::ParamOp>(loc, type, b.getStringAttr(name));
      if (transposedWeight) {
        auto ttype = RankedTensorType::get({logical[1], logical[0]}, et);
        SmallVector<NamedAttribute> attrs{
            b.getNamedAttr("perm", b.getDenseI64ArrayAttr({1, 0}))};
        v = b.create<qonnx::NodeOp>(loc, TypeRange{ttype}, ValueRange{v},
                                    b.getStringAttr("Transpose"),
                                    b.getStringAttr(name + "/as_stored"),
                                    b.getStringAttr(""), b.getI64IntegerAttr(m.opset),
                                    b.getDictionaryAttr(attrs))
                .getResult(0);
      }
      values[name] = v;
      return true;
    }
    // Integer and bool tensors of any size are shape data or tables; a huge
    // one means a quantized (QDQ) model, which qopt does not import.
    if (!isFloat(td.dtype) && td.numElements() > (int64_t(1) << 20))
      return fail("tensor '" + name + "' is a large " + std::string(dtypeName(td.dtype)) +
                  " tensor; quantized ONNX models are not supported");
    auto type = RankedTensorType::get(td.shape, et);
    DenseElementsAttr attr;
    if (td.dtype == DType::Bool) {
      SmallVector<bool> bits(size_t(td.numElements()));
      for (size_t i = 0; i < bits.size(); ++i)
        bits[i] = td.data[i] != 0;
      attr = DenseElementsAttr::get(type, ArrayRef<bool>(bits));
    } else {
      attr = DenseElementsAttr::getFromRawBuffer(
          type, ArrayRef<char>(reinterpret_cast<const char *>(td.data), td.nbytes));
    }
    values[name] = b.create<qonnx::ConstantOp>(loc, type, attr, b.getStringAttr(name));
    return true;
  }

  /// Converts a node attribute; false (with *error) for kinds qonnx cannot hold.
  bool convertAttribute(const onnx::NodeProto &n, const std::string &nodeName,
                        const onnx::AttributeProto &a, SmallVectorImpl<NamedAttribute> &out) {
    auto bad = [&](const std::string &why) {
      return fail("node '" + nodeName + "' (" + n.op_type() + "): attribute '" + a.name() +
                  "' " + why);
    };
    Attribute v;
    switch (a.type()) {
    case onnx::AttributeProto::INT: v = b.getI64IntegerAttr(a.i()); break;
    case onnx::AttributeProto::FLOAT: v = b.getF32FloatAttr(a.f()); break;
    case onnx::AttributeProto::STRING: v = b.getStringAttr(a.s()); break;
    case onnx::AttributeProto::INTS:
      v = b.getDenseI64ArrayAttr(SmallVector<int64_t>(a.ints().begin(), a.ints().end()));
      break;
    case onnx::AttributeProto::FLOATS:
      v = b.getDenseF32ArrayAttr(SmallVector<float>(a.floats().begin(), a.floats().end()));
      break;
    case onnx::AttributeProto::STRINGS: {
      SmallVector<Attribute> s;
      for (const auto &x : a.strings())
        s.push_back(b.getStringAttr(x));
      v = b.getArrayAttr(s);
      break;
    }
    case onnx::AttributeProto::TENSOR: {
      TensorData td;
      if (!resolveTensor(a.t(), m, &td, error))
        return false;
      if (td.numElements() > (int64_t(1) << 20))
        return bad("holds a tensor too large for an attribute");
      auto type = RankedTensorType::get(td.shape, elementTypeOf(&ctx, td.dtype));
      if (td.dtype == DType::Bool) {
        SmallVector<bool> bits(size_t(td.numElements()));
        for (size_t i = 0; i < bits.size(); ++i)
          bits[i] = td.data[i] != 0;
        v = DenseElementsAttr::get(type, ArrayRef<bool>(bits));
      } else {
        v = DenseElementsAttr::getFromRawBuffer(
            type, ArrayRef<char>(reinterpret_cast<const char *>(td.data), td.nbytes));
      }
      break;
    }
    case onnx::AttributeProto::GRAPH:
    case onnx::AttributeProto::GRAPHS:
      return bad("is a subgraph; control flow (If/Loop/Scan) is not supported");
    default:
      return bad("has an unsupported kind (" + std::to_string(int(a.type())) + ")");
    }
    out.push_back(b.getNamedAttr(a.name(), v));
    return true;
  }

  /// The tensor payload of a Constant node as a TensorProto (value_float
  /// and friends are rewritten into one).
  bool constantTensor(const onnx::NodeProto &n, const std::string &nodeName,
                      onnx::TensorProto *out, const onnx::TensorProto **direct) {
    *direct = nullptr;
    for (const auto &a : n.attribute()) {
      if (a.name() == "value" && a.has_t()) {
        *direct = &a.t();
        return true;
      }
      if (a.name() == "value_float") {
        out->set_data_type(onnx::TensorProto::FLOAT);
        out->add_float_data(a.f());
        return true;
      }
      if (a.name() == "value_floats") {
        out->set_data_type(onnx::TensorProto::FLOAT);
        out->add_dims(a.floats_size());
        for (float f : a.floats())
          out->add_float_data(f);
        return true;
      }
      if (a.name() == "value_int") {
        out->set_data_type(onnx::TensorProto::INT64);
        out->add_int64_data(a.i());
        return true;
      }
      if (a.name() == "value_ints") {
        out->set_data_type(onnx::TensorProto::INT64);
        out->add_dims(a.ints_size());
        for (int64_t i : a.ints())
          out->add_int64_data(i);
        return true;
      }
    }
    return fail("node '" + nodeName + "' (Constant): no supported value attribute "
                "(sparse and string constants are not supported)");
  }

  OwningOpRef<ModuleOp> run() {
    const onnx::GraphProto &g = m.proto->graph();
    Location unknown = b.getUnknownLoc();
    OwningOpRef<ModuleOp> module = ModuleOp::create(unknown);
    module->getOperation()->setAttr("qonnx.source", b.getStringAttr(m.path));
    module->getOperation()->setAttr("qonnx.opset", b.getI64IntegerAttr(m.opset));
    if (!m.proto->producer_name().empty())
      module->getOperation()->setAttr(
          "qonnx.producer",
          b.getStringAttr(m.proto->producer_name() + " " + m.proto->producer_version()));

    for (const auto &vi : g.value_info())
      if (Type t = typeFromValueInfo(&ctx, vi))
        declaredTypes[vi.name()] = t;
    for (const auto &vi : g.output())
      if (Type t = typeFromValueInfo(&ctx, vi))
        declaredTypes[vi.name()] = t;

    llvm::StringSet<> initNames;
    for (const auto &t : g.initializer()) {
      if (t.name().empty())
        return fail("an initializer has no name"), nullptr;
      if (!initNames.insert(t.name()).second)
        return fail("duplicate initializer '" + t.name() + "'"), nullptr;
    }

    // Which 2-D initializers serve only as [in, out] linear weights: the
    // right operand of MatMul (or of Gemm without transB), directly or
    // through float Casts (mixed-precision exports cast bf16 weights up).
    std::map<std::string, std::vector<std::pair<const onnx::NodeProto *, int>>> uses;
    for (const auto &n : g.node())
      for (int i = 0; i < n.input_size(); ++i)
        uses[n.input(i)].push_back({&n, i});
    llvm::StringSet<> graphOutputs;
    for (const auto &o : g.output())
      graphOutputs.insert(o.name());
    std::function<bool(const std::string &, int)> onlyLinearRhs = [&](const std::string &name,
                                                                      int depth) {
      auto it = uses.find(name);
      if (depth > 4 || graphOutputs.contains(name) || it == uses.end())
        return false;
      for (auto [n, i] : it->second) {
        bool transB = false;
        for (const auto &a : n->attribute())
          if (a.name() == "transB")
            transB = a.i() != 0;
        bool defaultDomain = n->domain().empty() || n->domain() == "ai.onnx";
        if (defaultDomain && i == 1 && (n->op_type() == "MatMul" || (n->op_type() == "Gemm" && !transB)))
          continue;
        if (defaultDomain && n->op_type() == "Cast" && n->output_size() == 1 &&
            onlyLinearRhs(n->output(0), depth + 1))
          continue; // the Cast's target is checked by the pattern, not here
        return false;
      }
      return true;
    };

    // Function arguments: graph inputs that are not initializers.
    SmallVector<Type> argTypes;
    SmallVector<std::string> argNames;
    for (const auto &in : g.input()) {
      if (initNames.contains(in.name()))
        continue;
      Type t = typeFromValueInfo(&ctx, in);
      if (!t)
        return fail("graph input '" + in.name() + "' is not a tensor of a supported type"),
               nullptr;
      argTypes.push_back(t);
      argNames.push_back(in.name());
    }
    SmallVector<Type> resultTypes;
    for (const auto &o : g.output()) {
      auto it = declaredTypes.find(o.name());
      resultTypes.push_back(it != declaredTypes.end() ? it->second
                                                      : UnrankedTensorType::get(b.getF32Type()));
    }
    b.setInsertionPointToEnd(module->getBody());
    auto func = b.create<func::FuncOp>(unknown, "forward",
                                       b.getFunctionType(argTypes, resultTypes));
    Block *body = func.addEntryBlock();
    for (size_t i = 0; i < argNames.size(); ++i) {
      func.setArgAttr(i, "qonnx.name", b.getStringAttr(argNames[i]));
      if (values.count(argNames[i]))
        return fail("duplicate graph input '" + argNames[i] + "'"), nullptr;
      values[argNames[i]] = body->getArgument(i);
    }
    b.setInsertionPointToEnd(body);

    for (const auto &t : g.initializer()) {
      bool transposed = t.dims_size() == 2 && onlyLinearRhs(t.name(), 0) &&
                        (t.data_type() == onnx::TensorProto::FLOAT ||
                         t.data_type() == onnx::TensorProto::FLOAT16 ||
                         t.data_type() == onnx::TensorProto::BFLOAT16);
      if (values.count(t.name()))
        return fail("initializer '" + t.name() + "' shadows a graph input"), nullptr;
      if (!emitTensor(t, t.name(), transposed, NameLoc::get(b.getStringAttr(t.name()))))
        return nullptr;
    }

    int index = 0;
    for (const auto &n : g.node()) {
      ++index;
      // Unnamed nodes get "<op_type>_<index>" so that messages can name them.
      std::string nodeName =
          n.name().empty() ? n.op_type() + "_" + std::to_string(index) : n.name();
      Location loc = NameLoc::get(b.getStringAttr(nodeName));
      for (const auto &o : n.output())
        if (!o.empty() && values.count(o))
          return fail("tensor '" + o + "' is defined twice (second time by node '" +
                      nodeName + "')"),
                 nullptr;
      if (n.op_type() == "Constant" && (n.domain().empty() || n.domain() == "ai.onnx")) {
        if (n.output_size() != 1)
          return fail("node '" + nodeName + "' (Constant) must have one output"), nullptr;
        onnx::TensorProto built;
        const onnx::TensorProto *direct;
        if (!constantTensor(n, nodeName, &built, &direct))
          return nullptr;
        if (!emitTensor(direct ? *direct : built, n.output(0), false, loc))
          return nullptr;
        continue;
      }
      SmallVector<Value> inputs;
      for (const auto &in : n.input()) {
        if (in.empty()) {
          if (!none) {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPointToStart(body);
            none = b.create<qonnx::NoneOp>(unknown, b.getNoneType());
          }
          inputs.push_back(none);
          continue;
        }
        auto it = values.find(in);
        if (it == values.end())
          return fail("node '" + nodeName + "' (" + n.op_type() + ") reads '" + in +
                      "', which no earlier node, input or initializer defines"),
                 nullptr;
        inputs.push_back(it->second);
      }
      SmallVector<NamedAttribute> attrs;
      llvm::StringSet<> attrNames;
      for (const auto &a : n.attribute()) {
        if (a.name().empty() || !attrNames.insert(a.name()).second)
          return fail("node '" + nodeName + "' (" + n.op_type() +
                      ") has an unnamed or repeated attribute '" + a.name() + "'"),
                 nullptr;
        if (!convertAttribute(n, nodeName, a, attrs))
          return nullptr;
      }
      SmallVector<Type> outTypes;
      for (int i = 0; i < n.output_size(); ++i) {
        auto it = declaredTypes.find(n.output(i));
        outTypes.push_back(it != declaredTypes.end()
                               ? it->second
                               : Type(UnrankedTensorType::get(inferElementType(n, inputs, i))));
      }
      int64_t opset = m.opset;
      if (!n.domain().empty() && n.domain() != "ai.onnx") {
        opset = -1;
        for (const auto &o : m.proto->opset_import())
          if (o.domain() == n.domain())
            opset = o.version();
      }
      auto op = b.create<qonnx::NodeOp>(loc, outTypes, inputs, b.getStringAttr(n.op_type()),
                                        b.getStringAttr(nodeName), b.getStringAttr(n.domain()),
                                        b.getI64IntegerAttr(opset), b.getDictionaryAttr(attrs));
      for (int i = 0; i < n.output_size(); ++i)
        if (!n.output(i).empty())
          values[n.output(i)] = op.getResult(i);
    }

    SmallVector<Value> results;
    for (const auto &o : g.output()) {
      auto it = values.find(o.name());
      if (it == values.end())
        return fail("graph output '" + o.name() + "' is never computed"), nullptr;
      results.push_back(it->second);
    }
    // Declared output types may be absent; take what the values carry.
    SmallVector<Type> finalTypes;
    for (Value v : results)
      finalTypes.push_back(v.getType());
    func.setType(b.getFunctionType(argTypes, finalTypes));
    b.create<func::ReturnOp>(unknown, results);
    return module;
  }
};

} // namespace
} // namespace onnximport

OwningOpRef<ModuleOp> importONNXGeneric(MLIRContext &ctx, const std::string &path,
                                        WeightStore &store, std::string *error) {
  ctx.loadDialect<qonnx::QONNXDialect, qllm::QLLMDialect, func::FuncDialect>();
  onnximport::LoadedModel m;
  if (!onnximport::loadModelFile(path, &m, error))
    return nullptr;
  std::vector<std::string> before = store.names();
  onnximport::Importer imp(ctx, m, store, error);
  OwningOpRef<ModuleOp> module = imp.run();
  if (!module) // leave the caller's store as it was
    for (const std::string &n : store.names())
      if (!std::binary_search(before.begin(), before.end(), n))
        store.erase(n);
  return module;
}

} // namespace qopt
