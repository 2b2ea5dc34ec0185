//===- LinearSelection.cpp - which weights a pass quantizes, and how ----===//
//
// Decoder linears are quantized by default; embeddings and lm_head only
// when asked (they are the most sensitive weights and, tied, the same
// tensor); -wquant-override rules pick another format or none per weight.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/LinearSelection.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace qopt::quant {

bool WeightSelection::create(const Format &defaultFormat,
                             const std::vector<std::string> &overrides, bool quantizeEmbeddings,
                             bool quantizeLmHead, WeightSelection *selection,
                             std::string *error) {
  WeightSelection s;
  s.default_ = defaultFormat;
  s.embeddings_ = quantizeEmbeddings;
  s.lmHead_ = quantizeLmHead;
  for (const std::string &rule : overrides) {
    size_t eq = rule.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == rule.size()) {
      *error = "-wquant-override '" + rule + "': expected REGEX=FORMAT (e.g. "
               "'model\\.layers\\.0\\.mlp\\.down_proj\\.weight=int8')";
      return false;
    }
    OverrideRule r;
    r.pattern = rule.substr(0, eq);
    std::string formatName = rule.substr(eq + 1);
    r.regex = std::make_shared<llvm::Regex>(r.pattern);
    std::string regexError;
    if (!r.regex->isValid(regexError)) {
      *error = "-wquant-override '" + rule + "': bad regular expression: " + regexError;
      return false;
    }
    if (formatName != "none") {
      // A rule's format inherits the group size and symmetry the user gave
      // for int formats; nf4 and fp8 keep their own defaults unless the
      // rule names a group (":gN"), as they do for -wquant.
      llvm::StringRef base = llvm::StringRef(formatName).split(':').first.trim();
      bool ownDefaults = base == "nf4" || base == "fp8" || base == "fp8_e4m3" ||
                         defaultFormat.kind != qllm::ElementKind::Int;
      int64_t group = ownDefaults ? kDefaultGroupSize : defaultFormat.groupSize;
      bool sym = defaultFormat.kind == qllm::ElementKind::Int && defaultFormat.symmetric;
      Format f;
      std::string formatError;
      if (!parseFormat(formatName, group, sym, &f, &formatError)) {
        *error = "-wquant-override '" + rule + "': " + formatError;
        return false;
      }
      r.format = f;
    }
    s.rules_.push_back(std::move(r));
  }
  *selection = std::move(s);
  return true;
}

std::optional<Format> WeightSelection::formatFor(const std::string &name,
                                                 WeightRole role) const {
  if ((role == WeightRole::Embedding && !embeddings_) ||
      (role == WeightRole::LMHead && !lmHead_))
    return std::nullopt;
  for (const OverrideRule &r : rules_)
    if (r.regex->match(name))
      return r.format;
  return default_;
}

static bool sameFormat(const Format &a, const Format &b) {
  return a.kind == b.kind && a.bits == b.bits && a.groupSize == b.groupSize &&
         a.symmetric == b.symmetric;
}

bool WeightSelection::collect(mlir::ModuleOp module, std::vector<SelectedWeight> *selected,
                              std::string *error) const {
  selected->clear();
  auto func = module.lookupSymbol<mlir::func::FuncOp>("forward");
  if (!func || func.isExternal()) {
    *error = "quantization: the module has no func.func @forward with a body";
    return false;
  }
  func.walk([&](qllm::ParamOp param) {
    auto type = param.getResult().getType();
    if (type.getRank() != 2 || param->use_empty())
      return;
    std::string name = param.getName().str();
    std::optional<Format> chosen;
    WeightRole firstRole = WeightRole::Linear;
    bool first = true, ok = true;
    for (mlir::OpOperand &use : param->getUses()) {
      mlir::Operation *user = use.getOwner();
      std::optional<WeightRole> role;
      if (use.getOperandNumber() == 1) {
        if (mlir::isa<qllm::LinearOp>(user))
          role = WeightRole::Linear;
        else if (mlir::isa<qllm::EmbeddingOp>(user))
          role = WeightRole::Embedding;
        else if (mlir::isa<qllm::LMHeadOp>(user))
          role = WeightRole::LMHead;
      }
      std::optional<Format> f = role ? formatFor(name, *role) : std::nullopt;
      if (!f) {
        ok = false;
        break;
      }
      if (first) {
        chosen = f;
        firstRole = *role;
        first = false;
      } else if (!sameFormat(*chosen, *f)) {
        ok = false;
        break;
      }
    }
    if (ok && chosen)
      selected->push_back({param, name, firstRole, *chosen});
  });
  return true;
}

} // namespace qopt::quant
