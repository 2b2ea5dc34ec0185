//===- LinearSelection.h - which weights a pass quantizes, and how -*- C++ -*-===//
//
// Every weight-quantizing pass (RTN, GPTQ, AWQ) asks the same question:
// "which float weights of this module do I quantize, and in which format?"
// The answer is shared so that -wquant-override, -quantize-embeddings and
// -quantize-lm-head mean the same thing for every method.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_LINEARSELECTION_H
#define QOPT_QUANT_LINEARSELECTION_H

#include "mlir/IR/BuiltinOps.h"
#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Quant/QuantFormat.h"
#include "llvm/Support/Regex.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qopt::quant {

/// One -wquant-override rule: weights whose name matches `pattern` (a POSIX
/// extended regular expression, llvm::Regex, searched anywhere in the name:
/// anchor with ^ and $ for a whole-name match) get `format`, or stay float
/// when it is empty (FORMAT `none`).
struct OverrideRule {
  std::string pattern;
  std::shared_ptr<llvm::Regex> regex;
  std::optional<Format> format;
};

/// Where a selected weight is used.
enum class WeightRole { Linear, Embedding, LMHead };

/// A float weight chosen for quantization.
struct SelectedWeight {
  qllm::ParamOp param;
  std::string name;
  WeightRole role = WeightRole::Linear;
  Format format;
};

/// The quantization plan of a pass: a default format, override rules, and
/// whether embeddings and lm_head take part.
class WeightSelection {
public:
  /// Parses the rules ("REGEX=FORMAT", split at the last '='; FORMAT as
  /// parseFormat reads it, or `none`). An int FORMAT inherits an int
  /// default's group size and symmetry; nf4 and fp8 keep their own defaults
  /// (64-blocks, per-channel) unless the rule names a group ("nf4:g128").
  /// False with *error naming the bad rule.
  static bool create(const Format &defaultFormat, const std::vector<std::string> &overrides,
                     bool quantizeEmbeddings, bool quantizeLmHead, WeightSelection *selection,
                     std::string *error);

  /// The format for a weight of `role` named `name`; nullopt = keep float.
  /// Embeddings and lm_head are only considered when asked; then the first
  /// matching rule wins, else the default format.
  std::optional<Format> formatFor(const std::string &name, WeightRole role) const;

  /// The float `qllm.param`s of `@forward` to quantize, in program order.
  /// A weight is selected when every use of it is selected in the same
  /// format (a tied embedding/lm_head is quantized only when both are
  /// asked). Weights already quantized (`qllm.qparam`) are skipped. False
  /// with *error when the module has no `@forward`.
  bool collect(mlir::ModuleOp module, std::vector<SelectedWeight> *selected,
               std::string *error) const;

  const Format &defaultFormat() const { return default_; }
  const std::vector<OverrideRule> &rules() const { return rules_; }

private:
  Format default_;
  std::vector<OverrideRule> rules_;
  bool embeddings_ = false, lmHead_ = false;
};

} // namespace qopt::quant

#endif
