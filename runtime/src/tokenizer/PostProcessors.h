//===- PostProcessors.h - tokenizer.json "post_processor" ------*- C++ -*-===//
#ifndef QOPT_RT_TOKENIZER_POSTPROCESSORS_H
#define QOPT_RT_TOKENIZER_POSTPROCESSORS_H

#include "Json.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qrt::tok {

/// Adds special tokens around a single encoded sequence (pairs are not
/// needed by an LLM runtime and are not modelled).
class PostProcessor {
public:
  virtual ~PostProcessor() = default;
  /// Wraps `ids` with what the single-sequence template adds.
  virtual void process(std::vector<int32_t> &ids) const = 0;
  /// How many ids process() adds (truncation reserves room for them).
  virtual size_t addedCount() const = 0;
  /// Ids placed before / after the sequence, for BOS/EOS discovery.
  virtual void surroundingIds(std::vector<int32_t> &before,
                              std::vector<int32_t> &after) const = 0;
};

/// Builds the post-processor described by `j`; nullptr for JSON null or
/// processors that never change ids (ByteLevel). Throws LoadError naming
/// the type for unsupported components.
std::unique_ptr<PostProcessor> makePostProcessor(const Json &j,
                                                 const std::string &path);

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_POSTPROCESSORS_H
