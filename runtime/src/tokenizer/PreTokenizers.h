//===- PreTokenizers.h - tokenizer.json "pre_tokenizer" parts --*- C++ -*-===//
#ifndef QOPT_RT_TOKENIZER_PRETOKENIZERS_H
#define QOPT_RT_TOKENIZER_PRETOKENIZERS_H

#include "Json.h"

#include <memory>
#include <string>
#include <vector>

namespace qrt::tok {

/// A stretch of normalized text the model will tokenize on its own.
struct Piece {
  std::string text;
  /// True when the piece starts where the input text starts (HF tests the
  /// original offset 0; Metaspace's prepend_scheme "first" depends on it).
  bool atOrigin = false;
};

/// Cuts pieces into smaller pieces (and may rewrite them, e.g. ByteLevel).
class PreTokenizer {
public:
  virtual ~PreTokenizer() = default;
  /// Replaces `pieces` by their pre-tokenized, non-empty sub-pieces.
  virtual void apply(std::vector<Piece> &pieces) const = 0;
};

/// Metaspace's rule for adding the replacement character in front.
enum class PrependScheme { Always, First, Never };

/// Reads Metaspace's "prepend_scheme" (or the older "add_prefix_space").
PrependScheme readPrependScheme(const Json &j, const std::string &where);

/// Builds the pre-tokenizer described by `j`; nullptr for JSON null. Throws
/// LoadError naming the type for unsupported components.
std::unique_ptr<PreTokenizer> makePreTokenizer(const Json &j,
                                               const std::string &path);

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_PRETOKENIZERS_H
