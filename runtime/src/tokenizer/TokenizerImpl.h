//===- TokenizerImpl.h - the parts of a loaded tokenizer -------*- C++ -*-===//
#ifndef QOPT_RT_TOKENIZER_TOKENIZERIMPL_H
#define QOPT_RT_TOKENIZER_TOKENIZERIMPL_H

#include "AddedVocabulary.h"
#include "Bpe.h"
#include "Decoders.h"
#include "Normalizers.h"
#include "PostProcessors.h"
#include "PreTokenizers.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace qrt::tok {

/// The file's "truncation" block (single-sequence view).
struct Truncation {
  bool enabled = false;
  size_t maxLength = 0;
  bool keepEnd = false; ///< direction "Left": drop ids from the front
};

/// The file's "padding" block (single-sequence view).
struct Padding {
  bool enabled = false;
  size_t fixedLength = 0; ///< 0: pad to the sequence's own length
  size_t multipleOf = 0;
  bool padFront = false; ///< direction "Left"
  int32_t padId = 0;
};

struct TokenizerImpl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> preTokenizer;
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<PostProcessor> postProcessor;
  std::unique_ptr<Decoder> decoder;
  AddedVocabulary added;
  Truncation truncation;
  Padding padding;
  std::optional<int32_t> bos, eos;

  /// Token text for an id (added tokens first), or nullptr.
  const std::string *tokenText(int32_t id) const {
    if (const AddedToken *t = added.byId(id))
      return &t->text;
    return model->idToToken(id);
  }
};

/// Parses tokenizer.json text; throws LoadError or nlohmann exceptions.
std::unique_ptr<TokenizerImpl> loadTokenizer(const std::string &jsonText);

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_TOKENIZERIMPL_H
