//===- Split.h - splitting text around pattern matches ---------*- C++ -*-===//
//
// The one splitting primitive behind the Split, Metaspace, Digits,
// Punctuation and Whitespace* pre-tokenizers: find the pattern's matches,
// then keep, drop or merge them with their neighbours according to HF's
// SplitDelimiterBehavior.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_TOKENIZER_SPLIT_H
#define QOPT_RT_TOKENIZER_SPLIT_H

#include "Json.h"
#include "Regex.h"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qrt::tok {

using Range = std::pair<size_t, size_t>;

enum class SplitBehavior {
  Removed,            ///< drop the matches
  Isolated,           ///< matches become pieces of their own
  MergedWithPrevious, ///< a match joins the piece before it
  MergedWithNext,     ///< a match joins the piece after it
  Contiguous,         ///< consecutive matches form one piece
};

/// Parses "Removed", "Isolated", ... (throws LoadError naming `path`).
SplitBehavior parseSplitBehavior(const std::string &name,
                                 const std::string &path);

/// Something that finds non-overlapping matches in a string.
class SplitPattern {
public:
  virtual ~SplitPattern() = default;
  /// Appends the matches of the pattern in `s`, left to right.
  virtual void find(std::string_view s, std::vector<Range> &out) const = 0;
};

/// Matches of a regex (which may be a one-character class: every matching
/// character is then its own match, as with HF's char-predicate patterns).
class RegexPattern : public SplitPattern {
public:
  RegexPattern(const std::string &pattern, Regex::Syntax syntax,
               const std::string &path)
      : regex_(pattern, syntax, path) {}
  void find(std::string_view s, std::vector<Range> &out) const override {
    regex_.findAll(s, out);
  }

private:
  Regex regex_;
};

/// Matches of a literal string (must be non-empty).
class LiteralPattern : public SplitPattern {
public:
  explicit LiteralPattern(std::string literal) : literal_(std::move(literal)) {}
  void find(std::string_view s, std::vector<Range> &out) const override;

private:
  std::string literal_;
};

/// Builds a pattern from HF's {"String": "..."} / {"Regex": "..."} object.
std::unique_ptr<SplitPattern> makePattern(const nlohmann::json &j,
                                          const std::string &path);

/// Splits `s` as HF's NormalizedString::split(pattern, behavior) after an
/// optional inversion of what counts as a match, and appends the non-empty
/// pieces to `out` as byte ranges of `s`.
void splitByPattern(std::string_view s, const SplitPattern &pattern,
                    SplitBehavior behavior, bool invert,
                    std::vector<Range> &out);

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_SPLIT_H
