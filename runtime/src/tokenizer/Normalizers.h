//===- Normalizers.h - tokenizer.json "normalizer" components --*- C++ -*-===//
#ifndef QOPT_RT_TOKENIZER_NORMALIZERS_H
#define QOPT_RT_TOKENIZER_NORMALIZERS_H

#include "Json.h"

#include <memory>
#include <string>

namespace qrt::tok {

/// Rewrites text before pre-tokenization (input and output valid UTF-8).
class Normalizer {
public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string &text) const = 0;
};

/// Builds the normalizer described by `j`; nullptr for JSON null. Throws
/// LoadError naming the type for unsupported components.
std::unique_ptr<Normalizer> makeNormalizer(const Json &j,
                                           const std::string &path);

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_NORMALIZERS_H
