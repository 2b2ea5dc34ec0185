//===- AddedVocabulary.h - added/special tokens of a tokenizer -*- C++ -*-===//
//
// Added tokens (like <|begin_of_text|>) are cut out of the text before the
// normalizer and model see it. As in HF, tokens with normalized=false are
// matched on the raw text, the others on the normalized text; matching is
// leftmost-longest and non-overlapping, then single_word / lstrip / rstrip
// adjust or veto each match.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_TOKENIZER_ADDEDVOCABULARY_H
#define QOPT_RT_TOKENIZER_ADDEDVOCABULARY_H

#include "Json.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace qrt::tok {

class BpeModel;
class Normalizer;

struct AddedToken {
  std::string content;
  bool singleWord = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
  /// What the token decodes to: HF gives normalized tokens their content
  /// run through the normalizer (so Llama-2's Prepend makes "Mr. Darcy"
  /// decode as "▁Mr.▁Darcy"), others their content.
  std::string text;
  bool operator==(const AddedToken &o) const {
    return content == o.content && singleWord == o.singleWord &&
           lstrip == o.lstrip && rstrip == o.rstrip &&
           normalized == o.normalized && special == o.special;
  }
};

/// A piece of the input after added-token extraction: either an added
/// token id or text still to be tokenized.
struct Segment {
  int32_t tokenId = -1; ///< >= 0 for an added token
  std::string text;     ///< text to tokenize when tokenId < 0
  bool atOrigin = false;
};

/// Leftmost-longest multi-pattern matcher over bytes (a small trie; added
/// vocabularies hold at most a few thousand tokens).
class TokenTrie {
public:
  void insert(const std::string &pattern, int32_t value);
  bool empty() const { return nodes_.size() <= 1; }
  /// Finds the leftmost, then longest, match starting at or after `from`.
  /// Returns false when there is none.
  bool findFrom(std::string_view s, size_t from, size_t &start, size_t &end,
                int32_t &value) const;

private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next; // sorted by byte
    int32_t value = -1;
  };
  int32_t child(int32_t node, unsigned char b) const;
  std::vector<Node> nodes_{Node()};
  bool firstByte_[256] = {};
};

class AddedVocabulary {
public:
  /// Reads the "added_tokens" array, assigning ids as HF does: a token
  /// already in the model vocabulary keeps that id, others get the next id
  /// after the vocabulary (the "id" in the file is only checked for range).
  void load(const Json &arr, const std::string &path, const BpeModel &model);
  /// Builds the matchers; `normalizer` (may be null) normalizes the patterns
  /// of normalized tokens, as HF does.
  void buildMatchers(const Normalizer *normalizer);

  /// Splits raw `text` into segments, normalizing the text in between.
  void extract(const std::string &text, const Normalizer *normalizer,
               std::vector<Segment> &out) const;

  std::optional<int32_t> tokenToId(std::string_view content) const;
  /// The added token with this id, or nullptr.
  const AddedToken *byId(int32_t id) const;
  /// True when `content` is the text of a special added token (HF decides
  /// skip_special_tokens on the token text, not the id).
  bool isSpecialContent(const std::string &content) const;
  /// One more than the largest added id (0 when none).
  int32_t idLimit() const { return idLimit_; }

private:
  void split(const std::string &text, bool atOrigin, const TokenTrie &trie,
             const std::function<void(std::string, bool)> &onText,
             std::vector<Segment> &out) const;

  std::vector<AddedToken> specialOrder_; ///< special tokens, file order
  std::vector<AddedToken> plainOrder_;   ///< the others, file order
  std::unordered_map<std::string, int32_t> contentToId_;
  std::unordered_map<int32_t, AddedToken> idToToken_;
  std::unordered_set<std::string> specialContents_;
  TokenTrie rawTrie_, normalizedTrie_;
  int32_t idLimit_ = 0;
};

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_ADDEDVOCABULARY_H
