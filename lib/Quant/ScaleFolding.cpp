//===- ScaleFolding.cpp - float-equivalent per-channel rescaling ------===//
//
// Every rewrite reads the weight a param names now (the model's tensor, or
// an earlier rescaled copy), edits an fp32 copy, and stores it as a new
// owned tensor: mapped model files are never written.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/ScaleFolding.h"

#include "llvm/ADT/STLExtras.h"

#include <cstring>

using namespace mlir;

namespace qopt::quant {

std::string canonicalWeightName(llvm::StringRef name, llvm::StringRef suffix) {
  if (!suffix.empty() && name.ends_with(suffix) && name.size() > suffix.size())
    return name.drop_back(suffix.size()).str();
  return name.str();
}

/// Edits the float tensor read through operand `use` (a `qllm.param`) and
/// points the param at the edited copy.
static bool rewriteParam(
    OpOperand &use, WeightStore &store, llvm::StringRef suffix,
    llvm::function_ref<bool(std::vector<float> &, llvm::ArrayRef<int64_t>, std::string *)> edit,
    std::string *error) {
  Operation *user = use.getOwner();
  auto param = use.get().getDefiningOp<qllm::ParamOp>();
  std::string where = "'" + user->getName().getStringRef().str() + "'";
  if (!param) {
    *error =
        "scale folding: the weight of " + where + " is not a float qllm.param (already quantized?)";
    return false;
  }
  std::string name = param.getName().str();
  // A weight shared with another op would change that op too.
  if (!param.getResult().hasOneUse()) {
    *error = "scale folding: weight '" + name + "' is shared by several ops";
    return false;
  }
  const WeightEntry *entry = store.find(name);
  if (!entry || !isFloat(entry->dtype)) {
    *error = "scale folding: weight '" + name + "' is not a float tensor of the weight store";
    return false;
  }
  std::vector<int64_t> shape = entry->shape;
  std::vector<float> data = store.readF32(*entry);
  if (!edit(data, shape, error)) {
    *error = "scale folding: weight '" + name + "': " + *error;
    return false;
  }
  std::string target = canonicalWeightName(name, suffix) + suffix.str();
  std::vector<uint8_t> bytes(data.size() * sizeof(float));
  std::memcpy(bytes.data(), data.data(), bytes.size());
  // The previous rescaled copy (if this param already named one) goes.
  if (store.contains(target))
    store.erase(target);
  if (!store.addOwned(target, DType::F32, shape, std::move(bytes), error, "<scale folding>"))
    return false;
  auto type = RankedTensorType::get(shape, Float32Type::get(param.getContext()));
  param.setName(target);
  // A bf16/fp16 weight is now fp32 in the store: the IR type follows.
  if (param.getResult().getType() != type)
    param.getResult().setType(type);
  return true;
}

bool scaleLinearColumns(qllm::LinearOp linear, llvm::ArrayRef<float> s, WeightStore &store,
                        llvm::StringRef suffix, std::string *error) {
  return rewriteParam(
      linear->getOpOperand(1), store, suffix,
      [&](std::vector<float> &w, llvm::ArrayRef<int64_t> shape, std::string *err) {
        if (shape.size() != 2 || shape[1] != int64_t(s.size())) {
          *err = "expected " + std::to_string(s.size()) + " input columns";
          return false;
        }
        for (int64_t r = 0; r < shape[0]; ++r)
          for (int64_t c = 0; c < shape[1]; ++c)
            w[size_t(r * shape[1] + c)] *= s[size_t(c)];
        return true;
      },
      error);
}

bool divideLinearRows(qllm::LinearOp linear, llvm::ArrayRef<float> s, WeightStore &store,
                      llvm::StringRef suffix, std::string *error) {
  auto divideRows = [&](std::vector<float> &w, llvm::ArrayRef<int64_t> shape, std::string *err) {
    if (shape.empty() || shape[0] != int64_t(s.size())) {
      *err = "expected " + std::to_string(s.size()) + " output rows";
      return false;
    }
    int64_t cols = shape.size() == 2 ? shape[1] : 1;
    for (int64_t r = 0; r < shape[0]; ++r)
      for (int64_t c = 0; c < cols; ++c)
        w[size_t(r * cols + c)] /= s[size_t(r)];
    return true;
  };
  if (!rewriteParam(linear->getOpOperand(1), store, suffix, divideRows, error))
    return false;
  if (linear.getBias())
    return rewriteParam(linear->getOpOperand(2), store, suffix, divideRows, error);
  return true;
}

bool divideNormWeight(qllm::RMSNormOp norm, llvm::ArrayRef<float> s, WeightStore &store,
                      llvm::StringRef suffix, std::string *error) {
  return rewriteParam(
      norm->getOpOperand(1), store, suffix,
      [&](std::vector<float> &w, llvm::ArrayRef<int64_t> shape, std::string *err) {
        if (shape.size() != 1 || shape[0] != int64_t(s.size())) {
          *err = "expected " + std::to_string(s.size()) + " channels";
          return false;
        }
        for (size_t j = 0; j < w.size(); ++j)
          w[j] /= s[j];
        return true;
      },
      error);
}

bool readLinearWeight(qllm::LinearOp linear, const WeightStore &store, std::vector<float> *w,
                      std::string *error) {
  auto param = linear.getWeight().getDefiningOp<qllm::ParamOp>();
  if (!param) {
    *error = "the weight of a 'qllm.linear' is not a float qllm.param (already quantized?)";
    return false;
  }
  const WeightEntry *entry = store.find(param.getName().str());
  if (!entry || !isFloat(entry->dtype) || entry->shape.size() != 2) {
    *error = "weight '" + param.getName().str() + "' is not a 2-D float tensor of the store";
    return false;
  }
  *w = store.readF32(*entry);
  return true;
}

} // namespace qopt::quant
